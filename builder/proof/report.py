"""The SmokeReport: each check's result, the sweep, the gate and the golden outputs, as text and JSON.

An image is known-good only if it booted, served, answered deterministically (sequentially and
under concurrency, under each serve profile), reproduced the cell's golden outputs, was not slower than
the known-good image measured beside it (the gate), and (GPU cells) carries kernels for its arch. The
report goes to the registry beside the image; promotion reads it. Reports written before the sweep
(with a `throughput` check and no `sweep`/`gate` keys) still read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from builder.checkresult import CheckResult, CheckStatus
from builder.measure.gate import GateResult
from builder.measure.sweepreport import SweepResult, render_table
from builder.smoke.golden_scores import GoldenScore, read_golden_scores


@dataclass(frozen=True, kw_only=True)
class SmokeReport:
    cell: str
    image: str
    digest: str
    model_id: str
    checks: tuple[CheckResult, ...]
    ready_seconds: float
    total_seconds: float
    throughput_tps: float | None
    golden: dict[str, str] = field(default_factory=dict)
    finished_at: str = ""
    throughput_tokens: int | None = None  # the sweep's tokens per request (what throughput_tps was measured with)
    sweep: SweepResult | None = None  # the candidate's concurrency sweep
    gate: GateResult | None = None  # the interleaved comparison with the known-good image, when one ran
    golden_profiles: dict[str, dict[str, str]] = field(default_factory=dict)  # profile -> its greedy outputs
    sweep_model_id: str = ""  # the model the sweep and the gate served, when not model_id
    # prompt -> the golden continuation's token ids and this image's logprob of each (smoke/golden_scores.py)
    golden_scores: dict[str, GoldenScore] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and any(c.status == "pass" for c in self.checks)

    def to_dict(self) -> dict:
        """The stored report; `passed`, `summary`, `golden` and `throughput_tps` are what promotion reads."""
        return {
            "passed": self.passed, "cell": self.cell, "image": self.image, "digest": self.digest,
            "model": self.model_id, "finished_at": self.finished_at,
            "ready_seconds": round(self.ready_seconds, 1), "total_seconds": round(self.total_seconds, 1),
            "throughput_tps": self.throughput_tps, "golden": self.golden,
            "golden_profiles": self.golden_profiles, "sweep_model": self.sweep_model_id or self.model_id,
            "golden_scores": {prompt: score.to_dict() for prompt, score in self.golden_scores.items()},
            "summary": self.summary,
            "sweep": self.sweep.to_dict() if self.sweep else None,
            "gate": self.gate.to_dict() if self.gate else None,
            "checks": [{"name": c.name, "status": c.status, "evidence": c.evidence, "data": c.data}
                       for c in self.checks],
        }

    @property
    def summary(self) -> dict:
        return {"model": self.model_id, "checks": {c.name: c.status for c in self.checks},
                "ready_seconds": round(self.ready_seconds, 1), "throughput_tokens": self.throughput_tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmokeReport:
        """A stored report read back (the registry's smoke-<digest> artifact). An unknown check
        status reads as "fail": a report this version cannot understand never passes."""
        checks = []
        for item in data.get("checks") or []:
            if not isinstance(item, Mapping):
                raise ValueError("a check is not a mapping")
            status: CheckStatus = item["status"] if item.get("status") in get_args(CheckStatus) else "fail"
            checks.append(CheckResult(str(item.get("name", "?")), status,
                                      str(item.get("evidence", "")), dict(item.get("data") or {})))
        summary: Mapping[str, Any] = data["summary"] if isinstance(data.get("summary"), Mapping) else {}
        tps = data.get("throughput_tps")
        sweep, gate = data.get("sweep"), data.get("gate")
        try:
            sweep = SweepResult.from_dict(sweep) if isinstance(sweep, Mapping) else None
            gate = GateResult.from_dict(gate) if isinstance(gate, Mapping) else None
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed sweep or gate ({type(exc).__name__}: {exc})") from None
        profiles = data.get("golden_profiles") or {}
        return cls(cell=str(data.get("cell", "")), image=str(data.get("image", "")), digest=str(data.get("digest", "")),
                   model_id=str(data.get("model", "")), checks=tuple(checks),
                   ready_seconds=float(data.get("ready_seconds") or 0), total_seconds=float(data.get("total_seconds") or 0),
                   throughput_tps=float(tps) if isinstance(tps, (int, float)) else None,
                   golden={str(k): str(v) for k, v in (data.get("golden") or {}).items()},
                   finished_at=str(data.get("finished_at", "")), throughput_tokens=summary.get("throughput_tokens"),
                   sweep=sweep, gate=gate, sweep_model_id=str(data.get("sweep_model") or ""),
                   golden_scores=read_golden_scores(data.get("golden_scores")),
                   golden_profiles={str(p): {str(k): str(v) for k, v in (o or {}).items()}
                                    for p, o in profiles.items()} if isinstance(profiles, Mapping) else {})

    def text(self) -> str:
        """A report a person reads in ten seconds."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"smoke {verdict}: {self.cell}  {self.image}",
                 f"  model {self.model_id}; ready in {self.ready_seconds:.0f}s, verdict after {self.total_seconds:.0f}s"]
        for check in self.checks:
            lines.append(f"  {check.status.upper():4}  {check.name:12} {check.evidence}")
        if self.sweep is not None:
            lines.append(f"  sweep ({self.sweep_model_id or self.model_id}, {self.sweep.max_tokens} tokens per request, ignore_eos; aggregate decode tok/s "
                         f"= {self.sweep.aggregate_method}):")
            lines += ["    " + row for row in render_table(self.sweep).splitlines()]
        if self.gate is not None:
            lines += ["  " + row for row in self.gate.render().splitlines()]
        return "\n".join(lines)
