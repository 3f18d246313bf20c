#!/bin/bash
# Determinism experiments: build as run.sh does, then serve several GGUF/flag configs and run dettest.py on each.
#   bash .gpu/llama/det.sh [POLL_SECONDS] [CONFIG_FILTER_REGEX]
set -uo pipefail
here=$(realpath .gpu/llama); work=${WORK:-/root/llama}; poll=${1:-360}; out=${OUT:-/tmp/out}
mkdir -p "$work" "$out"
export PYTHONPATH=$here/pkg
if [ ! -f "$work/build.started" ]; then
  tar -xzf "$here/llama-src.tar.gz" -C "$work"
  cp "$here/cmake-options.txt" "$work/"
  cat > "$work/build.sh" <<'INNER'
#!/bin/bash
set -uo pipefail
cd /root/llama/llama.cpp
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cuda_root=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
extra=()
if ! compgen -G "$cuda_root/lib64/libcublas.so*" >/dev/null && ! compgen -G "$cuda_root/targets/*/lib/libcublas.so*" >/dev/null; then
  lib=$(python3 -c 'import glob,os,site
for s in site.getsitepackages():
    for p in sorted(glob.glob(os.path.join(s,"nvidia","**","libcublas.so*"),recursive=True)): print(os.path.dirname(p)); raise SystemExit')
  inc=$(dirname "$lib")/include
  echo "cuBLAS from the wheel: $lib"
  extra+=("-DCUDA_cublas_LIBRARY=$(ls "$lib"/libcublas.so* | head -1)" "-DCUDA_cublasLt_LIBRARY=$(ls "$lib"/libcublasLt.so* | head -1)"
          "-DCMAKE_CUDA_FLAGS=-I$inc" "-DCMAKE_CXX_FLAGS=-I$inc" "-DCMAKE_BUILD_RPATH=$lib")
else
  echo "cuBLAS from the toolkit: $cuda_root"
fi
mapfile -t opts < /root/llama/cmake-options.txt
echo "cmake $(cmake --version | head -1), $("$nvcc" --version | grep -o 'release [0-9.]*'), $(nproc) cores"
start=$(date +%s)
cmake -S . -B build -G Ninja "-DCMAKE_CUDA_COMPILER=$nvcc" "${opts[@]}" "${extra[@]}" > /root/llama/configure.log 2>&1 \
  || { tail -30 /root/llama/configure.log; echo "configure failed"; exit 1; }
grep -E 'CMAKE_CUDA_ARCHITECTURES|Replacing|CUDA Toolkit|cuBLAS' /root/llama/configure.log
cmake --build build --target llama-server -j "$(nproc)" > /root/llama/ninja.log 2>&1
rc=$?
echo "configure+build took $(( $(date +%s) - start )) s, rc=$rc"
ls -la build/bin/llama-server build/bin/*.so* 2>&1
exit $rc
INNER
  touch "$work/build.started"
  (cd "$work" && setsid nohup bash -c 'bash /root/llama/build.sh > /root/llama/build.log 2>&1; echo $? > /root/llama/build.rc' >/dev/null 2>&1 &)
fi
T0=$(date +%s)
filter=${2:-.}
mkdir -p "$out/logs"
if [ ! -f "$work/models.started" ]; then
  touch "$work/models.started"
  (cd "$work" && setsid nohup bash -c "nice -n 10 python3 $here/gen_models.py $here/pkg $work/llama.cpp $work/models > $work/models.log 2>&1; echo \$? > $work/models.rc" >/dev/null 2>&1 &)
fi
for _ in $(seq 1 "$poll"); do [ -f "$work/build.rc" ] && break; sleep 1; done
cp "$work/build.log" "$out/build.log" 2>/dev/null
if [ ! -f "$work/build.rc" ]; then echo "build still running: $(tail -1 "$work/ninja.log")"; cp $work/models.log $out/ 2>/dev/null; exit 75; fi
cat "$work/build.log"
[ "$(cat "$work/build.rc")" = 0 ] || { tail -40 "$work/ninja.log" > "$out/ninja-tail.log"; exit 1; }
for _ in $(seq 1 120); do [ -f "$work/models.rc" ] && break; sleep 1; done
cat "$work/models.log" | tee "$out/models.log" | grep -v Warn | tail -8
bin=$work/llama.cpp/build/bin
cd "$work"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$out/gpu.txt"
M32=$here/tiny-f32.gguf; M=$work/models
BASE=(--parallel 4 -c 2048 -ngl 99 --jinja)
i=0
run_cfg() {  # NAME ENV(or -) MODEL ARGS...
  local name=$1 envs=$2 model=$3; shift 3
  echo "$name" | grep -Eq "$filter" || return 0
  [ -f "$model" ] || { echo "{\"name\": \"$name\", \"error\": \"no model $model\"}" >> "$out/results.jsonl"; return 0; }
  i=$((i+1)); local port=$((18080+i)) log=$out/logs/$name.log
  local envv=(); [ "$envs" != - ] && envv=($envs)
  echo "$name: ${envv[*]} llama-server -m $model --host 127.0.0.1 --port $port --alias smoke $*" | tee -a "$out/commands.txt"
  local t0=$(date +%s.%N)
  env "${envv[@]}" "$bin/llama-server" -m "$model" --host 127.0.0.1 --port $port --alias smoke "$@" > "$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/health)" = 200 ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  local ready=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
  timeout 90 python3 "$here/dettest.py" http://127.0.0.1:$port "$name" > "$out/logs/$name.json" 2> "$out/logs/$name.err"
  python3 - "$out/logs/$name.json" "$ready" "$*" "${envv[*]}" "$model" >> "$out/results.jsonl" <<'PY'
import json, sys
try: r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e: r = {"error": repr(e)}
r.update(ready_s=float(sys.argv[2]), args=sys.argv[3], env=sys.argv[4], model=sys.argv[5].rsplit("/", 1)[-1]); print(json.dumps(r))
PY
  kill $pid; wait $pid 2>/dev/null
  python3 - "$out/results.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
fc = r.get("factory_check", {}); c = r.get("concurrent", [])
print(f"  ready {r.get('ready_s')} s | factory {fc.get('status')}: {fc.get('evidence','')[:150]} | conc differ {[x['differ'] for x in c]} "
      f"first tok {[d['first_token'] for x in c for d in x['diffs']][:8]} gaps {[d['seq_gap_there'] for x in c for d in x['diffs']][:4]} | seq2 differ {r.get('seq_repeat_differ')} | tps {r.get('seq_tps_median')} min_gap {r.get('min_gap_seq')} {r.get('error','')}")
PY
  grep -E "flash_attn|Flash Attention|assigned to device|offloaded|kv_unified|n_ubatch|graph splits|CUDA0 (model|KV|compute)" "$log" | sed 's/^/    /' | head -12
}
run_cfg hd32-base - $M32 "${BASE[@]}"
run_cfg hd128f32-base - $M/hd128-f32.gguf "${BASE[@]}"
run_cfg hd32-ub1 - $M32 "${BASE[@]}" -ub 1
run_cfg hd128f32-ub1 - $M/hd128-f32.gguf "${BASE[@]}" -ub 1
run_cfg hd32-fa-on - $M32 "${BASE[@]}" -fa on
run_cfg hd64f32-base - $M/hd64-f32.gguf "${BASE[@]}"
run_cfg hd128f16-base - $M/hd128-f16.gguf "${BASE[@]}"
run_cfg hd32-np1 - $M32 --parallel 1 -c 2048 -ngl 99 --jinja
run_cfg hd128f32-fa-off - $M/hd128-f32.gguf "${BASE[@]}" -fa off
run_cfg hd128f16-ub1 - $M/hd128-f16.gguf "${BASE[@]}" -ub 1
run_cfg hd32-kvu - $M32 "${BASE[@]}" --kv-unified
run_cfg hd128f32-kvu - $M/hd128-f32.gguf "${BASE[@]}" --kv-unified
run_cfg hd32-nocb - $M32 "${BASE[@]}" -nocb
run_cfg hd128f16-cublas32 GGML_CUDA_CUBLAS_COMPUTE_TYPE=f32 $M/hd128-f16.gguf "${BASE[@]}"
run_cfg hd32-cpu - $M32 --parallel 4 -c 2048 -ngl 0 -nkvo --no-op-offload --jinja
echo "experiments done, $(( $(date +%s) - T0 )) s since start"
exit 0
