#!/usr/bin/env python3
"""Writes square crops of photos as PNG files: the unlabelled "images" of the small
distillation check (`crates/cli/tests/train_cli.rs`) and of its PyTorch baseline
(`scripts/bench/train_baselines.py distill`).

Each photo is resized (bicubic) so that its short side is SHORT, and cut into a 3x3 grid of
SIZExSIZE crops: top, middle and bottom rows times left, middle and right columns. The
crops overlap when SHORT < 3 * SIZE. Output names are `<photo stem>_<row><column>.png`.

Usage: photo_crops.py OUT_DIR [--size 126] [--short 252] PHOTO...
"""
import argparse
from pathlib import Path

import cv2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--size", type=int, default=126)
    ap.add_argument("--short", type=int, default=252)
    args = ap.parse_args()
    if args.short < args.size:
        ap.error("--short must be at least --size")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.photos:
        photo = cv2.imread(path)
        if photo is None:
            ap.error(f"cannot read {path}")
        h, w = photo.shape[:2]
        scale = args.short / min(h, w)
        nh, nw = max(args.size, round(h * scale)), max(args.size, round(w * scale))
        photo = cv2.resize(photo, (nw, nh), interpolation=cv2.INTER_CUBIC)
        size = args.size
        for r, y0 in enumerate((0, (nh - size) // 2, nh - size)):
            for c, x0 in enumerate((0, (nw - size) // 2, nw - size)):
                crop = photo[y0:y0 + size, x0:x0 + size]
                cv2.imwrite(str(out / f"{Path(path).stem}_{r}{c}.png"), crop)


if __name__ == "__main__":
    main()
