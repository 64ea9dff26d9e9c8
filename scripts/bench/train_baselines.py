#!/usr/bin/env python3
"""Plain PyTorch training loops on the official model, the baselines that
`anydepth train` and `anydepth distill` are compared with in docs/BENCHMARKS.md.

  metric:  a random-init metric V2-S (scripts/reference/random_init.py --metric 20)
           trained with SiLog on full frames of a list file (no crop, no flip), AdamW with
           the decoder at 10x, poly decay; writes the weights for `anydepth eval`.
  distill: a student learns a teacher's labels on random crops with the affine-invariant
           loss alone (no perturbations, no trimming, no gradient term); prints the
           held-out affine-invariant error before and after, on centre crops. Given
           crops of --size (scripts/reference/photo_crops.py), as docs/BENCHMARKS.md's
           figures are, every crop is a whole image and the teacher labels it whole.
  --seed:  the order of the samples and the crops (and torch's seed).

Usage:
  train_baselines.py metric INIT.pth LIST OUT.pth [--steps 80 --batch 2 --size 126
                     --lr 1e-4 --seed 0]
  train_baselines.py distill TEACHER.pth STUDENT.pth --train PHOTO... --val PHOTO...
                     [--steps 150 --batch 4 --size 126 --lr 1e-4 --seed 0]
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from make_references import OfficialModel  # noqa: E402
from train_reference import normalise, silog  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def optimiser(model, lr):
    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if n.startswith("pretrained.")]},
         {"params": [p for n, p in named if not n.startswith("pretrained.")]}],
        lr=lr, weight_decay=0.01)


def schedule(opt, lr, k, steps):
    lr = lr * (1 - k / steps) ** 0.9
    opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, 10 * lr


def lower_bound(im, size):
    h, w = im.shape[:2]
    s = size / min(h, w)
    nh, nw = [max(size, int(np.ceil(v * s / 14)) * 14) for v in (h, w)]
    x = (cv2.resize(im, (nw, nh), interpolation=cv2.INTER_CUBIC) - MEAN) / STD
    return torch.tensor(x.transpose(2, 0, 1), dtype=torch.float32), (nw, nh)


def photo(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) / 255.0


def metric(args):
    torch.manual_seed(args.seed)
    model = OfficialModel("vits", "v2", 20.0)
    model.load_state_dict(torch.load(args.init, weights_only=True))
    model.train()
    data = []
    for line in open(args.list):
        rgb, depth, scale = line.split()
        x, (nw, nh) = lower_bound(photo(rgb), args.size)
        d = cv2.imread(depth, cv2.IMREAD_UNCHANGED).astype(np.float32) / float(scale)
        data.append((x, torch.tensor(cv2.resize(d, (nw, nh), interpolation=cv2.INTER_NEAREST))))
    opt = optimiser(model, args.lr)
    g = torch.Generator().manual_seed(args.seed)
    order = []
    for k in range(args.steps):
        schedule(opt, args.lr, k, args.steps)
        if len(order) < args.batch:
            order += torch.randperm(len(data), generator=g).tolist()
        idx, order = order[:args.batch], order[args.batch:]
        x = torch.stack([data[i][0] for i in idx])
        d = torch.stack([data[i][1] for i in idx])
        loss = silog(model(x), d, (d > 0.001) & (d < 20))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), args.out)


def distill(args):
    torch.manual_seed(args.seed)
    teacher = OfficialModel("vits", "v2")
    teacher.load_state_dict(torch.load(args.teacher, weights_only=True))
    teacher.eval()
    student = OfficialModel("vits", "v2")
    student.load_state_dict(torch.load(args.student, weights_only=True))
    student.train()
    size = args.size

    def load(path):
        x, _ = lower_bound(photo(path), size)
        with torch.no_grad():
            return x, teacher(x[None])[0]

    train = [load(p) for p in args.train]
    val = [load(p) for p in args.val]
    ones = lambda t: torch.ones_like(t, dtype=torch.bool)  # noqa: E731

    def error():
        total = 0.0
        with torch.no_grad():
            for x, label in val:
                h, w = label.shape
                y0, x0 = (h - size) // 2, (w - size) // 2
                p = student(x[None, :, y0:y0 + size, x0:x0 + size])
                t = label[None, y0:y0 + size, x0:x0 + size]
                total += (normalise(p, ones(t)) - normalise(t, ones(t))).abs().mean().item()
        return total / len(val)

    before = error()
    opt = optimiser(student, args.lr)
    g = torch.Generator().manual_seed(args.seed)
    order = []
    for k in range(args.steps):
        schedule(opt, args.lr, k, args.steps)
        if len(order) < args.batch:
            order += torch.randperm(len(train), generator=g).tolist()
        idx, order = order[:args.batch], order[args.batch:]
        xs, ts = [], []
        for i in idx:
            x, label = train[i]
            h, w = label.shape
            y0 = int(torch.randint(0, h - size + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - size + 1, (1,), generator=g))
            xs.append(x[:, y0:y0 + size, x0:x0 + size])
            ts.append(label[y0:y0 + size, x0:x0 + size])
        x, t = torch.stack(xs), torch.stack(ts)
        loss = (normalise(student(x), ones(t)) - normalise(t, ones(t))).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error()
    print(f"held-out affine-invariant error {before:.4f} -> {after:.4f}, "
          f"cut by {100 * (1 - after / before):.1f}%")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="loop", required=True)
    m = sub.add_parser("metric")
    m.add_argument("init")
    m.add_argument("list")
    m.add_argument("out")
    d = sub.add_parser("distill")
    d.add_argument("teacher")
    d.add_argument("student")
    d.add_argument("--train", nargs="+", required=True)
    d.add_argument("--val", nargs="+", required=True)
    for p, steps, batch in ((m, 80, 2), (d, 150, 4)):
        p.add_argument("--steps", type=int, default=steps)
        p.add_argument("--batch", type=int, default=batch)
        p.add_argument("--size", type=int, default=126)
        p.add_argument("--lr", type=float, default=1e-4)
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    metric(args) if args.loop == "metric" else distill(args)


if __name__ == "__main__":
    main()
