#!/bin/bash
# The llama.cpp GPU proof on the device machine (nvidia-h200: nvcc 13.0, CMake, ninja, 16 cores, no
# network, no Docker). Run from the repository root with .gpu/llama carried:
#   .gpu/llama/{llama-src.tar.gz, tiny-f32.gguf, cmake-options.txt, pkg/builder, matrix.yaml, run.sh, smoke_url.py}
# cmake-options.txt is builder.engines.llamacpp.cmake_options() of the sm_90 cell, one per line: the
# options the factory renders into that cell's Dockerfile.
#   bash .gpu/llama/run.sh [POLL_SECONDS]
# The build runs under setsid nohup in /root/llama, so a second call can pick it up.
set -uo pipefail
here=$(realpath .gpu/llama); work=/root/llama; poll=${1:-360}; out=${OUT:-/tmp/out}
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
# Where the toolchain is (not what is built): the machine's cuBLAS if the toolkit has none.
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
for _ in $(seq 1 "$poll"); do [ -f "$work/build.rc" ] && break; sleep 1; done
cp "$work/build.log" "$out/build.log" 2>/dev/null; tail -3 "$work/ninja.log" 2>/dev/null
if [ ! -f "$work/build.rc" ]; then echo "build still running: $(tail -1 "$work/ninja.log")"; exit 75; fi
cat "$work/build.log"
[ "$(cat "$work/build.rc")" = 0 ] || { tail -40 "$work/ninja.log" > "$out/ninja-tail.log"; exit 1; }
bin=$work/llama.cpp/build/bin
cd "$work"  # python3 -m puts the cwd first on sys.path: the carried builder must win over the checkout's
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$out/gpu.txt"
cuobjdump --list-elf "$bin"/libggml-cuda.so* > "$out/cuobjdump-list-elf.txt" 2>&1; head -3 "$out/cuobjdump-list-elf.txt"; wc -l < "$out/cuobjdump-list-elf.txt"
python3 -m builder audit "$bin" --arch sm_90 --engine llama.cpp --matrix "$here/matrix.yaml" --json > "$out/audit-sm_90.json"; echo "audit sm_90 rc=$?"
python3 -m builder audit "$bin" --arch sm_121a --engine llama.cpp --matrix "$here/matrix.yaml" > "$out/audit-sm_121a-expected-fail.txt"; echo "audit sm_121a rc=$? (expected 1)"
python3 - "$out/audit-sm_90.json" <<'PY'
import json, sys; r = json.load(open(sys.argv[1])); print({k: r[k] for k in r if k in ("ok", "summary", "arch")})
PY
mapfile -t serve < <(python3 -c "
import sys; from builder.engines import llamacpp; from builder.matrix.load import load_matrix
s = load_matrix('$here/matrix.yaml').engines['llama.cpp'].smoke_for('sm_90')
print('\n'.join(llamacpp.server_args(model='$here/tiny-f32.gguf', served_name='smoke', port=18080, extra=s.args)))")
echo "llama-server ${serve[*]}" | tee "$out/server-cmd.txt"
t0=$(date +%s.%N)
"$bin/llama-server" "${serve[@]}" > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/health)" = 200 ] && break; sleep 0.1; done
echo "ready after $(python3 -c "import time; print(round(time.time() - $t0, 2))") s" | tee "$out/ready.txt"
python3 "$here/smoke_url.py" http://127.0.0.1:18080 "$here/matrix.yaml" sm_90 > "$out/smoke-sm_90.json"; echo "smoke rc=$?"
python3 -c "import json; [print(c['status'], c['name'], c['evidence']) for c in json.load(open('$out/smoke-sm_90.json'))['checks']]"
grep -E "offload|CUDA0|ggml_cuda_init|compute capability" "$out/server.log" | head -8
kill $pid; wait $pid 2>/dev/null
exit 0
