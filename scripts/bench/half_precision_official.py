#!/usr/bin/env python3
"""How close the official V2-S comes to its own fp32 output in reduced precision (on the
GPU where there is one, else the CPU): weights cast to bf16 (what `anydepth --precision bf16` does), PyTorch's bf16
autocast (LayerNorm, softmax and reductions kept in fp32), and weights cast to fp16.
Max and mean error of `infer_image`'s depth relative to its range, on the first shared
photo (or a generated one), random weights made non-degenerate as in the GPU check.

  .venv/bin/python scripts/bench/half_precision_official.py
"""
import copy
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from gpu_vs_official import checkpoint, photos  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where infer_image puts its input
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.set_num_threads(2)
with tempfile.TemporaryDirectory() as t:
    t = Path(t)
    model, _ = checkpoint("vits", t, DEVICE)
    found, _ = photos(t, 1)
    img = cv2.imread(str(found[0]))
    with torch.no_grad():
        ref = model.float().infer_image(img, 518)
        span = ref.max() - ref.min()
        x, (h, w) = model.image2tensor(img, 518)
        def run(net, dtype=None, autocast=False):
            with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast):
                d = net(x.to(dtype) if dtype else x)
            d = torch.nn.functional.interpolate(d[:, None].float(), (h, w), mode="bilinear",
                                                align_corners=True)[0, 0].cpu()
            e = np.abs(d.numpy() - ref) / span
            return f"max {e.max():.2e}, mean {e.mean():.2e} of the range"
        print(f"{found[0].name}, {w}x{h}, V2-S on {DEVICE}, against the official fp32:")
        print("  weights bf16: ", run(copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16))
        print("  autocast bf16:", run(model, autocast=True))
        print("  weights fp16: ", run(copy.deepcopy(model).to(torch.float16), torch.float16))
