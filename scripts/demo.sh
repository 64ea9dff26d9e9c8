#!/usr/bin/env bash
# Sets everything up, builds anydepth and turns the shipped example into depth maps.
# The first run downloads Depth Anything V2 Small (99 MB, Apache-2.0) from the Hugging
# Face hub into its cache; pass your own checkpoint with ANYDEPTH_WEIGHTS=FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p anydepth -p anydepth-torch-cli
weights=()
if [ -n "${ANYDEPTH_WEIGHTS:-}" ]; then weights=(--weights "$ANYDEPTH_WEIGHTS"); fi
target/release/anydepth depth assets/example.png --out out/example \
  --formats npy,png16,color,side-by-side --force "${weights[@]}"
echo "depth maps written to out/example/"
