from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.bisect.cache import (
    SessionState,
    StepCache,
    cache_root,
    load_state,
    resume_or_start,
    save_state,
    settings_hash,
    write_json_atomic,
)
from builder.bisect.errors import StateError
from builder.bisect.model import Measurement, StepRecord


def test_cache_root_is_the_project_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDER_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.setenv("BUILDER_CACHE", "")
    assert cache_root() == Path.home() / ".cache" / "llm-factory"


def test_settings_hash_is_canonical() -> None:
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2}) and len(settings_hash({})) == 16


def test_step_cache_round_trip_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "bisect" / "steps.json"
    cache = StepCache(path)
    m = Measurement(verdict="bad", metric={"ratio": 0.92}, samples=8, note="regressed 8% [6%, 10%]")
    cache.put("sha256:aa", "s1", 1, m)
    again = StepCache(path)
    assert again.get("sha256:aa", "s1", 1) == m
    assert again.get("sha256:aa", "s2", 1) is None and again.get("sha256:aa", "s1", 2) is None
    assert len(again) == 1 and not list(path.parent.glob(".*.tmp"))


def test_an_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json_atomic(path, {"v": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": Boom()})  # json fails half-way through the temporary file
    assert json.loads(path.read_text()) == {"v": 1} and not list(tmp_path.glob(".*.tmp"))


def _state(**over) -> SessionState:
    fields = {"cell": "c", "good": "a" * 40, "bad": "b" * 40, "settings": "s",
              "candidates": ("a" * 40, "1" * 40, "b" * 40), "images": {0: "sha256:g", 2: "sha256:b"}}
    fields.update(over)
    return SessionState(**fields)


def test_session_state_round_trip_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    record = StepRecord(step=1, index=1, sha="1" * 40, attempt=1, tier="python-overlay", digest="sha256:x",
                        verdict="good", metric={"ratio": 1.0}, patches=("p1",), built=True, measured=True)
    state = _state().with_image(1, "sha256:x").with_step(record)
    save_state(path, state)
    assert load_state(path) == state and state.history() == {1: ["good"]}
    assert resume_or_start(path, _state()) == state
    assert resume_or_start(tmp_path / "none.json", _state()) == _state()
    with pytest.raises(StateError, match="other endpoints or candidates"):
        resume_or_start(path, _state(candidates=("a" * 40, "2" * 40, "b" * 40)))


def test_unreadable_state_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(StateError) as info:
        load_state(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    path.write_text(json.dumps({"schema": 1, "cell": "c"}))
    with pytest.raises(StateError, match="not a bisect session state"):
        load_state(path)
    with pytest.raises(StateError):
        StepCache(path)
