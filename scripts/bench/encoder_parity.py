#!/usr/bin/env python3
"""fp32 parity of one V2 encoder size against the official code, outside the test suite:
for the sizes whose checkpoints are too large to write on every CI run (V2-G: 1258 M
parameters, a 5.0 GB `.pth`), or other input sizes than the tests'.

Writes a random-weight official checkpoint of ENCODER (made non-degenerate on the photo
as make_references.py does), the official `infer_image` depth of PHOTO, then runs
`anydepth depth` on the same photo and checkpoint (CPU, fp32, exact preprocessing) and
prints the max and mean error relative to the official depth's range. Exits 1 above
1e-4 of the range, the parity tests' bound. Also prints three times: the official
`infer_image`; the official code building the model, loading the checkpoint and
inferring, in this already started process; and anydepth's whole command.

  .venv/bin/python scripts/bench/encoder_parity.py --anydepth target/release/anydepth \\
      --encoder vitg --input-size 266 [--photo PHOTO] [--work DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
from make_references import DATA, PRESETS, OfficialModel, make_non_degenerate  # noqa: E402

TOLERANCE = 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anydepth", required=True, help="the anydepth binary")
    ap.add_argument("--encoder", default="vitg", choices=sorted(PRESETS))
    ap.add_argument("--input-size", type=int, default=266)
    ap.add_argument("--photo", default=str(DATA / "photos" / "demo08.jpg"))
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--work", help="folder for the checkpoint and outputs (default: a "
                    "temporary one, removed afterwards)")
    args = ap.parse_args()
    if not Path(args.photo).is_file():
        sys.exit(f"no photo at {args.photo} (set ANYDEPTH_DATA or pass --photo)")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        weights = work / f"depth_anything_v2_{args.encoder}.pth"
        raw = cv2.imread(args.photo)

        started = time.perf_counter()
        torch.manual_seed(args.seed)
        model = OfficialModel(args.encoder).eval()
        sample = model.image2tensor(raw, args.input_size)[0]
        make_non_degenerate(model, [sample], metric=False)
        torch.save(model.state_dict(), weights)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{args.encoder}: {parameters / 1e6:.1f} M parameters, "
              f"{weights.stat().st_size / 1e9:.2f} GB checkpoint "
              f"({time.perf_counter() - started:.1f} s)")

        started = time.perf_counter()
        with torch.no_grad():
            expected = np.asarray(model.infer_image(raw, args.input_size), dtype=np.float32)
        official_s = time.perf_counter() - started
        del model
        span = float(expected.max() - expected.min())
        positive = float((expected > 0).mean())
        if span <= 1e-3 or positive <= 0.9:
            sys.exit(f"degenerate reference: range {span}, positive {positive}")
        # The official code as a command would run it, in this process (Python and torch
        # started, inference warmed up): model built, checkpoint loaded, one photo.
        started = time.perf_counter()
        fresh = OfficialModel(args.encoder).eval()
        fresh.load_state_dict(torch.load(weights, map_location="cpu"))
        with torch.no_grad():
            reloaded = fresh.infer_image(raw, args.input_size)
        official_whole_s = time.perf_counter() - started
        del fresh
        if not np.array_equal(np.asarray(reloaded, dtype=np.float32), expected):
            sys.exit("the official model loaded from the checkpoint gives another depth")

        out = work / "anydepth"
        started = time.perf_counter()
        subprocess.run([args.anydepth, "depth", args.photo, "--weights", str(weights),
                        "--input-size", str(args.input_size), "--device", "cpu",
                        "--preprocess", "exact", "--formats", "npy", "--out", str(out),
                        "--quiet"], check=True)
        ours_s = time.perf_counter() - started
        ours = np.load(out / (Path(args.photo).stem + ".npy"))
        if ours.shape != expected.shape:
            sys.exit(f"shape {ours.shape}, official {expected.shape}")
        error = np.abs(ours - expected) / span
        print(f"{args.encoder} @ {args.input_size}, {Path(args.photo).name} "
              f"{expected.shape[1]}x{expected.shape[0]}: max {error.max():.2e}, "
              f"mean {error.mean():.2e} of the range {span:.4g}; official infer_image "
              f"{official_s:.1f} s (with building the model and loading the checkpoint "
              f"{official_whole_s:.1f} s), anydepth depth (whole command) {ours_s:.1f} s")
        sys.exit(0 if error.max() <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
