"""A level the runner could not measure reaches neither the chart, the recipe nor the board's numbers; levels at
prompt depth are shown with their prefill (issue 20). The sweeps are made by the real measure code."""

from builder.board.assemble import build_board
from builder.board.collect import BuiltImage, CellEvidence
from builder.board.export import recipe
from builder.board.render import render_site
from builder.board.sweep import read_sweep
from builder.engines.timing import ServerCounters
from builder.measure.sse import RequestResult
from builder.measure.sweepreport import SweepResult, summarize_level
from tests.unit.board import synthetic as syn

CELL = "vllm-0.32.0-cpu"


def _req(t_first, t_last, tokens, gap, server=None, prompt=None):
    return RequestResult(status="ok", tokens=tokens, chunks=tokens, ttft_s=0.004, t_first=t_first, t_last=t_last,
                         itls_s=(gap,) * (tokens - 1), server=server, prompt_tokens=prompt)


def sweep() -> dict:
    return result().to_dict()


def result() -> SweepResult:
    quiet = [[_req(0.0, 0.63, 64, 0.01)]] * 3  # 100 tok/s, even gaps
    # the client read a c=2 burst at once: 5861 tok/s by its clock, gaps of 10 us (what issue 20 saw recorded)
    burst = [[_req(0.0, 0.0107, 64, 1e-5), _req(0.0, 0.0108, 64, 1e-5)]] * 3
    deep = [[_req(0.0, 0.63, 64, 0.01, ServerCounters(requests=1, prompt_tokens=128, prefill_s=0.004,
                                                       decode_tokens=63, decode_s=0.63), prompt=128)]] * 3
    levels = (summarize_level(1, quiet), summarize_level(2, burst), summarize_level(1, deep, depth=128))
    return SweepResult(model="tiny", max_tokens=64, levels=levels)


def test_unmeasured_levels_are_not_figures_and_depth_levels_stay_off_the_chart():
    data = {"sweep": sweep()}
    assert [(lv.depth, lv.concurrency) for lv in read_sweep(data)] == [(0, 1)]  # what the chart and regressions see
    every = read_sweep(data, depth=None, with_unmeasured=True)
    assert [(lv.depth, lv.concurrency, bool(lv.unmeasured)) for lv in every] == [(0, 1, False), (0, 2, True),
                                                                                  (128, 1, False)]
    assert every[1].decode_tps == 0 and every[1].unmeasured.startswith("not measured: the runner is too busy")
    assert every[2].prefill_tps == 32000 and every[2].source == "server"


def test_board_page_recipe_and_chart_never_carry_the_garbage():
    cells, excluded = syn.matrix()
    report = syn.report(CELL, "g1")
    report["sweep"] = sweep()
    record = syn.record(CELL, "g1", "2026-12-02T09:00:00Z", [])
    record["sweep"] = report["sweep"]
    evidence = {CELL: CellEvidence(record=record, latest=BuiltImage(digest=syn.digest("g1")),
                                   reports={syn.digest("g1"): report})}
    board = build_board(cells=cells, excluded=excluded, evidence=evidence, image_repo=syn.REPO,
                        generated_at="2026-12-03T00:00:00Z", arch_order=("sm_90", "sm_120", "sm_121a", "cpu"))
    cell = next(c for c in board.cells if c.id == CELL)
    site = render_site(board)
    page = site[f"cells/{CELL}.html"]
    garbage = sorted(result().levels[1].client_tps)[1]  # what the client's clock said at c=2
    assert report["sweep"]["levels"][1]["client_tps"] == [] and report["sweep"]["levels"][1]["tps_p50"] is None
    assert garbage > 10000
    shown = {f"{garbage:.1f}", f"{garbage:.0f}", str(round(garbage, 3))}
    assert "not measured: the runner is too busy" in page and not any(g in page for g in shown)
    assert 'data-depth="128"' in page and "32000" in page
    measured = recipe(cell)["metadata"]["measured"]["decode_tps"]
    assert [(lv["concurrency"], lv.get("depth", 0)) for lv in measured] == [(1, 0), (1, 128)]
    assert all(lv["decode_tps_p50"] < 200 for lv in measured) and measured[1]["prefill_tps"] == 32000
    assert not any(g in site["board.json"] or g in site[f"recipes/{CELL}.yaml"] for g in shown)
