#!/usr/bin/env python3
"""What `--save FILE.rrd` adds to a whole `anydepth cloud` run on a 1920x1080 frame.

Makes a 1920x1080 depth map and colour image from Redwood living-room frame 0 (nearest
resize, as log_bench does), then runs

    anydepth cloud --depth D --color C --intrinsics 1575,1181.25,959.5,539.5 -o OUT.ply

with and without `--save OUT.rrd`, interleaved, and prints best / median wall times and
what saving the recording (photo, depth and the full 1.8M-point cloud) added.

    .venv/bin/python scripts/bench/rerun_overhead.py [--runs 21] [--binary target/release/anydepth]
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
DATA = ROOT.parent / "shared" / "data" / "redwood-livingroom"


def resize_nearest(a: np.ndarray, w: int, h: int) -> np.ndarray:
    ys = (np.arange(h) * a.shape[0]) // h
    xs = (np.arange(w) * a.shape[1]) // w
    return a[ys][:, xs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "anydepth")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"missing {DATA}: the Redwood living-room sequence", file=sys.stderr)
        return 2
    if not args.binary.is_file():
        print(f"missing {args.binary}: cargo build --release -p anydepth -p anydepth-torch-cli", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="anydepth-rerun-overhead-") as tmp:
        tmp = Path(tmp)
        depth = np.array(Image.open(DATA / "depth" / "00000.png"))
        color = np.array(Image.open(DATA / "color" / "00000.jpg").convert("RGB"))
        Image.fromarray(resize_nearest(depth, 1920, 1080)).save(tmp / "depth.png")
        Image.fromarray(resize_nearest(color, 1920, 1080)).save(tmp / "color.png")
        base = [
            str(args.binary), "cloud", "--quiet", "--force",
            "--depth", str(tmp / "depth.png"), "--color", str(tmp / "color.png"),
            "--intrinsics", "1575,1181.25,959.5,539.5", "--output", str(tmp / "cloud.ply"),
        ]
        variants = {"no Rerun": base, "--save": base + ["--save", str(tmp / "cloud.rrd")]}
        times = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, cmd in variants.items():
                (tmp / "cloud.rrd").unlink(missing_ok=True)
                t = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t)
        rrd_mb = (tmp / "cloud.rrd").stat().st_size / 1e6

    print(f"anydepth cloud, 1920x1080 depth + colour, {args.runs} interleaved runs each")
    for name, ts in times.items():
        print(f"  {name:10s} best {min(ts) * 1e3:7.1f} ms   median {statistics.median(ts) * 1e3:7.1f} ms")
    added = [s - p for p, s in zip(times["no Rerun"], times["--save"])]
    print(
        f"  --save adds: median of paired differences {statistics.median(added) * 1e3:.1f} ms, "
        f"difference of medians {(statistics.median(times['--save']) - statistics.median(times['no Rerun'])) * 1e3:.1f} ms "
        f"({rrd_mb:.1f} MB .rrd)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
