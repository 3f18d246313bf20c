"""The concurrency sweep's numbers (pure): one sample's aggregate decode rate, a level's summary over
samples, the JSON form kept in the smoke report and the known-good record, and the text table.

Aggregate decode tok/s of one sample (c concurrent requests) is total decode tokens / decode window,
where the window runs from the earliest first token to the latest last token of the sample. It is what
the server delivered to all streams together. The alternative, the sum of per-request decode rates,
is blind to serialisation: a server that runs the c requests one after another (one slot, a scheduler
bug, a cap on batch size) shows c times its single-stream rate although it delivers no more tokens per
second than at c=1. The window form reads that case correctly and equals the sum when the requests
decode side by side. The price: one request that starts late (a dropped SYN, a full listen backlog)
stretches the window and lowers that sample, which is why a level reports the p50 over samples with the
spread beside it. The per-stream rate (p50 over requests) is reported too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .sse import RequestResult

AGGREGATE_METHOD = "total decode tokens / (latest last token - earliest first token)"


def aggregate_decode_tps(requests: Sequence[RequestResult]) -> float | None:
    """One sample's aggregate decode rate; None when a request failed or nothing was decoded."""
    if not requests or any(r.status != "ok" or r.t_first is None or r.t_last is None for r in requests):
        return None
    tokens = sum(r.decode_tokens for r in requests)
    window = max(r.t_last for r in requests if r.t_last is not None) - \
        min(r.t_first for r in requests if r.t_first is not None)
    return tokens / window if tokens > 0 and window > 0 else None


def p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: an ITL p90 is a gap that was seen)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median: the range of the samples relative to their centre."""
    centre = p50(values)
    return (max(values) - min(values)) / centre if values and centre else None


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation, sample standard deviation / mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


@dataclass(frozen=True, kw_only=True)
class LevelResult:
    concurrency: int
    sample_tps: tuple[float, ...]  # aggregate decode tok/s of each sample that succeeded, in order
    stream_tps_p50: float | None  # per-request decode rate, p50 over all requests
    ttft_p50_s: float | None
    itl_p50_s: float | None
    itl_p90_s: float | None
    requests: int
    errors: int
    first_error: str = ""
    tokens_min: int = 0  # fewest completion tokens of a request: < max_tokens means ignore_eos was not honoured

    @property
    def tps_p50(self) -> float | None:
        return p50(self.sample_tps)

    @property
    def spread(self) -> float | None:
        return spread(self.sample_tps)

    @property
    def cv(self) -> float | None:
        return cv(self.sample_tps)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_tps"] = [round(v, 3) for v in self.sample_tps]
        data.update(tps_p50=_round(self.tps_p50), spread=_round(self.spread, 5), cv=_round(self.cv, 5))
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> LevelResult:
        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)
        return LevelResult(concurrency=int(data["concurrency"]),
                           sample_tps=tuple(float(v) for v in data["sample_tps"]),
                           stream_tps_p50=opt("stream_tps_p50"), ttft_p50_s=opt("ttft_p50_s"),
                           itl_p50_s=opt("itl_p50_s"), itl_p90_s=opt("itl_p90_s"),
                           requests=int(data["requests"]), errors=int(data["errors"]),
                           first_error=str(data.get("first_error", "")), tokens_min=int(data.get("tokens_min", 0)))


def summarize_level(concurrency: int, samples: Sequence[Sequence[RequestResult]]) -> LevelResult:
    """A level's summary over its samples (each the requests of one concurrent burst)."""
    requests = [r for sample in samples for r in sample]
    ok = [r for r in requests if r.status == "ok"]
    errors = [r for r in requests if r.status != "ok"]
    rates = [a for a in (aggregate_decode_tps(s) for s in samples) if a is not None]
    itls = [gap for r in ok for gap in r.itls_s]
    streams = [v for v in (r.decode_tps for r in ok) if v is not None]
    return LevelResult(concurrency=concurrency, sample_tps=tuple(rates), stream_tps_p50=p50(streams),
                       ttft_p50_s=p50([r.ttft_s for r in ok if r.ttft_s is not None]),
                       itl_p50_s=p50(itls), itl_p90_s=quantile(itls, 0.9), requests=len(requests),
                       errors=len(errors), first_error=errors[0].error if errors else "",
                       tokens_min=min((r.tokens for r in ok), default=0))


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    model: str
    max_tokens: int
    levels: tuple[LevelResult, ...]
    aggregate_method: str = AGGREGATE_METHOD

    @property
    def ok(self) -> bool:
        """Every level measured at least one sample and no request failed."""
        return all(level.sample_tps and not level.errors for level in self.levels)

    def level(self, concurrency: int) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.concurrency == concurrency), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "aggregate_method": self.aggregate_method,
                "levels": [lv.to_dict() for lv in self.levels]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SweepResult:
        return SweepResult(model=str(data["model"]), max_tokens=int(data["max_tokens"]),
                           levels=tuple(LevelResult.from_dict(lv) for lv in data["levels"]),
                           aggregate_method=str(data.get("aggregate_method", AGGREGATE_METHOD)))


def render_table(result: SweepResult) -> str:
    """The sweep as the text report shows it, one row per concurrency level."""
    head = f"{'c':>3}  {'tok/s(p50)':>10}  {'spread':>6}  {'CV':>6}  {'stream tok/s':>12}  " \
           f"{'TTFT p50':>9}  {'ITL p50':>8}  {'ITL p90':>8}  samples"
    rows = [head]
    for lv in result.levels:
        note = f"  {lv.errors}/{lv.requests} failed: {lv.first_error}" if lv.errors else ""
        if lv.sample_tps and lv.tokens_min < result.max_tokens:
            note += f"  (a request decoded {lv.tokens_min} < {result.max_tokens} tokens)"
        rows.append(f"{lv.concurrency:>3}  {_num(lv.tps_p50):>10}  {_pct(lv.spread):>6}  {_pct(lv.cv):>6}  "
                    f"{_num(lv.stream_tps_p50):>12}  {_ms(lv.ttft_p50_s):>9}  {_ms(lv.itl_p50_s):>8}  "
                    f"{_ms(lv.itl_p90_s):>8}  {len(lv.sample_tps):>7}{note}")
    return "\n".join(rows)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f} ms" if value >= 0.01 else f"{1000 * value:.2f} ms"
