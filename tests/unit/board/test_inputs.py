"""The board's inputs from the real matrix.yaml: every cell, the exclusions, the engine's serve command."""

from builder.board.assemble import build_board
from builder.board.inputs import PatchPlanView, board_inputs, cell_input
from builder.engines import engine_module
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from tests.conftest import REPO


def _matrix():
    matrix = load_matrix(REPO / "matrix.yaml")
    return matrix, expand(matrix)


def test_every_cell_and_every_exclusion_of_the_matrix_is_on_the_board():
    matrix, expansion = _matrix()
    cells, excluded = board_inputs(matrix, expansion.cells, expansion.excluded, {})
    board = build_board(cells=cells, excluded=excluded, evidence={}, image_repo="r/x", generated_at="t",
                        arch_order=tuple(matrix.archs))
    assert {c.id for c in board.cells} == {c.id for c in expansion.cells} | {e.cell_id for e in expansion.excluded}
    assert {c.state for c in board.cells} == {"never-built", "excluded"}
    old = {c.id: c for c in board.cells}["vllm-0.11.0-cu130-sm_121a"]
    lines = (REPO / "matrix.yaml").read_text().splitlines()
    reason_at = next(n for n, line in enumerate(lines) if "0.16.0 or later" in line)
    rule_line = next(n + 1 for n in range(reason_at, -1, -1) if lines[n].lstrip().startswith("- "))  # its list item
    assert old.state == "excluded" and "0.16.0 or later" in old.reason and old.rule_line == rule_line
    cuda = {c.id: c for c in board.cells}["vllm-0.20.2-cu128-sm_121a"]
    assert cuda.reason == "sm_121a needs CUDA >= 12.9, cell has 12.8" and cuda.version == "0.20.2"
    assert board.columns[0][0] == "sm_90" and board.columns[-1] == ("cpu", None)


def test_serve_command_comes_from_the_engine_module_with_the_smoke_args():
    matrix, expansion = _matrix()
    cpu = next(c for c in expansion.cells if c.id == "vllm-0.32.0-cpu")
    got = cell_input(cpu, PatchPlanView(applied=(("p", "ab" * 32),), skipped=(("q", "not applicable", "why"),)))
    settings = matrix.engines["vllm"].smoke_for("cpu")
    assert got.serve_command == tuple(engine_module("vllm").server_args(
        model="{model}", served_name="{served_name}", port=8000, extra=settings.args))
    assert got.serve_args == settings.args and got.regression_threshold == settings.gate.threshold and got.port == 8000
    assert [(p.id, p.sha256) for p in got.patches_applied] == [("p", "ab" * 32)]
    assert [(p.id, p.verdict, p.reason) for p in got.patches_skipped] == [("q", "not applicable", "why")]
    assert (got.version, got.arch, got.cuda, got.mode) == ("0.32.0", "cpu", None, "wheel")
