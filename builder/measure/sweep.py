"""The concurrency sweep: bursts of c streamed requests (stream.py) against a running OpenAI-compatible server,
for each concurrency level and prompt depth; the numbers are computed in sweepreport.py and sse.py.

Around each burst the sweep reads the server's own timing where its engine module says the server has
it (a Prometheus /metrics endpoint read before and after, or timing carried by the stream), and levels run
at each prompt depth of the spec (prompts of exact token length, prompts.py). Every loop has a cap (samples
per level, levels per sweep); server trouble never raises out of `run_sweep`: it is a failed level with a
one-line reason.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import requests

from builder.engines.timing import ServerCounters, prometheus_totals
from builder.net import client as net
from builder.net.client import Limits
from builder.smoke.openai import ServerError, request_json

from .prompts import depth_prompt, token_pool
from .serverside import NOT_MEASURED, Sample, client_evidence, server_decode_tps
from .stream import Prompt, SweepError, SweepSpec, stream_completion
from .sse import RequestResult
from .sweepreport import LevelResult, SweepResult, aggregate_decode_tps, summarize_level

METRICS_CAP = 8 << 20  # a Prometheus page
METRICS_DEADLINE_S = 10.0

def prompt_key(depth: int, concurrency: int, burst: int, index: int) -> int:
    """A key unique to one request of a sweep (warm-up bursts have negative numbers): its prompt's first tokens."""
    return int.from_bytes(hashlib.sha256(f"{depth}/{concurrency}/{burst}/{index}".encode()).digest()[:5], "big")


def run_burst(base_url: str, spec: SweepSpec, concurrency: int, burst: int, depth: int = 0,
              pool: Sequence[int] = ()) -> tuple[RequestResult, ...]:
    """`concurrency` requests started together (a barrier releases them), each with its own prompt: at depth 0
    one of the prose prompts, else `depth` token ids from the pool."""
    start = threading.Barrier(concurrency)
    first = burst * concurrency

    def one(i: int) -> RequestResult:
        prompt: Prompt = depth_prompt(pool, depth, prompt_key(depth, concurrency, burst, i)) if depth \
            else spec.prompts[(first + i) % len(spec.prompts)]
        try:
            start.wait(timeout=spec.connect_timeout_s + 5.0)
        except threading.BrokenBarrierError:
            pass  # a sibling failed to start: run anyway, the window will show it
        return stream_completion(base_url, spec, prompt)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"sweep-c{concurrency}") as pool_:
        return tuple(pool_.map(one, range(concurrency)))


def read_counters(base_url: str, spec: SweepSpec) -> ServerCounters | None:
    """The server's cumulative counters from its metrics endpoint; None when it has none or did not answer."""
    engine = spec.engine
    if engine is None or engine.metrics_path is None:
        return None
    limits = Limits(connect_s=spec.connect_timeout_s, read_s=METRICS_DEADLINE_S, total_s=METRICS_DEADLINE_S,
                    max_body=METRICS_CAP)
    try:
        with net.session() as session:
            resp = net.send(session, "GET", base_url.rstrip("/") + engine.metrics_path, limits=limits)
    except (requests.RequestException, ValueError):
        return None
    if resp.status_code != 200:
        return None
    return engine.metrics_counters(prometheus_totals(resp.content.decode("utf-8", "replace")))


def sample_burst(base_url: str, spec: SweepSpec, concurrency: int, burst: int, depth: int = 0,
                 pool: Sequence[int] = ()) -> Sample:
    """One burst with the server's counters read before and after it (their difference is the burst's)."""
    before = read_counters(base_url, spec)
    requests = run_burst(base_url, spec, concurrency, burst, depth, pool)
    after = read_counters(base_url, spec) if before is not None else None
    return Sample(requests=requests, server=after - before if before is not None and after is not None else None)


def measure_sample(base_url: str, spec: SweepSpec, concurrency: int, burst: int) -> tuple[float, Sample]:
    """One sample's aggregate decode tok/s (the server's, where it timed its work) and the sample; SweepError
    when it could not be measured (what the A/B driver needs: a failed sample is not a slow one, and a
    client-side figure the client could not measure is not a figure)."""
    sample = sample_burst(base_url, spec, concurrency, burst)
    server = server_decode_tps(sample)
    if server is not None:
        return server, sample
    rate = aggregate_decode_tps(sample.requests)
    if rate is None:
        bad = next((r.error for r in sample.requests if r.status != "ok"), "no decode window")
        raise SweepError(f"{base_url} c={concurrency}: {bad}")
    evidence = client_evidence([sample], rate, None, spec.bounds)
    if evidence:
        raise SweepError(f"{base_url} c={concurrency}: {NOT_MEASURED} ({evidence})")
    return rate, sample


def warm_up(base_url: str, spec: SweepSpec, concurrency: int, depth: int = 0,
            pool: Sequence[int] = ()) -> tuple[RequestResult, ...]:
    """The warm-up bursts; the requests of the first one that failed entirely (the level ends there:
    a server that cannot warm up is not measured), else ()."""
    for burst in range(spec.warmup):
        results = run_burst(base_url, spec, concurrency, -1 - burst, depth, pool)
        if all(r.status != "ok" for r in results):
            return results
    return ()


def served_context(base_url: str, spec: SweepSpec) -> int | None:
    """The served model's context length as its engine reads /v1/models; None when unknown."""
    if spec.engine is None:
        return None
    try:
        models = request_json(base_url, "/v1/models", spec.read_timeout_s).get("data") or []
    except (ServerError, ValueError):
        return None
    entry = next((m for m in models if isinstance(m, dict) and m.get("id") == spec.model), None)
    return spec.engine.max_model_len(entry) if entry is not None else None


def depth_problem(base_url: str, spec: SweepSpec) -> tuple[tuple[int, ...], str]:
    """The token pool for prompts at depth, or why there are none ("" when no depth needs them)."""
    if not any(spec.depths):
        return (), ""
    if spec.engine is None or not spec.engine.prompt_token_ids:
        return (), "prompts at depth need a server that takes token ids (the engine module says it does not)"
    context = served_context(base_url, spec)
    if context is not None and max(spec.depths) + spec.max_tokens > context:
        return (), f"depth {max(spec.depths)} + {spec.max_tokens} tokens exceed the served context of {context}"
    try:
        return token_pool(base_url, spec.model, spec.engine, spec.prompts, spec.read_timeout_s), ""
    except (ServerError, ValueError) as exc:
        return (), f"no token pool for prompts at depth: {exc}"


def run_sweep(base_url: str, spec: SweepSpec) -> SweepResult:
    """The whole sweep, depth by depth and level by level. Server trouble shows as failed requests in the
    result; a level whose warm-up or first measured burst failed entirely is not sampled further, and the
    levels after it are not run (a dead or keep-alive-only server costs one burst); levels at a depth that
    cannot be served say why, unmeasured."""
    pool, problem = depth_problem(base_url, spec)
    levels = []
    dead = ""  # set when a level failed entirely: the levels after it are not run (a dead server costs one burst)
    for depth in spec.depths:
        for concurrency in spec.concurrency:
            if (depth and problem) or dead:
                levels.append(LevelResult(concurrency=concurrency, sample_tps=(), stream_tps_p50=None,
                                          ttft_p50_s=None, itl_p50_s=None, itl_p90_s=None, requests=0, errors=0,
                                          depth=depth, unmeasured=f"not measured: {dead or problem}"))
                continue
            samples: list[Sample] = []
            warm_failed = warm_up(base_url, spec, concurrency, depth, pool)
            if warm_failed:
                samples.append(Sample(requests=warm_failed, server=None))
            for burst in range(0 if warm_failed else spec.samples):
                samples.append(sample_burst(base_url, spec, concurrency, burst, depth, pool))
                if burst == 0 and all(r.status != "ok" for r in samples[0].requests):
                    break
            if all(r.status != "ok" for s in samples for r in s.requests):
                dead = f"every request of c={concurrency} failed ({samples[0].requests[0].error})"
            levels.append(summarize_level(concurrency, samples, depth=depth, bounds=spec.bounds))
    return SweepResult(model=spec.model, max_tokens=spec.max_tokens, levels=tuple(levels))
