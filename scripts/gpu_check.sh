#!/usr/bin/env bash
# The GPU path in one command, for a machine with an NVIDIA GPU:
#   1. `anydepth doctor` (LibTorch, CUDA, driver, cuDNN, GPUs);
#   2. parity on CUDA against the official code (V2-S on two photos, V2-L on one): fp32
#      with TF32 off within 1e-4 of the depth range (exact preprocessing) and 1e-3 (on
#      the device); fp16 and bf16 against the official fp32, target 1e-2, beside the
#      official code's own error run the same way (fp16: weights cast; bf16: encoder
#      under autocast, head in fp32, TF32); fp16 replayed from CUDA graphs, within 1e-4
#      of the range of fp16 run eagerly; the photos in one run, each staged on the copy
#      stream while the one before runs (fp32; fp16 with CUDA graphs), within 1e-5
#      (1e-4) of the range of each run alone;
#   3. speed side by side with the official code (eager fp32, eager fp16; ours also fp16
#      with CUDA graphs): V2-S and V2-L at 518x518, batch 1 and 16, with the device
#      memory each held at the peak; a 1920x1080 photo end to end, and a folder of 48
#      copies of it in photos/s (`anydepth depth --batch 16`);
#   4. training on the GPU: `anydepth train` and `anydepth distill` (V2-S, batch 8 at
#      518x518) with their step times, beside the official PyTorch loop's;
#   5. the official fp16 under torch.compile, added to the speed table: last, since it
#      compiles for every model and batch, and a compiler failure must cost nothing else
#      (it is reported, and does not fail the check).
# Writes gpu_check.json, gpu_check.md, doctor.txt and doctor.json into --out (default
# out/gpu-check). Where there is no GPU it prints "no CUDA device", checks nothing, exits 0.
# `--device cpu --iters 1` runs the same steps on the CPU instead (one photo, V2-S, batch
# 1; step 5 only when `--sections` names it, since compiling there takes minutes): a
# rehearsal of the check, bundle and all, on a machine without a GPU.
#
#   scripts/gpu_check.sh                          # builds target/release first
#   scripts/gpu_check.sh --binary DIR/anydepth    # a built anydepth, anydepth-torch beside it
#   scripts/gpu_check.sh --binary .gpu/bin/anydepth   # after scripts/gpu_bundle.sh
#   scripts/gpu_check.sh --binary .gpu/bin/anydepth --device cpu --iters 1   # rehearsal
#
# Needs a Python with a CUDA torch and OpenCV (PYTHON, else .venv/bin/python, else python3)
# and the official code (the `depth_anything_v2` package of jkp-depth-anything-v2; where it
# cannot be installed, copy it into .gpu/site, which is put on PYTHONPATH).
# scripts/gpu_bundle.sh prepares .gpu/ for a machine without Rust, FFmpeg or a package
# index: binaries built without FFmpeg, the official code and two photos.
# Other flags go to scripts/bench/gpu_vs_official.py (--iters N, --no-compile,
# --sections parity,speed,end_to_end,training,compile).
set -euo pipefail

binary=""
out=out/gpu-check
device=cuda
passthrough=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$(realpath "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --device)
      case "${2:-}" in
        cuda|cpu) device=$2 ;;
        *) echo "error: --device takes cuda or cpu, not '${2:-}'" >&2; exit 2 ;;
      esac
      shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
python=${PYTHON:-}
# Absolute, but links kept: a virtual environment's python is a link to the system's,
# and only the link finds the environment's packages.
if [ -n "$python" ] && [ -e "$python" ]; then python=$(realpath -s "$python"); fi
cd "$(dirname "$0")/.."

if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
# A GPU: nvidia-smi lists one, or (without nvidia-smi) that Python's torch sees one.
gpus=$(nvidia-smi -L 2>/dev/null || true)
if [ "$device" = cuda ] && ! grep -q '^GPU' <<<"$gpus" &&
   ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "no CUDA device"
  exit 0
fi
if [ -d .gpu/site ]; then export PYTHONPATH=$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}; fi
if [ -z "${ANYDEPTH_DATA:-}" ] && [ ! -d ../shared/data/photos ] && [ -d .gpu/data/photos ]; then
  export ANYDEPTH_DATA=$PWD/.gpu/data
fi
if [ "$device" = cuda ] &&
   ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: $python has no CUDA torch, though nvidia-smi sees a GPU" >&2
  exit 2
fi

if [ -z "$binary" ]; then
  cargo build --release -p anydepth -p anydepth-torch-cli
  binary=$PWD/target/release/anydepth
else
  # A binary built elsewhere: its rpath may not exist here, so use this Python's LibTorch
  # (the same version it was built against, or it will not start).
  torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
[ -x "$(dirname "$binary")/anydepth-torch" ] || {
  echo "error: anydepth-torch must sit beside $binary" >&2; exit 2; }
# A binary that cannot start names its missing libraries here rather than failing below.
missing=$(ldd "$(dirname "$binary")/anydepth-torch" | grep 'not found' || true)
if [ -n "$missing" ]; then
  echo "error: anydepth-torch cannot start here; missing libraries:" >&2
  echo "$missing" >&2
  echo "(binaries from scripts/gpu_bundle.sh need only LibTorch, glibc and libstdc++)" >&2
  exit 2
fi

mkdir -p "$out"
"$binary" doctor | tee "$out/doctor.txt"
"$binary" doctor --json > "$out/doctor.json"
exec env PYTHONUNBUFFERED=1 "$python" scripts/bench/gpu_vs_official.py --anydepth "$binary" \
  --out "$out" --device "$device" ${passthrough[@]+"${passthrough[@]}"}
