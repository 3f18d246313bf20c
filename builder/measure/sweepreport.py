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

Where the server times its own work (serverside.py), a level keeps both figures and records the server's
(`source`); a level the runner could not measure (a starved client, a spread beyond the bound) records no
figure at all: `sample_tps` is empty and `unmeasured` says why, with the evidence. Levels carry a prompt
depth (tokens of context before decoding; 0: the short prose prompts), with TTFT and prefill beside decode.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .serverside import (NOT_MEASURED, BusyBounds, Sample, client_evidence, sample_of, server_decode_tps,
                         server_prefill_tps, server_step_s, spread_evidence)
from .sse import RequestResult

Source = Literal["server", "client"]

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
    depth: int = 0  # prompt tokens of context (0: the short prose prompts)
    source: Source = "client"  # whose clock sample_tps is by
    client_tps: tuple[float, ...] = ()  # the client's own aggregate of each sample (kept when not recorded)
    server_tps: tuple[float, ...] = ()  # the server's, where it timed its work
    server_step_s: float | None = None  # the server's mean inter-token time
    prefill_tps: float | None = None  # prompt tokens / prefill time per request (server's, else prompt / TTFT)
    prompt_tokens: int | None = None  # prompt length of a request as the server counted it (usage)
    unmeasured: str = ""  # why the level records no figure ("not measured: the runner is too busy (...)")
    client_note: str = ""  # why the client's figures were not used although the server's were

    @property
    def measured(self) -> bool:
        return bool(self.sample_tps) and not self.unmeasured

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
        for key in ("client_tps", "server_tps"):  # an unmeasured level keeps no figure, only its evidence text
            data[key] = [] if self.unmeasured else [round(v, 3) for v in data[key]]
        data.update(tps_p50=_round(self.tps_p50), spread=_round(self.spread, 5), cv=_round(self.cv, 5),
                    client_tps_p50=_round(p50(data["client_tps"])), server_tps_p50=_round(p50(data["server_tps"])),
                    server_step_s=_round(self.server_step_s, 7), prefill_tps=_round(self.prefill_tps))
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
                           first_error=str(data.get("first_error", "")), tokens_min=int(data.get("tokens_min", 0)),
                           depth=int(data.get("depth", 0)), source="server" if data.get("source") == "server" else "client",
                           client_tps=tuple(float(v) for v in data.get("client_tps") or ()),
                           server_tps=tuple(float(v) for v in data.get("server_tps") or ()),
                           server_step_s=opt("server_step_s"), prefill_tps=opt("prefill_tps"),
                           prompt_tokens=int(data["prompt_tokens"]) if data.get("prompt_tokens") is not None else None,
                           unmeasured=str(data.get("unmeasured", "")), client_note=str(data.get("client_note", "")))


def summarize_level(concurrency: int, samples: Sequence[Sample | Sequence[RequestResult]], *, depth: int = 0,
                    bounds: BusyBounds = BusyBounds()) -> LevelResult:
    """A level's summary over its samples (each the requests of one concurrent burst, with the server's
    counters for it when it has them), and whether the level was measured at all (serverside.py)."""
    bursts = [sample_of(s) for s in samples]
    requests = [r for sample in bursts for r in sample.requests]
    ok = [r for r in requests if r.status == "ok"]
    errors = [r for r in requests if r.status != "ok"]
    client = [a for a in (aggregate_decode_tps(s.requests) for s in bursts) if a is not None]
    server = [a for a in (server_decode_tps(s) for s in bursts) if a is not None]
    itls = [gap for r in ok for gap in r.itls_s]
    streams = [v for v in (r.decode_tps for r in ok) if v is not None]
    ttft = p50([r.ttft_s for r in ok if r.ttft_s is not None])
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    prompt = round(statistics.median(prompts)) if prompts else None
    prefill = server_prefill_tps(bursts)
    if prefill is None and prompt and ttft:
        prefill = prompt / ttft
    use_server = bool(server) and len(server) == len(client)
    recorded = server if use_server else client
    against = client_evidence(bursts, p50(client), p50(server) if use_server else None, bounds)
    note, unmeasured = "", ""
    if against and use_server and concurrency == 1:
        note = f"client-side figures not used ({against})"  # the server's c=1 figure owes the client nothing
    elif against:
        unmeasured = f"{NOT_MEASURED} ({against})"
    if not unmeasured:
        spread = spread_evidence(recorded, bounds, "server" if use_server else "client")
        unmeasured = f"{NOT_MEASURED} ({spread})" if spread else ""
    if errors or not ok:
        unmeasured = ""  # a failed level says that instead
    return LevelResult(concurrency=concurrency, sample_tps=() if unmeasured else tuple(recorded),
                       stream_tps_p50=p50(streams), ttft_p50_s=ttft,
                       itl_p50_s=p50(itls), itl_p90_s=quantile(itls, 0.9), requests=len(requests),
                       errors=len(errors), first_error=errors[0].error if errors else "",
                       tokens_min=min((r.tokens for r in ok), default=0), depth=depth,
                       source="server" if use_server else "client", client_tps=tuple(client),
                       server_tps=tuple(server), server_step_s=server_step_s(bursts), prefill_tps=prefill,
                       prompt_tokens=prompt, unmeasured=unmeasured, client_note=note)


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

    def level(self, concurrency: int, depth: int | None = None) -> LevelResult | None:
        """The level at `concurrency` and `depth` (None: the first depth swept)."""
        depth = self.levels[0].depth if depth is None and self.levels else depth
        return next((lv for lv in self.levels if lv.concurrency == concurrency and lv.depth == depth), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "aggregate_method": self.aggregate_method,
                "levels": [lv.to_dict() for lv in self.levels]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SweepResult:
        return SweepResult(model=str(data["model"]), max_tokens=int(data["max_tokens"]),
                           levels=tuple(LevelResult.from_dict(lv) for lv in data["levels"]),
                           aggregate_method=str(data.get("aggregate_method", AGGREGATE_METHOD)))


def render_table(result: SweepResult) -> str:
    """The sweep as the text report shows it, one row per depth and concurrency level: the recorded decode rate
    (by whose clock), the client's and the server's beside it and how far apart, then latency and prefill.
    A level that was not measured shows no figure and says why under its row."""
    head = f"{'depth':>6} {'c':>3}  {'tok/s(p50)':>10} {'by':>6}  {'client':>8}  {'server':>8}  {'c/s':>6}  " \
           f"{'spread':>6}  {'TTFT p50':>9}  {'prefill t/s':>11}  {'ITL p50':>8}  {'step':>8}  samples"
    rows = [head]
    for lv in result.levels:
        note = f"  {lv.errors}/{lv.requests} failed: {lv.first_error}" if lv.errors else ""
        if lv.sample_tps and lv.tokens_min < result.max_tokens:
            note += f"  (a request decoded {lv.tokens_min} < {result.max_tokens} tokens)"
        client, server = p50(lv.client_tps), p50(lv.server_tps)
        apart = f"{100 * (client / server - 1):+.1f}%" if client and server else "-"
        tps = "not measured" if lv.unmeasured else _num(lv.tps_p50)
        by = "-" if lv.unmeasured or not lv.sample_tps else lv.source
        prefill = _num(lv.prefill_tps) if lv.depth else "-"  # the short prompts' prefill is no figure
        rows.append(f"{lv.depth:>6} {lv.concurrency:>3}  {tps:>10} {by:>6}  {_num(client):>8}  {_num(server):>8}  "
                    f"{apart:>6}  {_pct(lv.spread):>6}  {_ms(lv.ttft_p50_s):>9}  {prefill:>11}  "
                    f"{_ms(lv.itl_p50_s):>8}  {_ms(lv.server_step_s):>8}  {len(lv.sample_tps):>7}{note}")
        for why in (lv.unmeasured, lv.client_note):
            if why:
                rows.append(f"{'':>10}  {why}")
    return "\n".join(rows)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f} ms" if value >= 0.01 else f"{1000 * value:.2f} ms"
