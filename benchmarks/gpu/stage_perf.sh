#!/usr/bin/env bash
# Copy what the H200 proof needs into the session checkout's .gpu/perf (git-ignored there), which the
# device tool carries: this branch's builder package, benchmarks/gpu, and the docker SDK wheel unpacked
# (the CLI imported it at start when the H200 run was made; `smoke --url` no longer needs it, and a test
# keeps it so; the GPU machine has no Docker and no package registry).
#   bash benchmarks/gpu/stage_perf.sh /work/main
set -eu
dest=${1:?checkout root}/.gpu/perf
here=$(cd "$(dirname "$0")/../.." && pwd)
grep -qx '/.gpu/' "$1/.git/info/exclude" 2>/dev/null || echo /.gpu/ >> "$1/.git/info/exclude"
rm -rf "$dest" && mkdir -p "$dest/benchmarks" "$dest/pydeps"
cp -r "$here/builder" "$dest/builder" && cp -r "$here/benchmarks/gpu" "$dest/benchmarks/gpu" && cp "$here/matrix.yaml" "$dest/matrix.yaml"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" docker==7.1.0
python3 -m zipfile -e "$tmp"/docker-*.whl "$dest/pydeps"
rm -rf "$tmp"
du -sh "$dest"
