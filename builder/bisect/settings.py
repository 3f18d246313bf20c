"""How a bisect measures (pure): the metric and its numbers; hashed into the step cache key."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from builder.engines import EngineModule
from builder.measure.gate import GateSettings
from builder.measure.stream import SweepSpec

Metric = Literal["throughput", "golden", "checks"]
METRICS: tuple[str, ...] = ("throughput", "golden", "checks")
SERVED = "smoke"


@dataclass(frozen=True, kw_only=True)
class MeasureSettings:
    """What a verdict depends on (hashed into the step cache key with the endpoints' digests)."""

    metric: Metric = "throughput"
    concurrency: int = 1
    max_tokens: int = 64  # throughput: decoded per request (ignore_eos); golden: greedy tokens per prompt
    pairs: int = 4  # throughput: initial ABBA pairs per step; each further attempt adds `pairs` more
    max_pairs: int = 10
    confidence: float = 0.95
    min_effect: float = 0.05  # throughput: the bad endpoint must be slower than this, with confidence
    prompts: int = 6  # golden: how many of the smoke prompts
    valid_utf8: bool = False  # golden: greedy outputs kept valid UTF-8 (the engine's valid_utf8_fields)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.valid_utf8:  # absent when off: cache keys of bisects made before it existed still match
            del data["valid_utf8"]
        return data

    def gate(self, threshold: float, attempt: int = 1) -> GateSettings:
        initial = min(self.pairs * attempt, 200)
        return GateSettings(threshold=threshold, confidence=self.confidence, initial_pairs=initial,
                            step_pairs=max(1, self.pairs // 2), max_pairs=max(initial, self.max_pairs * attempt))

    def sweep(self, engine: EngineModule | None = None) -> SweepSpec:
        """`engine`: whose server, so that its own clock times the tokens (vLLM's /metrics, llama-server's
        timings); without it only the client's arrival times remain, and vLLM's CPU server streams in
        bursts that read as a busy runner (every throughput step skipped, 2026-12-03)."""
        return SweepSpec(model=SERVED, concurrency=(self.concurrency,), samples=1, warmup=1, max_tokens=self.max_tokens,
                         engine=engine)
