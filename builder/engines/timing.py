"""Server-side timing: the counters an engine's server reports about its own work, read beside the client's clock.

Two forms exist. Per request, in the stream itself (llama-server's `timings` object on the last chunk), and
per server, as cumulative Prometheus counters and histograms (vLLM's /metrics), read before and after a
sample so that the difference is the sample's. Both are reduced to ServerCounters, which add and subtract,
so the measure stage never needs to know which engine spoke. The engine module maps its names onto it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True, kw_only=True)
class ServerCounters:
    """Work the server says it did, summed over requests. Times are the server's own clock, in seconds."""

    requests: int = 0
    prompt_tokens: int = 0  # prompt tokens the server processed (not those it found in a prefix cache)
    prefill_s: float = 0.0  # time spent on those prompts (queueing excluded)
    decode_tokens: int = 0  # tokens after each request's first one
    decode_s: float = 0.0  # each request's first token to its last, summed
    steps: int = 0  # inter-token gaps the server timed (its ITL histogram's count, or decode_tokens)
    step_s: float = 0.0  # their sum

    def __add__(self, other: ServerCounters) -> ServerCounters:
        return ServerCounters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: ServerCounters) -> ServerCounters:
        return ServerCounters(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    @property
    def decode_s_per_request(self) -> float | None:
        return self.decode_s / self.requests if self.requests > 0 and self.decode_s > 0 else None

    @property
    def step_mean_s(self) -> float | None:
        """The server's mean time between two tokens of one request (its inter-token latency)."""
        if self.steps > 0 and self.step_s > 0:
            return self.step_s / self.steps
        return self.decode_s / self.decode_tokens if self.decode_tokens > 0 and self.decode_s > 0 else None

    @property
    def prefill_tps(self) -> float | None:
        """Prompt tokens per second of prefill, per request (the server's prompt time of each, summed)."""
        return self.prompt_tokens / self.prefill_s if self.prompt_tokens > 0 and self.prefill_s > 0 else None


def prometheus_totals(text: str) -> dict[str, float]:
    """Each metric of a Prometheus text exposition summed over its label sets (`name{a="b"} 3` -> name: 3).
    Histogram buckets are skipped (only _sum and _count are used); comments and malformed lines are ignored.

    >>> prometheus_totals('# HELP x\\nx_total{m="a"} 2\\nx_total{m="b"} 3.5\\ny_bucket{le="1"} 9\\ny_sum 1e-3\\n')
    {'x_total': 5.5, 'y_sum': 0.001}
    """
    totals: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, brace, rest = line.partition("{")
        if brace:
            _, closed, rest = rest.rpartition("}")
            if not closed:
                continue
        else:
            name, _, rest = line.partition(" ")
        name = name.strip()
        if not name or name.endswith("_bucket"):
            continue
        parts = rest.split()
        try:
            value = float(parts[0]) if parts else math.nan
        except ValueError:
            continue
        if math.isfinite(value):
            totals[name] = totals.get(name, 0.0) + value
    return totals
