#!/usr/bin/env python3
"""Writes the official Depth Anything V2 network input for photos, for parity tests.

For each IMAGE OUTPUT pair, reads IMAGE with `cv2.imread` (as the official `run.py`
does), runs the official `DepthAnythingV2.image2tensor` on it and saves the resulting
float32 tensor of shape (1, 3, H, W) to OUTPUT (.npy).

    check_preprocess.py [--input-size 518] IMAGE OUTPUT [IMAGE OUTPUT ...]

Used by crates/torch/tests/preprocess_parity.rs.
"""

import argparse
import sys

import cv2
import numpy as np
import torch

# `image2tensor` never touches `self`, so it can run without building a network.
from depth_anything_v2.dpt import DepthAnythingV2


def official_input(path: str, input_size: int) -> np.ndarray:
    raw_image = cv2.imread(path)
    if raw_image is None:
        raise SystemExit(f"cv2.imread cannot read {path}")
    with torch.no_grad():
        tensor, _ = DepthAnythingV2.image2tensor(None, raw_image, input_size)
    return tensor.cpu().numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("pairs", nargs="+", metavar="IMAGE OUTPUT")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("expected IMAGE OUTPUT pairs")
    for image, output in zip(args.pairs[::2], args.pairs[1::2]):
        tensor = official_input(image, args.input_size)
        assert tensor.dtype == np.float32 and tensor.ndim == 4, tensor.shape
        np.save(output, tensor)
        print(f"{image}: {tuple(tensor.shape)} -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
