#!/usr/bin/env bash
# Load and fault figures of `anydepth serve` on this machine (docs/BENCHMARKS.md), all on
# 127.0.0.1:
#   1. throughput and p50/p99 latency of POST /v1/depth?format=npy for CLIENTS concurrent
#      clients and REQUESTS requests, with batching off (--batch 1) and on (--batch 4);
#   2. resident memory over 200 requests of a 4K (3840x2160) photo;
#   3. the bad-request catalogue: each answer's status, then /healthz still answers.
# Needs oha (`cargo install oha --locked`) and curl; the photo and the 4K photo are made
# from ../shared/data/photos with the project's Python (Pillow).
#
# Usage: scripts/bench/serve_load.sh [WEIGHTS] [REQUESTS] [CLIENTS]
#   WEIGHTS   default .cache/reference/v2-vits/depth_anything_v2_vits.pth (random weights)
#   BINARY    environment: the anydepth binary (default target/release/anydepth)
set -euo pipefail
cd "$(dirname "$0")/../.."

WEIGHTS=${1:-.cache/reference/v2-vits/depth_anything_v2_vits.pth}
REQUESTS=${2:-48}
CLIENTS=${3:-8}
BINARY=${BINARY:-target/release/anydepth}
PHOTO=${PHOTO:-../shared/data/photos/demo08.jpg}
PORT=${PORT:-18431}
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=""

command -v oha >/dev/null || { echo "oha not found: cargo install oha --locked" >&2; exit 2; }
[ -x "$BINARY" ] || { echo "$BINARY not found: cargo build --release -p anydepth -p anydepth-torch-cli" >&2; exit 2; }

URL="http://127.0.0.1:$PORT"

start() {  # start [serve options...]: starts the service and waits for /healthz
  "$BINARY" serve --weights "$WEIGHTS" --device cpu --port "$PORT" -q "$@" \
    2>"$WORK/serve.log" &
  PID=$!
  for _ in $(seq 1 600); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "the service did not answer /healthz within 60 s" >&2
  exit 1
}

stop() {  # SIGTERM, then the exit code must be 0
  kill -TERM "$PID"
  local code=0
  wait "$PID" || code=$?
  echo "  service stopped on SIGTERM with exit code $code"
  PID=""
}

load() {  # load LABEL [serve options...]
  local label=$1
  shift
  start "$@"
  # One warm-up request, not counted.
  curl -sf -o /dev/null --data-binary "@$PHOTO" "$URL/v1/depth?format=npy"
  oha --no-tui -n "$REQUESTS" -c "$CLIENTS" -m POST -D "$PHOTO" \
    --output-format json "$URL/v1/depth?format=npy" >"$WORK/$label.json"
  "${PYTHON:-.venv/bin/python}" - "$WORK/$label.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(r.get("errorDistribution", {}).values())
print(f"  {sys.argv[2]}: {s['requestsPerSec']:.2f} requests/s, p50 {p['p50'] * 1000:.0f} ms, "
      f"p99 {p['p99'] * 1000:.0f} ms, statuses {codes}, errors {errors}")
PY
  curl -s "$URL/metrics" | grep -E '^anydepth_batch_size_(sum|count)' | tr '\n' ' '
  echo
  stop
}

echo "photo $PHOTO, $REQUESTS requests from $CLIENTS clients, weights $WEIGHTS"
load "batch-1" --batch 1 --queue 256
load "batch-4" --batch 4 --batch-wait-ms 20 --queue 256

echo "memory over 200 requests of a 4K photo (--batch 4, --queue 16, 4 clients)"
"${PYTHON:-.venv/bin/python}" - "$PHOTO" "$WORK/4k.jpg" <<'PY'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").resize((3840, 2160), Image.BICUBIC).save(sys.argv[2], quality=92)
PY
start --batch 4 --batch-wait-ms 20 --queue 16
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$PID/status"; }
echo "  after start: $(rss)"
for round in 1 2 3 4; do
  oha --no-tui -n 50 -c 4 -m POST -D "$WORK/4k.jpg" --output-format json \
    "$URL/v1/depth?format=npy" >"$WORK/4k-$round.json"
  ok=$("${PYTHON:-.venv/bin/python}" -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get('statusCodeDistribution'))" "$WORK/4k-$round.json")
  echo "  after $((round * 50)) requests: $(rss) (statuses $ok)"
done
echo "  peak: $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$PID/status")"
stop

echo "bad requests (--max-body 1 MiB)"
start --max-body 1048576
head -c 2000000 /dev/urandom >"$WORK/big.bin"
head -c 3000 "$PHOTO" >"$WORK/truncated.jpg"
printf 'not an image at all' >"$WORK/garbage.bin"
"${PYTHON:-.venv/bin/python}" - "$WORK/bomb.png" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\0" * 1000)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
PY
ask() {  # ask LABEL FILE URL
  local status
  status=$(curl -s -o "$WORK/answer" -w '%{http_code}' --data-binary "@$2" "$3")
  echo "  $1: $status $(head -c 120 "$WORK/answer")"
}
ask "body over --max-body" "$WORK/big.bin" "$URL/v1/depth?format=npy"
ask "undecodable" "$WORK/garbage.bin" "$URL/v1/depth?format=npy"
ask "truncated JPEG" "$WORK/truncated.jpg" "$URL/v1/depth?format=npy"
ask "decompression bomb (100000 x 100000 PNG)" "$WORK/bomb.png" "$URL/v1/depth?format=npy"
ask "unknown format" "$PHOTO" "$URL/v1/depth?format=tiff"
ask "relative model, no scale" "$PHOTO" "$URL/v1/mesh?format=glb"
echo "  then /healthz: $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
stop
