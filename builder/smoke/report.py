"""`builder smoke`: boot an image with a tiny model, check it, audit its kernels, report.

An image is known-good only if it booted, served, answered deterministically (sequentially and
under concurrency), reproduced the cell's golden outputs, kept its throughput, and (GPU cells)
carries kernels for its arch. The report goes to the registry beside the image; promotion reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.smoke.openai import CheckResult


@dataclass(frozen=True)
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
    throughput_tokens: int | None = None

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
            "summary": {"model": self.model_id, "checks": {c.name: c.status for c in self.checks},
                        "ready_seconds": round(self.ready_seconds, 1), "throughput_tokens": self.throughput_tokens},
            "checks": [{"name": c.name, "status": c.status, "evidence": c.evidence, "data": c.data}
                       for c in self.checks],
        }

    def text(self) -> str:
        """A report a person reads in ten seconds."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"smoke {verdict}: {self.cell}  {self.image}",
                 f"  model {self.model_id}; ready in {self.ready_seconds:.0f}s, verdict after {self.total_seconds:.0f}s"]
        for check in self.checks:
            lines.append(f"  {check.status.upper():4}  {check.name:12} {check.evidence}")
        return "\n".join(lines)
