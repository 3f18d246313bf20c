"""The cheapest way to make an image for a candidate (pure: lookups and git diffs are injected).

Tiers, cheapest first:
  1 registry        an image already exists for this input (a known-good record or an immutable
                    tag): no build, `image` is its reference.
  2 upstream-image  upstream publishes an image for this commit (vllm/vllm-openai:nightly-<sha>):
                    `image` is the base of an overlay cell (the cell's patches over it, seconds).
  3 python-overlay  the files that differ between the candidate and an image this bisect already
                    has (nearest index first, ancestors before descendants at equal distance) are
                    all Python / non-compiled files under the engine package: `overlay` lists them
                    over `base_digest` (status D: remove the file). An empty overlay means the image
                    is the base image itself (a docs- or tests-only change).
  4 full-build      anything else (ccache and the content hash keep repeats cheap).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .classify import ClassifyRules, classify
from .model import Candidate, FileChange, Tier

Lookup = Callable[[Candidate], "str | None"]
Diff = Callable[[str, str], Sequence[FileChange]]


@dataclass(frozen=True, kw_only=True)
class StepPlan:
    index: int
    sha: str
    tier: Tier
    reason: str
    image: str | None = None  # registry: the image to use; upstream-image: the overlay cell's base
    base_index: int | None = None  # python-overlay: the candidate whose image is overlaid
    base_digest: str | None = None
    overlay: tuple[FileChange, ...] = ()  # python-overlay: files to take from the candidate's tree

    @property
    def reuses_base(self) -> bool:
        """The image is the base image unchanged: nothing to build."""
        return self.tier == "python-overlay" and not self.overlay


def _no_image(_: Candidate) -> str | None:
    return None


def plan_step(candidates: Sequence[Candidate], index: int, *, images: Mapping[int, str],
              diff: Diff, rules: ClassifyRules, registry: Lookup = _no_image,
              upstream: Lookup = _no_image, max_bases: int = 4) -> StepPlan:
    """The plan for candidates[index]. `images` maps the indices this bisect has an image for to
    their digests (the endpoints from the start, then every image made); at most max_bases of the
    nearest are diffed against the candidate."""
    cand = candidates[index]
    found = registry(cand)
    if found:
        return StepPlan(index=index, sha=cand.sha, tier="registry", image=found,
                        reason=f"the registry has {found}")
    base = upstream(cand)
    if base:
        return StepPlan(index=index, sha=cand.sha, tier="upstream-image", image=base,
                        reason=f"upstream image {base} as the overlay base")
    nearest = sorted((j for j in images if j != index), key=lambda j: (abs(j - index), j > index))
    last_reason = "no image to overlay yet"
    for j in nearest[:max_bases]:
        verdict = classify(diff(candidates[j].sha, cand.sha), rules)
        if verdict.kind == "python-only":
            files = len(verdict.overlay)
            return StepPlan(index=index, sha=cand.sha, tier="python-overlay", base_index=j,
                            base_digest=images[j], overlay=verdict.overlay,
                            reason=f"{files} file(s) under {rules.package_dir}/ over the image of "
                                   f"{candidates[j].short}")
        last_reason = f"against {candidates[j].short}: {verdict.reason}"
    return StepPlan(index=index, sha=cand.sha, tier="full-build", reason=last_reason)
