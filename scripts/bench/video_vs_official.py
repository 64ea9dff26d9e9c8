#!/usr/bin/env python3
"""Throughput of the official Video Depth Anything `infer_video_depth` (what its `run.py`
calls) on the first frames of a clip, to set beside `anydepth depth CLIP --formats npy`
(whose summary prints frames per second) on the same frames.

Frames are decoded with OpenCV first and not timed (run.py decodes the whole clip before
inference too); the timed part is `infer_video_depth`: preprocessing, the network over
32-frame windows, the resize back and the alignment of windows.

Usage: video_vs_official.py CHECKPOINT [--clip FILE] [--frames 22] [--input-size 518]
       [--metric] [--threads N] [--device cpu|cuda] [--fp16]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("ANYDEPTH_VDA_REFERENCE", ROOT.parent / "shared" / "reference" / "video-depth-anything"))
PRESETS = {
    "vits": dict(features=64, out_channels=[48, 96, 192, 384]),
    "vitb": dict(features=128, out_channels=[96, 192, 384, 768]),
    "vitl": dict(features=256, out_channels=[256, 512, 1024, 1024]),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--clip", default=str(REFERENCE / "assets" / "example_videos" / "davis_rollercoaster.mp4"))
    ap.add_argument("--frames", type=int, default=22)
    ap.add_argument("--input-size", type=int, default=518)
    ap.add_argument("--encoder", default="vits", choices=sorted(PRESETS))
    ap.add_argument("--metric", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REFERENCE))
    from video_depth_anything.video_depth import VideoDepthAnything

    cap = cv2.VideoCapture(args.clip)
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while len(frames) < args.frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    frames = np.stack(frames)

    model = VideoDepthAnything(encoder=args.encoder, **PRESETS[args.encoder], metric=args.metric)
    model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"), strict=True)
    model = model.to(args.device).eval()
    start = time.perf_counter()
    depths, _ = model.infer_video_depth(frames, fps, input_size=args.input_size,
                                        device=args.device, fp32=not args.fp16)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    h, w = frames.shape[1:3]
    print(f"official infer_video_depth: {len(frames)} frames of {w}x{h} at input {args.input_size}, "
          f"{torch.get_num_threads()} threads: {seconds:.1f} s, {len(frames) / seconds:.3f} frames/s "
          f"(depth range {float(depths.min()):.3g}..{float(depths.max()):.3g})")


if __name__ == "__main__":
    main()
