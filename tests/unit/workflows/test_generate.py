"""Generated CI workflows: golden files per provider, determinism, the header and --check,
the offline variant, where credentials may appear, and the act command line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from builder.errors import InputError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.matrix.selection import make_selector, require_cells
from builder.workflows.generate import (
    MARKER,
    WorkflowOptions,
    act_command,
    canonical_command,
    generate_workflows,
    stale_files,
    workflow_path,
    write_workflows,
)
from builder.workflows.steps import CHECKOUT, UPLOAD
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def matrix():
    return load_matrix(REPO / "matrix.yaml")


def generate(matrix, provider="github", offline=False, **selectors):
    cells = require_cells(expand(matrix), make_selector(matrix, **selectors))
    command = canonical_command(provider, offline, **selectors)
    return generate_workflows(matrix, cells, provider, offline, command)


def workflow(files, provider="github") -> dict:
    data = yaml.safe_load(files[workflow_path(provider)])
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return data


def steps(data: dict):
    return [step for job in data["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_golden_workflow(matrix, provider):
    """Regenerate after an intended change with: UPDATE_GOLDEN=1 python -m pytest tests/unit/test_ciworkflows.py"""
    text = generate(matrix, provider)[workflow_path(provider)]
    golden = GOLDEN / f"{provider}.yml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"generated {provider} workflow differs from {golden}"


def test_paths_per_provider(matrix):
    assert sorted(generate(matrix, "github")) == [".github/actionlint.yaml", ".github/workflows/llm-factory-watch.yml",
                                                  ".github/workflows/llm-factory.yml"]
    assert sorted(generate(matrix, "gitea")) == [".gitea/workflows/llm-factory-watch.yml", ".gitea/workflows/llm-factory.yml"]
    with pytest.raises(InputError, match="unknown CI provider 'gitlab'"):
        generate(matrix, "gitlab")


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_deterministic(matrix, provider, offline):
    first = generate(matrix, provider, offline)
    again = generate(load_matrix(REPO / "matrix.yaml"), provider, offline)
    assert first == again
    assert all(text.encode() == again[path].encode() for path, text in first.items())


def test_header_names_the_command(matrix):
    files = generate(matrix, "github", True, arch=["cpu", "sm_90"])
    command = "builder ci generate --provider github --arch cpu --arch sm_90 --offline-actions"
    for text in files.values():
        assert text.startswith(MARKER)
        assert f"{command} --out . --check" in text.splitlines()[2]
    assert not re.search(r"\d{4}-\d\d-\d\d", files[workflow_path("github")])  # no timestamp


def test_matrix_jobs_labels_and_timeouts(matrix):
    data = workflow(generate(matrix))
    cells = expand(matrix).cells
    assert list(data["jobs"]) == ["build-sm_90", "build-sm_120", "build-sm_121a", "build-cpu", "bases", "board"]
    for arch, job in ((a, data["jobs"][f"build-{a}"]) for a in ("sm_90", "sm_120", "sm_121a", "cpu")):
        assert job["runs-on"] == list(matrix.archs[arch].runs_on)
        include = job["strategy"]["matrix"]["include"]
        assert [row["cell"] for row in include] == [c.id for c in cells if c.arch.name == arch]
        for row in include:
            assert row["timeout"] == {"source": 360, "wheel": 90, "overlay": 90}[row["mode"]]
        assert job["timeout-minutes"] == "${{ matrix.timeout }}"
        assert job["concurrency"] == {"group": "llm-factory-${{ matrix.cell }}", "cancel-in-progress": False}
        assert job["strategy"]["fail-fast"] is False
        for row in include:  # a dispatched cell id lets its arch's job start...
            assert f" {row['cell']} " in job["if"]
        assert "inputs.cell == matrix.cell" in job["env"]["SELECTED"]  # ...and only its matrix entry work
    assert data["jobs"]["build-sm_121a"]["runs-on"] == ["self-hosted", "linux", "arm64", "sm_121a"]
    actionlint = yaml.safe_load(generate(matrix)[".github/actionlint.yaml"])
    assert {"sm_90", "sm_120", "sm_121a"} <= set(actionlint["self-hosted-runner"]["labels"])


def test_selectors_narrow_the_matrix(matrix):
    files = generate(matrix, "github", arch=["cpu"])
    data = workflow(files)
    assert list(data["jobs"]) == ["build-cpu", "bases", "board"]
    assert data["jobs"]["board"]["needs"] == ["build-cpu"]
    assert data["jobs"]["board"]["runs-on"] == list(matrix.archs["cpu"].runs_on)
    assert data["jobs"]["build-cpu"]["strategy"]["matrix"]["include"] == [
        {"cell": "vllm-0.32.0-cpu", "mode": "wheel", "timeout": 90},
        {"cell": "llama.cpp-b11312-cpu", "mode": "source", "timeout": 360}]
    assert "sm_121a" not in files[".github/actionlint.yaml"]


def test_triggers_permissions_and_build_step(matrix):
    data = workflow(generate(matrix))
    assert data["permissions"] == {"contents": "read"}
    assert data["on"]["push"]["paths"] == ["patches/**", "dockerfiles/**", "matrix.yaml", "bases.lock"]
    assert data["on"]["schedule"] == [{"cron": "17 4 * * *"}]
    assert data["on"]["workflow_dispatch"]["inputs"]["cell"]["default"] == "all"
    builds = [s for s in steps(data) if s["name"] == "Build, smoke-test and promote"]
    assert len(builds) == 4
    assert all('build --cell "$CELL" --workdir build --smoke --promote' in s["run"] for s in builds)


def test_actions_pinned_by_sha_and_no_persisted_credentials(matrix):
    for provider in ("github", "gitea"):
        used = [s for s in steps(workflow(generate(matrix, provider), provider)) if "uses" in s]
        assert used and all(SHA_PIN.match(s["uses"]) for s in used)
        assert {s["uses"] for s in used} == {CHECKOUT[0], UPLOAD[provider][0]}
        assert all(s["with"]["persist-credentials"] is False for s in used if s["uses"] == CHECKOUT[0])
    text = generate(matrix)[workflow_path("github")]
    assert f"uses: {CHECKOUT[0]} # {CHECKOUT[1]}" in text


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_offline_variant_uses_no_action(matrix, provider):
    files = generate(matrix, provider, offline=True)
    text = files[workflow_path(provider)]
    assert "uses:" not in text
    runs = [s["run"] for s in steps(workflow(files, provider))]
    assert any("git fetch" in r and 'git checkout --quiet --force --detach "$SHA"' in r for r in runs)
    assert any('cp "$f" "$dest/"' in r for r in runs)


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_credentials_only_through_env(matrix, provider, offline):
    files = generate(matrix, provider, offline)
    data = workflow(files, provider)
    for step in steps(data):
        run = step.get("run", "")
        assert "${{" not in run, f"expression interpolated into run: of step {step['name']}"
        assert "secrets." not in run
        for key, value in step.get("with", {}).items():
            assert "secrets." not in str(value)
        for key, value in step.get("env", {}).items():
            if "secrets." in value:
                assert value == f"${{{{ secrets.{key} }}}}"
    text = files[workflow_path(provider)]
    secret_refs = re.findall(r"^\s*(\S+): \"\$\{\{ secrets\.(\w+) \}\}\"$", text, re.M)
    assert secret_refs and {name for name, _ in secret_refs} == {"BUILDER_REGISTRY_USER", "BUILDER_REGISTRY_PASSWORD"}
    assert text.count("secrets.") == len(secret_refs)  # nowhere else
    with_password = [s for s in steps(data) if "BUILDER_REGISTRY_PASSWORD" in s.get("env", {})]
    assert with_password and not any("echo" in s["run"] or "set -x" in s["run"] for s in with_password)
    for job in data["jobs"].values():
        assert "secrets." not in str(job.get("env", {}))  # only on the step that needs them
        assert job.get("environment") == ("llm-factory" if provider == "github" else None)


def test_the_schedule_checks_the_base_image_lock(matrix):
    """A moved upstream base fails the nightly check naming it; committing the refreshed lock is
    a push to bases.lock, which runs the builds (the moved digest is in every affected hash)."""
    data = workflow(generate(matrix))
    job = data["jobs"]["bases"]
    assert job["if"] == "${{ github.event_name == 'schedule' }}"  # not on dispatch or push (act runs dispatch)
    assert job["runs-on"] == ["self-hosted", "linux"]  # the labels every arch's runners carry
    assert job["steps"][-1]["run"].endswith('"$RUNNER_TEMP/llm-factory/bin/builder" bases lock --check\n')
    assert "bases.lock" in data["on"]["push"]["paths"]
    cpu_only = workflow(generate(matrix, arch=["cpu"]))["jobs"]["bases"]
    assert cpu_only["runs-on"] == list(matrix.archs["cpu"].runs_on)


def test_check_detects_stale_missing_and_leftover_files(matrix, tmp_path):
    files = generate(matrix, "github")
    assert stale_files(tmp_path, files) == sorted(files)  # nothing written yet
    write_workflows(tmp_path, files)
    assert stale_files(tmp_path, files) == []
    wf = tmp_path / workflow_path("github")
    wf.write_text(wf.read_text().replace("timeout: 360", "timeout: 30", 1))
    assert stale_files(tmp_path, files) == [workflow_path("github")]
    wf.unlink()
    assert stale_files(tmp_path, files) == [workflow_path("github")]
    write_workflows(tmp_path, files)
    old = tmp_path / ".github/workflows/old-name.yml"  # generated earlier under another name
    old.write_text(files[workflow_path("github")])
    mine = tmp_path / ".github/workflows/hand-written.yml"  # not generated: never touched
    mine.write_text("name: mine\n")
    assert stale_files(tmp_path, files) == [".github/workflows/old-name.yml"]
    write_workflows(tmp_path, files)
    assert not old.exists() and mine.exists() and stale_files(tmp_path, files) == []
    # A different selection is a different file: the committed one is stale.
    assert stale_files(tmp_path, generate(matrix, "github", arch=["cpu"])) == sorted(files)


def test_arch_without_runner_labels_is_an_error(small_matrix):
    loaded = load_matrix(small_matrix)  # the small test matrix declares no runs_on
    with pytest.raises(InputError, match="archs.sm_121a.runs_on is not set"):
        generate_workflows(loaded, expand(loaded).cells, "github", False, "builder ci generate --provider github")


def test_options_change_the_output(matrix):
    cells = expand(matrix).cells
    options = WorkflowOptions(name="factory", schedule="0 2 * * 1", timeouts=(("source", 480), ("wheel", 60)))
    files = generate_workflows(matrix, cells, "gitea", False, "cmd", options)
    data = yaml.safe_load(files[".gitea/workflows/factory.yml"])
    assert data[True]["schedule"] == [{"cron": "0 2 * * 1"}]
    timeouts = {row["mode"]: row["timeout"] for name, job in data["jobs"].items() if name.startswith("build-")
                for row in job["strategy"]["matrix"]["include"]}
    assert timeouts == {"source": 480, "wheel": 60}


@pytest.mark.parametrize("provider", ["github", "gitea"])
@pytest.mark.parametrize("offline", [False, True])
def test_board_job_after_every_build_job_keeps_the_board(matrix, provider, offline):
    data = workflow(generate(matrix, provider, offline), provider)
    board = data["jobs"]["board"]
    assert board["needs"] == [j for j in data["jobs"] if j.startswith("build-")] and len(board["needs"]) == 4
    assert board["if"] == "${{ always() }}"  # a failed or skipped cell still gets its board
    assert board["runs-on"] == ["self-hosted", "linux"]  # the labels every arch's runners share
    assert "strategy" not in board and board["timeout-minutes"] == 20
    write = next(s for s in board["steps"] if s["name"] == "Write the matrix board")
    assert write["run"].rstrip().endswith('"$RUNNER_TEMP/llm-factory/bin/builder" board --out board')
    assert set(write["env"]) == {"BUILDER_REGISTRY", "BUILDER_REGISTRY_USER", "BUILDER_REGISTRY_PASSWORD"}
    keep = board["steps"][-1]
    if offline:
        assert "uses" not in keep and 'cp -R board/. "$dest/"' in keep["run"] and "/$RUN_ID/board" in keep["run"]
    else:
        assert keep["uses"] == UPLOAD[provider][0]
        assert keep["with"] == {"name": "board", "path": "board/", "if-no-files-found": "error"}
    assert all("if" not in step for step in board["steps"])


def test_board_runner_labels_can_be_set(matrix):
    cells = expand(matrix).cells
    files = generate_workflows(matrix, cells, "gitea", False, "cmd", WorkflowOptions(board_runs_on=("web",)))
    assert yaml.safe_load(files[".gitea/workflows/llm-factory.yml"])["jobs"]["board"]["runs-on"] == ["web"]


def test_act_command(tmp_path):
    wf = tmp_path / "repo" / ".github" / "workflows" / "llm-factory.yml"
    env = {"BUILDER_REGISTRY_USER": "ci", "BUILDER_REGISTRY_PASSWORD": "s3cret"}
    argv = act_command(wf, "vllm-0.32.0-cpu", "127.0.0.1:5000", artifact_dir=tmp_path / "art", environ=env)
    repo = str(tmp_path / "repo")
    assert argv == ["act", "workflow_dispatch", "-C", repo, "-W", str(wf),
                    "-P", "self-hosted=-self-hosted", "--action-offline-mode", "--concurrent-jobs", "1",
                    "--input", "cell=vllm-0.32.0-cpu", "--var", "BUILDER_REGISTRY=127.0.0.1:5000",
                    "--var", f"FACTORY_GIT_URL={repo}", "--var", f"FACTORY_ARTIFACT_DIR={tmp_path / 'art'}",
                    "--secret", "BUILDER_REGISTRY_USER", "--secret", "BUILDER_REGISTRY_PASSWORD"]
    assert "s3cret" not in " ".join(argv)  # act reads the value from its environment
    # No credentials set: no --secret (act would prompt for the value and fail without a terminal).
    bare = act_command(wf, "c", "r:1", environ={})
    assert "--secret" not in bare and "FACTORY_ARTIFACT_DIR" not in " ".join(bare)
    online = act_command(wf, "c", "r:1", offline=False, artifact_dir=tmp_path / "art", environ={})
    assert "FACTORY_GIT_URL" not in " ".join(online)
    assert online[-2:] == ["--artifact-server-path", str(tmp_path / "art")]
    assert act_command(Path("x.yml"), "c", "r", repo=tmp_path, environ={})[3] == str(tmp_path)


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_the_watch_runs_on_a_schedule_on_each_archs_runners(matrix, provider):
    """Issue 22: `builder watch --build` daily, one job per arch on its own self-hosted runners."""
    path = ".github/workflows/llm-factory-watch.yml" if provider == "github" else ".gitea/workflows/llm-factory-watch.yml"
    data = yaml.safe_load(generate(matrix, provider)[path])
    assert data[True]["schedule"] == [{"cron": "41 5 * * *"}]
    assert list(data["jobs"]) == [f"watch-{a}" for a in ("sm_90", "sm_120", "sm_121a", "cpu")]
    cpu = data["jobs"]["watch-cpu"]
    assert cpu["runs-on"] == list(matrix.archs["cpu"].runs_on)
    run = next(s["run"] for s in cpu["steps"] if "builder\" watch" in s.get("run", ""))
    assert "--cell vllm-0.32.0-cpu" in run and "--build" in run and "--notify build/watch/verdicts.jsonl" in run
    assert "--promote" not in run  # a scheduled run proposes; promotion stays a person's decision
    assert "--workdir build/watch-work" in run  # built candidates' contexts stay out of the kept directory
    keep = cpu["steps"][-1]
    kept = keep["with"]["path"].split() if "with" in keep else keep["run"]
    assert "build/watch/" in kept and "build/watch-work/logs/" in kept and "build/watch-work/reports/" in kept
    assert "build/watch-work/" not in kept and "contexts" not in str(kept)  # a release's wheel: hundreds of MB
