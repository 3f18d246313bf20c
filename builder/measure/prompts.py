"""Prompts of an exact token length for the sweep's depth axis, made of token ids from the server's own tokenizer.

How: the sweep's prose prompts are tokenized once by the server under test (/tokenize, without special
tokens), which gives a pool of ordinary token ids; a prompt of depth d is d ids: a key written in the pool's
digits (least significant first) followed by the pool repeated. The server is sent the ids themselves
(`prompt` as a list, which both engines' /v1/completions take), so it processes exactly d tokens: no
tokenizer round trip can merge or split them. Every request of a sweep gets its own key, so its first tokens
differ from any earlier prompt's and neither vLLM's prefix cache nor llama-server's slot cache can serve a
prompt from memory (llama-server at most reuses the one leading token two keys may share).

Depth 0 is not a token prompt: it is the short prose prompts, as before depths existed.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.engines import EngineModule
from builder.smoke.openai import ServerError, request_json

MAX_DEPTH = 1 << 20  # 1 M tokens: the longest context a seed user runs


def token_pool(base_url: str, served_name: str, engine: EngineModule, texts: Sequence[str],
               timeout: float = 30.0) -> tuple[int, ...]:
    """Distinct ordinary token ids of `texts`, in first-seen order, from the server's /tokenize; ServerError
    (one line) when the server has none or answers nonsense."""
    answer = request_json(base_url, "/tokenize", timeout, engine.tokenize_body(served_name, " ".join(texts)))
    tokens = answer.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                               for t in tokens):
        raise ServerError("POST /tokenize: the answer has no list of token ids")
    pool = tuple(dict.fromkeys(tokens))
    if len(pool) < 8:
        raise ServerError(f"POST /tokenize: only {len(pool)} distinct tokens, too few to vary prompts")
    return pool


def depth_prompt(pool: Sequence[int], depth: int, key: int) -> list[int]:
    """`depth` token ids that begin with `key` written in the pool's digits.

    >>> depth_prompt((10, 11, 12), 6, 5)  # 5 = 2 + 1*3: digits 12, 11, then the pool repeated
    [12, 11, 10, 11, 12, 10]
    """
    if not 0 < depth <= MAX_DEPTH or key < 0 or not pool:
        raise ValueError(f"depth_prompt needs 0 < depth <= {MAX_DEPTH}, key >= 0 and a pool")
    head = [pool[key % len(pool)]]
    key //= len(pool)
    while key:
        head.append(pool[key % len(pool)])
        key //= len(pool)
    ids = head + [pool[i % len(pool)] for i in range(depth)]
    return ids[:depth]
