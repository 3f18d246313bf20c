#!/usr/bin/env python3
"""The garble control of the consistency check: vLLM's sampler with the rows of the batch mixed up after it chose
(each request gets the token another request's row sampled), only when more than one request is in flight.
Sequential requests stay correct; concurrent ones become garbage. The determinism check must fail it, naming
the token (issue 19).

    python3 benchmarks/gpu/garble_rows.py SAMPLER_PY OUT_PY

SAMPLER_PY is an installed vllm/v1/sample/sampler.py; OUT_PY the garbled copy (an overlay file: the cpu
integration test builds it as an overlay patch record, the H200 run puts it on PYTHONPATH).
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = "vllm/v1/sample/sampler.py"
ANCHOR = "        sampled = sampled.long()\n"
GARBLE = ("        if sampled.shape[0] > 1:  # llm-factory garble control: rows of the batch mixed up\n"
          "            sampled = sampled.roll(1, 0)\n")


def garble(source: str) -> str:
    if source.count(ANCHOR) != 1:
        raise SystemExit(f"{TARGET}: the sampled-token conversion is not where this control expects it")
    return source.replace(ANCHOR, ANCHOR + GARBLE)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    Path(sys.argv[2]).write_text(garble(Path(sys.argv[1]).read_text()))
    print(f"garbled {sys.argv[1]} -> {sys.argv[2]}")
