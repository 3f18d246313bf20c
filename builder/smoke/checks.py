"""Smoke checks run from the host against a live OpenAI-compatible server (vLLM, llama-server) (base_url
http://127.0.0.1:PORT). Each check returns a CheckResult and never raises for server trouble:
connection refused, HTTP errors, timeouts and malformed bodies become a "fail" with one-line evidence.
Every request has a timeout and every loop a fixed count, so a check's run time is bounded.
check_golden and the helpers below it are pure.
"""

from __future__ import annotations

import json
from typing import Any

from builder.checkresult import FAIL, PASS, SKIP, CheckResult, one_line
from builder.smoke.determinism import check_determinism, divergence, first_divergence
from builder.smoke.openai import (
    TOOL,
    TOOL_PROMPT,
    WHITESPACE_PROBES,
    SmokeSpec,
    chat_text,
    generate,
    guarded,
    request_json,
    user_message,
)

MAX_CONTEXT = 1 << 24  # tokens of context no server has exceeded by far (16.7 M; the largest served are ~10 M)

__all__ = ["check_completions", "check_determinism", "check_golden", "check_models", "check_tool_call", "divergence",
           "first_divergence", "usage_sane"]


@guarded("models")
def check_models(base_url: str, spec: SmokeSpec) -> CheckResult:
    context_length = spec.engine.max_model_len  # vLLM: max_model_len; llama.cpp: meta.n_ctx
    served = {m["id"]: context_length(m) for m in request_json(base_url, "/v1/models", spec.timeout)["data"]}
    data = {"models": served}
    if spec.served_name not in served:
        return CheckResult("models", FAIL, f"{spec.served_name!r} is not served; /v1/models lists "
                           f"{', '.join(map(repr, served)) or 'nothing'}", data)
    got = served[spec.served_name]
    impossible = context_problem(got)
    if impossible:
        return CheckResult("models", FAIL, f"{spec.served_name!r}: {impossible}", data)
    if spec.max_model_len is not None and got != spec.max_model_len:
        return CheckResult("models", FAIL, f"{spec.served_name!r} has max_model_len {got}, expected "
                           f"{spec.max_model_len}", data)
    return CheckResult("models", PASS, f"serves {spec.served_name!r} with max_model_len {got}", data)


@guarded("completions")
def check_completions(base_url: str, spec: SmokeSpec) -> CheckResult:
    prompt = spec.prompts[0]
    comp = generate(base_url, spec, spec.max_tokens, prompt=prompt)
    chat = generate(base_url, spec, spec.max_tokens, messages=user_message(prompt))
    data: dict[str, Any] = {}
    problems: list[str] = []
    counts: list[str] = []
    for label, resp, text in (("completions", comp, comp["choices"][0]["text"]), ("chat", chat, chat_text(chat))):
        finish, usage = resp["choices"][0].get("finish_reason"), resp.get("usage")
        if not isinstance(text, str):
            problems.append(f"{label}: the text is not a string: {one_line(repr(text), 80)}")
            data[label] = {"text": one_line(repr(text), 200), "finish_reason": one_line(repr(finish), 80)}
            continue
        data[label] = {"text": text, "finish_reason": finish, "usage": usage}
        problem = usage_sane(usage, spec.max_tokens)
        if problem is None and not text and finish != "stop":  # tokens counted but nothing decoded
            problem = f"empty text with finish_reason {finish!r}"
        if problem:
            problems.append(f"{label}: {problem}")
        else:
            counts.append(f"{label} {(usage or {}).get('completion_tokens')} tokens")
    if problems:
        return CheckResult("completions", FAIL, "; ".join(problems), data)
    return CheckResult("completions", PASS, ", ".join(counts) + "; usage consistent", data)


def check_golden(outputs: dict[str, str], golden: dict[str, str] | None, model_id: str,
                 golden_model_id: str | None, exact: bool = True) -> CheckResult:
    """Compare this image's greedy outputs with the last known-good image's (pure)."""
    if not golden:
        return CheckResult("golden", SKIP, f"no golden outputs recorded yet for {model_id}", {"model_id": model_id})
    if golden_model_id is not None and golden_model_id != model_id:
        return CheckResult("golden", SKIP, f"golden outputs were recorded for {golden_model_id}, not {model_id}",
                           {"model_id": model_id, "golden_model_id": golden_model_id})
    common = [p for p in golden if p in outputs]
    data = {"model_id": model_id, "compared": len(common), "not_run": [p for p in golden if p not in outputs]}
    if not common:
        return CheckResult("golden", SKIP, "none of the golden prompts was run; nothing to compare", data)
    differing = [prompt for prompt in common if outputs[prompt] != golden[prompt]]
    if differing and exact:
        prompt = differing[0]
        return CheckResult("golden", FAIL, divergence(prompt, golden[prompt], outputs[prompt], "vs golden"),
                           {**data, "prompt": prompt, "expected": golden[prompt], "got": outputs[prompt]})
    if differing:  # scored cells: another process flips near-ties too (H200); golden_scores judges each token
        prompt = differing[0]
        return CheckResult("golden", PASS, f"{len(common) - len(differing)}/{len(golden)} outputs match the golden ones "
                           f"for {model_id}; {len(differing)} differ ({divergence(prompt, golden[prompt], outputs[prompt], 'first')}"
                           "): a scored cell judges them by golden_scores", {**data, "differing": differing})
    return CheckResult("golden", PASS, f"{len(common)}/{len(golden)} outputs match the golden ones for {model_id}",
                       data)


@guarded("tool_call")
def check_tool_call(base_url: str, spec: SmokeSpec) -> CheckResult:
    """A tools request must come back as a structured tool_calls list. The "forced" recipe makes a
    random-weight model call deterministically: tool_choice "required" and a strict schema pin the
    envelope and argument keys, and logit_bias bans whitespace-only tokens and pushes '"', '}' and EOS
    so the string closes at once. It proves the image's parser and structured-output plumbing only."""
    if not spec.tools:
        return CheckResult("tool_call", SKIP, "tool calls not declared for this cell", {})
    cannot = spec.engine.tool_skip(spec.tool_recipe)
    if cannot:
        return CheckResult("tool_call", SKIP, f"recipe {spec.tool_recipe} on {spec.engine.name}: {cannot}",
                           {"recipe": spec.tool_recipe})
    if spec.tool_recipe == "forced":
        resp = generate(base_url, spec, 64, messages=user_message(TOOL_PROMPT), tool_choice="required",
                         tools=[{"type": "function", "function": {**TOOL, "strict": True}}],
                         logit_bias=_forced_bias(base_url, spec))
    else:  # generous budget: reasoning models think before they call
        resp = generate(base_url, spec, max(256, spec.max_tokens), messages=user_message(TOOL_PROMPT),
                         tools=[{"type": "function", "function": TOOL}], tool_choice="auto")
    choice = resp["choices"][0]
    calls = choice["message"].get("tool_calls") or []
    data = {"recipe": spec.tool_recipe, "finish_reason": choice.get("finish_reason"), "tool_calls": calls}
    if not calls:
        content = one_line(choice["message"].get("content") or "", 60)
        return CheckResult("tool_call", FAIL, f"no tool_calls (finish_reason {choice.get('finish_reason')!r}, "
                           f"content {content!r})", data)
    shown = []
    for call in calls:
        name, raw = call["function"]["name"], call["function"]["arguments"]
        try:
            args = json.loads(raw)
        except (TypeError, ValueError):
            why = f"arguments of {name!r} are not JSON: {one_line(str(raw), 60)!r}"
            return CheckResult("tool_call", FAIL, why, data)
        if name != TOOL["name"] or not isinstance(args, dict):
            return CheckResult("tool_call", FAIL, f"unexpected call {name!r} with {one_line(raw, 60)!r}", data)
        shown.append(f"{name}({json.dumps(args, ensure_ascii=False)})")
    return CheckResult("tool_call", PASS, f"{', '.join(shown)} (finish_reason {choice.get('finish_reason')!r}, "
                       f"recipe {spec.tool_recipe})", data)


def _forced_bias(base_url: str, spec: SmokeSpec) -> dict[str, int]:
    def ids(text: str) -> list[int]:
        body = spec.engine.tokenize_body(spec.served_name, text)
        return request_json(base_url, "/tokenize", spec.timeout, body)["tokens"]
    bias = {str(i): -100 for probe in WHITESPACE_PROBES for i in ids(probe)}
    for text in ('"', "}", spec.eos_text):
        tokens = ids(text)
        if len(tokens) != 1:
            raise ValueError(f"forced tool recipe: {text!r} is {len(tokens)} tokens, expected 1")
        bias[str(tokens[0])] = 100
    return bias


def context_problem(value: Any) -> str | None:
    """None for a context length a server can have (unknown, or 1..MAX_CONTEXT tokens); else what is
    impossible about it (0, 10**12, a string: the check fails with the value as evidence)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return f"max_model_len is not an integer: {one_line(repr(value), 80)}"
    if not 0 < value <= MAX_CONTEXT:
        return f"max_model_len {value} is outside 1..{MAX_CONTEXT}"
    return None


def usage_sane(usage: Any, max_tokens: int) -> str | None:
    """None when the usage block is consistent, else what is wrong with it."""
    if not isinstance(usage, dict):
        return f"no usage block ({usage!r})"
    values = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")]
    counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(counts) != len(values):
        return "usage counts are not integers: " + "/".join(repr(v) for v in values)
    prompt, completion, total = counts
    if not 0 < prompt <= MAX_CONTEXT:
        return f"prompt_tokens {prompt} outside 1..{MAX_CONTEXT}"
    if not 0 < completion <= max_tokens:
        return f"completion_tokens {completion} outside 1..{max_tokens}"
    if total != prompt + completion:
        return f"total_tokens {total} != {prompt} + {completion}"
    return None
