#!/usr/bin/env bash
# The H200 proof of issue 19 (consistency), run through the device tool (no Docker there, no network): vLLM 0.20.2
# from staged wheels, the Llama-3-8B-shaped random model generated on the GPU, four servers resident on the one GPU,
# and the project's own `builder smoke --url` against each:
#   default   8001  the wheel as it is: consistency scored (teacher forcing), must pass
#   bi        8002  VLLM_BATCH_INVARIANT=1: --profile batch-invariant, exact, must pass
#   spec      8003  the model drafting for itself: --profile speculative, drafts accepted and consistent
#   garble    8004  the wheel with the sampler's rows mixed when batched and its logprobs drifted by a 5% logit
#                   scale (benchmarks/gpu/controls.py both, on PYTHONPATH): determinism must fail naming the token,
#                   golden_scores must fail against the default server's goldens while the golden texts match
# bi, spec and garble are checked with --golden (the default server's report): another process of the same wheel.
#
#   bash consistency_h200.sh stash N   # carry call N: keep .stage0N's chunk in /root/stash
#   bash consistency_h200.sh setup     # install, generate the model, start the four servers (setsid), staggered
#   bash consistency_h200.sh check     # builder smoke --url against each, reports to $OUT
# Run from the checkout root; the builder package and this script travel in .gpu/perf (benchmarks/gpu/stage_perf.sh).
set -u
MODE=${1:?stash N | setup | check}
P=$(pwd)/.gpu/perf
OUT=${OUT:-/tmp/h200-out}
SITE=/root/site OVL=/root/garble MODEL=/root/model LOGS=/root/logs
SHAPE=${SHAPE:-llama-8b-shape}
CELL=${CELL:-vllm-0.20.2-cu129-sm_90}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
mkdir -p "$OUT" "$LOGS"
source "$(dirname "$0")/common.sh"

serve() {  # name port util pythonpath [extra args...]
  local name=$1 port=$2 util=$3 path=$4; shift 4
  VLLM_CACHE_ROOT=/root/vcache/$name PYTHONPATH=$path setsid nohup timeout 1700 python3 -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name smoke --host 127.0.0.1 --port "$port" --max-model-len 1024 \
    --gpu-memory-utilization "$util" --seed 0 --enable-auto-tool-choice --tool-call-parser hermes "$@" \
    > "$LOGS/$name.log" 2>&1 < /dev/null &
}

case "$MODE" in
stash)
  stash_chunk "$2"
  ;;
setup)
  log "start; $(nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader)"
  install_wheels || exit 1
  generate_model || exit 1
  f=vllm/v1/sample/sampler.py
  rm -rf "$OVL" && mkdir -p "$OVL" && cp -rs "$SITE/vllm" "$OVL/vllm" && rm "$OVL/$f" && \
    python3 "$P/benchmarks/gpu/controls.py" both "$SITE/$f" "$OVL/$f" 1.05 | tee -a "$OUT/setup.log" || exit 1
  draft="{\"method\": \"draft_model\", \"model\": \"$MODEL\", \"num_speculative_tokens\": 4}"
  # Staggered: a server sizes its KV cache from the memory it sees while it profiles (../shared/GPU.md).
  for name in default bi spec garble; do
    case $name in
      default) serve default 8001 0.18 "$SITE" ;;
      bi) VLLM_BATCH_INVARIANT=1 serve bi 8002 0.18 "$SITE" ;;
      spec) serve spec 8003 0.3 "$SITE" --speculative-config "$draft" ;;
      garble) serve garble 8004 0.18 "$OVL:$SITE" ;;
    esac
    wait_kv_cache "$name"
  done
  wait_ready 300 8001 8002 8003 8004 || { for s in default bi spec garble; do echo "== $s" >> "$OUT/setup.log"; tail -30 "$LOGS/$s.log" >> "$OUT/setup.log"; done; exit 1; }
  nvidia-smi --query-gpu=memory.used --format=csv,noheader | tee -a "$OUT/setup.log"
  ;;
recover)  # restart, one at a time, each server that is not answering (a setup that started them together)
  draft="{\"method\": \"draft_model\", \"model\": \"$MODEL\", \"num_speculative_tokens\": 4}"
  for spec in "default 8001" "garble 8004" "bi 8002" "spec 8003"; do
    set -- $spec
    if curl -sf "http://127.0.0.1:$2/health" > /dev/null; then log "$1 answers"; continue; fi
    pkill -f -- "--port $2" ; sleep 3
    case $1 in
      default) serve default 8001 0.18 "$SITE" ;;
      bi) VLLM_BATCH_INVARIANT=1 serve bi 8002 0.18 "$SITE" ;;
      spec) serve spec 8003 0.3 "$SITE" --speculative-config "$draft" ;;
      garble) serve garble 8004 0.18 "$OVL:$SITE" ;;
    esac
    wait_ready "${READY_S:-150}" "$2" || { tail -5 "$LOGS/$1.log" | cut -c1-250 >> "$OUT/recover.log"; }
  done
  nvidia-smi --query-gpu=memory.used --format=csv,noheader | tee -a "$OUT/recover.log"
  ;;
check)
  wait_ready 30 8001 8004 || exit 1
  # The GPU cells' settings, with the generated model's tool recipe (random weights: forced) and a short sweep:
  # this run proves the checks, the sweep has its own proof.
  python3 - "$P/matrix.yaml" "$P/matrix-proof.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
anchor = '          sweep: {model: "generated:llama-8b-shape"}'
assert anchor in text
open(sys.argv[2], "w").write(text.replace(anchor, anchor + "\n          tool_recipe: forced", 1))
PY
  common=(--matrix "$P/matrix-proof.yaml" --cell "$CELL" --concurrency 1,4 --samples 2 --tokens 64 --json)
  for run in "default 8001" "garble 8004" "spec 8003 speculative" "bi 8002 batch-invariant"; do
    set -- $run
    curl -sf "http://127.0.0.1:$2/health" > /dev/null || { log "$1: not running, skipped"; continue; }
    started=$(date +%s)
    golden=(); [ "$1" = default ] || golden=(--golden "$OUT/smoke_default.json")
    builder smoke --url "http://127.0.0.1:$2" "${common[@]}" --server-log "$LOGS/$1.log" ${3:+--profile "$3"} \
      "${golden[@]}" > "$OUT/smoke_$1.json" 2> "$OUT/smoke_$1.err"
    log "$1: exit $? in $(( $(date +%s) - started )) s"
  done
  curl -s http://127.0.0.1:8003/metrics | grep "^vllm:spec_decode_num" > "$OUT/spec_metrics.txt"
  for s in default bi spec garble; do grep -h "Using .* backend\|batch.invariant\|Speculative" "$LOGS/$s.log" | head -4 | cut -c1-250 > "$OUT/log_$s.txt"; done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
