"""Runs a bisect: search → ladder → make_image → audit → step cache / measure, state saved per step.

The stages are injected callables, so this module owns only the order and the bookkeeping:

    make_image(plan: StepPlan) -> MadeImage      build or find the image (skip_reason on CONFLICT, build failure)
    audit(digest) -> str | None                  kernel audit; a reason makes the step `skip`, never timed
    measure(digest, endpoints, attempt) -> Measurement   the A/B verdict against both endpoints;
                                                 attempt k > 1 follows k - 1 inconclusive answers
    registry(candidate) / upstream(candidate) -> image ref | None    the ladder's tier 1 and 2 lookups

The state file is rewritten after every image made and every step; Ctrl-C saves it and raises
BisectInterrupted, and the same call resumes: steps in the state are not redone, images in the state
are not rebuilt, and verdicts in the step cache are not re-measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import SessionState, StepCache, bisect_dir, resume_or_start, save_state, session_key, settings_hash
from .classify import ClassifyRules
from .errors import BisectError, BisectInterrupted
from .ladder import Diff, Lookup, StepPlan, plan_step
from .model import BisectResult, Candidate, MadeImage, Measurement, StepRecord, Tier
from .search import DEFAULT_MAX_ATTEMPTS, Converged, Probe, finals, next_probe


def _no_image(_: Candidate) -> str | None:
    return None


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    good: str  # image digests of the good and bad endpoints, measured beside every candidate
    bad: str


@dataclass(frozen=True, kw_only=True)
class Stages:
    make_image: Callable[[StepPlan], MadeImage]
    audit: Callable[[str], str | None]
    measure: Callable[[str, Endpoints, int], Measurement]
    registry: Lookup = _no_image
    upstream: Lookup = _no_image
    skip_on: tuple[type[Exception], ...] = ()  # make_image errors that mean skip (e.g. StepFailed)
    on_step: Callable[[StepRecord], None] | None = None  # progress


@dataclass(frozen=True, kw_only=True)
class BisectJob:
    cell: str
    candidates: tuple[Candidate, ...]
    endpoints: Endpoints
    diff: Diff  # GitRepo.diff
    settings: Mapping[str, Any] = field(default_factory=dict)  # benchmark settings (metric, concurrency, ...)
    rules: ClassifyRules  # the cell's engine's package directory and the compiled/ignored globs
    paths: tuple[str, ...] = ()
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_steps: int = 64

    @property
    def settings_hash(self) -> str:
        return settings_hash({**self.settings, "good": self.endpoints.good, "bad": self.endpoints.bad})

    def state_file(self, root: Path | None = None) -> Path:
        key = session_key(self.cell, self.candidates[0].sha, self.candidates[-1].sha, self.paths,
                          self.settings_hash)
        return bisect_dir(root) / "sessions" / f"{key}.json"

    def fresh_state(self) -> SessionState:
        n = len(self.candidates)
        return SessionState(cell=self.cell, good=self.candidates[0].sha, bad=self.candidates[-1].sha,
                            settings=self.settings_hash, candidates=tuple(c.sha for c in self.candidates),
                            images={0: self.endpoints.good, n - 1: self.endpoints.bad})


def run_bisect(job: BisectJob, stages: Stages, *, cache_root: Path | None = None) -> BisectResult:
    """Bisect job.candidates; cache_root defaults to BUILDER_CACHE (see cache.py)."""
    if len(job.candidates) < 2:
        raise BisectError("a bisect needs a good and a bad endpoint")
    return _Run(job, stages, cache_root).run()


class _Run:
    def __init__(self, job: BisectJob, stages: Stages, root: Path | None):
        self.job, self.stages = job, stages
        self.cache = StepCache(bisect_dir(root) / "steps.json")
        self.path = job.state_file(root)
        self.state = resume_or_start(self.path, job.fresh_state())

    def run(self) -> BisectResult:
        n = len(self.job.candidates)
        save_state(self.path, self.state)
        try:
            while True:
                decision = next_probe(n, self.state.history(), max_attempts=self.job.max_attempts)
                if isinstance(decision, Converged):
                    save_state(self.path, self.state)
                    return self._result(decision)
                if len(self.state.steps) >= self.job.max_steps:
                    raise BisectError(f"bisect of {self.job.cell} did not converge in {self.job.max_steps} steps "
                                      f"(state: {self.path})")
                self._step(decision)
        except KeyboardInterrupt:
            save_state(self.path, self.state)
            raise BisectInterrupted(self.path) from None
        except BaseException:
            save_state(self.path, self.state)  # a failing stage: what was learnt so far is kept
            raise

    def _record(self, probe: Probe, **fields: Any) -> None:
        cand = self.job.candidates[probe.index]
        record = StepRecord(step=len(self.state.steps) + 1, index=probe.index, sha=cand.sha,
                            attempt=probe.attempt, **fields)
        self.state = self.state.with_step(record)
        save_state(self.path, self.state)
        if self.stages.on_step:
            self.stages.on_step(record)

    def _make(self, plan: StepPlan) -> MadeImage:
        if plan.reuses_base:
            return MadeImage(digest=plan.base_digest, built=False)
        try:
            return self.stages.make_image(plan)
        except self.stages.skip_on as exc:
            text = str(exc).strip().splitlines()
            return MadeImage(digest=None, skip_reason=text[0] if text else exc.__class__.__name__)

    def _step(self, probe: Probe) -> None:
        digest = self.state.images.get(probe.index)
        tier: Tier | None = None
        built, patches = False, self._earlier_patches(probe.index)
        if digest is None:
            plan = plan_step(self.job.candidates, probe.index, images=self.state.images, diff=self.job.diff,
                             rules=self.job.rules, registry=self.stages.registry, upstream=self.stages.upstream)
            tier = plan.tier
            made = self._make(plan)
            if made.digest is None:
                self._record(probe, tier=tier, digest=None, verdict="skip", patches=made.patches,
                             reason=made.skip_reason or "no image", built=made.built)
                return
            digest, built, patches = made.digest, made.built, made.patches
            self.state = self.state.with_image(probe.index, digest)
            save_state(self.path, self.state)
        problem = self.stages.audit(digest)
        if problem:
            self._record(probe, tier=tier, digest=digest, verdict="skip", patches=patches,
                         reason=f"kernel audit: {problem}", built=built)
            return
        settings = self.state.settings
        cached = self.cache.get(digest, settings, probe.attempt)
        measurement = cached or self.stages.measure(digest, self.job.endpoints, probe.attempt)
        if cached is None:
            self.cache.put(digest, settings, probe.attempt, measurement)
        self._record(probe, tier=tier, digest=digest, verdict=measurement.verdict, metric=measurement.metric,
                     samples=measurement.samples, patches=patches, reason=measurement.note, built=built,
                     measured=cached is None, cached=cached is not None)

    def _earlier_patches(self, index: int) -> tuple[str, ...]:
        for step in reversed(self.state.steps):
            if step.index == index and step.patches:
                return step.patches
        return ()

    def _result(self, done: Converged) -> BisectResult:
        cands = self.job.candidates
        final = finals(self.state.history(), self.job.max_attempts)
        return BisectResult(cell=self.job.cell, candidates=cands, first_bad=cands[done.first_bad],
                            last_good=cands[done.last_good], suspects=tuple(cands[i] for i in done.suspects),
                            skipped=tuple(cands[i] for i in sorted(final) if final[i] == "skip"),
                            steps=self.state.steps)
