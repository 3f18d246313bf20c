"""On the GPU host there is no Docker, no `docker` Python package and none of the signing libraries
(cryptography, securesystemslib): the commands that need none of them (audit DIR, matrix, smoke --url, and the
help) must still start there. (On 2026-12-03 `smoke --url` died there at import: the CLI loaded cryptography.)"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

BLOCK_DOCKER = (
    "import sys\n"
    "class _NoDocker:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('docker', 'cryptography', 'securesystemslib'):\n"
    "            raise ImportError('no docker package on this host')\n"
    "sys.meta_path.insert(0, _NoDocker())\n"
    "from builder.cli import main\n"
    "sys.argv = ['builder'] + sys.argv[1:]\n"
    "main()\n"
)


def _builder_without_docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_DOCKER, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_the_cli_starts_and_lists_the_matrix_without_the_docker_package():
    done = _builder_without_docker("matrix", "--arch", "cpu")
    assert done.returncode == 0, done.stderr
    assert "vllm-0.32.0-cpu" in done.stdout


def test_audit_of_a_directory_runs_without_the_docker_package(tmp_path):
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("")
    done = _builder_without_docker("audit", str(tmp_path / "vllm"), "--arch", "sm_90", "--json")
    assert "No module named" not in done.stderr and "no docker package" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr


def test_smoke_url_runs_without_the_docker_package():
    from tests.unit.smoke.fake_engine_for_unit_tests import fake_engine_for_unit_tests
    with fake_engine_for_unit_tests(token_delay_s=0.001) as engine:
        done = _builder_without_docker("smoke", "--url", engine.url, "--engine", "vllm", "--concurrency", "1", "--samples", "2",
                                       "--tokens", "8", "--json")
    assert "no docker package" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
