"""Smoke-test settings of an engine in matrix.yaml (engines.<engine>.smoke, with per-arch overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from builder import grammar
from builder.matrix.schema import MappingReader

ToolRecipe = Literal["plain", "forced"]


@dataclass(frozen=True, kw_only=True)
class SmokeSettings:
    """How an engine's images are smoke-tested: the tiny model and the server's arguments.

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
    throughput_tokens: int = 64  # decoded per throughput run
    regression_threshold: float = 0.05  # allowed decode tok/s drop against the last known-good
    # A cell whose (tested, friendly-tagged) image makes a generated model when the image under test
    # cannot: generated:tiny-llama-gguf needs torch + transformers, which a llama.cpp image lacks.
    model_helper: str | None = None



def _smoke_settings(r: MappingReader, base: SmokeSettings) -> SmokeSettings:
    recipe = r.string("tool_recipe", base.tool_recipe)
    if recipe not in get_args(ToolRecipe):
        raise r.error("tool_recipe", f"{r.what}.tool_recipe must be plain or forced, got '{recipe}'")
    tools = r.raw("tools", base.tools)
    if not isinstance(tools, bool):
        raise r.error("tools", f"{r.what}.tools must be true or false")
    return SmokeSettings(
        model=r.string("model", base.model), revision=r.string("revision", base.revision),
        args=r.strings("args", base.args), env=r.string_map("env", check_key=grammar.env_name) or base.env, tools=tools,
        tool_recipe=recipe, ready_timeout=r.integer("ready_timeout", base.ready_timeout, minimum=1),
        shm_size=r.string("shm_size", base.shm_size),
        audit_optional=r.strings("audit_optional", base.audit_optional),
        throughput_tokens=r.integer("throughput_tokens", base.throughput_tokens, minimum=1),
        regression_threshold=_fraction(r, "regression_threshold", base.regression_threshold),
        model_helper=r.string("model_helper", base.model_helper))


def _fraction(r: MappingReader, key: str, default: float) -> float:
    value = r.raw(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise r.error(key, f"{r.what}.{key} must be a number from 0 up to (not including) 1 (0.05 = 5%)")
    return float(value)


def load_smoke(r: MappingReader | None, archs: dict) -> tuple[SmokeSettings, dict[str, SmokeSettings]]:
    """engines.<name>.smoke: defaults, and `archs: {<arch>: overrides}` per arch."""
    if r is None:
        return SmokeSettings(), {}
    per_arch_reader = r.sub("archs")
    default = _smoke_settings(r, SmokeSettings())
    per_arch = {}
    if per_arch_reader is not None:
        for arch in per_arch_reader.data:
            if arch not in archs:
                raise per_arch_reader.error(arch, f"{per_arch_reader.what}: unknown arch '{arch}' "
                                                  f"(defined archs: {', '.join(archs)})")
            sub = MappingReader(per_arch_reader.raw(arch), r.source, per_arch_reader.line_of(arch),
                                f"{r.what}.archs.{arch}")
            per_arch[arch] = _smoke_settings(sub, default)
            sub.finish()
    r.finish()
    return default, per_arch
