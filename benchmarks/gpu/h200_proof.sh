#!/usr/bin/env bash
# The H200 proof of issue 15, run through the device tool (no Docker there, no network): vLLM 0.20.2 from
# staged wheels, a Llama-3-8B-shaped random model generated on the GPU, three servers resident on the one
# GPU (A1 and A2: the same wheel; B: the same wheel with a fixed GPU delay injected by an overlay of one
# vLLM Python file on PYTHONPATH), and the project's own `builder smoke --url` against them.
#
#   bash h200_proof.sh stash N    # carry call N: keep .stage0N's chunk in /root/stash (the checkout is replaced per call)
#   bash h200_proof.sh setup      # install, generate the model, start the servers (setsid: they outlive the call), smoke A1
#   bash h200_proof.sh measure    # gate A/A (A2 vs A1) and A/B (B vs A1), ROUNDS times each
#
# Run from the checkout root; the builder package and this script travel in .gpu/perf (carry it).
# Everything is bounded by `timeout`; results go to $OUT (JSON, and a log).
set -u
MODE=${1:?stash N | setup | measure}
P=$(pwd)/.gpu/perf
OUT=${OUT:-/tmp/h200-out}
SITE=/root/site OVL=/root/overlay MODEL=/root/model LOGS=/root/logs
SHAPE=${SHAPE:-llama-8b-shape}
DELAY_CYCLES=${DELAY_CYCLES:-700000}   # about 0.35 ms at the H200's 1.98 GHz: ~8% of a 4.5 ms 7 B decode step
UTIL=${UTIL:-0.25}
# MAXLEN=16640: room for the sweep's 16 k-token prompts + 128 tokens (benchmarks/gpu/depth_floor.py, issue 20)
ROUNDS=${ROUNDS:-2}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
mkdir -p "$OUT" "$LOGS"
source "$(dirname "$0")/common.sh"

serve() {  # name port pythonpath
  VLLM_CACHE_ROOT=/root/vcache/$1 PYTHONPATH=$3 setsid nohup timeout 1500 python3 -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name smoke --host 127.0.0.1 --port "$2" --max-model-len "${MAXLEN:-512}" \
    --gpu-memory-utilization "$UTIL" --seed 0 --enable-auto-tool-choice --tool-call-parser hermes \
    > "$LOGS/$1.log" 2>&1 < /dev/null &
}

case "$MODE" in
stash)
  stash_chunk "$2"
  ;;
setup)
  log "start; $(nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv,noheader)"
  [ -d .stage06 ] && cp .stage06/part /root/stash/part.06
  n=$(ls /root/stash | wc -l); log "stash has $n chunks"; [ "$n" -eq "${CHUNKS:-6}" ] || { log "need ${CHUNKS:-6} chunks (.stage-manifest.json)"; exit 1; }
  for s in a1 a2 b; do grep -h -m2 "Error\|error" "$LOGS/$s.log" 2>/dev/null | grep -v "Traceback\|raise\|File " | cut -c1-300; done >> "$OUT/setup.log"
  install_wheels || exit 1
  generate_model || exit 1
  f=vllm/v1/worker/gpu_model_runner.py
  rm -rf "$OVL" && mkdir -p "$OVL" && cp -rs "$SITE/vllm" "$OVL/vllm" && rm "$OVL/$f" && \
    python3 "$P/benchmarks/gpu/inject_delay.py" "$SITE/$f" "$OVL/$f" "$DELAY_CYCLES" | tee -a "$OUT/setup.log" || exit 1
  # Staggered: a server sizes its KV cache from the memory it sees grow while it profiles, so another
  # server loading its weights at that moment makes it find none (seen: all three failed when started at once).
  for spec in "a1 8001 $SITE" "a2 8002 $SITE" "b 8003 $OVL:$SITE"; do
    set -- $spec; serve "$1" "$2" "$3"
    wait_kv_cache "$1"  # not "Error": vLLM's first line names OSError (a ulimit warning), which waited for nothing
  done
  log "servers started (A1 8001, A2 8002: the wheel; B 8003: the wheel + injected delay), utilization $UTIL each"
  if ! wait_ready 240 8001 8002 8003; then
    for s in a1 a2 b; do echo "== $s" >> "$OUT/setup.log"; tail -40 "$LOGS/$s.log" >> "$OUT/setup.log"; done
    exit 1
  fi
  nvidia-smi --query-gpu=memory.used,clocks.sm --format=csv,noheader | tee -a "$OUT/setup.log"
  T=200 builder smoke --url http://127.0.0.1:8001 --engine vllm --json > "$OUT/smoke_a1.json" 2> "$OUT/smoke_a1.err"
  log "builder smoke --url A1: exit $?"
  grep -h "Using .* backend\|CUDA graph\|async" "$LOGS/a1.log" | head -5 >> "$OUT/setup.log"
  ;;
measure)
  wait_ready 60 8001 8002 8003 || exit 1
  started=$(date +%s)
  for round in $(seq 1 "$ROUNDS"); do
    if [ "$round" -gt 1 ] && [ $(( $(date +%s) - started )) -gt "${BUDGET_S:-250}" ]; then
      log "round $round skipped: $(( $(date +%s) - started )) s used"; break
    fi
    T=200 builder smoke --url http://127.0.0.1:8002 --engine vllm --known-good-url http://127.0.0.1:8001 --json \
      > "$OUT/gate_aa$round.json" 2>> "$OUT/measure.log"
    log "A/A round $round: exit $?"
    T=200 builder smoke --url http://127.0.0.1:8003 --engine vllm --known-good-url http://127.0.0.1:8001 --json \
      > "$OUT/gate_ab$round.json" 2>> "$OUT/measure.log"
    log "A/B round $round: exit $?"
  done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
