#!/usr/bin/env bash
# Sets up everything anydepth needs to build and test, in the project directory:
#   .venv/            Python virtual environment with torch 2.11.0 (its libtorch is what tch links)
#   .venv/torch       symlink to the venv's torch package (LIBTORCH in .cargo/config.toml)
#   apt packages      FFmpeg's development libraries and libclang (crates/video), libusb,
#                     Node.js and npm, Chromium (the web page's test)
#   scripts/node/node_modules  three.js (the service's web page), the Khronos
#                     glTF-Validator and puppeteer-core (tests), pinned by
#                     scripts/node/package-lock.json
# Idempotent: a second run checks versions and returns in a few seconds.
#
#   scripts/setup.sh            runtime + reference packages (tests, benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
VENV=.venv
PY=${PYTHON:-python3}
STAMP="$VENV/.anydepth-setup"
want=$(cat scripts/requirements.txt scripts/jkp-version.txt scripts/da3-requirements.txt | sha256sum | cut -d' ' -f1)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v "$PY" >/dev/null 2>&1; then
  say "python3 not found; installing it with apt-get"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install Rust first (https://rustup.rs), then run this script again"
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PY" -m venv "$VENV" || {
    say "python3 -m venv failed; installing python3-venv with apt-get"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  }
fi

# Open3D (a reference in the geometry tests) needs libusb to import.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  say "installing libusb-1.0-0 with apt-get (needed by the open3d package)"
  apt-get update -qq && apt-get install -y -qq libusb-1.0-0 libgomp1 libgl1 >/dev/null
fi

# crates/video links FFmpeg's libraries (5.1 on Debian 12); ffmpeg-sys-next generates its
# bindings with bindgen, which needs libclang. Only missing packages are installed.
ffmpeg_packages="libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev libavfilter-dev libclang-dev clang pkg-config"
missing=""
for package in $ffmpeg_packages; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing="$missing $package"
done
if [ -n "$missing" ]; then
  say "installing FFmpeg's development libraries and libclang with apt-get:$missing"
  # shellcheck disable=SC2086 # one word per package
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
fi

# Node.js runs the glTF-Validator in the tests; npm installs it and three.js.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm with apt-get"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# Chromium runs the service's web page headless in its test (scripts/node/web_check.mjs,
# WebGL on SwiftShader: no GPU needed).
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium with apt-get (the web page's test)"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
node_want=$(sha256sum scripts/node/package-lock.json | cut -d' ' -f1)
node_stamp=scripts/node/node_modules/.anydepth-setup
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  say "installing the Node packages of scripts/node/package-lock.json"
  npm ci --prefix scripts/node --no-audit --no-fund --loglevel=error >/dev/null
  echo "$node_want" > "$node_stamp"
fi

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "installing torch==$TORCH_VERSION and the reference packages (about a minute, once)"
  "$VENV/bin/python" -m pip install -q --no-cache-dir --upgrade pip
  "$VENV/bin/python" -m pip install -q --no-cache-dir -r scripts/requirements.txt
  # The official Depth Anything V2 code, repackaged unchanged; its own pins are too strict.
  "$VENV/bin/python" -m pip install -q --no-cache-dir --no-deps jkp-depth-anything-v2==$(cat scripts/jkp-version.txt)
  # Depth Anything 3's official code and exactly what `import depth_anything_3.api` needs, pinned
  # (scripts/da3-requirements.txt): the package itself pins numpy<2 and pulls in servers and xformers.
  "$VENV/bin/python" -m pip install -q --no-cache-dir --no-deps -r scripts/da3-requirements.txt
  echo "$want" > "$STAMP"
fi

site=$("$VENV/bin/python" - <<'PY'
import sysconfig; print(sysconfig.get_paths()["purelib"])
PY
)
if [ ! -e "$VENV/torch" ] || [ "$(readlink "$VENV/torch")" != "$site/torch" ]; then
  ln -sfn "$site/torch" "$VENV/torch"
fi
have=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
case "$have" in
  "$TORCH_VERSION"*) ;;
  *) say "expected torch $TORCH_VERSION in $VENV, found $have: remove $VENV and run again"; exit 1 ;;
esac
say "ready: torch $have at $VENV/torch"
