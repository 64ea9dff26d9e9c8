#!/usr/bin/env python3
"""Time of one training step (forward, SiLog or affine-invariant loss, backward, AdamW) of
the official Depth Anything V2 network in PyTorch, to set beside `anydepth train`'s
steps (its `<out>.log.csv` has images/s per step).

The loop is the plain one of the official metric fine-tuning: AdamW with the encoder at
lr and the decoder at 10 lr, weight decay 0.01. Inputs are random (data loading is not
timed here; anydepth's figure includes it).

Usage: train_step.py CHECKPOINT [--metric MAX] [--batch 2] [--size 126] [--steps 20]
       [--warmup 3] [--threads N] [--device cpu|cuda]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from make_references import OfficialModel  # noqa: E402
from train_reference import affine, load_weights, silog  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_baselines import optimiser  # noqa: E402


def step_times(model, batch, size, steps, warmup, device, metric):
    """Seconds of each of `steps` training steps of `model` (after `warmup` more) on
    random input of `batch` x `size`², with SiLog when `metric`, else the affine loss."""
    device = torch.device(device)
    model.to(device).train()
    lr = 1e-4
    opt = optimiser(model, lr)
    opt.param_groups[1]["lr"] = 10 * lr
    x = torch.randn(batch, 3, size, size, device=device)
    depth = 1.0 + 4.0 * torch.rand(batch, size, size, device=device)
    mask = torch.ones(batch, size, size, dtype=torch.bool, device=device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        pred = model(x)
        loss = silog(pred, depth, mask) if metric else affine(pred, 1.0 / depth, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--metric", type=float, default=None)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=126)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # float32 without TensorFloat-32, as `anydepth train` runs (PyTorch would allow it in
    # convolutions).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = OfficialModel("vits", "v2", args.metric)
    model.load_state_dict(load_weights(args.checkpoint), strict=True)
    b, s = args.batch, args.size
    times = step_times(model, b, s, args.steps, args.warmup, args.device, args.metric)
    median = statistics.median(times)
    print(
        f"PyTorch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}: "
        f"batch {b} x {s}x{s}, median step {1000 * median:.1f} ms "
        f"({b / median:.2f} images/s) over {args.steps} steps"
    )


if __name__ == "__main__":
    main()
