"""The engine Protocol and its registry: everything the generic stages need to know about one
inference engine (vLLM, llama.cpp, ...) lives in one module here, as cibuildwheel keeps one module
per platform. Adding an engine is a new module and one line in ENGINES; no generic code changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from builder.engines.timing import ServerCounters
from builder.errors import InputError

Cell = Any  # builder.matrix.cells.Cell; engines/ is shared and imports no stage (not even for typing)

ModelFormat = Literal["hf", "gguf"]  # a Hugging Face model directory, or one GGUF file
# What a server's start-up log says it chose: the attention kernels, the MoE kernels, the quantized GEMM
# path, the device it placed the model on.
BackendKind = Literal["attention", "moe", "quantization", "device"]
BACKEND_KINDS: Final[tuple[BackendKind, ...]] = ("attention", "moe", "quantization", "device")


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One backend the engine says it chose, with the log line that says so (the evidence)."""

    kind: BackendKind
    name: str
    line: str


@dataclass(frozen=True, kw_only=True)
class TokenScore:
    """One output token scored by the server (teacher forcing): its own logprob and the best one there."""

    token: int
    logprob: float
    best: float
    text: str = ""  # the token as the server decodes it, when it says


@dataclass(frozen=True, kw_only=True)
class DispatchOnly:
    """Kernels an engine builds for older GPUs only and launches only there (it dispatches by compute
    capability): the kernel audit reports them as a named warning instead of failing the cell."""

    name: str  # the warning's name, e.g. "marlin-sm75"
    kernels: tuple[str, ...]  # fnmatch globs on the mangled kernel names (cuobjdump's ENTRY symbols)
    archs: tuple[str, ...]  # the only code these kernels may carry, as cuobjdump names it: sm_75
    evidence: str  # where the engine restricts them to those GPUs


class EngineModule(Protocol):
    name: str  # the engine's key under engines: in matrix.yaml
    template_dir: str  # dockerfiles/<template_dir>/<mode>.Dockerfile.j2
    container_port: int  # where the server listens inside the container
    health_path: str  # answers 200 once the server is ready
    model_formats: tuple[ModelFormat, ...]
    audit_packages: tuple[str, ...]  # installed packages (site-packages dirs) the kernel audit reads
    audit_roots: tuple[str, ...]  # absolute directories in the image the kernel audit reads too
    audit_dispatch_only: tuple[DispatchOnly, ...]  # old-GPU-only kernels the audit warns about, not fails
    requirement_files: tuple[str, ...]  # where a source tree pins torch (first match wins)
    # The sweep's streamed /v1/completions requests: whether the server takes `ignore_eos` (decode
    # exactly max_tokens; without it a random model may stop early and the sweep says so) and
    # `stream_options: {include_usage: true}` (a last chunk with the token count; without it tokens
    # are counted from the chunks).
    stream_ignore_eos: bool
    stream_usage: bool
    # Where the image keeps the converter from a Hugging Face checkpoint to the engine's own model format
    # (the generated GGUF smoke model is made with it); None: the engine serves Hugging Face directories.
    converter_dir: str | None
    # The engine's Python package in its git repository, which a bisect's python overlay replaces;
    # None: no change is Python-only (every commit needs a compiled build).
    package_dir: str | None
    # Server-side timing (engines/timing.py): a Prometheus text endpoint the sweep reads before and after
    # each sample (None: the server has none), and whether /v1/completions takes `prompt` as a list of
    # token ids (then prompts at depth have an exact token count).
    metrics_path: str | None
    prompt_token_ids: bool

    def metrics_counters(self, totals: Mapping[str, float]) -> ServerCounters | None:
        """The server's cumulative counters in a /metrics scrape (summed over labels); None: not there."""
        ...

    def chunk_counters(self, chunk: Mapping[str, Any]) -> ServerCounters | None:
        """One request's server timing carried by a streamed chunk (JSON object); None: this chunk has none."""
        ...

    def server_args(self, *, model: str, served_name: str, port: int, extra: Sequence[str]) -> list[str]:
        """Arguments after the image's entrypoint that serve `model` as `served_name` on `port`."""
        ...

    def torch_pin(self, tree: Path) -> str | None:
        """The torch version the source tree pins for CUDA builds, if the engine uses torch."""
        ...

    def template_vars(self, cell: Cell) -> dict[str, Any]:
        """Extra variables for the engine's templates (llama.cpp: its CMake options)."""
        ...

    def release_build_vars(self, version: str, commit: str) -> dict[str, str]:
        """The version entry's build_vars for an upstream release pinned to a git commit (`builder watch`):
        what the tree cannot say for itself without its git history (llama.cpp: its build number)."""
        ...

    # Smoke hooks: where the engine's OpenAI-compatible server answers differently.
    def max_model_len(self, model: dict) -> int | None:
        """The context length of one /v1/models entry."""
        ...

    def tokenize_body(self, served_name: str, text: str) -> dict:
        """The /tokenize request body for `text` without special tokens (the answer has "tokens")."""
        ...

    def tool_skip(self, recipe: str) -> str | None:
        """Why the tool-call check cannot run with this recipe on this engine; None when it can."""
        ...

    # Teacher forcing (smoke/consistency.py): the server re-reads a prompt + output as one prompt and says
    # how likely each output token was. An engine whose server cannot score returns None from each.
    def ids_fields(self) -> dict[str, Any]:
        """Extra /v1/completions fields that make the answer carry the prompt's and the output's token ids."""
        ...

    def token_ids(self, response: dict) -> tuple[list[int], list[int]] | None:
        """(prompt ids, output ids) of a completion asked with ids_fields(); None when the answer has none."""
        ...

    def score_body(self, served_name: str, token_ids: Sequence[int]) -> dict | None:
        """A /v1/completions body whose answer scores every token of `token_ids`; None: cannot score."""
        ...

    def token_scores(self, response: dict, token_ids: Sequence[int], start: int) -> list[TokenScore]:
        """The scores of token_ids[start:] in the answer to score_body (ValueError for any other shape)."""
        ...

    def valid_utf8_fields(self) -> dict[str, Any] | None:
        """/v1/completions fields that keep a greedy output valid UTF-8 (a bisect's --valid-utf8, for servers
        that fail on malformed UTF-8); None: the engine's server needs none."""
        ...

    def speculation(self, metrics: str) -> tuple[int, int] | None:
        """(draft tokens proposed, accepted) so far, from the server's Prometheus /metrics text; None: the
        server does not report speculative decoding."""
        ...

    def backends(self, log: str) -> list[Backend]:
        """The backends the server's start-up log says it chose, in log order."""
        ...


def model_dir_problem(engine: EngineModule, directory: Path) -> str | None:
    """Why `directory` cannot be served by `engine` as a local model (None: it can): a Hugging Face
    directory has config.json; a GGUF model is a directory holding exactly one .gguf file."""
    if not directory.is_dir():
        return f"'{directory}' is not a directory"
    if "hf" in engine.model_formats and (directory / "config.json").is_file():
        return None
    if "gguf" in engine.model_formats and len(list(directory.glob("*.gguf"))) == 1:
        return None
    wanted = " or ".join({"hf": "a Hugging Face model (config.json)", "gguf": "one .gguf file"}[f]
                         for f in engine.model_formats)
    return f"'{directory}' holds no model {engine.name} serves ({wanted})"


def _registry() -> dict[str, EngineModule]:
    from builder.engines import llamacpp, vllm
    # Typed as the Protocol, so the type checker proves each module has every member with its type
    # (tests/unit/test_types.py runs it; a missing member is an error here, not a getattr default).
    modules: Final[tuple[EngineModule, ...]] = (vllm, llamacpp)
    return {module.name: module for module in modules}


ENGINES: Final[dict[str, EngineModule]] = _registry()


def engine_module(name: str) -> EngineModule:
    try:
        return ENGINES[name]
    except KeyError:
        raise InputError(f"no engine module for '{name}' (the factory knows: {', '.join(sorted(ENGINES))})") from None
