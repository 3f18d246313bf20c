"""Benchmark: what signed attestations cost on the cpu cell's image (they run on every promotion).

Pushes a local vllm-cpu image into a registry of its own (Debian's docker-registry on a free
loopback port), then, RUNS times with GAP seconds between runs (spread over time, not back to back):
syft's SPDX SBOM of the image read from the registry by digest, signing the three statements, pushing
them as referrers, and the full `builder verify` (fetch + check + SBOM summary).

    python benchmarks/attest_cpu.py [--image REF] [--runs 3] [--gap 60]

Writes benchmarks/results/attest_cpu.json. Needs a Docker Engine holding a built cpu image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from securesystemslib.signer import CryptoSigner  # noqa: E402

from builder.attest import envelope, syft  # noqa: E402
from builder.attest.attach import PREDICATE_ANNOTATION  # noqa: E402
from builder.attest.check import verify_image  # noqa: E402
from builder.attest.envelope import ENVELOPE_TYPE  # noqa: E402
from builder.attest.statements import PREDICATES, statement  # noqa: E402
from builder.oci.referrers import attach  # noqa: E402
from builder.oci.reference import parse_reference  # noqa: E402
from tests.integration.conftest import registry_binary, start_registry, stop_registry  # noqa: E402

REPOSITORY = "bench/images"


def newest_cpu_image() -> str:
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                         check=True).stdout.split()
    found = [r for r in out if r.split("/")[-1].startswith("images:vllm-0.32.0-cpu-") and "broken" not in r]
    if not found:
        sys.exit("no local vllm-0.32.0-cpu image: build one first (bash scripts/quickstart.sh)")
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--image", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gap", type=float, default=60.0)
    args = parser.parse_args()
    image = args.image or newest_cpu_image()
    server = start_registry(registry_binary(), Path(tempfile.mkdtemp(prefix="bench-registry-")))
    try:
        client = server.client()
        target = f"{client.host}/{REPOSITORY}:cpu"
        subprocess.run(["docker", "tag", image, target], check=True)
        subprocess.run(["docker", "push", "-q", target], check=True, capture_output=True)
        info = client.head_manifest(REPOSITORY, "cpu")
        size = sum(layer["size"] for layer in json.loads(client.get_manifest(REPOSITORY, info.digest)[0])["layers"])
        runs = []
        signer = CryptoSigner.generate_ecdsa()
        for n in range(args.runs):
            if n:
                time.sleep(args.gap)
            with tempfile.TemporaryDirectory() as scratch:
                started = time.monotonic()
                sbom = syft.sbom(client, REPOSITORY, info.digest, "linux/amd64", Path(scratch))
                sbom_s = time.monotonic() - started
            name = f"{client.host}/{REPOSITORY}"
            statements = {"sbom": statement("sbom", name, info.digest, sbom),
                          "provenance": statement("provenance", name, info.digest, {"buildDefinition": {}}),
                          "smoke": statement("smoke", name, info.digest, {"passed": True})}
            started = time.monotonic()
            envelopes = {k: envelope.sign(s, signer) for k, s in statements.items()}
            sign_s = time.monotonic() - started
            started = time.monotonic()
            for kind, data in envelopes.items():
                attach(client, REPOSITORY, info, ENVELOPE_TYPE, data, {PREDICATE_ANNOTATION: PREDICATES[kind]},
                       f"{kind}.dsse.json")
            push_s = time.monotonic() - started
            started = time.monotonic()
            verify_image(client, parse_reference(f"{name}@{info.digest}"), signer.public_key, None)
            verify_s = time.monotonic() - started
            runs.append({"sbom_s": round(sbom_s, 2), "sign_s": round(sign_s, 4), "push_s": round(push_s, 2),
                         "verify_s": round(verify_s, 2), "sbom_bytes": len(envelopes["sbom"]),
                         "packages": len(sbom.get("packages") or []), "at": time.strftime("%H:%M:%S")})
            print(json.dumps(runs[-1]), flush=True)
    finally:
        stop_registry(server)
    summary = {key: {"mean": round(statistics.mean(r[key] for r in runs), 4),
                     "min": min(r[key] for r in runs), "max": max(r[key] for r in runs)}
               for key in ("sbom_s", "sign_s", "push_s", "verify_s")}
    result = {"image": image, "compressed_layers_bytes": size, "runs": runs, "summary": summary,
              "machine": "2 shared cores, x86_64 (other agents' builds and tests running)"}
    out = REPO / "benchmarks" / "results" / "attest_cpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
