#!/usr/bin/env python3
"""The H200 proof of issue 20 against servers already running (started by benchmarks/gpu/h200_proof.sh setup
with MAXLEN=16640; no Docker there): `builder smoke --url` at prompt depths 0 / 4 k / 16 k with the server's
and the client's figures side by side, vLLM's own `bench serve` at the same depths, the gate's floor (A/A
calibration between A1 and A2), a threshold under the floor refused, and an injected slowdown gated against it.

    python3 benchmarks/gpu/depth_floor.py --a1 http://127.0.0.1:8001 --a2 http://127.0.0.1:8002 \\
        --b http://127.0.0.1:8003 --model-dir /root/model --out $OUT [--steps sweep,bench,floor,gate] [--rounds 2]

Every step is bounded (`timeout`), writes its JSON to --out and prints a table; the steps can run in separate
calls (the floor file stays in --out between them while the machine is warm).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

DEPTHS = "0,4096,16384"
LEVELS = "1,8"
TOKENS = "128"
ENGINE = "vllm"


def builder(out: Path, name: str, *args: str, limit: int = 540) -> tuple[int, dict | None, float]:
    started = time.monotonic()
    cmd = [sys.executable, "-m", "builder", "smoke", "--engine", ENGINE, "--json", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"{name}: timed out after {limit} s")
        return 124, None, time.monotonic() - started
    (out / f"{name}.err").write_text(done.stderr)
    seconds = time.monotonic() - started
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(f"{name}: exit {done.returncode}, no JSON; stderr: {done.stderr.strip()[-400:]}")
        return done.returncode, None, seconds
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    return done.returncode, report, seconds


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def sweep(a1: str, out: Path) -> None:
    code, report, seconds = builder(out, "sweep_a1", "--url", a1, "--depths", DEPTHS, "--concurrency", LEVELS,
                                    "--tokens", TOKENS, "--samples", "5")
    print(f"\n## sweep at depth on A1 (exit {code}, {seconds:.0f} s)")
    if not report or not report.get("sweep"):
        return
    print("| depth | c | recorded tok/s | by | client tok/s | server tok/s | client/server | spread | TTFT p50 ms "
          "| prefill tok/s (server) | ITL p50 ms (client) | step ms (server) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lv in report["sweep"]["levels"]:
        client, server = lv.get("client_tps_p50"), lv.get("server_tps_p50")
        apart = f"{100 * (client / server - 1):+.2f}%" if client and server else "-"
        print(f"| {lv.get('depth', 0)} | {lv['concurrency']} | {fmt(lv.get('tps_p50')) if not lv.get('unmeasured') else 'not measured'} "
              f"| {lv.get('source', '-')} | {fmt(client)} | {fmt(server)} | {apart} | {fmt(100 * (lv.get('spread') or 0), '.2f')}% "
              f"| {fmt(1000 * lv['ttft_p50_s'] if lv.get('ttft_p50_s') else None, '.2f')} "
              f"| {fmt(lv.get('prefill_tps') if lv.get('depth') else None, '.0f')} "
              f"| {fmt(1000 * lv['itl_p50_s'] if lv.get('itl_p50_s') else None, '.3f')} "
              f"| {fmt(1000 * lv['server_step_s'] if lv.get('server_step_s') else None, '.3f')} |")
        if lv.get("unmeasured"):
            print(f"|  |  | {lv['unmeasured']} |")


def bench(a1: str, model_dir: str, out: Path) -> None:
    """vLLM's own benchmark at the same depths, c=1 and c=8: TTFT, TPOT (1/TPOT is a stream's decode rate)."""
    print("\n## vllm bench serve on A1 (random prompts of the depth's length, 128 tokens, ignore_eos)")
    print("| depth | c | TTFT mean ms | TTFT p50 ms | TPOT mean ms | 1/TPOT tok/s | c/TPOT tok/s | ITL p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for depth in (int(d) for d in DEPTHS.split(",")):
        for c in (int(x) for x in LEVELS.split(",")):
            name = f"bench_d{depth}_c{c}.json"
            cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
                   "--base-url", a1, "--model", "smoke", "--tokenizer", model_dir, "--dataset-name", "random",
                   "--random-input-len", str(max(depth, 16)), "--random-output-len", TOKENS, "--ignore-eos",
                   "--max-concurrency", str(c), "--num-prompts", str(max(10, 3 * c)), "--percentile-metrics",
                   "ttft,tpot,itl", "--save-result", "--result-dir", str(out), "--result-filename", name]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                data = json.loads((out / name).read_text())
            except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
                print(f"| {depth} | {c} | failed: {type(exc).__name__} |")
                continue
            tpot = data.get("mean_tpot_ms")
            print(f"| {depth} | {c} | {fmt(data.get('mean_ttft_ms'), '.2f')} | {fmt(data.get('median_ttft_ms'), '.2f')} "
                  f"| {fmt(tpot, '.3f')} | {fmt(1000 / tpot if tpot else None)} | {fmt(c * 1000 / tpot if tpot else None)} "
                  f"| {fmt(data.get('median_itl_ms'), '.3f')} |")
            if done.returncode:
                print(f"|  |  | exit {done.returncode} |")


def floor(a1: str, a2: str, out: Path, rounds: int) -> None:
    print("\n## floor: A/A calibration, A2 against A1 (one wheel, two processes)")
    for i in range(rounds):
        code, report, seconds = builder(out, f"floor_aa{i + 1}", "--url", a2, "--known-good-url", a1, "--concurrency",
                                        LEVELS, "--tokens", TOKENS, "--threshold", "0.05", "--calibrate-floor",
                                        str(out / "floor.json"))
        levels = (report or {}).get("gate", {}) or {}
        ratios = ", ".join(f"c={lv['concurrency']} {lv['ratio']:.4f} [{lv['ci_low']:.4f}, {lv['ci_high']:.4f}] "
                           f"{lv['pairs']} pairs" for lv in levels.get("levels", []))
        print(f"- round {i + 1}: exit {code}, {seconds:.0f} s: {ratios}")
    if (out / "floor.json").is_file():
        print(f"- floor.json: {(out / 'floor.json').read_text().strip()}")


def gate(a1: str, a2: str, b: str, out: Path) -> None:
    path = out / "floor.json"
    data = json.loads(path.read_text())
    worst = max(data["levels"].values())
    threshold = max(0.01, math.ceil(worst * 1000) / 1000)
    print(f"\n## gate against the floor (floor {100 * worst:.2f}%, threshold {100 * threshold:.1f}%)")
    below = subprocess.run([sys.executable, "-m", "builder", "smoke", "--engine", ENGINE, "--url", b,
                            "--known-good-url", a1, "--floor", str(path), "--threshold", f"{worst / 2:.4f}"],
                           capture_output=True, text=True, timeout=60)
    print(f"- threshold {100 * worst / 2:.2f}% (half the floor): exit {below.returncode}: {below.stderr.strip()[-300:]}")
    for name, url in (("gate_ab", b), ("gate_aa", a2)):
        code, report, seconds = builder(out, name, "--url", url, "--known-good-url", a1, "--floor", str(path),
                                        "--threshold", str(threshold), "--concurrency", LEVELS, "--tokens", TOKENS)
        gate_check = next((c for c in (report or {}).get("checks", []) if c["name"] == "gate"), {})
        print(f"- {name} ({url}): exit {code}, {seconds:.0f} s: {gate_check.get('status')}: {gate_check.get('evidence')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a1", required=True)
    parser.add_argument("--a2", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--model-dir", default="/root/model")
    parser.add_argument("--out", type=Path, default=Path("/tmp/depth-floor"))
    parser.add_argument("--steps", default="sweep,bench,floor,gate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--depths", default=DEPTHS)
    parser.add_argument("--concurrency", default=LEVELS)
    parser.add_argument("--tokens", default=TOKENS)
    parser.add_argument("--engine", default=ENGINE, help="the servers' engine (a local dry run: llama.cpp)")
    args = parser.parse_args()
    globals().update(DEPTHS=args.depths, LEVELS=args.concurrency, TOKENS=args.tokens, ENGINE=args.engine)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")
    if "sweep" in steps:
        sweep(args.a1, args.out)
    if "bench" in steps:
        bench(args.a1, args.model_dir, args.out)
    if "floor" in steps:
        floor(args.a1, args.a2, args.out, args.rounds)
    if "gate" in steps:
        gate(args.a1, args.a2, args.b, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
