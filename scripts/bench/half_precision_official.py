#!/usr/bin/env python3
"""How close the official V2-S comes to its own fp32 output in reduced precision (on the
GPU where there is one, else the CPU): weights cast to bf16 (what `anydepth --precision
bf16` did before it kept the head in fp32), PyTorch's bf16 autocast (LayerNorm, softmax
and reductions kept in fp32), weights cast to fp16 (what `--precision fp16` does), and
bf16 autocast on the encoder alone with the DPT head in fp32 (what `--precision bf16`
does, and Depth Anything 3's official code).
Max and mean error of `infer_image`'s depth relative to its range, on the first shared
photo (or a generated one), random weights made non-degenerate as in the GPU check.

  .venv/bin/python scripts/bench/half_precision_official.py
"""
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from gpu_vs_official import checkpoint, official_half_error, photos  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where infer_image puts its input
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.set_num_threads(2)
with tempfile.TemporaryDirectory() as folder:
    model, _ = checkpoint("vits", Path(folder), DEVICE)
    found, _ = photos(Path(folder), 1)
    image = cv2.imread(str(found[0]))
    with torch.no_grad():
        ref = np.asarray(model.float().infer_image(image, 518), dtype=np.float64)
    span = float(ref.max() - ref.min())
    print(f"{found[0].name}, {image.shape[1]}x{image.shape[0]}, V2-S on {DEVICE}, "
          "against the official fp32:")
    for name, kind, mode in [("weights bf16:           ", torch.bfloat16, "weights"),
                             ("autocast bf16:          ", torch.bfloat16, "autocast"),
                             ("weights fp16:           ", torch.float16, "weights"),
                             ("autocast bf16, head fp32:", torch.bfloat16, "encoder")]:
        worst, mean = official_half_error(model, image, ref, span, kind, mode)
        print(f"  {name} max {worst:.2e}, mean {mean:.2e} of the range")
