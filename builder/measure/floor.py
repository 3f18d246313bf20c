"""The gate's floor on one runner: how far apart two processes of one image measure, and the thresholds it forbids.

Why a floor. The gate's pairs cancel drift in time, but not a difference between the two server processes
themselves: on the H200 two processes of one vLLM wheel differed by up to 0.7% at c=1, every interval
excluding 1.0 (../shared/GPU.md), whatever the order they were started in. Below that, a verdict would be
about which process got which memory or which CUDA graphs, not about the image.

What was chosen: an A/A calibration per runner, stored in a small JSON file the runner keeps (--floor FILE).
A calibration is the gate run between two processes of one image (`builder smoke --url A --known-good-url A2
--calibrate-floor FILE`); the floor at a concurrency is the largest process-to-process difference its interval
admits, max(1 - ci_low, ci_high - 1), and repeated calibrations keep the largest (more process pairs, a
truer floor). The alternative, booting the known-good twice in every gate run (an in-session A/A beside the
A/B), costs one more boot and a third of the gate's samples on every run; the calibration costs its two boots
and one gate session once per runner, then nothing (the gate reads a file). A gate whose threshold lies below
the floor is refused before anything is measured, with the floor and where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gate import GateResult

FLOOR_SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class Floor:
    """The largest A/A difference measured on this runner, per concurrency level (0.007 = 0.7%)."""

    levels: dict[int, float]
    runs: int = 1  # A/A calibrations folded in
    pairs: int = 0  # pairs measured in them
    measured_at: str = ""  # the latest calibration
    source: str = ""  # what was compared, e.g. the two URLs

    def at(self, concurrency: int) -> float | None:
        return self.levels.get(concurrency)

    def merged(self, other: Floor) -> Floor:
        levels = dict(self.levels)
        for c, value in other.levels.items():
            levels[c] = max(value, levels.get(c, 0.0))
        return Floor(levels=levels, runs=self.runs + other.runs, pairs=self.pairs + other.pairs,
                     measured_at=max(self.measured_at, other.measured_at), source=other.source or self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": FLOOR_SCHEMA, "levels": {str(c): round(v, 6) for c, v in sorted(self.levels.items())},
                "runs": self.runs, "pairs": self.pairs, "measured_at": self.measured_at, "source": self.source}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Floor:
        if data.get("schema") != FLOOR_SCHEMA or not isinstance(data.get("levels"), Mapping):
            raise ValueError(f"not a gate floor of schema {FLOOR_SCHEMA}")
        levels = {int(c): float(v) for c, v in data["levels"].items()}
        # A floor of 1 or more is possible (an A/A interval wider than a doubling): it refuses every threshold.
        if any(c < 1 or not 0 <= v < 1e6 for c, v in levels.items()):
            raise ValueError("a floor level is not a concurrency >= 1 with a fraction >= 0")
        return Floor(levels=levels, runs=int(data.get("runs", 1)), pairs=int(data.get("pairs", 0)),
                     measured_at=str(data.get("measured_at", "")), source=str(data.get("source", "")))


def floor_of(aa: GateResult, *, measured_at: str, source: str) -> Floor:
    """The floor one A/A gate run measured: per level, the farthest from 1.0 its interval reaches."""
    levels = {lv.concurrency: max(1 - lv.ci_low, lv.ci_high - 1, 0.0) for lv in aa.levels}
    return Floor(levels=levels, runs=1, pairs=sum(lv.pairs for lv in aa.levels), measured_at=measured_at,
                 source=source)


def below_floor(threshold: float, levels: Sequence[int], floor: Floor) -> str | None:
    """Why `threshold` cannot be gated on this runner (one line), or None when it can at every level.
    A level the calibration did not measure is not refused (there is no floor to compare with)."""
    for c in levels:
        value = floor.at(c)
        if value is not None and threshold < value:
            return (f"threshold {100 * threshold:g}% is below this runner's floor of {100 * value:.2f}% at c={c}: two "
                    f"processes of one image differed by up to that much here ({floor.runs} A/A calibration"
                    f"{'s' if floor.runs != 1 else ''}, {floor.pairs} pairs, latest {floor.measured_at or 'undated'}); "
                    f"use a threshold >= {100 * value:.2f}% or calibrate again")
    return None


def floor_words(floor: Floor | None, concurrency: int) -> str:
    """The gate's evidence names the runner's floor at the level it judged (empty without a floor)."""
    if floor is None:
        return ""
    value = floor.at(concurrency)
    known = f"{100 * value:.2f}% at c={concurrency}" if value is not None else f"none measured at c={concurrency}"
    return f"; this runner's floor {known} ({floor.runs} A/A calibration{'s' if floor.runs != 1 else ''})"


def read_floor(path: Path) -> Floor:
    """ValueError (one line) when the file is missing, unreadable or not a floor."""
    try:
        return Floor.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_floor(path: Path, floor: Floor) -> Floor:
    """Fold `floor` into the file's (the larger per level wins) and write it; the result."""
    merged = read_floor(path).merged(floor) if path.exists() else floor
    path.write_text(json.dumps(merged.to_dict(), indent=2) + "\n")
    return merged
