"""A step's verdict (side effects: containers through smoke.server.serve, HTTP to them).

Every verdict is relative to the two endpoints, measured in the same session, on the same machine:

  first, the reference: the good and the bad endpoint are booted and compared, and the bisect stops
  (BisectError) unless the bad one shows the problem: nothing to bisect otherwise. It is kept in
  <cache>/bisect/endpoints/<key>.json, so a resumed bisect does not measure it again.

  throughput  the A/B gate (measure.absession.interleave_servers: both servers resident, ABBA pairs,
              t-interval on the log ratio). Reference: bad/good must be below 1 - --min-effect (same rule).
              Step: candidate vs good (the good server stays up for the whole session), with the
              bound at the geometric midpoint of the two endpoints, sqrt(bad/good): the ratio's
              interval below it = bad, above = good; when the interval straddles it, the sign test on
              the pairs decides (see side()); else inconclusive (the next attempt takes more pairs).
  golden      no timing: each prompt's greedy text (temperature 0, fixed seed) against the good
              endpoint's (kept per good image and settings, shared by bisects from the same image).
              Reference: the bad endpoint's texts must differ. Step: all equal = good,
              any different = bad (the note names the first prompt that changed).
  checks      the smoke checks (models, completions, determinism, tool call): all pass = good, any
              fail = bad; the note keeps each failing check's own evidence (which prompt, how), not
              only its name. Reference: good passes, bad fails.

A candidate that does not boot, or whose server errors while sampled, is `skip` (a server that errors
is not a slow one). Every container is removed on every way out (oci.container.Container).
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import docker
import requests

from builder.checkresult import CheckResult, one_line
from builder.engines import EngineModule
from builder.errors import StepFailed
from builder.jobs.job import CellJob
from builder.matrix.smoke_settings import ToolRecipe
from builder.measure.absession import interleave_servers
from builder.measure.gate import LevelVerdict
from builder.measure.stream import SweepError
from builder.smoke.checks import check_completions, check_determinism, check_models, check_tool_call
from builder.smoke.openai import SmokeSpec, generate
from builder.smoke.server import ServerSpec, serve

from .cache import read_json, write_json_atomic
from .driver import Endpoints
from .errors import BisectError
from .model import Measurement
from .settings import SERVED, MeasureSettings


@dataclass(frozen=True, kw_only=True)
class ServerTemplate:
    """How the cell's images are served (the smoke settings), for any image of the bisect."""

    engine: EngineModule
    gpu: bool
    model_dir: Path
    model_file: str | None = None  # a GGUF model: the file in model_dir the server loads
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    shm_size: str = "2g"
    ready_timeout: int = 600
    tools: bool = False
    tool_recipe: ToolRecipe = "plain"
    tie_nats: float = 0.0  # determinism's near-tie tolerance (the cell's determinism_tie_nats)

    @classmethod
    def for_job(cls, job: CellJob, model_dir: Path, model_file: str | None = None,
                ready_timeout: int | None = None) -> ServerTemplate:
        """The cell's engine and smoke settings, serving the model in model_dir (pure)."""
        settings = job.smoke
        return cls(engine=job.engine, gpu=job.cell.arch.gpu, model_dir=model_dir, model_file=model_file,
                   args=settings.args, env=dict(settings.env), shm_size=settings.shm_size,
                   ready_timeout=ready_timeout or settings.ready_timeout, tools=settings.tools,
                   tool_recipe=settings.tool_recipe, tie_nats=settings.determinism_tie_nats)

    def spec(self, image: str) -> ServerSpec:
        return ServerSpec(image=image, engine=self.engine, gpu=self.gpu, model_dir=self.model_dir,
                          model_file=self.model_file, served_name=SERVED, args=self.args, env=dict(self.env or {}), shm_size=self.shm_size,
                          ready_timeout=self.ready_timeout)

    def smoke_spec(self, settings: MeasureSettings) -> SmokeSpec:
        spec = SmokeSpec(served_name=SERVED, engine=self.engine, tools=self.tools, tool_recipe=self.tool_recipe,
                         tie_nats=self.tie_nats)
        return replace(spec, prompts=spec.prompts[:settings.prompts], max_tokens=min(settings.max_tokens, 32))


def sign_p(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided sign test."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def side(level: LevelVerdict, bound: float, confidence: float) -> str | None:
    """"below" or "above" when the candidate/good ratio is on that side of `bound` with confidence, else
    None. First the gate's t-interval (it excludes the bound); when it does not, the sign test on the
    pairs' ratios: on a shared runner one stalled sample widens a t-interval beyond use (seen: 8 pairs
    of a 5x slowdown gave [0.008, 4.6]), while it moves the sign count by one at most."""
    if level.ci_high < bound:
        return "below"
    if level.ci_low > bound:
        return "above"
    ratios = [b / a for a, b in zip(level.baseline_tps, level.candidate_tps)]
    below = sum(1 for r in ratios if r < bound)
    alpha = 1 - confidence
    if sign_p(below, len(ratios)) < alpha:
        return "below"
    if sign_p(len(ratios) - below, len(ratios)) < alpha:
        return "above"
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def _boot_failure(exc: BaseException) -> str:
    """The failure's first line, and the server's last log line when the message carries its log
    (`... before it was ready; last lines:` then the log): the line that says why, in one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    head = lines[0].removesuffix(" last lines:").rstrip(";:")
    return f"{head}; last log line: {lines[-1]}" if len(lines) > 1 else head


EVIDENCE_CHARS = 300  # per failing check: enough for the prompt and what differed, still one line


def _evidence(failed: list[CheckResult]) -> str:
    """Each failing check with its own evidence: 'determinism (prompt 'x': ...); tool_call (...)'."""
    return "; ".join(f"{r.name} ({one_line(r.evidence, EVIDENCE_CHARS)})" if r.evidence else r.name for r in failed)


class Measurer:
    """measure(digest, endpoints, attempt) for run_bisect; a context manager (resident servers)."""

    def __init__(self, client: docker.DockerClient, template: ServerTemplate, settings: MeasureSettings, *,
                 cell_id: str, endpoints: Endpoints, cache_dir: Path, audit_note: str = "", log=lambda m: None):
        self.client, self.template, self.settings = client, template, settings
        self.cell_id, self.endpoints, self.audit_note, self.log = cell_id, endpoints, audit_note, log
        key = hashlib.sha256(json.dumps([endpoints.good, endpoints.bad, settings.to_dict()],
                                        sort_keys=True).encode()).hexdigest()[:16]
        self.reference_file = cache_dir / "endpoints" / f"{key}.json"
        self._stack = ExitStack()
        self._good_url: str | None = None
        self._reference: dict[str, Any] | None = None
        self.boots = 0
        self.measured = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # -- servers ----------------------------------------------------------------------------
    def _serve(self, image: str, role: str):
        self.boots += 1
        self.log(f"starting {role} {image[:19]}")
        return serve(self.client, self.template.spec(image), f"bisect-{self.cell_id}-{role}")

    def good_url(self) -> str:
        """The good endpoint's server, started once and kept for the session (throughput)."""
        if self._good_url is None:
            self._good_url = self._stack.enter_context(self._serve(self.endpoints.good, "good")).base_url
        return self._good_url

    # -- the reference ------------------------------------------------------------------------
    def reference(self) -> dict[str, Any]:
        """The endpoints compared (cached): raises BisectError when the bad one does not show the problem."""
        if self._reference is None:
            saved = read_json(self.reference_file)
            if isinstance(saved, dict) and saved.get("metric") == self.settings.metric:
                self._reference = saved
            else:
                self._reference = {"metric": self.settings.metric, **self._measure_reference()}
                write_json_atomic(self.reference_file, self._reference)
        return self._reference

    def _measure_reference(self) -> dict[str, Any]:
        metric, good, bad = self.settings.metric, self.endpoints.good, self.endpoints.bad
        try:
            if metric == "throughput":
                with self._serve(bad, "bad") as server:
                    run = interleave_servers(self.good_url(), server.base_url, self.settings.sweep(self.template.engine),
                                             self.settings.gate(self.settings.min_effect))
                level = run.gate.levels[0]
                if side(level, 1 - self.settings.min_effect, self.settings.confidence) != "below":
                    pairs = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(level.baseline_tps, level.candidate_tps))
                    raise BisectError(f"the bad endpoint is not measurably slower than the good one ({level.render()}; "
                                      f"good/bad tok/s per pair: {pairs}): nothing to bisect (more --max-tokens or "
                                      "--pairs, or a quieter machine, may resolve it)")
                return {"ratio": level.ratio, "ci_low": level.ci_low, "ci_high": level.ci_high,
                        "good_tps": level.baseline_mean, "bad_tps": level.candidate_mean, "pairs": level.pairs,
                        "threshold": 1 - math.sqrt(level.ratio), "gate": level.render()}
            if metric == "golden":
                good_out, bad_out = self._good_outputs(), self._outputs(bad, "bad")
                if good_out == bad_out:
                    raise BisectError("the bad endpoint's greedy outputs equal the good one's: nothing to bisect")
                return {"good_outputs": good_out, "bad_outputs": bad_out}
            good_failed, bad_failed = self._failed_checks(good, "good"), self._failed_checks(bad, "bad")
            if good_failed:
                raise BisectError(f"the good endpoint fails the smoke checks ({_evidence(good_failed)})")
            if not bad_failed:
                raise BisectError("the bad endpoint passes every smoke check: nothing to bisect")
            return {"bad_failed": [r.name for r in bad_failed],
                    "bad_evidence": {r.name: one_line(r.evidence, EVIDENCE_CHARS) for r in bad_failed}}
        except (StepFailed, SweepError) as exc:
            raise BisectError(f"cannot measure the endpoints: {_first_line(exc)}") from None

    def _good_outputs(self) -> dict[str, str]:
        """The good image's greedy outputs, kept per (image, settings): bisects that share the good
        endpoint (other bad commits, other --paths) boot it once."""
        key = hashlib.sha256(json.dumps([self.endpoints.good, self.settings.to_dict()],
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = self.reference_file.parent / f"outputs-{key}.json"
        saved = read_json(path)
        if isinstance(saved, dict) and saved:
            return {str(k): str(v) for k, v in saved.items()}
        outputs = self._outputs(self.endpoints.good, "good")
        write_json_atomic(path, outputs)
        return outputs

    def _outputs(self, image: str, role: str) -> dict[str, str]:
        spec = self.template.smoke_spec(self.settings)
        extra = (self.template.engine.valid_utf8_fields() or {}) if self.settings.valid_utf8 else {}
        with self._serve(image, role) as server:
            return {prompt: generate(server.base_url, spec, spec.max_tokens, prompt=prompt, **extra)["choices"][0]["text"]
                    for prompt in spec.prompts}

    def _failed_checks(self, image: str, role: str) -> list[CheckResult]:
        spec = self.template.smoke_spec(self.settings)
        with self._serve(image, role) as server:
            results = [check_models(server.base_url, spec), check_completions(server.base_url, spec),
                       check_determinism(server.base_url, spec)[0]]
            if spec.tools:
                results.append(check_tool_call(server.base_url, spec))
        return [r for r in results if r.status == "fail"]

    # -- a step ----------------------------------------------------------------------------------
    def __call__(self, digest: str, endpoints: Endpoints, attempt: int) -> Measurement:
        reference = self.reference()
        self.measured += 1
        try:
            measurement = self._step(digest, reference, attempt)
        except StepFailed as exc:
            measurement = Measurement(verdict="skip", note=f"boot failed: {_boot_failure(exc)}")
        except SweepError as exc:
            measurement = Measurement(verdict="skip", note=f"server errored while sampled: {_first_line(exc)}")
        except (docker.errors.DockerException, requests.RequestException) as exc:  # an Engine too busy to answer
            measurement = Measurement(verdict="skip", note=f"the Docker Engine failed: {exc.__class__.__name__}")
        if self.audit_note:
            measurement = replace(measurement, note="; ".join(n for n in (measurement.note, self.audit_note) if n))
        return measurement

    def _step(self, digest: str, reference: dict[str, Any], attempt: int) -> Measurement:
        metric = self.settings.metric
        if metric == "throughput":
            threshold = float(reference["threshold"])
            with self._serve(digest, "candidate") as server:
                run = interleave_servers(self.good_url(), server.base_url, self.settings.sweep(self.template.engine),
                                         self.settings.gate(threshold, attempt))
            level = run.gate.levels[0]
            where = side(level, 1 - threshold, self.settings.confidence)
            verdict = {"above": "good", "below": "bad"}.get(where or "", "inconclusive")
            return Measurement(verdict=verdict, samples=level.pairs,  # type: ignore[arg-type]
                               metric={"ratio": round(level.ratio, 4), "ci_low": round(level.ci_low, 4),
                                       "ci_high": round(level.ci_high, 4), "tok_s": round(level.candidate_mean, 1),
                                       "good_tok_s": round(level.baseline_mean, 1)},
                               note=f"gate threshold {threshold:.3f} (midpoint of good and bad)")
        if metric == "golden":
            outputs = self._outputs(digest, "candidate")
            golden = reference["good_outputs"]
            changed = [p for p in golden if outputs.get(p) != golden[p]]
            note = f"first changed prompt: {changed[0][:40]!r}" if changed else "greedy outputs equal the good endpoint's"
            return Measurement(verdict="bad" if changed else "good", samples=len(golden),
                               metric={"changed_prompts": float(len(changed))}, note=note)
        failed = self._failed_checks(digest, "candidate")
        return Measurement(verdict="bad" if failed else "good", samples=1,
                           metric={"failed_checks": float(len(failed))},
                           note=f"failed: {_evidence(failed)}" if failed else "every check passed")
