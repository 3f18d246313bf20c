"""Determinism of greedy decoding: sequential vs N concurrent over a running llama-server.
    python3 dettest.py BASE_URL NAME
Prints one JSON line: the factory check (builder.smoke.checks.check_determinism, main's API) and a
token-level comparison via /completion (first differing token index, top-2 logprob gap there)."""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from builder.engines import llamacpp
from builder.smoke.checks import check_determinism
from builder.smoke.openai import DEFAULT_PROMPTS, SmokeSpec

base, name = sys.argv[1], sys.argv[2]
res = {"name": name}
spec = SmokeSpec(served_name="smoke", engine=llamacpp)
t0 = time.time()
chk, _ = check_determinism(base, spec)
res["factory_check"] = {"status": chk.status, "evidence": chk.evidence, "s": round(time.time() - t0, 2)}

def comp(p):
    r = requests.post(base + "/completion", json={"prompt": p, "n_predict": 32, "temperature": 0, "seed": 0,
                                                  "n_probs": 2, "return_tokens": True}, timeout=60).json()
    probs = r.get("completion_probabilities") or []
    toks = [x["id"] for x in probs]
    gaps = []
    for x in probs:
        top = x.get("top_logprobs") or x.get("top_probs") or []
        lp = [t.get("logprob", t.get("prob")) for t in top]
        gaps.append(round(lp[0] - lp[1], 6) if len(lp) >= 2 else None)
    return {"toks": toks, "gaps": gaps, "tps": r.get("timings", {}).get("predicted_per_second"), "text": r.get("content")}

prompts = list(DEFAULT_PROMPTS)
seq = [comp(p) for p in prompts]
res["seq_tps_median"] = sorted(s["tps"] or 0 for s in seq)[len(seq) // 2]
res["min_gap_seq"] = min(g for s in seq for g in s["gaps"] if g is not None) if seq[0]["gaps"] else None
rounds = []
for rep in range(3):
    with ThreadPoolExecutor(6) as pool:
        conc = list(pool.map(comp, prompts))
    diffs = []
    for i, (a, b) in enumerate(zip(seq, conc)):
        if a["toks"] != b["toks"]:
            k = next((j for j, (x, y) in enumerate(zip(a["toks"], b["toks"])) if x != y), min(len(a["toks"]), len(b["toks"])))
            diffs.append({"prompt": i, "first_token": k, "seq_gap_there": a["gaps"][k] if k < len(a["gaps"]) else None,
                          "conc_gap_there": b["gaps"][k] if k < len(b["gaps"]) else None})
    rounds.append({"differ": len(diffs), "of": len(prompts), "diffs": diffs,
                   "conc_tps_median": sorted(c["tps"] or 0 for c in conc)[3]})
res["concurrent"] = rounds
# sequential repeat (prompt cache hit path)
seq2 = [comp(p) for p in prompts]
res["seq_repeat_differ"] = sum(a["toks"] != b["toks"] for a, b in zip(seq, seq2))
print(json.dumps(res), flush=True)
