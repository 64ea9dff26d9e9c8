#!/usr/bin/env python3
"""How close the official V2-S comes to its own fp32 output in reduced precision (on the
GPU where there is one, else the CPU): weights cast to bf16 (what `anydepth --precision
bf16` did before it kept the head in fp32), PyTorch's bf16 autocast (LayerNorm, softmax
and reductions kept in fp32), weights cast to fp16 (what `--precision fp16` does), and
bf16 autocast on the encoder alone with the DPT head in fp32 (what `--precision bf16`
does, and Depth Anything 3's official code; on a GPU the head's convolutions use
TensorFloat-32, as anydepth's do there).
Max and mean error of `infer_image`'s depth relative to its range, on the first shared
photo (or a generated one), random weights made non-degenerate as in the GPU check.
With `--references`, the same on the V2-S checkpoints and photos of the parity tests
(`scripts/reference/make_references.py`'s, relative and metric, at 518), against the
fp32 outputs stored there: the official side of `cargo test -p anydepth-torch --test
parity reduced_precision -- --nocapture`; and once more with the head's convolutions
fed inputs and weights rounded as TensorFloat-32 rounds them (10 mantissa bits), which
GPUs use for the fp32 head at bf16.

  .venv/bin/python scripts/bench/half_precision_official.py [--references]
"""
import copy
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from gpu_vs_official import checkpoint, official_half_error, photos  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where infer_image puts its input
MODES = [("weights bf16:", torch.bfloat16, "weights"),
         ("autocast bf16:", torch.bfloat16, "autocast"),
         ("weights fp16:", torch.float16, "weights"),
         ("autocast bf16, head fp32:", torch.bfloat16, "encoder")]


def report(model, image, ref, span, modes):
    for name, kind, mode in modes:
        worst, mean = official_half_error(model, image, ref, span, kind, mode)
        print(f"  {name:<25} max {worst:.2e}, mean {mean:.2e} of the range")


def tf32_rounded(t):
    """`t` (float32, finite) rounded to TensorFloat-32's 10 mantissa bits, to nearest."""
    assert t.dtype == torch.float32, t.dtype
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class Tf32Conv(torch.nn.Module):
    """A convolution whose input and weight are rounded as TF32 tensor cores read them
    (accumulation stays float32)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        if isinstance(c, torch.nn.ConvTranspose2d):
            return F.conv_transpose2d(tf32_rounded(x), tf32_rounded(c.weight), c.bias, c.stride,
                                      c.padding, c.output_padding, c.groups, c.dilation)
        return F.conv2d(tf32_rounded(x), tf32_rounded(c.weight), c.bias, c.stride, c.padding,
                        c.dilation, c.groups)


def with_tf32_head(model):
    """A copy of `model` whose DPT head convolutions round as TF32 does."""
    model = copy.deepcopy(model)

    def wrap(module):
        for name, child in module.named_children():
            if isinstance(child, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                setattr(module, name, Tf32Conv(child))
            else:
                wrap(child)

    wrap(model.depth_head)
    return model


def shared_photo():
    with tempfile.TemporaryDirectory() as folder:
        model, _ = checkpoint("vits", Path(folder), DEVICE)
        found, _ = photos(Path(folder), 1)
        image = cv2.imread(str(found[0]))
        with torch.no_grad():
            ref = np.asarray(model.float().infer_image(image, 518), dtype=np.float64)
        print(f"{found[0].name}, {image.shape[1]}x{image.shape[0]}, V2-S on {DEVICE}, "
              "against the official fp32:")
        report(model, image, ref, float(ref.max() - ref.min()), MODES)


def parity_references():
    from make_references import OfficialModel, hf_to_official
    from safetensors.torch import load_file

    folder = ROOT / ".cache" / "reference"
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        sys.exit(f"no references in {folder}: run scripts/reference/make_references.py")
    for case in json.loads(manifest.read_text())["cases"]:
        if case["name"] not in ("v2-vits", "v2-vits-metric-indoor"):
            continue
        weights = folder / case["weights"]
        model = OfficialModel("vits", "v2", case["metric_max_depth"])
        if case["layout"] == "official":
            model.load_state_dict(torch.load(weights, map_location="cpu"))
        else:
            model.load_state_dict(hf_to_official(load_file(str(weights))))
        model = model.eval().to(DEVICE)
        for photo in case["images"]:
            if photo["input_size"] != 518:
                continue
            ref = np.load(folder / photo["depth"]).astype(np.float64)
            print(f"{case['name']}, {Path(photo['image']).name}, on {DEVICE}, against the "
                  "stored official fp32:")
            image = cv2.imread(photo["image"])
            report(model, image, ref, photo["range"], [MODES[0], MODES[3]])
            report(with_tf32_head(model), image, ref, photo["range"],
                   [("... head TF32-rounded:", torch.bfloat16, "encoder")])


if __name__ == "__main__":
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(2)
    if "--references" in sys.argv[1:]:
        parity_references()
    else:
        shared_photo()
