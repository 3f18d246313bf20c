"""A synthetic registry for board tests: records and smoke reports in their stored JSON form,
shaped like KnownGoodRecord.to_dict() and SmokeReport.to_dict(), plus the sweep of issue 15
(SweepResult.to_dict(): in a report as the data of a check named "sweep", in a record and its
history entries as a top-level "sweep" key)."""

from __future__ import annotations

import hashlib
from typing import Any

from builder.board.model import AppliedPatch, Board, BuiltImage, CellEvidence, CellInput, ExcludedInput, SkippedPatch
from builder.engines import engine_module

REPO = "127.0.0.1:5000/llm-factory/images"
GPU_ARGS = ("--max-model-len", "4096", "--gpu-memory-utilization", "0.5")
CPU_ARGS = ("--enforce-eager", "--max-model-len", "512", "--dtype", "float32")
# The regression users pin against (PR #38152): 198.3 -> 183.5 single-stream, 342 -> 299 at 2, ...
GOOD = {1: 198.3, 2: 342.0, 4: 654.0, 8: 1119.0}
SLOW = {1: 183.5, 2: 299.0, 4: 582.0, 8: 1031.0}


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def sweep(rates: dict[int, float], spread: float = 0.01) -> dict[str, Any]:
    """SweepResult.to_dict() of issue 15 (sweep-prep's sweepreport.py)."""
    return {"model": "generated:tiny-llama", "max_tokens": 128, "aggregate_method": "window",
            "levels": [{"concurrency": c, "sample_tps": [r * (1 - spread / 2), r, r * (1 + spread / 2)],
                        "stream_tps_p50": r / c, "ttft_p50_s": (30.0 + 4 * c) / 1000, "itl_p50_s": 0.005,
                        "itl_p90_s": 0.007, "requests": 3 * c, "errors": 0, "first_error": "",
                        "tokens_min": 128, "tps_p50": r, "spread": spread, "cv": spread / 3}
                       for c, r in sorted(rates.items())]}


def report(cell: str, name: str, *, passed: bool = True, failing: str = "throughput",
           rates: dict[int, float] | None = None, tps: float | None = None) -> dict[str, Any]:
    checks = [("kernels", "pass", "kernel audit sm_121a: PASS (41 pass, 0 fail, 3 skipped)"),
              ("models", "pass", "serves 'smoke'"), ("determinism", "pass", "6 prompts x 3 rounds identical"),
              ("golden", "pass", "6/6 prompts reproduce the known-good outputs"),
              ("backends", "pass", "attention FLASH_ATTN; moe TritonExperts"),
              ("throughput", "pass", "197.9 tok/s (median of 5)")]
    if not passed:
        checks = [(n, "fail" if n == failing else s, f"{n} failed: 12.4% slower than the known-good image"
                   if n == failing else e) for n, s, e in checks]
    data: dict[str, Any] = {
        "passed": passed, "cell": cell, "image": f"{REPO}@{digest(name)}", "digest": digest(name),
        "model": "generated:tiny-llama", "finished_at": "2026-11-30T10:00:00Z", "ready_seconds": 12.0,
        "total_seconds": 60.0, "throughput_tps": tps, "golden": {},
        "summary": {"checks": {n: s for n, s, _ in checks}},
        "checks": [{"name": n, "status": s, "evidence": e, "data": {}} for n, s, e in checks]}
    if rates:
        data["checks"].append({"name": "sweep", "status": "pass", "evidence": "4 levels", "data": sweep(rates)})
        data["summary"]["checks"]["sweep"] = "pass"
    return data


def record(cell: str, name: str, promoted_at: str, history: list[dict[str, Any]], *,
           rates: dict[int, float] | None = None, tps: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 1, "cell": cell, "digest": digest(name), "image": f"{REPO}@{digest(name)}",
        "immutable_tag": f"{cell}-0123456789abcdef", "content_hash": "ab" * 32, "promoted_at": promoted_at,
        "engine": "vllm", "engine_version": cell.split("-")[1], "source": "pypi:vllm==" + cell.split("-")[1],
        "patches": [{"id": "ptxas-sm121a", "sha256": "cd" * 32}],
        "smoke_summary": {"checks": {"kernels": "pass", "golden": "pass"}},
        "golden": {"p1": "out1", "p2": "out2"}, "throughput_tps": tps, "history": history}
    if rates:
        data["sweep"] = sweep(rates)
    return data


def entry(name: str, promoted_at: str, *, rates: dict[int, float] | None = None,
          tps: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"digest": digest(name), "promoted_at": promoted_at, "throughput_tps": tps}
    if rates:
        data["sweep"] = sweep(rates)
    return data


def serve(args: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(engine_module("vllm").server_args(model="{model}", served_name="{served_name}", port=8000,
                                                   extra=args))


def gpu(version: str, cuda: str, arch: str) -> CellInput:
    tag = "cu" + cuda.replace(".", "")
    return CellInput(id=f"vllm-{version}-{tag}-{arch}", engine="vllm", version=version, arch=arch, cuda=cuda,
                     mode="source", serve_args=GPU_ARGS, serve_command=serve(GPU_ARGS),
                     patches_applied=(AppliedPatch(id="ptxas-sm121a", note="applies"),),
                     patches_skipped=(SkippedPatch(id="fa-sm120-guard", verdict="already upstream",
                                                   reason="the fix landed in 0.20.0 (vllm#31337)"),))


def matrix() -> tuple[list[CellInput], list[ExcludedInput]]:
    """The default matrix's shape: sm_121a, sm_120, sm_90 and cpu cells, with two exclusion reasons."""
    cells = [gpu(v, c, "sm_121a") for v in ("0.16.0", "0.19.1", "0.20.2", "0.33.0") for c in ("12.9", "13.0")]
    cells += [gpu(v, c, "sm_120") for v in ("0.20.2", "0.33.0") for c in ("12.8", "13.0")]
    cells += [gpu(v, "12.9", "sm_90") for v in ("0.20.2", "0.33.0")]
    cells.append(CellInput(id="vllm-0.32.0-cpu", engine="vllm", version="0.32.0", arch="cpu", cuda=None,
                           mode="wheel", serve_args=CPU_ARGS, serve_command=serve(CPU_ARGS),
                           regression_threshold=0.5))
    excluded = [ExcludedInput(id=f"vllm-{v}-cu128-sm_121a", engine="vllm", version=v, arch="sm_121a", cuda="12.8",
                              reason="sm_121a needs CUDA >= 12.9, cell has 12.8", rule_line=30)
                for v in ("0.11.0", "0.16.0", "0.19.1", "0.20.2", "0.33.0")]
    excluded += [ExcludedInput(id=f"vllm-0.11.0-{t}-sm_121a", engine="vllm", version="0.11.0", arch="sm_121a",
                               cuda=c, reason="vLLM < 0.14 knows only the 'a' arch suffix; use 0.16.0 or later",
                               rule_line=112) for t, c in (("cu129", "12.9"), ("cu130", "13.0"))]
    return cells, excluded


def evidence() -> dict[str, CellEvidence]:
    """Every state: sweep history with a regression, legacy-only history, a failed smoke, untested,
    never built (every cell not named here), known-good with a newer untested image."""
    ev: dict[str, CellEvidence] = {}
    c = "vllm-0.20.2-cu130-sm_121a"  # four promotions: legacy, sweep, regression, recovery
    hist = [entry("a3", "2026-11-20T09:00:00Z", rates=SLOW), entry("a2", "2026-11-10T09:00:00Z", rates=GOOD),
            entry("a1", "2026-11-01T09:00:00Z", tps=190.2)]
    ev[c] = CellEvidence(record=record(c, "a4", "2026-11-28T09:00:00Z", hist, rates=GOOD),
                         latest=BuiltImage(digest=digest("a4"), tag=f"{c}-0123456789abcdef"),
                         reports={digest("a4"): report(c, "a4", rates=GOOD)})
    c = "vllm-0.32.0-cpu"  # an old record: single numbers only
    hist = [entry("b2", "2026-11-25T09:00:00Z", tps=41.0), entry("b1", "2026-11-24T09:00:00Z", tps=40.0)]
    ev[c] = CellEvidence(record=record(c, "b3", "2026-11-26T09:00:00Z", hist, tps=41.5),
                         latest=BuiltImage(digest=digest("b3")), reports={digest("b3"): report(c, "b3", tps=41.5)})
    c = "vllm-0.33.0-cu130-sm_121a"  # newest build failed its smoke; the known-good stays pullable
    ev[c] = CellEvidence(record=record(c, "c1", "2026-11-15T09:00:00Z", [], rates=GOOD),
                         latest=BuiltImage(digest=digest("c2")),
                         reports={digest("c2"): report(c, "c2", passed=False, rates=SLOW),
                                  digest("c1"): report(c, "c1", rates=GOOD)})
    c = "vllm-0.33.0-cu129-sm_90"  # failed smoke, never promoted
    ev[c] = CellEvidence(latest=BuiltImage(digest=digest("d1")),
                         reports={digest("d1"): report(c, "d1", passed=False, failing="kernels")})
    c = "vllm-0.20.2-cu128-sm_120"  # built, not smoke-tested
    ev[c] = CellEvidence(latest=BuiltImage(digest=digest("e1")))
    c = "vllm-0.19.1-cu130-sm_121a"  # known-good, a newer image waits for its smoke
    ev[c] = CellEvidence(record=record(c, "f1", "2026-11-12T09:00:00Z", [], rates=GOOD),
                         latest=BuiltImage(digest=digest("f2")), reports={digest("f1"): report(c, "f1", rates=GOOD)})
    return ev


EXPECTED_STATES = {"vllm-0.20.2-cu130-sm_121a": "known-good", "vllm-0.32.0-cpu": "known-good",
                   "vllm-0.33.0-cu130-sm_121a": "smoke-failed", "vllm-0.33.0-cu129-sm_90": "smoke-failed",
                   "vllm-0.20.2-cu128-sm_120": "untested", "vllm-0.19.1-cu130-sm_121a": "known-good"}


def board(generated_at: str = "2026-12-01T00:00:00Z") -> Board:
    from builder.board.assemble import build_board
    cells, excluded = matrix()
    return build_board(cells=cells, excluded=excluded, evidence=evidence(), image_repo=REPO,
                       generated_at=generated_at, arch_order=("sm_90", "sm_120", "sm_121a", "cpu"))


def expected_state(cell_id: str, excluded_ids: set[str]) -> str:
    if cell_id in excluded_ids:
        return "excluded"
    return EXPECTED_STATES.get(cell_id, "never-built")
