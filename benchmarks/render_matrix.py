"""Benchmark: load, expand and render the default matrix and a generated 500-cell matrix.

Target (issue: foundation): under 1 s for 500 cells on a 2-core machine. Run:
    python benchmarks/render_matrix.py
Rendering here is the pure part (templates, patch planning, hashing); writing the contexts to
disk is timed separately.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import load_patches, plan_static
from builder.render.context import render_cell, write_context


def generated_matrix(path: Path, cells: int = 500) -> Path:
    """The shipped matrix with enough engine versions to reach `cells` cells."""
    text = (REPO / "matrix.yaml").read_text()
    head, _, _ = text.partition("\ninclude:")
    head = head.replace("    versions:\n", "    versions:\n" + "".join(
        f'      "0.{40 + n // 10}.{n % 10}": {{torch: "2.14.0"}}\n' for n in range(125)), 1)
    labels = ", ".join(f'"0.{40 + n // 10}.{n % 10}"' for n in range(125))
    include = (f"\ninclude:\n  - engine: vllm\n    versions: [{labels}]\n    archs: [sm_121a, sm_120]\n"
               f"    cuda: [\"13.0\"]\n  - engine: vllm\n    versions: [{labels}]\n    archs: [sm_90]\n"
               f"    cuda: [\"12.9\"]\n  - engine: vllm\n    versions: [{labels}]\n    archs: [cpu]\n")
    path.write_text(head + include)
    return path


def bench(path: Path, patches) -> tuple[int, float, float, float]:
    start = time.perf_counter()
    matrix = load_matrix(path)
    cells = expand(matrix).cells
    loaded = time.perf_counter()
    contexts = [render_cell(cell, plan_static(patches, cell)) for cell in cells]
    rendered = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for context in contexts:
            write_context(context, Path(out))
    written = time.perf_counter()
    return len(cells), loaded - start, rendered - loaded, written - rendered


def main() -> None:
    patches = load_patches(REPO / "builder" / "shipped" / "patches")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("default matrix.yaml", REPO / "matrix.yaml"),
                           ("generated 500-cell matrix", generated_matrix(Path(tmp) / "m.yaml"))):
            for run in ("cold", "warm"):  # cold includes compiling the templates once
                count, load, render, write = bench(path, patches)
                print(f"{name} ({run}): {count} cells  load+expand {load * 1000:.0f} ms  render+hash "
                      f"{render * 1000:.0f} ms  total {(load + render) * 1000:.0f} ms  (+ write {write * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
