#!/usr/bin/env python3
"""Side-by-side CPU timing: the whole `anydepth depth` command on one photo against the
official Depth Anything V2 `infer_image` (cv2.imread + infer_image on a model already in
memory), same libtorch (torch 2.11.0 from .venv), same machine, same checkpoint.

anydepth's time includes everything a user waits for: process start, reading the
checkpoint, decoding, preprocessing, the network, resizing back and writing the .npy.
Python's excludes interpreter start, `import torch` and loading the model.

Usage: .venv/bin/python scripts/bench/cpu_vs_official.py [--runs N] [--anydepth BIN] PHOTO...
Needs target/release/anydepth and .cache/reference (scripts/test.sh makes both)."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from depth_anything_v2.dpt import DepthAnythingV2

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--weights", default=str(ROOT / ".cache/reference/v2-vits/depth_anything_v2_vits.pth"))
    ap.add_argument("--anydepth", default=str(ROOT / "target/release/anydepth"),
                    help="the anydepth binary (default: target/release/anydepth)")
    ap.add_argument("photos", nargs="+")
    args = ap.parse_args()
    binary = Path(args.anydepth)
    if not binary.exists():
        sys.exit("build first: cargo build --release -p anydepth -p anydepth-torch-cli")
    torch.set_num_threads(os.cpu_count() or 1)
    model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, runs {args.runs} (median)")
    print("| photo | size | official infer_image (s) | anydepth depth, whole command (s) | ratio |")
    print("|---|---|---|---|---|")
    for photo in args.photos:
        raw = cv2.imread(photo)
        h, w = raw.shape[:2]
        with torch.no_grad():
            model.infer_image(raw)  # warm-up
        py = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            raw = cv2.imread(photo)
            with torch.no_grad():
                model.infer_image(raw)
            py.append(time.perf_counter() - t0)
        rs = []
        with tempfile.TemporaryDirectory() as out:
            cmd = [str(binary), "depth", photo, "--weights", args.weights, "--out", out,
                   "--formats", "npy", "--device", "cpu", "--force", "--quiet"]
            subprocess.run(cmd, check=True)  # warm-up (page cache)
            for _ in range(args.runs):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True)
                rs.append(time.perf_counter() - t0)
        p, r = statistics.median(py), statistics.median(rs)
        print(f"| {Path(photo).name} | {w}x{h} | {p:.3f} | {r:.3f} | {r / p:.2f}x |")


if __name__ == "__main__":
    main()
