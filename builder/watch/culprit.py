"""A regressed release's culprit: `builder bisect` between the known-good's version and the release
(bisect.session.run_request), then the Pinpoint re-check: the named first-bad commit's image and its
parent's measured against each other once more, in fresh boots, with no cached reference. The culprit
is `confirmed` only when the effect reproduces. Side effects: git, the Docker Engine, the registry."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from builder.bisect.driver import Endpoints
from builder.bisect.errors import BisectError
from builder.bisect.measure import Measurer
from builder.bisect.session import BisectOutcome, BisectRequest, run_request, server_template
from builder.errors import BuilderError


@dataclass(frozen=True, kw_only=True)
class Culprit:
    bisect: dict[str, Any]  # the answer's summary and where it is stored
    recheck: dict[str, Any]  # status: confirmed | not confirmed | not run, with the numbers or the reason


def step_images(data: dict[str, Any]) -> dict[int, str]:
    """Candidate index -> the image it was measured as: each step's digest, and both endpoints."""
    images = {int(k): str(v) for k, v in (data.get("images") or {}).items()}
    endpoints = data.get("endpoints") or {}
    images.setdefault(0, str(endpoints.get("good_image", "")))
    images.setdefault(int(data["candidates"]) - 1, str(endpoints.get("bad_image", "")))
    return {k: v for k, v in images.items() if v}


def summary(outcome: BisectOutcome, where: str) -> dict[str, Any]:
    data = outcome.data
    return {"stored": where, "metric": data.get("metric"), "exact": data.get("exact"),
            "first_bad": data.get("first_bad"), "last_good": data.get("last_good"),
            "suspects": data.get("suspects"), "steps": data.get("steps_count"), "result_file": str(outcome.result_file)}


def recheck(client: docker.DockerClient, request: BisectRequest, data: dict[str, Any],
            log: Callable[[str], None]) -> dict[str, Any]:
    """Measure first-bad against last-good again (fresh servers, a fresh reference cache)."""
    images = step_images(data)
    good_index, bad_index = int(data["last_good"]["index"]), int(data["first_bad"]["index"])
    if not data.get("exact"):
        return {"status": "not confirmed", "why": "the bisect named suspects, not one commit"}
    if good_index not in images or bad_index not in images:
        return {"status": "not confirmed", "why": "no image of the first-bad commit or of its parent to measure"}
    endpoints = Endpoints(good=images[good_index], bad=images[bad_index])
    template = server_template(client, request.job, images[good_index], request.model_dir, request.ready_timeout,
                               request.helper_image, request.pull_auth)
    with tempfile.TemporaryDirectory(prefix="watch-recheck-") as fresh:
        with Measurer(client, template, request.settings, cell_id=request.job.cell.id, endpoints=endpoints,
                      cache_dir=Path(fresh), log=log) as measure:
            try:
                reference = measure.reference()
            except BisectError as exc:
                return {"status": "not confirmed", "why": str(exc).splitlines()[0], "boots": measure.boots,
                        "good_image": endpoints.good, "bad_image": endpoints.bad}
    shown = {k: v for k, v in reference.items() if not k.endswith("_outputs")}
    return {"status": "confirmed", "reference": shown, "boots": measure.boots,
            "good_image": endpoints.good, "bad_image": endpoints.bad}


def find_culprit(client: docker.DockerClient, request: BisectRequest, *, cache_root: Path | None,
                 store: Callable[[str, dict[str, Any]], str], log: Callable[[str], None]) -> Culprit:
    """Bisect, store the answer, re-check it; a bisect that cannot run is said, not raised."""
    stored: list[str] = []

    def put(key: str, data: dict[str, Any]) -> str:
        stored.append(store(key, data))
        return stored[-1]
    try:
        outcome = run_request(client, request, cache_root=cache_root, log=log, store=put)
    except BuilderError as exc:
        return Culprit(bisect={"error": str(exc).splitlines()[0]}, recheck={"status": "not run", "why": "no bisect answer"})
    return Culprit(bisect=summary(outcome, stored[-1] if stored else ""), recheck=recheck(client, request, outcome.data, log))
