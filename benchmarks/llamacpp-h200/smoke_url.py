"""The smoke checks against a llama-server already running (the H200 has no Docker): what
`builder smoke --url` will do once it is on main. Prints one JSON report.

    python3 smoke_url.py BASE_URL MATRIX ARCH
"""

from __future__ import annotations

import json
import sys

from builder.matrix.load import load_matrix
from builder.smoke.checks import (
    check_completions,
    check_determinism,
    check_golden,
    check_models,
    check_throughput,
    check_tool_call,
)
from builder.smoke.openai import SmokeSpec


def main(base_url: str, matrix: str, arch: str) -> int:
    engine = load_matrix(matrix).engines["llama.cpp"]
    settings = engine.smoke_for(arch)
    spec = SmokeSpec.from_settings(settings, served_name="smoke", engine=engine.module)
    checks = [check_models(base_url, spec), check_completions(base_url, spec)]
    determinism, outputs = check_determinism(base_url, spec)
    checks += [determinism, check_golden(outputs, None, "tiny-llama-gguf", None), check_tool_call(base_url, spec)]
    throughput, tps = check_throughput(base_url, spec, None)
    checks.append(throughput)
    report = {"arch": arch, "throughput_tps": tps, "outputs": outputs,
              "checks": [{"name": c.name, "status": c.status, "evidence": c.evidence} for c in checks]}
    print(json.dumps(report, indent=2))
    return 0 if all(c.status in ("pass", "skip") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
