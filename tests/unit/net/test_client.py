"""The network layer against a real hostile server on 127.0.0.1 (tests/hostile.py): every request
ends within its deadline, every body within its cap, whatever the peer does."""

from __future__ import annotations

import resource
import time

import pytest
import requests

from builder.net import client as net
from tests.hostile import gzip_bomb, hostile_server

QUICK = net.Limits(connect_s=2, read_s=5, total_s=3, max_body=1 << 20)


def _rss_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _send(url: str, limits: net.Limits = QUICK) -> requests.Response:
    with net.session() as s:
        return net.send(s, "GET", url + "/v1/models", limits=limits)


def test_a_normal_answer_is_read_whole():
    with hostile_server() as peer:
        reply = _send(peer.url)
    assert reply.status_code == 200 and reply.json()["data"][0]["id"] == "tiny"


@pytest.mark.parametrize("mode", ["trickle-headers", "trickle-body"])
def test_a_trickling_peer_is_cut_at_the_whole_request_deadline(mode):
    # a byte a second: each read is well inside read_s = 5 s, only the 3 s deadline ends it
    with hostile_server() as peer:
        peer.mode = mode
        started = time.monotonic()
        with pytest.raises(net.DeadlineExceeded, match="3 s request deadline"):
            _send(peer.url)
        assert time.monotonic() - started < 3 + 1.5


@pytest.mark.parametrize("mode", ["flood", "flood-chunked", "gzip-bomb"])
def test_a_flood_or_a_gzip_bomb_is_refused_at_the_cap_without_reading_it(mode):
    gzip_bomb()  # made before the clock starts (about 4 s)
    before = _rss_mib()
    with hostile_server() as peer:
        peer.mode = mode
        started = time.monotonic()
        with pytest.raises(net.BodyTooLarge, match="1 MiB"):
            _send(peer.url, net.Limits(connect_s=2, read_s=5, total_s=60, max_body=1 << 20))
        assert time.monotonic() - started < 30
    assert _rss_mib() - before < 64  # 2 GiB (decoded) were on offer


def test_an_impossible_chunk_size_is_a_broken_answer_not_a_traceback():
    with hostile_server() as peer:
        peer.mode = "chunk-overflow"
        with pytest.raises(net.PeerBroke):
            _send(peer.url)


def test_a_stalled_peer_is_a_timeout_after_the_read_timeout():
    with hostile_server() as peer:
        peer.mode = "stall"
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            _send(peer.url, net.Limits(connect_s=2, read_s=1, total_s=10, max_body=1 << 20))
        assert time.monotonic() - started < 3


def test_reason_is_short_and_redacted():
    with pytest.raises(requests.RequestException) as caught:
        with net.session() as s:
            net.send(s, "GET", "http://user:hunter2@127.0.0.1:9/", limits=QUICK)
    assert net.reason(caught.value) == "Connection refused"
    assert "hunter2" not in net.reason(net.PeerBroke("http://user:hunter2@h/ broke"))


def test_the_deadline_ends_with_the_request():
    # the watchdog of one request must not cut the next one on a reused connection
    with hostile_server() as peer, net.session() as s:
        for _ in range(3):
            assert net.send(s, "GET", peer.url + "/v1/models",
                            limits=net.Limits(total_s=0.5, max_body=1 << 20)).status_code == 200
            time.sleep(0.3)
        time.sleep(0.5)
        assert net.send(s, "GET", peer.url + "/v1/models", limits=QUICK).status_code == 200
