#!/usr/bin/env python3
"""How the sweep reads a real server on a quiet and on a busy runner: repeated sweeps, each level's recorded
figure (by whose clock), the client's and the server's figures side by side, and how often a level was
withheld as "not measured" (issue 20).

    python3 benchmarks/busy_runner_cpu.py --url http://127.0.0.1:18431 --engine llama.cpp --runs 5 --burners 0,4

"Busy" is made here: `--burners K` starts K busy-loop processes (this script's own, stopped by their pid at
the end of the condition) beside the client, on top of whatever else the machine runs. The server is
whatever runs at --url (the README's numbers: the cpu cells' images as containers, their matrix args).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from builder.engines import engine_module
from builder.measure.stream import SweepSpec
from builder.measure.sweep import run_sweep


WHY = {"spread": "spread", "chunk gaps": "chunk gap", "client above server": "above the server",
       "bursts": "came in bursts"}


def burners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


def span(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burners", default="0,4")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--depths", default="0,128")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    engine = engine_module(args.engine)
    spec = SweepSpec(model=args.model, concurrency=tuple(int(c) for c in args.concurrency.split(",")),
                     samples=args.samples, max_tokens=args.tokens, depths=tuple(int(d) for d in args.depths.split(",")),
                     include_usage=engine.stream_usage, ignore_eos=engine.stream_ignore_eos, engine=engine)
    print(f"{args.engine} at {args.url}: {args.runs} sweeps per condition, {args.samples} samples of {args.tokens} "
          f"tokens per level, depths {args.depths}")
    print("| burners | depth | c | measured | recorded tok/s p50 [min-max] | by | client tok/s | server tok/s "
          "| client/server p50 | client spread p50 | withheld because |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for count in (int(b) for b in args.burners.split(",")):
        procs = burners(count)
        started = time.monotonic()
        rows: dict[tuple[int, int], list] = defaultdict(list)
        try:
            for _ in range(args.runs):
                for lv in run_sweep(args.url, spec).levels:
                    rows[(lv.depth, lv.concurrency)].append(lv)
        finally:
            stop(procs)
        for (depth, c), levels in sorted(rows.items()):
            measured = [lv for lv in levels if lv.measured]
            client = [statistics.median(lv.client_tps) for lv in levels if lv.client_tps]
            server = [statistics.median(lv.server_tps) for lv in levels if lv.server_tps]
            apart = [statistics.median(lv.client_tps) / statistics.median(lv.server_tps) - 1
                     for lv in levels if lv.client_tps and lv.server_tps]
            spreads = [(max(lv.client_tps) - min(lv.client_tps)) / statistics.median(lv.client_tps)
                       for lv in levels if len(lv.client_tps) > 1]
            why = sorted({kind for lv in levels for kind, words in WHY.items() if words in lv.unmeasured})
            print(f"| {count} | {depth} | {c} | {len(measured)}/{len(levels)} "
                  f"| {span([lv.tps_p50 for lv in measured if lv.tps_p50])} "
                  f"| {'/'.join(sorted({lv.source for lv in measured})) or '-'} | {span(client)} | {span(server)} "
                  f"| {100 * statistics.median(apart):+.1f}% | {100 * statistics.median(spreads):.0f}% "
                  f"| {', '.join(why) or '-'} |" if apart and spreads else
                  f"| {count} | {depth} | {c} | {len(measured)}/{len(levels)} | {span([lv.tps_p50 for lv in measured if lv.tps_p50])} "
                  f"| - | {span(client)} | {span(server)} | - | - | {', '.join(why) or '-'} |")
        print(f"<!-- {count} burners: {time.monotonic() - started:.0f} s -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
