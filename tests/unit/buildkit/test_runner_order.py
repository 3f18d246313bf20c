"""build_all with --jobs > 1: a cell built FROM another cell's image starts after that image is pushed,
and not at all when it failed. The builds are stand-ins (build_one overridden): ordering is the
behaviour under test; real builds are in tests/integration."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from builder.buildkit.progress import Progress
from builder.buildkit.runner import Builder, BuildOptions, CellResult


class StandInBuilder(Builder):
    def __init__(self, fail: set[str], seconds: dict[str, float]):
        super().__init__(None, None, None, None, BuildOptions(Path("/nonexistent"), {}, jobs=3, keep_going=True),
                         Progress(3))
        self.fail, self.seconds, self.events = fail, seconds, []
        self.lock = threading.Lock()

    def build_one(self, cell):
        with self.lock:
            self.events.append(("start", cell.id))
        time.sleep(self.seconds.get(cell.id, 0.0))
        with self.lock:
            self.events.append(("end", cell.id))
        status = "failed" if cell.id in self.fail else "built"
        return CellResult(cell.id, status, digest="" if cell.id in self.fail else f"sha256:{cell.id}")


def cell(name):
    return SimpleNamespace(id=name)


def test_a_cell_waits_for_its_base_even_when_listed_first():
    builder = StandInBuilder(set(), {"base": 0.5})
    results = builder.build_all([cell("derived"), cell("base"), cell("other")], needs={"derived": "base"})
    assert [r.status for r in results] == ["built", "built", "built"]
    assert builder.events.index(("end", "base")) < builder.events.index(("start", "derived"))
    assert builder.built_digests()["base"] == "sha256:base"


def test_a_cell_whose_base_failed_is_not_started_and_says_why():
    builder = StandInBuilder({"base"}, {})
    results = builder.build_all([cell("base"), cell("derived")], needs={"derived": "base"})
    assert results[1].status == "not started" and results[1].error == "its base base was not built"
    assert ("start", "derived") not in builder.events
