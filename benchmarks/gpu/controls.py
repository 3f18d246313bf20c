#!/usr/bin/env python3
"""Controls of the consistency checks, as edits of vLLM's sampler (an overlay file: the cpu integration test builds
it as an overlay patch record, the H200 run puts it on PYTHONPATH). Each check must fail its control (issue 19).

    python3 benchmarks/gpu/controls.py garble SAMPLER_PY OUT_PY          # determinism must fail, naming the token
    python3 benchmarks/gpu/controls.py drift SAMPLER_PY OUT_PY [SCALE]   # golden scores must fail, texts unchanged
    python3 benchmarks/gpu/controls.py both SAMPLER_PY OUT_PY [SCALE]

garble: the rows of the batch mixed up after the sampler chose (each request gets the token another request's row
sampled), only when more than one request is in flight: sequential requests stay correct, concurrent ones are
garbage. drift: logprobs computed from logits scaled by SCALE (default 1.02), the kind of numeric drift a wrong
kernel makes; greedy outputs do not change (a positive scale keeps every argmax), only how likely each token was.
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = "vllm/v1/sample/sampler.py"
SAMPLED = "        sampled = sampled.long()\n"
GARBLE = ("        if sampled.shape[0] > 1:  # llm-factory garble control: rows of the batch mixed up\n"
          "            sampled = sampled.roll(1, 0)\n")
LOGPROBS = "        return logits.log_softmax(dim=-1, dtype=torch.float32)\n"


def _once(source: str, anchor: str, what: str) -> None:
    if source.count(anchor) != 1:
        raise SystemExit(f"{TARGET}: {what} is not where this control expects it")


def garble(source: str) -> str:
    _once(source, SAMPLED, "the sampled-token conversion")
    return source.replace(SAMPLED, SAMPLED + GARBLE)


def drift(source: str, scale: float = 1.02) -> str:
    _once(source, LOGPROBS, "compute_logprobs")
    return source.replace(LOGPROBS, f"        return (logits * {scale!r}).log_softmax(dim=-1, dtype=torch.float32)"
                                     "  # llm-factory drift control\n")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("garble", "drift", "both"):
        raise SystemExit(__doc__)
    kind, src, dst = sys.argv[1:4]
    scale = float(sys.argv[4]) if len(sys.argv) == 5 else 1.02
    text = Path(src).read_text()
    if kind in ("garble", "both"):
        text = garble(text)
    if kind in ("drift", "both"):
        text = drift(text, scale)
    Path(dst).write_text(text)
    print(f"{kind}: {src} -> {dst}")
