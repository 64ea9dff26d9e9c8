#!/usr/bin/env python3
"""How close the official Depth Anything 3 comes to its own fp32 output under the autocast
its `inference()` uses (bf16 where CUDA supports it, else fp16; the camera encoder, heads
and camera decoder run with autocast disabled, so in fp32).

The network is the DA3 parity tests' Small reference checkpoint and input (3 views of
redwood-livingroom, written by scripts/reference/da3_reference.py), on the CPU. Prints the
depth's and confidence's max and mean error relative to the fp32 output's range, and the
cameras' largest rotation error, for bf16 and fp16 autocast; compare with the figures
`cargo test -p anydepth-torch --test da3_parity small_three_views_bf16 -- --nocapture`
prints for anydepth.

  .venv/bin/python scripts/bench/da3_half_precision_official.py
"""
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / ".cache" / "reference" / "da3"
CASE = "small_3view"


def rotation_error(a, b):
    """Largest angle (rad) between the rotations of two (n, 3, 4) camera stacks."""
    r = a[:, :3, :3].transpose(1, 2) @ b[:, :3, :3]
    cos = ((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return float(torch.arccos(cos).max())


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    checkpoint = REFERENCE / "da3-small"
    images = REFERENCE / "cases" / CASE / "input.npy"
    if not images.exists():
        sys.exit(f"no reference in {REFERENCE}: run .venv/bin/python scripts/reference/da3_reference.py")
    from depth_anything_3.api import DepthAnything3

    net = DepthAnything3.from_pretrained(str(checkpoint)).eval().model
    x = torch.from_numpy(np.load(images)).float()[None]

    def run(dtype):
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            out = net(x)
        return {k: out[k].float() for k in ("depth", "depth_conf", "extrinsics")}

    fp32 = run(None)
    print(f"official da3-small, {CASE} ({x.shape[1]} x {x.shape[-1]}x{x.shape[-2]}), CPU, "
          "against its own fp32:")
    for name, dtype in (("autocast bf16", torch.bfloat16), ("autocast fp16", torch.float16)):
        out = run(dtype)
        parts = []
        for key in ("depth", "depth_conf"):
            ref = fp32[key]
            span = float(ref.max() - ref.min())
            diff = (out[key] - ref).abs()
            parts.append(f"{key} max {float(diff.max()) / span:.2e}, mean {float(diff.mean()) / span:.2e}")
        rot = rotation_error(out["extrinsics"][0], fp32["extrinsics"][0])
        print(f"  {name}: {'; '.join(parts)}; rotation {rot:.2e} rad")


if __name__ == "__main__":
    main()
