"""Probe (issue 22, tier 4): why the llama-servers of older llama-cpp-python trees answer the tiny model's
greedy /v1/completions with HTTP 500, and whether the bisect's --valid-utf8 grammar lets them answer.

For each image (a llama-server image, e.g. a bisect's step images of the 0.3.35 and 0.3.36 trees), it boots
the server as the cpu cell serves it (--parallel 4 -c 2048 --threads 1 --jinja, and once more without
--jinja), sends the six smoke prompts greedily (32 tokens, as the bisect's golden metric) plain and with
the grammar of builder.engines.llamacpp.UTF8_GRAMMAR, and keeps each status, each text, and the server's
"unparsed ... output" warnings (they show where the parser stopped: at a malformed UTF-8 byte).

    python benchmarks/llamacpp_utf8_probe.py --model DIR_WITH_tiny-f32.gguf --out FILE.json IMAGE [IMAGE ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder.engines.llamacpp import UTF8_GRAMMAR  # noqa: E402
from builder.smoke.openai import DEFAULT_PROMPTS  # noqa: E402

ARGS = ("--parallel", "4", "-c", "2048", "--threads", "1")


def serve(image: str, model: Path, extra: tuple[str, ...]) -> tuple[str, int]:
    name = f"utf8-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8080", "-v", f"{model}:/model:ro",
                    image, "-m", "/model/tiny-f32.gguf", "--host", "0.0.0.0", "--port", "8080", "--alias", "smoke",
                    *ARGS, *extra], check=True, capture_output=True, timeout=120)
    port = int(subprocess.run(["docker", "port", name, "8080/tcp"], check=True, capture_output=True, text=True,
                              timeout=30).stdout.split(":")[-1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return name, port
        except requests.RequestException:
            pass
        time.sleep(0.3)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    raise SystemExit(f"{image}: not ready in 60 s")


def probe(image: str, model: Path, extra: tuple[str, ...]) -> dict:
    name, port = serve(image, model, extra)
    answers = []
    try:
        for prompt in DEFAULT_PROMPTS:
            for mode, fields in (("plain", {}), ("grammar", {"grammar": UTF8_GRAMMAR})):
                body = {"model": "smoke", "prompt": prompt, "max_tokens": 32, "temperature": 0, "seed": 0, **fields}
                reply = requests.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60)
                data = reply.json()
                answers.append({"prompt": prompt, "mode": mode, "status": reply.status_code,
                                "text": data["choices"][0]["text"] if reply.status_code == 200 else None,
                                "error": None if reply.status_code == 200 else data.get("error", {}).get("message")})
    finally:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, errors="replace", timeout=60)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    warnings = [line for line in (logs.stdout + logs.stderr).splitlines() if "unparsed" in line]
    return {"image": image, "args": [*ARGS, *extra], "answers": answers, "unparsed_warnings": warnings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", type=Path, required=True, help="a directory holding tiny-f32.gguf")
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    gguf = (opts.model / "tiny-f32.gguf").read_bytes()
    runs = [probe(image, opts.model.resolve(), extra) for image in opts.images for extra in (("--jinja",), ())]
    summary = [{"image": r["image"], "jinja": "--jinja" in r["args"],
                **{mode: [a["status"] for a in r["answers"] if a["mode"] == mode] for mode in ("plain", "grammar")}}
               for r in runs]
    grammar_texts = {r["image"]: [a["text"] for a in r["answers"] if a["mode"] == "grammar"] for r in runs}
    result = {"model_sha256": hashlib.sha256(gguf).hexdigest(), "grammar": UTF8_GRAMMAR, "summary": summary,
              "grammar_outputs_equal_across_images": len({json.dumps(t) for t in grammar_texts.values()}) == 1,
              "runs": runs}
    opts.out.write_text(json.dumps(result, indent=2, ensure_ascii=True) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
