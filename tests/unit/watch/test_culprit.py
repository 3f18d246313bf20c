"""The Pinpoint re-check: the first-bad commit's image against its parent's once more, fresh boots.
The servers are fakes here (as in tests/unit/bisect/test_measure.py); the slow integration test in
tests/integration/test_watch.py re-checks a real culprit."""

from contextlib import contextmanager
from types import SimpleNamespace

from builder.bisect import measure as measure_mod
from builder.bisect.measure import ServerTemplate
from builder.bisect.settings import MeasureSettings
from builder.engines import vllm
from builder.watch import culprit as culprit_mod

TEXT = {"sha256:parent": "a", "sha256:culprit": "b", "sha256:same": "a"}


def _answer(first_bad_image: str) -> dict:
    return {"candidates": 9, "exact": True, "last_good": {"index": 2}, "first_bad": {"index": 3},
            "images": {"2": "sha256:parent", "3": first_bad_image},
            "endpoints": {"good_image": "sha256:g", "bad_image": "sha256:b"}}


def _recheck(monkeypatch, tmp_path, answer: dict) -> tuple[dict, list[str]]:
    boots: list[str] = []

    @contextmanager
    def serve(client, spec, purpose):
        boots.append(spec.image)
        yield SimpleNamespace(base_url=spec.image)
    monkeypatch.setattr(measure_mod, "serve", serve)
    monkeypatch.setattr(measure_mod, "generate", lambda url, spec, max_tokens, prompt, **fields:
                        {"choices": [{"text": TEXT[url] + prompt[:3]}]})
    monkeypatch.setattr(culprit_mod, "server_template",
                        lambda *a, **k: ServerTemplate(engine=vllm, gpu=False, model_dir=tmp_path))
    request = SimpleNamespace(job=SimpleNamespace(cell=SimpleNamespace(id="vllm-0.32.0-cpu")), model_dir=None,
                              ready_timeout=None, helper_image=None, pull_auth=None,
                              settings=MeasureSettings(metric="golden"))
    return culprit_mod.recheck(None, request, answer, log=lambda m: None), boots  # type: ignore[arg-type]


def test_a_culprit_whose_effect_reproduces_is_confirmed_in_fresh_boots(monkeypatch, tmp_path):
    result, boots = _recheck(monkeypatch, tmp_path, _answer("sha256:culprit"))
    assert result["status"] == "confirmed"
    assert boots == ["sha256:parent", "sha256:culprit"]  # both booted again: no cached reference
    again, boots = _recheck(monkeypatch, tmp_path, _answer("sha256:culprit"))
    assert again["status"] == "confirmed" and len(boots) == 2  # a second re-check measures again too


def test_a_culprit_whose_effect_does_not_reproduce_is_not_confirmed(monkeypatch, tmp_path):
    result, _ = _recheck(monkeypatch, tmp_path, _answer("sha256:same"))
    assert result["status"] == "not confirmed" and "equal the good one's" in result["why"]


def test_suspects_are_not_a_culprit(monkeypatch, tmp_path):
    result, boots = _recheck(monkeypatch, tmp_path, {**_answer("sha256:culprit"), "exact": False})
    assert result["status"] == "not confirmed" and boots == []
