"""Smoke-test settings of an engine (engines.<engine>.smoke in matrix.yaml): types and defaults.

matrix/smoke_load.py reads them from matrix.yaml, with per-arch overrides, and validates every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from packaging.specifiers import SpecifierSet

from builder.engines import BackendKind

ToolRecipe = Literal["plain", "forced"]
TOOL_RECIPES: Final[tuple[ToolRecipe, ...]] = get_args(ToolRecipe)
# exact: concurrent and repeated greedy outputs must equal the sequential ones (cpu cells, batch-invariant
# servers). scored: every output is re-scored by the server (teacher forcing) and passes when no token lies
# more than consistency_nats below the server's own argmax (GPU servers that are not batch-invariant).
Consistency = Literal["exact", "scored"]
CONSISTENCIES: Final[tuple[Consistency, ...]] = get_args(Consistency)
# Measured on the H200 (vLLM 0.20.2, 8 B-shaped random model, ../shared/GPU.md): outputs that flipped under
# concurrency or speculative decoding lay at most 0.22 nats below the argmax, the sequential output scored
# by itself at most 0.14, shuffled (garbage) outputs at least 5.8. 1.0 sits 4.5x above the one and 5.8x below
# the other.
DEFAULT_CONSISTENCY_NATS: Final = 1.0
# The models `generated:<name>` makes (smoke/tinymodel.py's SHAPES, plus its GGUF conversion): checked at load, so
# a misspelt name is a file:line error before any build (tests/unit/matrix keeps the two lists equal).
GENERATED_MODELS: Final = ("tiny-llama", "tiny-llama-gguf", "llama-1b-shape", "llama-3b-shape", "llama-8b-shape")
# Measured on the cpu cell (float32, 192 golden tokens, 2026-12-03): the same image scored its own goldens again
# within 5e-7 nats (mean 2.4e-7); a 5% logit scale, which changes no greedy text, moved them by up to 0.05 (mean
# 0.035). 0.02 sits 40000x above the one and 2.5x below the other.
DEFAULT_GOLDEN_NATS: Final = 0.02


@dataclass(frozen=True, kw_only=True)
class SmokeSettings:
    """How an engine's images are smoke-tested: the model, the server's arguments, the sweep, the gate
    and the serve profiles.

    model: a Hub id (fetched with a pinned revision into a mounted cache), a local directory
    ("path:DIR"), or "generated:tiny-llama" (a random-weight model made offline inside the image
    under test, for machines without the Hub). Validated once, here at load; the smoke stage
    trusts it."""

    model: str = ""
    revision: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    tools: bool = False  # the model and parser support tool calls (args carry the parser)
    tool_recipe: ToolRecipe = "plain"  # "forced": deterministic tool call for a random-weight model
    ready_timeout: int = 600
    shm_size: str = "2g"
    audit_optional: tuple[str, ...] = ()  # kernel-audit globs allowed to lack the cell's arch
    sweep: SweepSettings = field(default_factory=lambda: SweepSettings())
    gate: GateSettingsSpec = field(default_factory=lambda: GateSettingsSpec())
    profiles: tuple[ServeProfile, ...] = ()  # extra ways to serve; determinism and golden run under each
    # A cell whose (tested, friendly-tagged) image makes a generated model when the image under test
    # cannot: generated:tiny-llama-gguf needs torch + transformers, which a llama.cpp image lacks.
    model_helper: str | None = None
    model_helper_line: int = 0  # where matrix.yaml names it, for the load-time check (matrix/order.py)
    # 0: concurrent greedy outputs must equal the sequential ones. Above 0: a difference is accepted
    # when it is a flip at a near-tie (top-2 logprob gap under this many nats, the runner-up taken):
    # for engines that are not batch-invariant (smoke/ties.py says what was measured).
    determinism_tie_nats: float = 0.0
    consistency: Consistency = "exact"
    consistency_nats: float = DEFAULT_CONSISTENCY_NATS
    # golden_scores: how far (nats) a golden token's logprob may move from the known-good image's own.
    golden_nats: float = DEFAULT_GOLDEN_NATS
    # The backends the engine must report choosing (kind -> name, e.g. attention: FLASH_ATTN); a cell whose
    # server chose another fails with the log line as evidence.
    expected_backends: dict[BackendKind, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """engines.<e>.smoke.sweep: the concurrency sweep (streamed, ignore_eos, fixed token count)."""

    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    samples: int = 5  # measured bursts per level
    warmup: int = 1  # bursts per level before measuring
    tokens: int = 128  # decoded by every request
    # Prompt depths: each level runs at each depth, a prompt of exactly that many tokens (0: the short prose
    # prompts); depth + tokens must fit the served context, which the sweep checks against the server.
    depths: tuple[int, ...] = (0,)
    # The model the sweep and the gate serve, when not the smoke model (same forms: Hub id, path:DIR,
    # generated:<shape>). GPU cells: a random model sized so that decode is GPU-bound, while the checks
    # keep a model with decisive logits (random bf16 weights flip greedy outputs between batch shapes).
    model: str = ""
    revision: str | None = None


@dataclass(frozen=True, kw_only=True)
class GateSettingsSpec:
    """engines.<e>.smoke.gate: the A/B gate against the known-good image, measured beside it."""

    threshold: float = 0.05  # allowed decode slowdown (0.05 = 5%)
    confidence: float = 0.95  # for the whole resampling session (Bonferroni over its looks)
    initial_pairs: int = 6
    step_pairs: int = 3  # pairs added per resampling round while inconclusive
    max_pairs: int = 18
    concurrency: tuple[int, ...] = ()  # levels the gate compares; empty: the sweep's levels
    # The cell's owner says so in the matrix (as --accept-inconclusive does for one run): for runners that
    # cannot resolve the threshold (2 shared cores). A regression, or an interval wholly below the bound,
    # still fails.
    accept_inconclusive: bool = False


@dataclass(frozen=True, kw_only=True)
class ServeProfile:
    """engines.<e>.smoke.profiles.<name>: another way to serve the cell (speculative decoding, CUDA graphs
    off, ...): its args are appended to the smoke args, its env merged over the smoke env."""

    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    consistency: Consistency | None = None  # None: the cell's; "exact" where the profile promises it
    versions: SpecifierSet | None = None  # engine versions that have what the profile needs (others: skipped)
    # The profile is speculative decoding: it must report drafts proposed and accepted, or it tested nothing.
    speculative: bool = False


DEFAULT_PROFILE = "default"
# Bounds of the sweep's and the gate's levels and of the sweep's depths (builder smoke --depths checks the same).
MAX_CONCURRENCY: Final = 512
MAX_DEPTH: Final = 1 << 20
