"""The registry client and its token service against a real hostile registry on 127.0.0.1
(tests/hostile.py): a stall or a trickle ends at the request deadline, a flood at the cap, a garbage
manifest or tag list is one line (StepFailed), a password outside Latin-1 is sent, not a traceback."""

from __future__ import annotations

import base64
import json
import time

import pytest

from builder.errors import ServiceError, StepFailed
from builder.oci import transport
from builder.oci.registry import RegistryClient
from tests.hostile import gzip_bomb, hostile_server


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda handler, path: (status, {"Content-Type": "application/json", **(headers or {})}, data)


@pytest.fixture
def peer():
    with hostile_server() as server:
        server.routes["/v2/"] = _json({})
        yield server


def _client(peer, **kwargs) -> RegistryClient:
    return RegistryClient(f"127.0.0.1:{peer.port}", **kwargs)


@pytest.mark.parametrize("mode", ["trickle-headers", "trickle-body", "stall"])
def test_a_trickling_registry_ends_at_the_request_deadline(peer, mode, monkeypatch):
    monkeypatch.setattr(transport, "DEADLINE_S", 2.0)  # 120 s in use; the mechanism is the same
    peer.mode = mode
    client = _client(peer)
    client.ping()
    started = time.monotonic()
    with pytest.raises(ServiceError, match="request deadline|timed out"):
        client.get_manifest("llm/images", "tag")
    assert time.monotonic() - started < 2.0 * transport._READ_RETRIES + 2  # reads are retried on 5xx only


@pytest.mark.parametrize("mode", ["flood", "flood-chunked", "gzip-bomb"])
def test_a_flooding_registry_is_refused_at_the_manifest_cap(peer, mode):
    gzip_bomb()
    peer.mode = mode
    client = _client(peer)
    client.ping()
    with pytest.raises(ServiceError, match="MiB"):
        client.get_manifest("llm/images", "tag")


@pytest.mark.parametrize("body, what", [
    (b"\x00\xffnot json", "not JSON"), (b"[1, 2]", "not a JSON object"), (b"[" * 100000, "not JSON"),
])
def test_a_garbage_manifest_is_one_line(peer, body, what):
    peer.routes["/v2/llm/images/manifests/tag"] = _json(body)
    with pytest.raises(StepFailed, match=what):
        _client(peer).image_labels("llm/images", "tag")


@pytest.mark.parametrize("body", [b"garbage", b'{"tags": "v1"}', b'{"tags": [1, {"a": 2}]}', b'{"tags": ["\\u001b[2J"]}'])
def test_a_garbage_tag_list_is_one_line(peer, body):
    peer.routes["/v2/llm/images/tags/list"] = _json(body)
    with pytest.raises(StepFailed, match="tags of llm/images"):
        _client(peer).tags("llm/images")


def test_a_password_outside_latin1_reaches_the_token_service(peer):
    seen: list[str] = []

    def token(handler, path):
        seen.append(handler.headers.get("Authorization", ""))
        return 200, {"Content-Type": "application/json"}, json.dumps({"token": "tok.abc", "expires_in": 60}).encode()

    def challenge(handler, path):
        if handler.headers.get("Authorization") == "Bearer tok.abc":
            return 200, {"Content-Type": "application/json"}, b"{}"
        realm = f'Bearer realm="http://127.0.0.1:{peer.port}/token",service="r"'
        return 401, {"WWW-Authenticate": realm}, b"{}"

    peer.routes["/v2/"] = challenge
    peer.routes["/token"] = token
    _client(peer, username="alice", password="пароль€").ping()
    assert base64.b64decode(seen[0].split()[1]).decode() == "alice:пароль€"


@pytest.mark.parametrize("answer", [{"token": 12}, {"token": "bad token\r\nX-Evil: 1"}, {"token": "ok", "expires_in": "soon"},
                                    {"token": "ok", "expires_in": 1e308}])
def test_a_token_service_answer_of_the_wrong_shape_is_one_line_or_used_safely(peer, answer):
    def challenge(handler, path):
        if (handler.headers.get("Authorization") or "").startswith("Bearer "):
            return 200, {"Content-Type": "application/json"}, b"{}"
        return 401, {"WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{peer.port}/token"'}, b"{}"

    peer.routes["/v2/"] = challenge
    peer.routes["/token"] = _json(answer)
    try:
        _client(peer).ping()
    except ServiceError as exc:
        assert "gave no usable token" in str(exc) and "\n" not in str(exc)
    else:
        assert answer["token"] == "ok"
