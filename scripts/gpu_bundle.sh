#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has a CUDA PyTorch 2.11 but
# no Rust toolchain, no FFmpeg and no package index, into .gpu/ (ignored by git):
#   .gpu/bin/anydepth, .gpu/bin/anydepth-torch  release binaries built without FFmpeg
#                         (`--no-default-features`), so they need only glibc, libstdc++
#                         and LibTorch at run time; stripped; with CUDA graphs
#   .gpu/site/depth_anything_v2                 the official code (from .venv)
#   .gpu/data/photos                            two of the shared photos, for parity
# Then, on the GPU machine, from a copy of the repository holding .gpu/:
#   scripts/gpu_check.sh --binary .gpu/bin/anydepth --out OUT
# The binaries load the LibTorch of the Python there (it must be torch 2.11.0, as here:
# the CUDA shim refuses another version).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
target=target/gpu-bundle
cargo build --release --no-default-features -p anydepth -p anydepth-torch-cli \
  --target-dir "$target"
rm -rf .gpu
mkdir -p .gpu/bin .gpu/site .gpu/data/photos
for name in anydepth anydepth-torch; do
  cp "$target/release/$name" .gpu/bin/
  strip .gpu/bin/$name
done
for name in anydepth anydepth-torch; do
  libraries=$(ldd .gpu/bin/$name)
  if grep -q 'libav' <<<"$libraries"; then
    echo "error: .gpu/bin/$name still links FFmpeg" >&2
    exit 1
  fi
done
# The CUDA shim (graphs, copy stream) is compiled only where the CUDA headers were found (see
# crates/torch/build.rs): without it the check's graph rows would fail on the GPU, and
# uploads would not overlap the network.
if .gpu/bin/anydepth doctor | grep -q 'has no CUDA shim'; then
  echo "error: .gpu/bin/anydepth-torch was built without the CUDA shim (see cargo's warnings)" >&2
  exit 1
fi
official=$(.venv/bin/python -c 'import os, depth_anything_v2; print(os.path.dirname(depth_anything_v2.__file__))')
cp -r "$official" .gpu/site/
find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
data=${ANYDEPTH_DATA:-../shared/data}
copied=0
while IFS= read -r photo; do
  cp "$photo" .gpu/data/photos/
  copied=$((copied + 1))
done < <(find "$data/photos" -maxdepth 1 -name '*.jpg' 2>/dev/null | sort | head -n 2)
if [ "$copied" -eq 0 ]; then
  echo "note: no photos in $data/photos; the check will generate its own" >&2
fi
du -sh .gpu
echo "ready: scripts/gpu_check.sh --binary .gpu/bin/anydepth --out OUT (with .gpu copied along)"
