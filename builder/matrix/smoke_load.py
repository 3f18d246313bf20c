"""Reading engines.<engine>.smoke from matrix.yaml: every field validated, per-arch overrides merged.

A wrong value is a ConfigError naming file:line (matrix/schema.py's MappingReader); the types and
defaults are matrix/smoke_settings.py's.
"""

from __future__ import annotations

from collections.abc import Mapping

from builder import grammar
from builder.engines import BACKEND_KINDS, BackendKind
from builder.matrix.schema import MappingReader
from builder.matrix.smoke_settings import (
    CONSISTENCIES,
    DEFAULT_CONSISTENCY_NATS,
    DEFAULT_GOLDEN_NATS,
    DEFAULT_PROFILE,
    GENERATED_MODELS,
    MAX_CONCURRENCY,
    MAX_DEPTH,
    TOOL_RECIPES,
    Consistency,
    GateSettingsSpec,
    ServeProfile,
    SmokeSettings,
    SweepSettings,
)


def _smoke_settings(r: MappingReader, base: SmokeSettings) -> SmokeSettings:
    recipe = r.string("tool_recipe", base.tool_recipe)
    if recipe not in TOOL_RECIPES:
        raise r.error("tool_recipe", f"{r.what}.tool_recipe must be plain or forced, got '{recipe}'")
    tools = r.raw("tools", base.tools)
    if not isinstance(tools, bool):
        raise r.error("tools", f"{r.what}.tools must be true or false")
    return SmokeSettings(
        model=r.string("model", base.model, check=_model), revision=r.string("revision", base.revision),
        args=r.strings("args", base.args), env=r.string_map("env", check_key=grammar.env_name) or base.env, tools=tools,
        tool_recipe=recipe, ready_timeout=r.integer("ready_timeout", base.ready_timeout, minimum=1),
        shm_size=r.string("shm_size", base.shm_size),
        audit_optional=r.strings("audit_optional", base.audit_optional),
        sweep=_sweep(r, base.sweep), gate=_gate(r, base.gate), profiles=_profiles(r, base.profiles),
        model_helper=r.string("model_helper", base.model_helper, check=grammar.tag),
        model_helper_line=r.line_of("model_helper") if r.has("model_helper") else base.model_helper_line,
        determinism_tie_nats=_tie_nats(r, base.determinism_tie_nats),
        consistency=_consistency(r, base.consistency) or base.consistency,
        consistency_nats=_nats(r, "consistency_nats", base.consistency_nats),
        golden_nats=_nats(r, "golden_nats", base.golden_nats),
        expected_backends=_expected_backends(r, base.expected_backends))


def _model(value: str) -> str | None:
    """Why a smoke model value cannot be used (None: it can); only generated names are known here."""
    if value.startswith("generated:") and value.split(":", 1)[1] not in GENERATED_MODELS:
        return (f"'{value}' is not a generated model (known: {', '.join('generated:' + n for n in GENERATED_MODELS)})")
    return None


def _consistency(r: MappingReader, default: Consistency | None) -> Consistency | None:
    value = r.string("consistency", default)
    for known in CONSISTENCIES:
        if value == known:
            return known
    if value is None:
        return None
    raise r.error("consistency", f"{r.what}.consistency must be exact or scored, got '{value}'")


def _nats(r: MappingReader, key: str, default: float) -> float:
    value = r.raw(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 5:
        raise r.error(key, f"{r.what}.{key} must be a number of nats above 0, at most 5 (defaults: consistency_nats "
                           f"{DEFAULT_CONSISTENCY_NATS:g}, golden_nats {DEFAULT_GOLDEN_NATS:g})")
    return float(value)


def _expected_backends(r: MappingReader, default: dict[BackendKind, str]) -> dict[BackendKind, str]:
    if not r.has("expected_backends"):
        return default
    names = r.string_map("expected_backends", check=grammar.nonempty_line)
    out: dict[BackendKind, str] = {}
    for key, name in names.items():
        kind = next((k for k in BACKEND_KINDS if k == key), None)
        if kind is None:
            raise r.error("expected_backends", f"{r.what}.expected_backends: unknown kind '{key}' "
                                               f"(known: {', '.join(BACKEND_KINDS)})")
        out[kind] = name
    return out


def _tie_nats(r: MappingReader, default: float) -> float:
    value = r.raw("determinism_tie_nats", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 0.1:
        raise r.error("determinism_tie_nats", f"{r.what}.determinism_tie_nats must be a number of nats from 0 to 0.1 "
                                              "(0: identical outputs; 0.005 tolerates flips at near-ties)")
    return float(value)


def _levels(r: MappingReader, key: str, default: tuple[int, ...], allow_empty: bool = False) -> tuple[int, ...]:
    value = r.raw(key, None)
    if value is None:
        return default
    ok = isinstance(value, list) and (allow_empty or value) and len(value) <= 16 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_CONCURRENCY for v in value)
    if not ok or len(set(value)) != len(value):
        raise r.error(key, f"{r.what}.{key} must be a list of up to 16 distinct concurrency levels, "
                           f"integers 1..{MAX_CONCURRENCY} (e.g. [1, 2, 4, 8])")
    return tuple(value)


def _depths(r: MappingReader, default: tuple[int, ...]) -> tuple[int, ...]:
    value = r.raw("depths", None)
    if value is None:
        return default
    ok = isinstance(value, list) and value and len(value) <= 16 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DEPTH for v in value)
    if not ok or len(set(value)) != len(value) or list(value) != sorted(value):
        raise r.error("depths", f"{r.what}.depths must be a list of up to 16 distinct prompt depths in tokens, "
                                f"ascending, 0..{MAX_DEPTH} (e.g. [0, 4096, 16384]; 0: the short prompts)")
    return tuple(value)


def _bounded(r: MappingReader, key: str, default: int, low: int, high: int) -> int:
    value = r.integer(key, default, minimum=low)
    if value > high:
        raise r.error(key, f"{r.what}.{key} must be an integer {low}..{high}, got {value}")
    return value


def _sweep(parent: MappingReader, base: SweepSettings) -> SweepSettings:
    r = parent.sub("sweep")
    if r is None:
        return base
    out = SweepSettings(concurrency=_levels(r, "concurrency", base.concurrency),
                        samples=_bounded(r, "samples", base.samples, 1, 100),
                        warmup=_bounded(r, "warmup", base.warmup, 0, 100),
                        tokens=_bounded(r, "tokens", base.tokens, 2, 65536), depths=_depths(r, base.depths),
                        model=r.string("model", base.model, check=_model), revision=r.string("revision", base.revision))
    r.finish()
    return out


def _gate(parent: MappingReader, base: GateSettingsSpec) -> GateSettingsSpec:
    r = parent.sub("gate")
    if r is None:
        return base
    threshold = _fraction(r, "threshold", base.threshold)
    confidence = _fraction(r, "confidence", base.confidence)
    if not 0.5 <= confidence:
        raise r.error("confidence", f"{r.what}.confidence must be 0.5 up to (not including) 1")
    initial = _bounded(r, "initial_pairs", base.initial_pairs, 3, 200)
    step = _bounded(r, "step_pairs", base.step_pairs, 1, 200)
    most = _bounded(r, "max_pairs", base.max_pairs, 3, 200)
    if most < initial:
        raise r.error("max_pairs", f"{r.what}.max_pairs ({most}) must be >= initial_pairs ({initial})")
    out = GateSettingsSpec(threshold=threshold, confidence=confidence, initial_pairs=initial, step_pairs=step,
                           max_pairs=most, concurrency=_levels(r, "concurrency", base.concurrency, allow_empty=True),
                           accept_inconclusive=_flag(r, "accept_inconclusive", base.accept_inconclusive))
    r.finish()
    return out


def _flag(r: MappingReader, key: str, default: bool) -> bool:
    value = r.raw(key, default)
    if not isinstance(value, bool):
        raise r.error(key, f"{r.what}.{key} must be true or false")
    return value


def _profiles(parent: MappingReader, base: tuple[ServeProfile, ...]) -> tuple[ServeProfile, ...]:
    r = parent.sub("profiles")
    if r is None:
        return base
    out = []
    for name in list(r.data):
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum() or \
                name == DEFAULT_PROFILE:
            raise r.error(name, f"{r.what}: profile name {name!r} must be letters, digits, - or _ "
                                f"(and not '{DEFAULT_PROFILE}', which is the plain smoke args)")
        sub = MappingReader(r.raw(name), r.source, r.line_of(name), f"{r.what}.{name}")
        speculative = sub.raw("speculative", False)
        if not isinstance(speculative, bool):
            raise sub.error("speculative", f"{sub.what}.speculative must be true or false")
        out.append(ServeProfile(name=name, args=sub.strings("args"), env=sub.string_map("env", check_key=grammar.env_name),
                                consistency=_consistency(sub, None), versions=sub.specifier("versions"),
                                speculative=speculative))
        sub.finish()
    r.finish()
    return tuple(out)


def _fraction(r: MappingReader, key: str, default: float) -> float:
    value = r.raw(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise r.error(key, f"{r.what}.{key} must be a number from 0 up to (not including) 1 (0.05 = 5%)")
    return float(value)


def load_smoke(r: MappingReader | None, archs: Mapping[str, object]) -> tuple[SmokeSettings, dict[str, SmokeSettings]]:
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
