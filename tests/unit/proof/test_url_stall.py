"""`builder smoke --url` against a server that answers /v1/models and then stops answering: the run ends after the
first check that met its deadline, instead of waiting out one deadline per check (about 10 minutes before)."""

from __future__ import annotations

import dataclasses
import time

from builder.engines import vllm
from builder.matrix.smoke_settings import SmokeSettings
from builder.proof import url as url_mod
from builder.smoke.openai import SmokeSpec
from tests.unit.smoke.test_checks import healthy, serve  # noqa: F401 (the fixture)


def test_a_server_that_stops_answering_ends_the_run_at_the_first_deadline(serve, monkeypatch):
    def stalls_after_models(server, path, body):
        if path == "/v1/models":
            return healthy(server, path, body)
        time.sleep(3)  # past the 0.5 s deadline below; the handler thread is a daemon
        return healthy(server, path, body)

    real = SmokeSpec.from_settings
    # the deadline of one request (60 s in the product) shortened so the test takes seconds
    monkeypatch.setattr(url_mod.SmokeSpec, "from_settings",
                        classmethod(lambda cls, *a, **k: dataclasses.replace(real(*a, **k), timeout=0.5)))
    started = time.monotonic()
    report = url_mod.smoke_url(serve(stalls_after_models).url, SmokeSettings(), vllm)
    took = time.monotonic() - started
    names = [(c.name, c.status) for c in report.checks]
    assert names == [("models", "pass"), ("completions", "fail"), ("stalled", "fail")], names
    assert report.checks[-1].evidence == ("the server stopped answering (completions: no answer within 0.5 s); the "
                                          "remaining checks were not run")
    assert not report.passed and report.sweep is None
    assert took < 3, took  # one deadline (the completions request), not one per check
