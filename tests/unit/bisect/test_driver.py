"""The whole loop over a real git history: search, ladder, image lab, step cache, state file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo, list_candidates
from builder.bisect.driver import BisectJob, Endpoints, Stages, run_bisect
from builder.bisect.errors import BisectInterrupted
from builder.bisect.model import MadeImage
from builder.bisect.report import render_text, to_json
from tests.unit.bisect.lab import RULES, Lab, image_part, make_history

LOG2_20 = math.ceil(math.log2(20))


def setup(tmp_path: Path, *, slow_at: int = 11, paths: tuple[str, ...] = (), wrong_at: int | None = None,
          broken: tuple[int, ...] = (), unaudited: tuple[int, ...] = (), noisy: dict[int, int] | None = None,
          interrupt_at: int | None = None):
    """A 20-commit history, its candidates, a lab; broken/unaudited/noisy name commit numbers."""
    hist = make_history(tmp_path, slow_at=slow_at, wrong_at=wrong_at)
    repo = GitRepo(path=hist.repo)
    cands = list_candidates(repo, hist.shas[0], "main", paths=paths, rules=RULES)
    lab = Lab(repo=hist.repo, broken={hist.shas[i] for i in broken},
              unaudited={hist.shas[i] for i in unaudited},
              noisy={hist.shas[i]: n for i, n in (noisy or {}).items()}, interrupt_at=interrupt_at)
    ends = Endpoints(good=lab.full_build(cands[0].sha), bad=lab.full_build(cands[-1].sha))
    job = BisectJob(rules=RULES, cell="vllm-0.34.0.dev0-cpu", candidates=cands, endpoints=ends, diff=repo.diff,
                    settings={"metric": "throughput", "concurrency": [1, 2]}, paths=paths)
    stages = Stages(make_image=lab.make_image, audit=lab.audit, measure=lab.measure)
    return hist, job, stages, lab


@pytest.mark.parametrize("slow_at", [1, 6, 11, 15, 19])
def test_finds_the_slow_commit_in_log2_steps_with_python_overlays(tmp_path: Path, slow_at: int) -> None:
    hist, job, stages, lab = setup(tmp_path, slow_at=slow_at)
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[slow_at] and result.last_good.sha == hist.shas[slow_at - 1]
    assert result.exact and len(result.steps) <= LOG2_20 + 1 and len(lab.measured) == len(result.steps)
    assert result.first_bad.pr == 1000 + slow_at
    tiers = [p.tier for p in lab.plans]
    assert set(tiers) <= {"python-overlay", "full-build"} and "python-overlay" in tiers
    for plan in lab.plans:  # an overlay image carries what a full build of the commit would carry
        if plan.tier == "python-overlay":
            digest = next(s.digest for s in result.steps if s.index == plan.index)
            assert image_part(lab.images[digest]) == image_part(lab.tree(plan.sha))
            low, high = sorted((plan.base_index, plan.index))
            assert not any(c.classification == "needs-build" for c in job.candidates[low + 1:high + 1])
            assert all(f.path.startswith("vllm/") for f in plan.overlay)
        else:  # a full build only where no built image is python-only away
            assert any(c.classification == "needs-build" for c in job.candidates[1:plan.index + 1])


def test_wrong_output_scenario(tmp_path: Path) -> None:
    hist, job, stages, _lab = setup(tmp_path, slow_at=99, wrong_at=7)
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[7] and len(result.steps) <= LOG2_20 + 1


def test_skips_around_the_midpoint_still_converge(tmp_path: Path) -> None:
    broken = (8, 9, 10)
    hist, job, stages, _lab = setup(tmp_path, slow_at=12, broken=broken)
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[12] and result.exact
    skipped = [s for s in result.steps if s.verdict == "skip"]
    assert skipped and all("CONFLICT" in s.reason and s.digest is None for s in skipped)
    assert len(result.steps) <= LOG2_20 + 1 + len(broken)


def test_skipped_next_to_the_culprit_answers_one_of_these(tmp_path: Path) -> None:
    hist, job, stages, _lab = setup(tmp_path, slow_at=10, broken=(9, 10))
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert [c.sha for c in result.suspects] == [hist.shas[9], hist.shas[10]]
    assert result.first_bad.sha == hist.shas[11] and result.last_good.sha == hist.shas[8]
    assert "first bad: one of 3" in render_text(result)


def test_audit_failure_is_a_skip_never_timed(tmp_path: Path) -> None:
    hist, job, stages, lab = setup(tmp_path, slow_at=4, unaudited=(9,))
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[4]
    assert hist.shas[9] not in [sha for sha, _ in lab.measured]
    assert any(s.reason.startswith("kernel audit:") for s in result.steps if s.index == 9)


def test_inconclusive_is_measured_again_then_decides(tmp_path: Path) -> None:
    hist, job, stages, lab = setup(tmp_path, slow_at=11, noisy={9: 1})
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[11]
    assert lab.measured[:2] == [(hist.shas[9], 1), (hist.shas[9], 2)]
    assert sum(1 for p in lab.plans if p.index == 9) == 1  # the image is made once


def test_resume_after_an_interrupt_re_measures_nothing(tmp_path: Path) -> None:
    hist, job, stages, lab = setup(tmp_path, slow_at=13, interrupt_at=3)
    with pytest.raises(BisectInterrupted) as info:
        run_bisect(job, stages, cache_root=tmp_path / "cache")
    state = json.loads(info.value.state_file.read_text())
    assert len(state["steps"]) == 2 and len(state["images"]) == 2 + 3  # the third image was made
    lab.interrupt_at = None
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[13]
    measured = lab.measured[3:]  # calls of the resumed run
    assert len(measured) == len(result.steps) - 2 and lab.measured[2] == measured[0]
    assert len(lab.plans) == len({p.index for p in lab.plans})  # no image made twice
    assert not list(info.value.state_file.parent.glob(".*.tmp"))
    again = run_bisect(job, stages, cache_root=tmp_path / "cache")  # done: answered from the state
    assert again.first_bad == result.first_bad and len(lab.measured) == 3 + len(measured)


def test_the_step_cache_outlives_the_session_state(tmp_path: Path) -> None:
    _hist, job, stages, lab = setup(tmp_path, slow_at=6)
    first = run_bisect(job, stages, cache_root=tmp_path / "cache")
    job.state_file(tmp_path / "cache").unlink()
    calls = len(lab.measured)
    second = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert len(lab.measured) == calls and second.first_bad == first.first_bad
    assert all(s.cached and not s.measured for s in second.steps) and second.measured == 0


def test_paths_filter(tmp_path: Path) -> None:
    hist, job, stages, _lab = setup(tmp_path, slow_at=11, paths=("vllm/engine.py", "csrc/**"))
    assert [c.index for c in job.candidates] == [0, 1, 2, 3, 4]
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[11] and len(result.steps) <= 2


def test_registry_and_upstream_tiers_build_nothing_or_an_overlay_cell(tmp_path: Path) -> None:
    hist, job, stages, lab = setup(tmp_path, slow_at=11)
    known = {sha: lab.full_build(sha) for sha in hist.shas[8:12]}
    upstream = {sha: f"vllm/vllm-openai:nightly-{sha}" for sha in hist.shas[1:8]}

    def make_image(plan):
        if plan.tier == "registry":
            return MadeImage(digest=plan.image)
        return lab.make_image(plan)

    stages = Stages(make_image=make_image, audit=lab.audit, measure=lab.measure,
                    registry=lambda c: known.get(c.sha), upstream=lambda c: upstream.get(c.sha))
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[11]
    by_index = {s.index: s for s in result.steps}
    assert by_index[9].tier == "registry" and not by_index[9].built
    assert all(p.tier == "upstream-image" and p.image.endswith(p.sha) for p in lab.plans if p.index < 8)


def test_reports(tmp_path: Path) -> None:
    hist, job, stages, _lab = setup(tmp_path, slow_at=11)
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    text = render_text(result)
    assert f"first bad: {hist.shas[11][:12]}  [Perf] Reorder the step loop (#1011)  PR #1011" in text
    assert "python-overlay" in text and "ratio=0.92" in text and "p-ptxas,p-gemma4" in text
    data = json.loads(json.dumps(to_json(result)))
    assert data["first_bad"]["pr"] == 1011 and data["steps_count"] == len(result.steps)
    assert data["builds"] == result.builds and data["steps"][0]["patches"] == ["p-ptxas", "p-gemma4"]


class BuildFailed(Exception):
    pass


def test_make_image_errors_named_in_skip_on_are_skips(tmp_path: Path) -> None:
    hist, job, _stages, lab = setup(tmp_path, slow_at=3)

    def make_image(plan):
        if plan.index == 9:
            raise BuildFailed("build of vllm-0.34.0.dev0-cpu failed: see build-9.log\nmore detail")
        return lab.make_image(plan)

    stages = Stages(make_image=make_image, audit=lab.audit, measure=lab.measure, skip_on=(BuildFailed,))
    result = run_bisect(job, stages, cache_root=tmp_path / "cache")
    assert result.first_bad.sha == hist.shas[3]
    first = result.steps[0]
    assert (first.index, first.verdict, first.reason) == (9, "skip", "build of vllm-0.34.0.dev0-cpu failed: see build-9.log")
    with pytest.raises(BuildFailed):  # anything else propagates, with the state saved
        run_bisect(job, Stages(make_image=make_image, audit=lab.audit, measure=lab.measure),
                   cache_root=tmp_path / "other")
    assert job.state_file(tmp_path / "other").exists()
