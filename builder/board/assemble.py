"""Building the board model from plain inputs: cells, exclusions and the registry's JSON.

Pure: no I/O. Feed it from the matrix (cells.Expansion) and the RecordStore:
    evidence = {cell.id: CellEvidence(record=rec.to_dict() if rec else None, latest=newest,
                                      reports={d: store.get_smoke_report(d) for d in digests})}

The state of a cell, first match wins:
  excluded      the matrix excludes it (the reason is shown)
  smoke-failed  the last smoke report (of the newest image that has one) failed; the known-good
                image, if any, is still shown and pullable
  known-good    the cell has a known-good record
  untested      an image was built but has no passing, promoted smoke report
  never-built   no image of the cell is in the registry

Sweep data: `sweep.read_sweep` (the one reader of the stored sweep format).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

from builder.board.model import (
    AppliedPatch,
    Board,
    BoardCell,
    CellEvidence,
    CellInput,
    CellState,
    CheckLine,
    CheckStatus,
    ExcludedInput,
    GridColumn,
    GridRow,
    HistoryPoint,
    KnownGood,
    Regression,
    SmokeRun,
    SweepLevel,
)
from builder.board.sweep import read_sweep
from builder.board.watchlog import WatchEvidence, watch_history

DEFAULT_THRESHOLD = 0.05
_STATUSES = ("pass", "fail", "skip")


def build_board(*, cells: Iterable[CellInput], excluded: Iterable[ExcludedInput] = (),
                evidence: Mapping[str, CellEvidence], image_repo: str, generated_at: str,
                title: str = "Matrix board", regression_threshold: float = DEFAULT_THRESHOLD,
                arch_order: Iterable[str] = (), watch: WatchEvidence = WatchEvidence()) -> Board:
    """The board of every cell, built or not. `arch_order`: the matrix's arch order (columns);
    archs not named there follow in order of first appearance. `watch`: the watch's records, shown
    on the cell each was measured against (watchlog.py validates them)."""
    built: list[BoardCell] = []
    unreadable: list[str] = []
    for c in cells:  # one bad record costs its cell's evidence, not the board
        ev = evidence.get(c.id, CellEvidence())
        unreadable += ev.problems
        try:
            built.append(_cell(c, ev, image_repo, regression_threshold))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, OverflowError) as exc:
            unreadable.append(f"{c.id}: its record or smoke report is unreadable ({_why(exc)}); shown without it")
            built.append(_cell(c, CellEvidence(latest=ev.latest), image_repo, regression_threshold))
    board_cells = built + [_excluded(e, image_repo) for e in excluded]
    entries, totals, bad = watch_history(watch, {c.id for c in board_cells})
    unreadable += bad
    board_cells = [dataclasses.replace(c, watch=entries[c.id], watch_total=totals[c.id]) if c.id in entries else c
                   for c in board_cells]
    ids = [c.id for c in board_cells]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate cell ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows: list[GridRow] = sorted({(c.engine, c.version) for c in board_cells},
                                 key=lambda r: (r[0], _natural_desc(r[1])))
    order = list(dict.fromkeys([*arch_order, *(c.arch for c in board_cells)]))
    columns: list[GridColumn] = sorted({(c.arch, c.cuda) for c in board_cells},
                                       key=lambda k: (order.index(k[0]), _natural(k[1] or "")))
    return Board(title=title, generated_at=generated_at, image_repo=image_repo,
                 cells=tuple(sorted(board_cells, key=lambda c: c.id)), rows=tuple(rows), columns=tuple(columns),
                 unreadable=tuple(unreadable))


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:100]}" if text else type(exc).__name__


def _excluded(e: ExcludedInput, image_repo: str) -> BoardCell:
    return BoardCell(id=e.id, engine=e.engine, version=e.version, arch=e.arch, cuda=e.cuda, mode="",
                     state="excluded", image_repo=image_repo, reason=e.reason, rule_line=e.rule_line)


def _cell(c: CellInput, ev: CellEvidence, image_repo: str, default_threshold: float) -> BoardCell:
    threshold = c.regression_threshold if c.regression_threshold is not None else default_threshold
    record = ev.record
    latest = ev.latest
    report = ev.reports.get(latest.digest) if latest else None
    if report is None and record is not None:
        report = ev.reports.get(str(record.get("digest")))
    last = smoke_run(report) if report is not None else None
    known = known_good(record) if record is not None else None
    state: CellState
    if last is not None and not last.passed:
        state = "smoke-failed"
    elif known is not None:
        state = "known-good"
    elif latest is not None or last is not None:
        state = "untested"
    else:
        state = "never-built"
    applied = c.patches_applied
    if record is not None and record.get("patches") is not None:
        applied = tuple(AppliedPatch(id=str(p["id"]), sha256=str(p.get("sha256", "")))
                        for p in record.get("patches") or [])
    summary_checks = _summary_checks(record)
    return BoardCell(
        id=c.id, engine=c.engine, version=c.version, arch=c.arch, cuda=c.cuda, mode=c.mode, state=state,
        image_repo=image_repo,
        failed_checks=tuple(ch.name for ch in last.checks if ch.status == "fail") if state == "smoke-failed"
        and last else (),
        known_good=known, latest_digest=latest.digest if latest else None,
        newer_untested=bool(known and latest and latest.digest != known.digest and latest.digest not in ev.reports),
        patches_applied=applied, patches_skipped=c.patches_skipped,
        kernel_audit=(last.check("kernels") if last else None) or summary_checks.get("kernels"),
        golden=(last.check("golden") if last else None) or summary_checks.get("golden"),
        backends=(last.check("backends") if last else None) or summary_checks.get("backends"),
        last_smoke=last, history=history(record, ev.reports, threshold) if record is not None else (),
        serve_args=c.serve_args, serve_command=c.serve_command, port=c.port,
        regression_threshold=threshold)


def known_good(record: Mapping[str, Any]) -> KnownGood:
    return KnownGood(digest=str(record["digest"]), image=str(record["image"]),
                     promoted_at=str(record.get("promoted_at", "")),
                     immutable_tag=str(record.get("immutable_tag", "")), source=str(record.get("source", "")),
                     engine_version=str(record.get("engine_version", "")),
                     golden_prompts=len(record.get("golden") or {}))


def smoke_run(report: Mapping[str, Any]) -> SmokeRun:
    checks = tuple(CheckLine(name=str(ch.get("name", "?")), status=_status(ch.get("status")),
                             evidence=str(ch.get("evidence", ""))) for ch in report.get("checks") or [])
    return SmokeRun(digest=str(report.get("digest", "")), passed=report.get("passed") is True,
                    finished_at=str(report.get("finished_at", "")), model=str(report.get("model", "")),
                    checks=checks, sweep=read_sweep(report, depth=None, with_unmeasured=True))


def history(record: Mapping[str, Any], reports: Mapping[str, Mapping[str, Any]],
            threshold: float) -> tuple[HistoryPoint, ...]:
    """Promotions oldest first (the record's history is newest first), regressions marked: a
    drop of more than `threshold` from the previous promotion at the same concurrency and measure."""
    entries = [*reversed(list(record.get("history") or [])), record]
    points: list[HistoryPoint] = []
    for entry in entries:
        digest = str(entry.get("digest", ""))
        levels = read_sweep(entry)
        if all(lv.measure == "legacy" for lv in levels) and digest in reports:
            richer = read_sweep(reports[digest])
            if any(lv.measure == "sweep" for lv in richer):
                levels = richer
        points.append(HistoryPoint(promoted_at=str(entry.get("promoted_at", "")), digest=digest, levels=levels))
    marked: list[HistoryPoint] = []
    for i, point in enumerate(points):
        found = []
        for lv in point.levels:
            before = next((p for p in reversed(points[:i]) if _level_at(p, lv) is not None), None)
            prev = _level_at(before, lv) if before else None
            if prev is not None and prev.decode_tps > 0:
                change = lv.decode_tps / prev.decode_tps - 1
                if change < -threshold:
                    found.append(Regression(concurrency=lv.concurrency, decode_tps=lv.decode_tps,
                                            previous_tps=prev.decode_tps, change=round(change, 4)))
        marked.append(HistoryPoint(promoted_at=point.promoted_at, digest=point.digest, levels=point.levels,
                                   regressions=tuple(found)))
    return tuple(marked)


def _level_at(point: HistoryPoint | None, like: SweepLevel) -> SweepLevel | None:
    if point is None:
        return None
    return next((lv for lv in point.levels if lv.concurrency == like.concurrency and lv.measure == like.measure),
                None)


def _summary_checks(record: Mapping[str, Any] | None) -> dict[str, CheckLine]:
    """The record's smoke summary ({"checks": {name: status}}): statuses without evidence."""
    checks = ((record or {}).get("smoke_summary") or {}).get("checks") or {}
    return {str(k): CheckLine(name=str(k), status=_status(v), evidence="(from the known-good record)")
            for k, v in checks.items()} if isinstance(checks, Mapping) else {}


def _status(value: Any) -> CheckStatus:
    return cast(CheckStatus, value) if value in _STATUSES else "fail"


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p)


def _natural_desc(text: str) -> tuple[tuple[int, int | str], ...]:
    """Newest version first: negate the numeric parts."""
    return tuple((0, -v) if isinstance(v, int) and k == 0 else (k, v) for k, v in _natural(text))
