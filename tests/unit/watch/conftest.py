"""A local PEP 503 index (a directory served by http.server on 127.0.0.1) and a local git repository."""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import threading
from pathlib import Path

import pytest


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def publish(root: Path, project: str, files: dict[str, bytes]) -> None:
    """Write the files under root/files and the project's simple page linking them with #sha256=."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    links = []
    for name, data in files.items():
        (root / "files" / name).write_bytes(data)
        links.append(f'<a href="../../files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a><br/>')
    page = root / "simple" / project
    page.mkdir(parents=True, exist_ok=True)
    (page / "index.html").write_text("<!DOCTYPE html><html><body>" + "\n".join(links) + "</body></html>\n")


@pytest.fixture
def index(tmp_path):
    """(root directory, the simple index URL) served on 127.0.0.1 for the test."""
    root = tmp_path / "index"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(repo)}).stdout.strip()


@pytest.fixture
def tagged_repo(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for n, tag in enumerate(["b11312", "b11400", "v0.33.1"]):
        (repo / "f").write_text(str(n))
        git(repo, "add", "f")
        git(repo, "commit", "-q", "-m", f"c{n}")
        git(repo, "tag", "-a", "-m", tag, tag) if tag.startswith("v") else git(repo, "tag", tag)
    return repo
