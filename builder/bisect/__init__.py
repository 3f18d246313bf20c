"""Stage 15, bisect: find the engine commit that made an image slow or wrong (`builder bisect`).

Pure core: classify (compiled vs Python-only changes, PR numbers), search (the state machine),
ladder (the cheapest image per candidate), model (records), report (text and JSON).
Side effects: candidates (git), cache (step cache and session state files), driver (calls the stages).
"""

from .cache import SessionState, StepCache, bisect_dir, cache_root, settings_hash
from .candidates import GitRepo, list_candidates
from .classify import DEFAULT_COMPILED, DEFAULT_IGNORED, ClassifyRules, classify, parse_pr
from .driver import BisectJob, Endpoints, Stages, run_bisect
from .errors import BisectError, BisectInputError, BisectInterrupted, GitError, StateError
from .ladder import StepPlan, plan_step
from .model import BisectResult, Candidate, FileChange, MadeImage, Measurement, StepRecord, Tier, Verdict
from .report import render_text, to_json
from .search import Converged, Probe, expected_steps, next_probe

__all__ = [
                    "DEFAULT_COMPILED",
                    "DEFAULT_IGNORED",
                    "BisectError",
                    "BisectInputError",
                    "BisectInterrupted",
                    "BisectJob",
                    "BisectResult",
                    "Candidate",
                    "ClassifyRules",
                    "Converged",
                    "Endpoints",
                    "FileChange",
                    "GitError",
                    "GitRepo",
                    "MadeImage",
                    "Measurement",
                    "Probe",
                    "SessionState",
                    "Stages",
                    "StateError",
                    "StepCache",
                    "StepPlan",
                    "StepRecord",
                    "Tier",
                    "Verdict",
                    "bisect_dir",
                    "cache_root",
                    "classify",
                    "expected_steps",
                    "list_candidates",
                    "next_probe",
                    "parse_pr",
                    "plan_step",
                    "render_text",
                    "run_bisect",
                    "settings_hash",
                    "to_json",
]
