#!/usr/bin/env python3
"""A whole `anydepth cloud --depth --color` command against the same job inside Open3D.

Makes a 1920x1080 depth map (16-bit PNG, millimetres) and colour image from Redwood
living-room frame 0 (nearest resize, as rerun_overhead.py does), then times, interleaved:

  anydepth   the whole process: `anydepth cloud --depth D --color C --intrinsics ... -o OUT.ply`
  open3d     in one warm Python process: read depth and colour (o3d.io.read_image),
             create_from_rgbd_image (depth_trunc = inf, so no point is dropped either side),
             write_point_cloud (binary)

Open3D's time excludes its interpreter and import (it would lose another ~0.5 s per
run); anydepth's includes process start, argument parsing and everything else. Both write
all 1.8 M coloured points; the script checks the two files hold the same number of points.

    .venv/bin/python scripts/bench/cloud_vs_open3d.py [--runs 21] [--binary target/release/anydepth]
        [--threads N]   (RAYON_NUM_THREADS for anydepth and o3d's OpenMP threads; default: all)
"""

import argparse
import os
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
INTRINSICS = (1575.0, 1181.25, 959.5, 539.5)


def resize_nearest(a: np.ndarray, w: int, h: int) -> np.ndarray:
    ys = (np.arange(h) * a.shape[0]) // h
    xs = (np.arange(w) * a.shape[1]) // w
    return a[ys][:, xs]


def ply_vertex_count(path: Path) -> int:
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"element vertex"):
                return int(line.split()[2])
            if line.startswith(b"end_header"):
                break
    raise ValueError(f"no vertex count in {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "anydepth")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"missing {DATA}: the Redwood living-room sequence", file=sys.stderr)
        return 2
    if not args.binary.is_file():
        print(f"missing {args.binary}: cargo build --release -p anydepth -p anydepth-torch-cli", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.threads:
        env["RAYON_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import open3d as o3d  # after OMP_NUM_THREADS

    with tempfile.TemporaryDirectory(prefix="anydepth-cloud-vs-open3d-") as tmp:
        tmp = Path(tmp)
        depth = np.array(Image.open(DATA / "depth" / "00000.png"))
        color = np.array(Image.open(DATA / "color" / "00000.jpg").convert("RGB"))
        Image.fromarray(resize_nearest(depth, 1920, 1080)).save(tmp / "depth.png")
        Image.fromarray(resize_nearest(color, 1920, 1080)).save(tmp / "color.png")
        fx, fy, cx, cy = INTRINSICS
        command = [
            str(args.binary), "cloud", "--quiet", "--force",
            "--depth", str(tmp / "depth.png"), "--color", str(tmp / "color.png"),
            "--intrinsics", f"{fx},{fy},{cx},{cy}", "--output", str(tmp / "anydepth.ply"),
        ]
        camera = o3d.camera.PinholeCameraIntrinsic(1920, 1080, fx, fy, cx, cy)

        def run_open3d() -> None:
            d = o3d.io.read_image(str(tmp / "depth.png"))
            c = o3d.io.read_image(str(tmp / "color.png"))
            rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
                c, d, depth_scale=1000.0, depth_trunc=float("inf"),
                convert_rgb_to_intensity=False)
            cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, camera)
            o3d.io.write_point_cloud(str(tmp / "open3d.ply"), cloud, write_ascii=False)

        times = {"anydepth": [], "open3d": []}
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            subprocess.run(command, check=True, env=env)
            t_any = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_open3d()
            t_o3d = time.perf_counter() - t0
            if i > 0:  # the first round warms caches
                times["anydepth"].append(t_any)
                times["open3d"].append(t_o3d)
        n_any = ply_vertex_count(tmp / "anydepth.ply")
        n_o3d = ply_vertex_count(tmp / "open3d.ply")
        print(f"points: anydepth {n_any}, open3d {n_o3d}")
        for name, values in times.items():
            print(f"{name:9} best {1e3 * min(values):7.1f} ms  median {1e3 * statistics.median(values):7.1f} ms"
                  f"  ({len(values)} runs)")
        ratio = statistics.median(times["anydepth"]) / statistics.median(times["open3d"])
        print(f"anydepth / open3d (medians): {ratio:.2f}")
        if n_any != n_o3d:
            print("the two clouds differ in size", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
