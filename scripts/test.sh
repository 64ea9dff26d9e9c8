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
cargo test --workspace "$@"
cargo test -p anydepth-video --no-default-features
