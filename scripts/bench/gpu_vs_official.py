#!/usr/bin/env python3
"""Side-by-side GPU timing of the official Depth Anything V2 network (eager PyTorch, fp32
and fp16) and `anydepth bench` on the same GPU, same checkpoint, same input sizes.

Usage: python3 scripts/bench/gpu_vs_official.py --anydepth PATH --weights FILE.pth
           [--photo 1920x1080.jpg] [--iters 50]
The official code (package `depth_anything_v2`) must be importable; cv2 and torchvision are
only needed for `infer_image`, so minimal stand-ins are used when they are missing."""
import argparse
import subprocess
import sys
import time
import types

import torch

try:
    import cv2  # noqa: F401
except ImportError:  # forward-only timing needs neither
    sys.modules["cv2"] = types.SimpleNamespace(INTER_CUBIC=2)
try:
    import torchvision  # noqa: F401
except ImportError:
    tv = types.ModuleType("torchvision")
    tv.transforms = types.SimpleNamespace(Compose=lambda t: t)
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv.transforms

from depth_anything_v2.dpt import DepthAnythingV2  # noqa: E402


def time_official(model, batch, h, w, dtype, iters):
    x = torch.randn(batch, 3, h, w, device="cuda", dtype=dtype)
    with torch.no_grad():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anydepth", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model = model.cuda().eval()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("| input | batch | precision | official eager (ms) | anydepth (ms) | ratio |")
    print("|---|---|---|---|---|---|")
    for (w, h), batch in [((518, 518), 1), ((518, 518), 16), ((924, 518), 1)]:
        for prec, dtype in [("fp32", torch.float32), ("fp16", torch.float16)]:
            m = model.half() if dtype == torch.float16 else model.float()
            t_ref = time_official(m, batch, h, w, dtype, args.iters)
            out = subprocess.run(
                [args.anydepth, "bench", "--weights", args.weights, "--device", "cuda",
                 "--precision", prec, "--batch", str(batch), "--size", f"{w}x{h}",
                 "--iters", str(args.iters), "--warmup", "5"],
                check=True, capture_output=True, text=True).stdout
            line = next(l for l in out.splitlines() if l.startswith("network"))
            t_ours = float(line.split(":")[1].split("ms")[0]) / 1e3
            print(f"| {w}x{h} | {batch} | {prec} | {t_ref * 1e3:.2f} | {t_ours * 1e3:.2f} | "
                  f"{t_ours / t_ref:.2f}x |")


if __name__ == "__main__":
    main()
