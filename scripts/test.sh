#!/usr/bin/env bash
# Sets everything up and runs the whole test suite, as CI does.
#   1. scripts/setup.sh: torch 2.11.0 and the reference packages in .venv (once)
#   2. reference checkpoints and outputs from the official code into .cache/reference
#      (Depth Anything V1/V2, and Video Depth Anything in .cache/reference/video)
#      (once; reused while scripts/reference/make_references.py keeps its VERSION)
#   3. cargo test, with missing references or data treated as failures
#   4. the video crate's tests once more without FFmpeg (the GPU bundle's build)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python scripts/reference/make_references.py
.venv/bin/python scripts/reference/video_reference.py
.venv/bin/python scripts/reference/da3_reference.py
export ANYDEPTH_REQUIRE_REFERENCES=1
# Tests run as many at a time as there are cores, and each LibTorch inside starts an
# OpenMP team as wide as the machine. With OpenMP's default waiting, idle threads spin and
# starve the other teams: on 2 cores, two training runs at once took 171 s instead of 51 s
# with passive waiting, and the suite 37 min instead of 23 (docs/BENCHMARKS.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cargo test --workspace "$@"
cargo test -p anydepth-video --no-default-features
