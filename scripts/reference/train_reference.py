#!/usr/bin/env python3
"""One training step's loss and gradients on the official model, for the gradient parity
test of anydepth's training.

The losses are written here in PyTorch from their definitions (see docs/TRAINING.md):
  * silog: sqrt(mean(g^2) - 0.5 mean(g)^2), g = log(target) - log(pred), over the mask
    (the official metric_depth/util/loss.py);
  * affine: per image, (d - median(d)) / mean|d - median(d)| over its valid pixels for
    prediction and target disparity (1/depth); mean absolute difference over the batch,
    each image keeping its floor(n (1 - trim)) smallest; plus 0.5 x MiDaS's 4-scale
    gradient-matching term on the normalised maps (batch-based reduction).

The model is the official Depth Anything V2 network (`depth_anything_v2` from the PyPI
package jkp-depth-anything-v2), with the official metric head where asked; its weights come
from an official `.pth` or a Hugging Face safetensors file renamed to the official names.

Writes one safetensors file: `input` (b, 3, h, w), `depth` (b, h, w) metres with invalid
pixels at 0, `mask` (b, h, w) uint8, `loss` (1,) float64, and `grad.NAME` for every
parameter that receives a gradient.

Usage: train_reference.py CHECKPOINT OUT --loss silog|affine [--trim T] [--metric MAX]
       [--version v1|v2] [--size H W] [--batch B] [--seed S]
"""
import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_references import OfficialModel, hf_to_official  # noqa: E402


def silog(pred, target, mask, lam=0.5):
    g = torch.log(target[mask]) - torch.log(pred[mask])
    return torch.sqrt((g**2).mean() - lam * g.mean() ** 2)


def normalise(x, mask):
    images = []
    for i in range(x.shape[0]):
        values = x[i][mask[i]]
        median = torch.median(values)
        scale = (values - median).abs().mean().clamp(min=1e-6)
        images.append((x[i] - median) / scale)
    return torch.stack(images)


def gradient_matching(pred, target, mask, scales=4):
    total = 0.0
    for scale in range(scales):
        step = 2**scale
        p, t, m = pred[:, ::step, ::step], target[:, ::step, ::step], mask[:, ::step, ::step]
        diff = (p - t) * m
        gx = (diff[:, :, 1:] - diff[:, :, :-1]).abs() * (m[:, :, 1:] * m[:, :, :-1])
        gy = (diff[:, 1:, :] - diff[:, :-1, :]).abs() * (m[:, 1:, :] * m[:, :-1, :])
        count = m.sum()
        if count > 0:
            total = total + (gx.sum() + gy.sum()) / count
    return total


def affine(pred, target, mask, trim=0.0, gradient_weight=0.5):
    pn, tn = normalise(pred, mask), normalise(target, mask)
    kept_sum, kept_count = 0.0, 0
    for i in range(pred.shape[0]):
        diff = (pn[i] - tn[i])[mask[i]].abs()
        keep = int(diff.numel() * (1.0 - trim))
        kept_sum = kept_sum + torch.sort(diff).values[:keep].sum()
        kept_count += keep
    return kept_sum / kept_count + gradient_weight * gradient_matching(pn, tn, mask.float())


def load_weights(path):
    path = Path(path)
    if path.suffix == ".safetensors":
        return hf_to_official(load_file(str(path)))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--loss", choices=["silog", "affine"], required=True)
    ap.add_argument("--trim", type=float, default=0.0)
    ap.add_argument("--metric", type=float, default=None, help="max depth of a metric head")
    ap.add_argument("--version", default="v2")
    ap.add_argument("--size", type=int, nargs=2, default=[98, 126])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    model = OfficialModel("vits", args.version, args.metric)
    model.load_state_dict(load_weights(args.checkpoint), strict=True)
    model.train()

    b, (h, w) = args.batch, args.size
    x = torch.randn(b, 3, h, w)
    # Smooth positive depth, with holes (0) and far pixels that the range excludes.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    depth = torch.stack([1.0 + 4.0 * (i + 1) * (0.3 + xx + 0.5 * yy * yy) for i in range(b)])
    depth = depth * (1.0 + 0.05 * torch.rand(b, h, w))
    holes = torch.rand(b, h, w) < 0.1
    depth[holes] = 0.0
    max_depth = args.metric if args.metric else float("inf")
    if args.metric:
        depth[:, :5, :] = max_depth + 5.0
    mask = (depth > 1e-3) & (depth < max_depth)
    depth = torch.where(mask, depth, torch.zeros_like(depth))

    pred = model(x)
    if args.loss == "silog":
        loss = silog(pred, depth, mask)
    else:
        disparity = torch.where(mask, 1.0 / depth.clamp(min=1e-12), torch.zeros_like(depth))
        loss = affine(pred, disparity, mask, trim=args.trim)
    loss.backward()
    grads = {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}

    out = {
        "input": x.contiguous(),
        "depth": depth.contiguous(),
        "mask": mask.to(torch.uint8).contiguous(),
        "loss": loss.detach().to(torch.float64).reshape(1),
        "pred_std": pred.detach().std().to(torch.float64).reshape(1),
    }
    for name, g in grads.items():
        out[f"grad.{name}"] = g.contiguous()
    save_file(out, args.out)
    print(f"loss {loss.item():.6f}, {sum(k.startswith('grad.') for k in out)} gradients", file=sys.stderr)


if __name__ == "__main__":
    main()
