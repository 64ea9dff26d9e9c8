#!/usr/bin/env python3
"""Start-up time of anydepth: `--version` and small geometry-only commands, whole processes.

For each binary given, runs (interleaved, after one warm-up round)

    anydepth --version
    anydepth cloud --depth <Redwood frame 0> --intrinsics ... -o OUT.ply    (640x480)
    anydepth eval <NYU samples> --dataset nyu --predictions <dir>          (3 frames)

and prints best / median wall times. The predictions for eval are the NYU ground truth
itself, written as `.npy` metres, so no model is needed.

    .venv/bin/python scripts/bench/startup.py [--runs 41] BINARY [BINARY ...]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("binaries", type=Path, nargs="+")
    args = parser.parse_args()
    redwood = DATA / "redwood-livingroom"
    nyu = DATA / "nyu-samples"
    if not redwood.is_dir() or not nyu.is_dir():
        print(f"missing {redwood} or {nyu}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="anydepth-startup-") as tmp:
        tmp = Path(tmp)
        predictions = tmp / "predictions"
        predictions.mkdir()
        for rgb in sorted((nyu / "rgb").glob("rgb_*.jpg")):
            number = rgb.stem.removeprefix("rgb_")
            depth = np.array(Image.open(nyu / "depth" / f"sync_depth_{number}.png"), dtype=np.float32)
            np.save(predictions / f"{rgb.stem}.npy", depth / 1000.0)
        jobs = {
            "--version": ["--version"],
            "cloud 640x480": ["cloud", "--quiet", "--force", "--depth", str(redwood / "depth" / "00000.png"),
                              "--color", str(redwood / "color" / "00000.jpg"),
                              "--intrinsics", "525,525,319.5,239.5", "-o", str(tmp / "cloud.ply")],
            "eval 3 NYU frames": ["eval", str(nyu), "--dataset", "nyu", "--metric", "indoor",
                                  "--predictions", str(predictions), "--quiet"],
        }
        times = {(b, j): [] for b in args.binaries for j in jobs}
        for i in range(args.runs + 1):
            for job, job_args in jobs.items():
                for binary in args.binaries:
                    t0 = time.perf_counter()
                    subprocess.run([str(binary), *job_args], check=True, stdout=subprocess.DEVNULL)
                    if i > 0:
                        times[(binary, job)].append(time.perf_counter() - t0)
        for job in jobs:
            for binary in args.binaries:
                values = times[(binary, job)]
                print(f"{job:18} {str(binary):40} best {1e3 * min(values):7.1f} ms  "
                      f"median {1e3 * statistics.median(values):7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
