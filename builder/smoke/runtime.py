"""What the server actually did, beside what it answered: the backends its start-up log says it chose, and
whether a speculative-decoding profile really speculated (drafts proposed and accepted, from /metrics).

The kernel audit proves that kernels for the arch are present; it cannot say which ones the engine picked at
run time (an NVFP4 cell that silently falls back to Marlin, a FLASHINFER cell that lands on TRITON_ATTN). And
a profile named "speculative decoding" whose drafts are never accepted passes while testing nothing: on the
H200 an ngram server accepted 0 drafts on random-weight text. The verdicts here are pure; `read_metrics`
asks the server once.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests

from builder.checkresult import FAIL, PASS, SKIP, CheckResult, one_line
from builder.engines import BackendKind, EngineModule
from builder.net import client as net
from builder.net.client import Limits

METRICS_CAP = 8 << 20  # bytes of /metrics read at most (vLLM's is ~100 KiB)


def check_backends(log: str | None, engine: EngineModule, expected: Mapping[BackendKind, str],
                   name: str = "backends") -> CheckResult:
    """The backends named in the server's log; a cell's expected backend that is not among them fails, with
    the log line of what was chosen instead (or the absence) as evidence."""
    if log is None:
        if expected:
            return CheckResult(name, FAIL, "the cell expects backends " + _shown(expected) + " but no server log "
                               "was given (builder smoke --url: --server-log FILE)", {"expected": dict(expected)})
        return CheckResult(name, SKIP, "no server log to read (builder smoke --url: --server-log FILE)", {})
    found = engine.backends(log)
    data = {"backends": [{"kind": b.kind, "name": b.name, "line": b.line} for b in found],
            "expected": dict(expected)}
    for kind, want in expected.items():
        chosen = [b for b in found if b.kind == kind]
        if not any(b.name == want for b in chosen):
            if chosen:
                why = f"expected {kind} backend {want}, the server chose {chosen[0].name}: {one_line(chosen[0].line, 200)!r}"
            else:
                why = f"expected {kind} backend {want}; the server's log names no {kind} backend"
            return CheckResult(name, FAIL, why, data)
    if not found:
        return CheckResult(name, SKIP, f"{engine.name}'s start-up log names no backend", data)
    return CheckResult(name, PASS, "; ".join(f"{b.kind} {b.name}" for b in found), data)


def _shown(expected: Mapping[BackendKind, str]) -> str:
    return ", ".join(f"{kind} {name}" for kind, name in expected.items())


def read_metrics(base_url: str, timeout: float = 10.0) -> str | None:
    """The server's Prometheus text (GET /metrics), at most METRICS_CAP bytes; None when it has none."""
    limits = Limits(connect_s=5.0, read_s=timeout, total_s=timeout, max_body=METRICS_CAP)
    try:
        with net.session() as session:
            resp = net.send(session, "GET", base_url.rstrip("/") + "/metrics", limits=limits)
    except (requests.RequestException, ValueError):  # unreachable, too slow, too large: no counters
        return None
    if resp.status_code != 200:
        return None
    body = resp.content
    return body.decode(errors="replace")


def check_speculation(before: tuple[int, int] | None, after: tuple[int, int] | None, engine: EngineModule,
                      name: str) -> CheckResult:
    """Drafts proposed and accepted while the profile's checks ran (counters read before and after)."""
    if after is None:
        return CheckResult(name, FAIL, f"not exercised: {engine.name}'s server reports no speculative-decoding "
                           "counters, so nothing shows that this profile speculated", {})
    drafted = after[0] - (before[0] if before else 0)
    accepted = after[1] - (before[1] if before else 0)
    data = {"drafted": drafted, "accepted": accepted}
    if drafted <= 0 or accepted <= 0:
        return CheckResult(name, FAIL, f"not exercised: {accepted} of {drafted} drafted tokens accepted while the "
                           "checks ran (the profile tested plain decoding)", data)
    return CheckResult(name, PASS, f"{accepted} of {drafted} drafted tokens accepted ({accepted / drafted:.0%}) while "
                       "the checks ran", data)
