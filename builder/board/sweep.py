"""Reading a concurrency sweep out of a smoke report, a known-good record or a history entry.

The one place that knows the sweep's stored format (issue 15); adjust it here and nowhere else.

Where the sweep is looked for, first found wins:
  source["sweep"]                                  a report/record/history entry's top-level key
  source["checks"][i]["data"] where name == "sweep" the smoke report's check named "sweep"
  source["checks"][i]["data"]["sweep"]              (the same check, with the sweep nested)
Either a mapping with "levels" (SweepResult.to_dict()) or the list of levels itself.

Keys read per level (issue 15's LevelResult.to_dict(); older names of the board's proposal second):
  concurrency                                      int >= 1 (required)
  tps_p50        | decode_tps_p50 | decode_tps      aggregate decode tok/s, p50 over samples (required)
  spread         | decode_tps_spread               (max - min) / median of the samples, relative
  ttft_p50_s (seconds) | ttft_ms_p50 (ms)          time to first token, p50
  errors, requests                                 a level with errors is shown, never charted as good
  depth, prefill_tps, source                       prompt depth (absent: 0), prefill tok/s, whose clock
  unmeasured                                       "not measured: ..." (issue 20): no figure, only the reason
Only depth-0 levels by default (what the chart and the regressions compare); depth=None reads every depth,
and with_unmeasured keeps the levels the runner could not measure (decode_tps 0, never charted).
Without a sweep, the old single `throughput_tps` (tokens / request wall time) is one c=1 level of
measure "legacy", which is never compared with a sweep level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from builder.board.model import SweepLevel

SWEEP_CHECK = "sweep"


def read_sweep(source: Mapping[str, Any], depth: int | None = 0,
               with_unmeasured: bool = False) -> tuple[SweepLevel, ...]:
    """The sweep levels of a report, record or history entry, by depth and concurrency; an old single number
    as c=1 (legacy); () when there is neither."""
    raw: Any = source.get("sweep")
    if raw is None:
        check = next((ch for ch in source.get("checks") or []
                      if isinstance(ch, Mapping) and ch.get("name") == SWEEP_CHECK), None)
        raw = check.get("data") if check else None
        if isinstance(raw, Mapping) and "levels" not in raw and isinstance(raw.get("sweep"), (Mapping, list)):
            raw = raw["sweep"]
    if isinstance(raw, Mapping):
        raw = raw.get("levels")
    if isinstance(raw, list) and raw:
        levels = [lv for lv in (_level(item) for item in raw if isinstance(item, Mapping)) if lv is not None
                  and (depth is None or lv.depth == depth) and (with_unmeasured or not lv.unmeasured)]
        if levels or any(isinstance(item, Mapping) and item.get("unmeasured") for item in raw):
            return tuple(sorted(levels, key=lambda lv: (lv.depth, lv.concurrency)))
    tps = _number(source.get("throughput_tps"))
    if tps is not None and tps > 0:
        return (SweepLevel(concurrency=1, decode_tps=tps, measure="legacy"),)
    return ()


def _level(item: Mapping[str, Any]) -> SweepLevel | None:
    c = item.get("concurrency")
    tps = _first(item, "tps_p50", "decode_tps_p50", "decode_tps")
    unmeasured = str(item.get("unmeasured") or "")
    if unmeasured:
        tps = 0.0  # the runner could not measure it: whatever the client saw is no figure
    if not isinstance(c, int) or isinstance(c, bool) or c < 1 or tps is None:
        return None
    depth = item.get("depth", 0)
    depth = depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 0
    ttft_s = _number(item.get("ttft_p50_s"))
    ttft_ms = ttft_s * 1000 if ttft_s is not None else _number(item.get("ttft_ms_p50"))
    errors = item.get("errors")
    return SweepLevel(concurrency=c, decode_tps=tps, spread=None if unmeasured else _first(item, "spread", "decode_tps_spread"),
                      ttft_ms=ttft_ms, errors=errors if isinstance(errors, int) and not isinstance(errors, bool)
                      else 0, depth=depth, prefill_tps=_number(item.get("prefill_tps")) if depth else None,
                      source="server" if item.get("source") == "server" else "client", unmeasured=unmeasured[:300])


def _first(item: Mapping[str, Any], *keys: str) -> float | None:
    return next((v for v in (_number(item.get(k)) for k in keys) if v is not None), None)


MAX_NUMBER = 1e12  # no rate, time or count the board shows comes near it; beyond it the chart cannot scale


def _number(value: Any) -> float | None:
    """A finite number within +-MAX_NUMBER, else None (inf, nan, 1e308 and huge ints are not figures)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_NUMBER else None
