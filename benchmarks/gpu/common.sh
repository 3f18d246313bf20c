# Shared by the H200 proof scripts (sourced; they set MODE, P, OUT and LOGS first): logging, the builder CLI from
# the carried checkout, and the waits for vLLM servers started as processes (../shared/GPU.md).
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/$MODE.log"; }
# cd: `python3 -m` puts the working directory first on sys.path, and the checkout root has its own builder/
builder() { (cd "$P" && PYTHONPATH="$P:$P/pydeps" timeout "${T:-300}" python3 -m builder "$@"); }

wait_ready() {  # deadline_s port...
  local deadline=$(( $(date +%s) + $1 )); shift
  for port in "$@"; do
    until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do
      if [ "$(date +%s)" -ge "$deadline" ]; then log "port $port not ready"; return 1; fi
      sleep 2
    done
    log "port $port ready"
  done
}

# Staggered starts: a server sizes its KV cache from the memory it sees while it profiles, so the next one may
# start only after that line. Never wait for the word "Error": vLLM's first line is a ulimit warning naming OSError.
wait_kv_cache() {  # name (its log is $LOGS/<name>.log)
  for _ in $(seq 120); do grep -q "Available KV cache memory\|EngineCore failed" "$LOGS/$1.log" 2>/dev/null && break; sleep 2; done
  log "$1: $(grep -m1 -o "Available KV cache memory.*\|EngineCore failed.*" "$LOGS/$1.log" | cut -c1-200)"
}

stash_chunk() {  # N: keep .stage0N's chunk in /root/stash (the checkout is replaced per call)
  mkdir -p /root/stash && cp ".stage0$1/part" "/root/stash/part.0$1" && ls -la /root/stash | tee -a "$OUT/stash.log"
}

install_wheels() {  # the staged chunks in /root/stash -> $SITE (once per machine)
  [ -d "$SITE/vllm" ] && return 0
  mkdir -p /root/wh && cat /root/stash/part.* | tar x -C /root/wh || return 1
  timeout 240 python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" /root/wh/*.whl || return 1
  log "installed $(ls /root/wh | wc -l) wheels"
}

generate_model() {  # the $SHAPE random model in $MODEL (once per machine)
  # Run alone, as the image path mounts it: beside builder/smoke/ its directory would shadow packages
  # (transformers imports one named `kernels`).
  cp "$P/builder/smoke/tinymodel.py" /root/tinymodel.py
  [ -f "$MODEL/model.safetensors" ] || timeout 300 python3 /root/tinymodel.py "$MODEL" --shape "$SHAPE" --device cuda \
    > "$OUT/model.json" || return 1
  log "model: $(head -c 300 "$OUT/model.json")"
}
