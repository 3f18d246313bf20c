#!/usr/bin/env python3
"""Write a copy of vLLM's v1/worker/gpu_model_runner.py with a fixed GPU delay before every model forward.

    python3 inject_delay.py SRC DST CYCLES

The injected slowdown of the H200 A/B control (benchmarks/gpu/h200_proof.sh): `torch.cuda._sleep(CYCLES)`
(a spin kernel on the current stream) at the top of GPUModelRunner._model_forward, which execute_model
calls once per engine step and CUDA-graph capture does not (it calls the model directly), so every
decode step gets the same extra GPU time whether or not the forward replays a graph. A host-side sleep
would not do: with async scheduling the host work of a step overlaps the GPU's, and a short sleep hides.
The copy goes into an overlay directory that shadows the installed package on PYTHONPATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

ANCHOR = "        return self.model(\n            input_ids=input_ids,\n"


def inject(text: str, cycles: int) -> str:
    start = text.index("    def _model_forward(")
    at = text.index(ANCHOR, start)
    if text.count("    def _model_forward(") != 1 or text.find("\n    def ", start + 10) < at:
        raise SystemExit("inject_delay: _model_forward is not shaped as expected; nothing written")
    line = f"        torch.cuda._sleep({cycles})  # llm-factory A/B control: injected fixed delay\n"
    return text[:at] + line + text[at:]


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    src, dst, cycles = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    dst.write_text(inject(src.read_text(), cycles))
    print(f"inject_delay: {dst}: torch.cuda._sleep({cycles}) before each model forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
