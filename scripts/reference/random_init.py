#!/usr/bin/env python3
"""Writes a freshly initialised official Depth Anything V2 model (PyTorch's default
initialisation, as `DepthAnythingV2(...)` constructs it) as an official `.pth`: the
"random-init" starting point of the training tests.

With --non-degenerate PHOTO..., the model is then calibrated on those photos as
make_references.py calibrates its checkpoints (most outputs positive, a real spread), so
that its output is a usable teacher or student.

Usage: random_init.py OUT.pth [--encoder vits] [--metric MAX_DEPTH] [--seed S]
       [--non-degenerate PHOTO ...]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_references import OfficialModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--encoder", default="vits")
    ap.add_argument("--metric", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--non-degenerate", nargs="+", default=None, metavar="PHOTO")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = OfficialModel(args.encoder, "v2", args.metric).eval()
    if args.non_degenerate:
        import cv2
        from depth_anything_v2.dpt import DepthAnythingV2
        from make_references import make_non_degenerate
        samples = [DepthAnythingV2.image2tensor(None, cv2.imread(p), 126)[0] for p in args.non_degenerate]
        make_non_degenerate(model, samples, args.metric is not None)
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
