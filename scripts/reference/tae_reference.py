#!/usr/bin/env python3
"""Temporal alignment error (TAE) of synthetic predictions on the shared RGB-D sequences,
computed by Video Depth Anything's own benchmark code, for anydepth's TAE parity tests.

The official script is `benchmark/eval/eval_tae.py` in `../shared/reference/video-depth-anything`
(or $ANYDEPTH_VDA_REFERENCE). It is imported as it is and its `eval_TAE` is called on
the files; modules it imports but does not use for TAE (matplotlib, scipy) are replaced by
empty stand-ins when they are not installed. Its `tae_torch` and `np.linalg.lstsq` are
wrapped (not changed) to record each frame pair's error and the sequence's scale and shift.

Torch runs on one CPU thread: where several pixels of a frame land on the same pixel of the
next, `depth_proj[valid_Y, valid_X] = valid_Z` keeps the last in row-major order only when
the scatter runs serially (several threads or a GPU leave the winner unspecified).

Sequences (from ../shared/data or $ANYDEPTH_DATA):
  redwood-livingroom  depth/*.png (mm), odometry.log, fx fy cx cy 525 525 319.5 239.5
  kinect-office       depth/*.pgm (mm), pose.txt (tx ty tz qx qy qz qw), 518 519 325.5 253.5
The prediction of each frame is disparity made from its ground truth, deterministically:
a per-frame scale and shift (so the frames disagree), a smooth distortion, pixel noise,
holes of the ground truth filled with the frame's median depth, and a patch of negative
values (which the script clips). No crop, the ScanNet range (depth below 10 m).

Outputs (OUT_DIR, default .cache/reference/tae):
  <sequence>/<frame stem>.npy   the predictions (float32 disparity, as the script reads them)
  manifest.json                 per sequence: files, camera, range, the script's TAE (x100),
                                each pair's forward and backward AbsRel, the fitted scale
                                and shift; written last, reruns skipped while VERSION matches

Usage: tae_reference.py [OUT_DIR]   (make_references.py runs it into its own OUT_DIR/tae)
"""
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch

VERSION = 1
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANYDEPTH_DATA", ROOT.parent / "shared" / "data"))
REFERENCE = Path(os.environ.get("ANYDEPTH_VDA_REFERENCE", ROOT.parent / "shared" / "reference" / "video-depth-anything"))
MAX_DEPTH_M = 10.0  # the script's ScanNet setting
DEPTH_SCALE = 1000.0  # units per metre of both sequences' depth images

SEQUENCES = [
    dict(name="redwood-livingroom", depth="depth/*.png", poses="odometry.log",
         intrinsics=[525.0, 525.0, 319.5, 239.5], seed=11),
    dict(name="kinect-office", depth="depth/*.pgm", poses="pose.txt",
         intrinsics=[518.0, 519.0, 325.5, 253.5], seed=12),
]


def load_eval_tae():
    """The official eval_tae.py as a module, with stand-ins for imports TAE does not use."""
    stand_ins = {
        "matplotlib": dict(),
        "matplotlib.pyplot": dict(),
        "scipy": dict(),
        "scipy.ndimage": dict(map_coordinates=None),
    }
    path = REFERENCE / "benchmark" / "eval" / "eval_tae.py"
    if not path.is_file():
        sys.exit(f"{path} not found (set ANYDEPTH_VDA_REFERENCE)")
    installed = {name: importlib.util.find_spec(name) is not None for name in ("matplotlib", "scipy")}
    added = []
    for name, attrs in stand_ins.items():
        if installed[name.split(".")[0]]:
            continue
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        added.append(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    try:
        spec = importlib.util.spec_from_file_location("vda_eval_tae", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        # The stand-ins have no import spec; left in sys.modules they would break later
        # imports in the same process that probe for the real packages (transformers does).
        for name in added:
            sys.modules.pop(name, None)
    return module


def read_poses(path):
    """world_from_camera 4x4 matrices: Open3D .log or `tx ty tz qx qy qz qw` lines."""
    if path.suffix == ".log":
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return [np.array(rows[i + 1:i + 5], dtype=np.float64) for i in range(0, len(rows), 5)]
    poses = []
    for tx, ty, tz, qx, qy, qz, qw in np.loadtxt(path, ndmin=2):
        n = np.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
        x, y, z, w = qx / n, qy / n, qz / n, qw / n
        m = np.eye(4)
        m[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
        m[:3, 3] = [tx, ty, tz]
        poses.append(m)
    return poses


def synthetic_disparity(gt_m, frame, rng):
    """Disparity of a frame as an imperfect model would give it (float32)."""
    h, w = gt_m.shape
    valid = gt_m > 0
    depth = np.where(valid, gt_m, np.median(gt_m[valid]))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    warp = 1.0 + 0.05 * np.sin(2 * np.pi * (1.3 * xx + 0.7 * yy + 0.1 * frame))
    noise = 1.0 + rng.normal(0.0, 0.02, size=(h, w))
    scale = 0.3 * (1.0 + 0.08 * np.sin(1.7 * frame))
    shift = 0.05 + 0.01 * frame
    disparity = scale / depth * warp * noise + shift
    top, left = 20 + 7 * frame, 30 + 11 * frame
    disparity[top:top + 12, left:left + 16] = -0.2
    return disparity.astype(np.float32)


def run_sequence(eval_tae, spec, out):
    root = DATA / spec["name"]
    depth_paths = sorted(root.glob(spec["depth"]))
    poses = read_poses(root / spec["poses"])
    if not depth_paths or len(poses) < len(depth_paths):
        sys.exit(f"{root}: {len(depth_paths)} depth images, {len(poses)} poses")
    poses = poses[:len(depth_paths)]
    fx, fy, cx, cy = spec["intrinsics"]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(spec["seed"])
    seq_dir = out / spec["name"]
    seq_dir.mkdir(parents=True, exist_ok=True)
    predictions = []
    for i, path in enumerate(depth_paths):
        gt = cv2.imread(str(path), -1)
        assert gt is not None and gt.dtype == np.uint16, path
        prediction = seq_dir / f"{path.stem}.npy"
        np.save(prediction, synthetic_disparity(gt / DEPTH_SCALE, i, rng))
        predictions.append(prediction)
    h, w = cv2.imread(str(depth_paths[0]), -1).shape
    args = types.SimpleNamespace(max_depth_eval=MAX_DEPTH_M, mask=False, hard_crop=False,
                                 a=0, b=h, c=0, d=w)

    errors, fits = [], []
    tae_torch, lstsq = eval_tae.tae_torch, np.linalg.lstsq

    def recording_tae(*a, **k):
        error = tae_torch(*a, **k)
        errors.append(float(error))
        return error

    def recording_lstsq(*a, **k):
        result = lstsq(*a, **k)
        fits.append([float(v) for v in np.ravel(result[0])])
        return result

    eval_tae.tae_torch, np.linalg.lstsq = recording_tae, recording_lstsq
    try:
        tae = float(eval_tae.eval_TAE([str(p) for p in predictions], [str(p) for p in depth_paths],
                                      [DEPTH_SCALE] * len(depth_paths), [], [K] * len(depth_paths),
                                      poses, args))
    finally:
        eval_tae.tae_torch, np.linalg.lstsq = tae_torch, lstsq
    assert len(errors) == 2 * (len(depth_paths) - 1) and len(fits) == 1
    pairs = [dict(forward=errors[2 * i], backward=errors[2 * i + 1]) for i in range(len(errors) // 2)]
    assert all(0.0 < e < 1.0 for e in errors), errors
    print(f"{spec['name']}: TAE {tae:.6f} over {len(pairs)} pairs, scale {fits[0][0]:.6g}, shift {fits[0][1]:.6g}")
    return dict(
        name=spec["name"],
        depth=[str(p.relative_to(DATA)) for p in depth_paths],
        depth_scale=DEPTH_SCALE,
        poses=str((root / spec["poses"]).relative_to(DATA)),
        intrinsics=spec["intrinsics"],
        width=w, height=h,
        predictions=[str(p.relative_to(out)) for p in predictions],
        max_depth_m=MAX_DEPTH_M,
        min_depth_m=1e-3,
        tae=tae,
        pairs=pairs,
        scale=fits[0][0],
        shift=fits[0][1],
    )


def main(out=None):
    if out is None:
        out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "reference" / "tae"
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("version") == VERSION:
                print(f"TAE references up to date in {out}")
                return
        except json.JSONDecodeError:
            pass
    for spec in SEQUENCES:
        if not (DATA / spec["name"]).is_dir():
            sys.exit(f"data folder not found: {DATA / spec['name']} (set ANYDEPTH_DATA)")
    torch.set_num_threads(1)
    eval_tae = load_eval_tae()
    out.mkdir(parents=True, exist_ok=True)
    sequences = [run_sequence(eval_tae, spec, out) for spec in SEQUENCES]
    upstream = (REFERENCE / "UPSTREAM_COMMIT").read_text().split()[0] if (REFERENCE / "UPSTREAM_COMMIT").is_file() else None
    manifest.write_text(json.dumps(dict(
        version=VERSION, script="benchmark/eval/eval_tae.py", upstream_commit=upstream,
        sequences=sequences), indent=1))
    print(f"wrote {manifest}")


if __name__ == "__main__":
    main()
