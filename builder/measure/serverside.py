"""The server's own timing of a sample beside the client's, and whether the client could measure at all (pure).

A sample is the requests of one concurrent burst plus what the server said about them: each request's own
timing (llama-server streams it) or the difference of the server's counters read before and after the burst
(vLLM's /metrics). From that:

- The server-side decode rate of the sample. Each request's server decode time (its own, else the sample's
  mean per request) is placed to end where its last chunk arrived, and the window spans the earliest start to
  the latest end; the rate is the decode tokens over that window. At c=1 it is the server's own figure; at
  c>1 the placement keeps what the client's window form is for (requests the server ran one after another
  are not counted as side by side), and only the spread of the last chunks' arrival enters from the client.
- Evidence that the client did not read the stream as the server sent it (a starved client on a busy runner:
  the chunks pile up in the socket and are read in bursts, and arrival times then measure the client):
    * the median gap between two chunks of a stream is far below the server's own step time (or, where the
      server gives none, below the stream's own mean gap) or below what any server streams (MIN_GAP_S);
    * the client's decode rate is above the server's (a window squeezed by a late read);
    * the samples spread beyond a bound.
  The first two condemn the client's figures; where the server's own are there they replace them (at c=1
  wholly; at c>1 the arrival of last chunks enters the window, so a burst condemns the level). The spread
  condemns whichever figures the level would record. A condemned level is "not measured" and records nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from builder.engines.timing import ServerCounters

from .sse import RequestResult

NOT_MEASURED = "not measured: the runner is too busy"


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One concurrent burst: its requests and the server's counters for it (None: the server said nothing)."""

    requests: tuple[RequestResult, ...]
    server: ServerCounters | None = None


@dataclass(frozen=True, kw_only=True)
class BusyBounds:
    """Where the client's reading stops being a measurement. The defaults keep a quiet 2-core runner's
    streams (median gap 0.6-1.0 of the server's step, client within 3% of the server) well inside."""

    min_gap_ratio: float = 0.25  # median chunk gap / the server's step (else the stream's mean gap)
    # Without the server's clock: a median chunk gap under 0.05 ms is 20 000 steps/s per stream; the fastest
    # server measured here (llama-server, a 0.6 M-parameter model, one thread) took 0.13 ms a step.
    min_gap_s: float = 5e-5
    max_client_over_server: float = 1.15  # a client faster than the server read a squeezed window
    max_spread: float = 0.5  # (max - min) / median of the recorded samples


def sample_of(item: Sample | Sequence[RequestResult]) -> Sample:
    return item if isinstance(item, Sample) else Sample(requests=tuple(item))


def request_counters(sample: Sample) -> ServerCounters | None:
    """The sample's server counters: the metrics difference, else the sum of the requests' own timings."""
    if sample.server is not None:
        return sample.server
    own = [r.server for r in sample.requests if r.server is not None]
    if not own or len(own) != len(sample.requests):
        return None
    total = ServerCounters()
    for counters in own:
        total = total + counters
    return total


def server_decode_tps(sample: Sample) -> float | None:
    """The sample's aggregate decode rate by the server's clock (see the module docstring); None when the
    server said nothing, a request failed, or the counters cover other requests than the sample's (someone
    else's traffic on a deployment measured with --url)."""
    requests = sample.requests
    if not requests or any(r.status != "ok" or r.t_last is None for r in requests):
        return None
    counters = request_counters(sample)
    if counters is None or counters.requests != len(requests):
        return None
    mean = counters.decode_s_per_request
    spans = [r.server.decode_s if r.server is not None else mean for r in requests]
    if any(span is None or span <= 0 for span in spans):
        return None
    ends = [r.t_last for r in requests if r.t_last is not None]
    window = max(ends) - min(end - span for end, span in zip(ends, spans) if span is not None)
    tokens = sum(r.decode_tokens for r in requests)
    return tokens / window if tokens > 0 and window > 0 else None


def server_step_s(samples: Sequence[Sample]) -> float | None:
    """The server's mean time between two tokens of a stream, over the samples it timed."""
    total = ServerCounters()
    for sample in samples:
        counters = request_counters(sample)
        if counters is not None:
            total = total + counters
    return total.step_mean_s


def server_prefill_tps(samples: Sequence[Sample]) -> float | None:
    """Prompt tokens per second of the server's prefill time, per request (p50 over samples)."""
    rates = [c.prefill_tps for c in (request_counters(s) for s in samples) if c is not None and c.prefill_tps]
    return statistics.median([r for r in rates if r is not None]) if rates else None


def _median_gap(requests: Sequence[RequestResult]) -> float | None:
    gaps = [gap for r in requests if r.status == "ok" for gap in r.itls_s]
    return statistics.median(gaps) if gaps else None


def _client_mean_gap(requests: Sequence[RequestResult]) -> float | None:
    spans = [(r.decode_s, r.chunks - 1) for r in requests if r.status == "ok" and r.chunks > 1]
    gaps, time = sum(n for _, n in spans), sum(s for s, _ in spans)
    return time / gaps if gaps > 0 and time > 0 else None


def client_evidence(samples: Sequence[Sample], client_tps: float | None, server_tps: float | None,
                    bounds: BusyBounds) -> str:
    """Why the client's own arrival times are not a measurement ("" when nothing says so)."""
    requests = [r for s in samples for r in s.requests]
    median = _median_gap(requests)
    step = server_step_s(samples)
    found = []
    mean = _client_mean_gap(requests)
    if median is not None and step is not None:
        if median < bounds.min_gap_ratio * step:
            found.append(f"median chunk gap {_ms(median)} against the server's own step of {_ms(step)}")
    elif median is not None:  # no server clock: what the stream itself says
        if median < bounds.min_gap_s:
            found.append(f"median chunk gap {_ms(median)}, below the {_ms(bounds.min_gap_s)} any server needs")
        elif mean is not None and median < bounds.min_gap_ratio * mean:
            found.append(f"median chunk gap {_ms(median)} against a mean gap of {_ms(mean)}: chunks came in bursts")
    if client_tps is not None and server_tps is not None and client_tps > bounds.max_client_over_server * server_tps:
        found.append(f"client-side {client_tps:.1f} tok/s above the server's own {server_tps:.1f}")
    return "; ".join(found)


def spread_evidence(values: Sequence[float], bounds: BusyBounds, what: str) -> str:
    if len(values) < 2:
        return ""
    centre = statistics.median(values)
    spread = (max(values) - min(values)) / centre if centre else 0.0
    return f"{what} samples spread {100 * spread:.0f}% (bound {100 * bounds.max_spread:.0f}%)" \
        if spread > bounds.max_spread else ""


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.2f} ms" if seconds < 0.01 else f"{1000 * seconds:.1f} ms"
