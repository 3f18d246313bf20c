"""`builder smoke --url` and `builder board` against real hostile peers on 127.0.0.1 (tests/hostile.py),
run as the user runs them (python -m builder, a child process): each ends within its documented
deadline with one line and exit 3, its peak RSS (the kernel's, for that child) stays far below the
512 MiB standard whatever the peer sends, and no credential or raw control character is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile import BUILDER, MODELS, gzip_bomb, hostile_server, run_measured

ROOT = Path(__file__).resolve().parents[3]
SECRET = "hunter2-Zq9"
RSS_LIMIT_MIB = 512
MODELS_DEADLINE_S = 10  # proof/url.py served_models: the first request of smoke --url


def _smoke(url: str, *extra: str, timeout: float = 120) -> tuple[int, str, str, float, int]:
    return run_measured(BUILDER + ["smoke", "--url", url, "--engine", "vllm", *extra], timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("mode", ["trickle-headers", "trickle-body", "stall"])
def test_smoke_url_ends_at_the_deadline_against_a_trickling_server(mode):
    with hostile_server() as peer:
        peer.mode = mode
        code, out, err, wall, rss = _smoke(peer.url)
    assert code == 3 and f"no answer within {MODELS_DEADLINE_S} s" in err and len(err.splitlines()) == 1, err
    assert wall < MODELS_DEADLINE_S + 8 and 0 < rss < RSS_LIMIT_MIB


@pytest.mark.parametrize("mode", ["flood", "flood-chunked", "gzip-bomb", "chunk-overflow"])
def test_smoke_url_refuses_a_flood_or_a_bomb_in_bounded_memory(mode):
    gzip_bomb()  # made before the child starts
    with hostile_server() as peer:
        peer.mode = mode
        code, out, err, wall, rss = _smoke(peer.url)
    assert code == 3 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ("MiB" in err) if mode != "chunk-overflow" else ("broken answer" in err), err
    assert 0 < rss < RSS_LIMIT_MIB // 4 and wall < 30  # 2 GiB on offer: 63-79 MiB measured, 2-4 GiB without the caps


def test_credentials_in_urls_appear_nowhere(tmp_path):
    closed = "127.0.0.1:9"
    runs = [
        BUILDER + ["smoke", "--url", f"http://alice:{SECRET}@{closed}", "--engine", "vllm"],
        BUILDER + ["smoke", "--url", f"http://{SECRET}@{closed}", "--engine", "vllm"],  # a token as the user part
        BUILDER + ["smoke", "--url", f"http://{SECRET}@[::1", "--engine", "vllm"],
        BUILDER + ["board", "--out", str(tmp_path / "site"), "--registry", f"alice:{SECRET}@{closed}"],
        BUILDER + ["bisect", "--cell", "x", "--good", "a", "--bad", "b",
                   "--repo", f"https://tok:{SECRET}@example.invalid/engine.git"],
        BUILDER + ["bisect", "--cell", "x", "--good", "a", "--bad", "b",
                   "--images", f"https://tok:{SECRET}@example.invalid/{{commit}}"],
    ]
    for argv in runs:
        code, out, err, _, _ = run_measured(argv, timeout=60, cwd=ROOT)
        assert code in (2, 3) and err.startswith("error: "), (argv, err)
        assert SECRET not in out + err, (argv, out, err)
    code, out, err, _, _ = run_measured(BUILDER + ["board", "--out", str(tmp_path / "site")], timeout=60, cwd=ROOT,
                                        env={"BUILDER_REGISTRY": f"alice:{SECRET}@{closed}"})
    assert code == 2 and SECRET not in out + err and "***@" in err, err
    with hostile_server() as peer:
        known_good = peer.url.replace("http://", f"http://bob:{SECRET}@")
        peer.routes["/v1/models"] = lambda handler, path: (200, {}, json.dumps(MODELS).encode())
        code, out, err, _, _ = run_measured(BUILDER + ["smoke", "--url", f"http://alice:{SECRET}@{closed}",
                                                       "--known-good-url", known_good, "--engine", "vllm"],
                                            timeout=60, cwd=ROOT)
    assert code == 3 and SECRET not in out + err, err


def test_control_characters_from_a_server_are_escaped():
    hostile_id = "tiny\x1b]0;pwned\x07\x1b[2J"
    models = {"object": "list", "data": [{"id": hostile_id, "max_model_len": 2048}]}
    with hostile_server() as peer:
        peer.mode = lambda handler, path: (200, {"Content-Type": "application/json"}, json.dumps(models).encode())
        code, out, err, wall, _ = _smoke(peer.url, timeout=300)
    assert "\x1b" not in out + err and "\x07" not in out + err and "\\x1b]0;pwned" in out, out
    assert code == 1 and wall < 120, (code, err[-500:])


def test_a_model_id_with_a_lone_surrogate_is_a_failed_check_not_a_traceback():
    body = b'{"object": "list", "data": [{"id": "tiny\\udcff", "max_model_len": 2048}]}'
    with hostile_server() as peer:
        peer.mode = lambda handler, path: (200, {"Content-Type": "application/json"}, body)
        code, out, err, _, _ = _smoke(peer.url, timeout=300)
    assert "Traceback" not in err and "\\udcff" in out + err and code == 1, err[-500:]
