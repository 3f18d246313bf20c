"""The board's typed model: what one page of the matrix board shows, cell by cell.

Pure data. `assemble.build_board` makes a `Board` from plain inputs (the matrix's cells and
exclusions, and per cell what the registry holds); `render` turns it into a static site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from builder.board.watchlog import WatchEntry

CellState = Literal["known-good", "smoke-failed", "untested", "never-built", "excluded"]
CELL_STATES: Final[tuple[CellState, ...]] = get_args(CellState)
CheckStatus = Literal["pass", "fail", "skip"]
# "sweep": streamed decode tok/s per concurrency level; "legacy": one tokens/wall-time number of an
# older record, shown as c=1. The two are not the same measure and are never compared.
Measure = Literal["sweep", "legacy"]
SkipVerdict = Literal["not applicable", "already upstream"]  # patching.records.Skip.verdict
STATE_TEXT: Final[Mapping[CellState, str]] = {
    "known-good": "known-good", "smoke-failed": "smoke failed", "untested": "built, untested",
    "never-built": "never built", "excluded": "excluded",
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- inputs: what inputs.py makes from the matrix and collect.py reads from the RecordStore ---

@dataclass(frozen=True, kw_only=True)
class AppliedPatch:
    id: str
    sha256: str = ""
    note: str = ""  # e.g. the plan's verdict ("applies") or the upstream PR


@dataclass(frozen=True, kw_only=True)
class SkippedPatch:
    id: str
    verdict: SkipVerdict
    reason: str


@dataclass(frozen=True, kw_only=True)
class CellInput:
    """One buildable cell of the matrix (from cells.Cell and its patch plan)."""
    id: str
    engine: str
    version: str  # the version label, e.g. "0.20.2" or "nightly-20261120"
    arch: str
    cuda: str | None  # None: a cpu cell
    mode: str = ""
    serve_args: tuple[str, ...] = ()  # engine server arguments (smoke settings' args)
    serve_command: tuple[str, ...] = ()  # the engine module's server_args, with {model} placeholders
    port: int = 8000  # where the server listens in the container (the engine module's)
    patches_applied: tuple[AppliedPatch, ...] = ()  # the plan's; the record's win when known-good
    patches_skipped: tuple[SkippedPatch, ...] = ()
    regression_threshold: float | None = None  # None: the board's default

    def __post_init__(self) -> None:
        if not _SAFE_ID.match(self.id):
            raise ValueError(f"cell id {self.id!r} is not a safe file name")


@dataclass(frozen=True, kw_only=True)
class ExcludedInput:
    """A cell the matrix excludes (cells.Excluded), with its reason."""
    id: str
    engine: str
    version: str
    arch: str
    cuda: str | None
    reason: str
    rule_line: int | None = None

    def __post_init__(self) -> None:
        if not _SAFE_ID.match(self.id):
            raise ValueError(f"cell id {self.id!r} is not a safe file name")


@dataclass(frozen=True, kw_only=True)
class BuiltImage:
    """The newest immutable image of a cell in the registry (promotion.store.newest_image)."""
    digest: str
    tag: str = ""
    created: str = ""


@dataclass(frozen=True, kw_only=True)
class CellEvidence:
    """What the registry holds for one cell, in its stored JSON form.

    record: KnownGoodRecord.to_dict() (or the JSON read back); None when never promoted.
    latest: the newest built image; None when no image of the cell exists.
    reports: digest -> smoke report dict (RecordStore.get_smoke_report) for the latest image, the
    known-good digest and, where wanted, the history's digests (their sweeps enrich the chart)."""
    record: Mapping[str, Any] | None = None
    latest: BuiltImage | None = None
    reports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # what could not be read for this cell, one line each


# --- outputs: what the board shows ---------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SweepLevel:
    concurrency: int
    decode_tps: float  # aggregate decode tok/s, p50 over samples
    spread: float | None = None  # relative spread of the samples (0.012 = 1.2%)
    ttft_ms: float | None = None  # time to first token, p50
    measure: Measure = "sweep"
    errors: int = 0  # failed requests at this level (the sweep's own count)
    depth: int = 0  # prompt tokens of context (0: the short prompts)
    prefill_tps: float | None = None  # prompt tokens per second of prefill (at depth > 0)
    source: str = "client"  # whose clock the figure is by: "server" or "client"
    unmeasured: str = ""  # the runner could not measure it: decode_tps is 0 and never shown or charted


@dataclass(frozen=True, kw_only=True)
class CheckLine:
    name: str
    status: CheckStatus
    evidence: str = ""


@dataclass(frozen=True, kw_only=True)
class SmokeRun:
    """The last smoke report of the cell (of its newest tested image)."""
    digest: str
    passed: bool
    finished_at: str
    model: str
    checks: tuple[CheckLine, ...]
    sweep: tuple[SweepLevel, ...]

    def check(self, name: str) -> CheckLine | None:
        return next((c for c in self.checks if c.name == name), None)


@dataclass(frozen=True, kw_only=True)
class Regression:
    concurrency: int
    decode_tps: float
    previous_tps: float
    change: float  # relative, negative: -0.081 is 8.1% slower than the previous promotion


@dataclass(frozen=True, kw_only=True)
class HistoryPoint:
    """One promotion of the cell, oldest first in BoardCell.history."""
    promoted_at: str
    digest: str
    levels: tuple[SweepLevel, ...]
    regressions: tuple[Regression, ...] = ()

    def rate(self, concurrency: int) -> float | None:
        return next((lv.decode_tps for lv in self.levels if lv.concurrency == concurrency), None)

    def regression_at(self, concurrency: int) -> Regression | None:
        return next((r for r in self.regressions if r.concurrency == concurrency), None)


@dataclass(frozen=True, kw_only=True)
class KnownGood:
    digest: str
    image: str  # REPO@sha256:...
    promoted_at: str
    immutable_tag: str = ""
    source: str = ""
    engine_version: str = ""
    golden_prompts: int = 0  # prompts whose greedy output the record keeps

    @property
    def pull(self) -> str:
        return f"docker pull {self.image}"


@dataclass(frozen=True, kw_only=True)
class BoardCell:
    id: str
    engine: str
    version: str
    arch: str
    cuda: str | None
    mode: str
    state: CellState
    image_repo: str  # registry/repository the cell's images live in
    reason: str = ""  # why excluded
    rule_line: int | None = None  # the matrix line that excluded it
    failed_checks: tuple[str, ...] = ()  # of the last smoke, when it failed
    known_good: KnownGood | None = None
    latest_digest: str | None = None
    newer_untested: bool = False  # known-good, but a newer image waits for its smoke test
    patches_applied: tuple[AppliedPatch, ...] = ()
    patches_skipped: tuple[SkippedPatch, ...] = ()
    kernel_audit: CheckLine | None = None
    golden: CheckLine | None = None
    backends: CheckLine | None = None  # the backends the engine said it chose at start-up (smoke/runtime.py)
    last_smoke: SmokeRun | None = None
    history: tuple[HistoryPoint, ...] = ()  # oldest first
    watch: tuple[WatchEntry, ...] = ()  # the watch's decisions measured against this cell, newest first
    watch_total: int = 0  # how many the registry holds (watch shows the newest watchlog.MAX_PER_CELL)
    serve_args: tuple[str, ...] = ()
    serve_command: tuple[str, ...] = ()
    port: int = 8000
    regression_threshold: float = 0.05

    @property
    def failed_check(self) -> str | None:
        return self.failed_checks[0] if self.failed_checks else None

    @property
    def sweep(self) -> tuple[SweepLevel, ...]:
        return self.last_smoke.sweep if self.last_smoke else ()

    @property
    def known_good_sweep(self) -> tuple[SweepLevel, ...]:
        """The numbers measured on the known-good image itself (its last smoke, else its record)."""
        kg = self.known_good
        if kg is None:
            return ()
        if self.last_smoke and self.last_smoke.digest == kg.digest and self.last_smoke.sweep:
            return tuple(lv for lv in self.last_smoke.sweep if not lv.unmeasured)
        point = next((p for p in reversed(self.history) if p.digest == kg.digest), None)
        return point.levels if point else ()

    @property
    def concurrencies(self) -> tuple[int, ...]:
        return tuple(sorted({lv.concurrency for p in self.history for lv in p.levels}))

    @property
    def label(self) -> str:
        """The state in words, as the grid shows it (never colour alone)."""
        if self.state == "smoke-failed" and self.failed_check:
            return f"smoke failed: {', '.join(self.failed_checks)}"
        if self.state == "known-good" and self.newer_untested:
            return "known-good (newer build untested)"
        return STATE_TEXT[self.state]


GridRow = tuple[str, str]  # (engine, version)
GridColumn = tuple[str, str | None]  # (arch, cuda)


@dataclass(frozen=True, kw_only=True)
class Board:
    title: str
    generated_at: str
    image_repo: str
    cells: tuple[BoardCell, ...]
    rows: tuple[GridRow, ...]
    columns: tuple[GridColumn, ...]
    unreadable: tuple[str, ...] = ()  # records and reports the board could not use, one line each

    def at(self, row: GridRow, column: GridColumn) -> BoardCell | None:
        return next((c for c in self.cells if (c.engine, c.version) == row and (c.arch, c.cuda) == column), None)

    def counts(self) -> dict[CellState, int]:
        return {s: sum(c.state == s for c in self.cells) for s in CELL_STATES}
