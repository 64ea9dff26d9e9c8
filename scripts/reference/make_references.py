#!/usr/bin/env python3
"""Writes random-weight checkpoints in the official layouts and the reference outputs
that anydepth's parity tests compare against.

Checkpoints are written by the reference code itself:
  * official `.pth` (V2-S, V2-B, V2-L relative) by the official Depth Anything V2 code
    (`depth_anything_v2`, from the PyPI package jkp-depth-anything-v2), `state_dict()`;
  * Hugging Face safetensors + config.json (V1-S relative, V2-S metric indoor) by
    `transformers` (`DepthAnythingForDepthEstimation.save_pretrained`).
Reference depth maps always come from the official code's `infer_image` (preprocessing,
network, bilinear resize back with align_corners=True). For the Hugging Face files the
weights are renamed into the official model, with V1's layer choice (last four blocks) or
the metric head (Sigmoid x max depth) patched in as the official V1 / metric code has them;
on a 518x518 input, where both implementations interpolate nothing, the script checks that
this official model and the transformers model agree, which proves the renaming.

Random weights are made to fail a wrong implementation: the position embedding is given
a large spread (so its interpolation matters) and the last bias is shifted so most
outputs are positive (a fresh model outputs all zeros after the final ReLU).

Also runs tae_reference.py (Video Depth Anything's temporal alignment error on the shared
RGB-D sequences) into OUT_DIR/tae, with its own manifest and version.

Usage: make_references.py [OUT_DIR]   (default: .cache/reference under the project root)
Writes OUT_DIR/manifest.json last; reruns are skipped when the manifest is up to date.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2.dpt import DepthAnythingV2

import tae_reference  # beside this file

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANYDEPTH_DATA", ROOT.parent / "shared" / "data"))
VERSION = 5  # bump when outputs change

PRESETS = {  # the official run.py's model_configs
    "vits": dict(features=64, out_channels=[48, 96, 192, 384]),
    "vitb": dict(features=128, out_channels=[96, 192, 384, 768]),
    "vitl": dict(features=256, out_channels=[256, 512, 1024, 1024]),
    "vitg": dict(features=384, out_channels=[1536, 1536, 1536, 1536]),
}
DEPTHS = {"vits": 12, "vitb": 12, "vitl": 24, "vitg": 40}


class OfficialModel(DepthAnythingV2):
    """The official V2 network, with V1's layer choice or the official metric head."""

    def __init__(self, encoder, version="v2", max_depth=None):
        super().__init__(encoder=encoder, **PRESETS[encoder])
        if version == "v1":
            d = DEPTHS[encoder]
            self.intermediate_layer_idx = {encoder: [d - 4, d - 3, d - 2, d - 1]}
        self.max_depth = max_depth
        if max_depth is not None:
            # metric_depth/depth_anything_v2/dpt.py: output_conv2 ends in Sigmoid.
            self.depth_head.scratch.output_conv2[3] = nn.Sigmoid()

    def forward(self, x):
        if self.max_depth is None:
            return super().forward(x)
        patch_h, patch_w = x.shape[-2] // 14, x.shape[-1] // 14
        features = self.pretrained.get_intermediate_layers(
            x, self.intermediate_layer_idx[self.encoder], return_class_token=True
        )
        depth = self.depth_head(features, patch_h, patch_w) * self.max_depth
        return depth.squeeze(1)


def last_preactivation(model, x):
    """Input of the last activation (clone: output_conv2 uses in-place ReLUs)."""
    seen = {}
    conv = model.depth_head.scratch.output_conv2[2]

    def hook(_module, _inputs, output):
        seen["pre"] = output.detach().clone()  # returning it would replace the output

    handle = conv.register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["pre"]


def make_non_degenerate(model, samples, metric):
    """`samples`: the preprocessed test inputs, so the calibration holds on them."""
    def pre():
        return torch.cat([last_preactivation(model, s).flatten() for s in samples])

    with torch.no_grad():
        model.pretrained.pos_embed.normal_(0.0, 0.5)
        last = model.depth_head.scratch.output_conv2[2]
        # Spread the last layer's input (std 2 for the sigmoid, 1 otherwise), then shift
        # it: centred for the sigmoid, 98% positive for the ReLU.
        last.weight.mul_((2.0 if metric else 1.0) / max(float(pre().std()), 1e-12))
        if metric:
            last.bias.sub_(float(pre().median()))
        else:
            last.bias.sub_(float(torch.quantile(pre().float(), 0.02)))


def hf_to_official(state):
    """Hugging Face DepthAnything names to the official ones (an independent Python
    version of the renaming anydepth does in Rust)."""
    out, qkv = {}, {}
    for k, v in state.items():
        if k.startswith("backbone.encoder.layer.") and ".attention.attention." in k:
            block = k.split(".")[3]
            proj, which = k.split(".")[-2:]
            qkv.setdefault((block, which), {})[proj] = v
            continue
        n = k
        for a, b in [
            ("backbone.embeddings.cls_token", "pretrained.cls_token"),
            ("backbone.embeddings.mask_token", "pretrained.mask_token"),
            ("backbone.embeddings.position_embeddings", "pretrained.pos_embed"),
            ("backbone.embeddings.patch_embeddings.projection", "pretrained.patch_embed.proj"),
            ("backbone.layernorm", "pretrained.norm"),
            ("backbone.encoder.layer.", "pretrained.blocks."),
            ("attention.output.dense", "attn.proj"),
            ("layer_scale1.lambda1", "ls1.gamma"),
            ("layer_scale2.lambda1", "ls2.gamma"),
            ("neck.reassemble_stage.layers.", "depth_head.reassemble."),
            ("head.conv1", "depth_head.scratch.output_conv1"),
            ("head.conv2", "depth_head.scratch.output_conv2.0"),
            ("head.conv3", "depth_head.scratch.output_conv2.2"),
        ]:
            n = n.replace(a, b)
        if n.startswith("depth_head.reassemble."):
            i, kind, rest = n.split(".", 4)[2:5]
            n = f"depth_head.{'projects' if kind == 'projection' else 'resize_layers'}.{i}.{rest}"
        elif n.startswith("neck.convs."):
            i, rest = n.split(".")[2], n.split(".")[3]
            n = f"depth_head.scratch.layer{int(i) + 1}_rn.{rest}"
        elif n.startswith("neck.fusion_stage.layers."):
            parts = n.split(".")
            i, rest = int(parts[3]), ".".join(parts[4:])
            rest = (rest.replace("projection", "out_conv")
                    .replace("residual_layer1", "resConfUnit1")
                    .replace("residual_layer2", "resConfUnit2")
                    .replace("convolution1", "conv1").replace("convolution2", "conv2"))
            n = f"depth_head.scratch.refinenet{4 - i}.{rest}"
        out[n] = v
    for (block, which), parts in qkv.items():
        out[f"pretrained.blocks.{block}.attn.qkv.{which}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], 0)
    return out


def hf_checkpoint(out_dir, version, metric_max_depth, seed, samples):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
        image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6,
        out_indices=[9, 10, 11, 12] if version == "v1" else [3, 6, 9, 12],
        reshape_hidden_states=False, apply_layernorm=True,
    )
    kw = dict(depth_estimation_type="metric", max_depth=int(metric_max_depth)) if metric_max_depth else {}
    cfg = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=384, patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64, head_hidden_size=32, head_in_index=-1, **kw,
    )
    from safetensors.torch import load_file, save_file

    # Save a fresh model, then randomise it in the official model, so that the file keeps
    # exactly the names transformers writes (in memory it may use others).
    out_dir.mkdir(parents=True, exist_ok=True)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(out_dir)
    path = out_dir / "model.safetensors"
    file_state = load_file(path)
    official = OfficialModel("vits", version, metric_max_depth).eval()
    official.load_state_dict(hf_to_official(file_state), strict=True)
    make_non_degenerate(official, samples, metric_max_depth is not None)
    official_state = official.state_dict()
    new_state = {}
    for k, v in file_state.items():
        if ".attention.attention." in k:
            block = k.split(".")[3]
            proj, which = k.split(".")[-2:]
            fused = official_state[f"pretrained.blocks.{block}.attn.qkv.{which}"]
            i = ["query", "key", "value"].index(proj)
            n = fused.shape[0] // 3
            new_state[k] = fused[i * n:(i + 1) * n].clone().contiguous()
        else:
            (name,) = hf_to_official({k: v}).keys()
            new_state[k] = official_state[name].clone().contiguous()
    save_file(new_state, path, metadata={"format": "pt"})
    hf = DepthAnythingForDepthEstimation.from_pretrained(out_dir).eval()
    sample = torch.randn(1, 3, 518, 518)
    # On a 518x518 input (a 37x37 grid: no position-embedding interpolation) both
    # implementations must agree; this checks the renaming against transformers itself.
    with torch.no_grad():
        a = hf(pixel_values=sample).predicted_depth
        b = official(sample)
    err = float((a - b).abs().max()) / float(b.max() - b.min())
    assert err < 1e-4, f"transformers and official disagree on 518x518: {err}"
    print(f"  transformers vs official on 518x518: max error {err:.2e} of range")
    return official, path


def official_checkpoint(path, encoder, seed, samples):
    torch.manual_seed(seed)
    model = OfficialModel(encoder).eval()
    make_non_degenerate(model, samples, metric=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def odd_image(path):
    """A small image of odd size with smooth and sharp content, written losslessly."""
    h, w = 31, 45
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        127 + 120 * np.sin(x / 5.0),
        127 + 120 * np.cos(y / 4.0),
        np.where((x // 7 + y // 5) % 2 == 0, 230, 25),
    ], -1).round().clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img[..., ::-1])  # written as RGB
    return path


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "reference"
    tae_reference.main(out / "tae")  # skipped while its own manifest is up to date
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        try:
            if json.loads(manifest_path.read_text()).get("version") == VERSION:
                print(f"references up to date in {out}")
                return
        except json.JSONDecodeError:
            pass
    photos = DATA / "photos"
    if not photos.is_dir():
        sys.exit(f"data folder not found: {photos} (set ANYDEPTH_DATA)")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    images = [
        (photos / "demo08.jpg", 518),  # landscape 640x425
        (photos / "jonathan-borba-CnthDZXCdoY-unsplash.jpg", 518),  # portrait 800x1200
        (odd_image(out / "odd_45x31.png"), 518),  # tiny, odd-sized: upscaled
        (photos / "demo08.jpg", 266),  # another input size
    ]
    cases = []
    every = range(len(images))
    specs = [
        ("v2-vits", "official", dict(encoder="vits"), 1, every),
        ("v2-vitb", "official", dict(encoder="vitb"), 2, every),
        ("v1-vits", "hf", dict(version="v1", metric_max_depth=None), 3, every),
        ("v2-vits-metric-indoor", "hf", dict(version="v2", metric_max_depth=20.0), 4, every),
        # V2-L's other layer choice and head widths; one photo at 266 keeps it cheap.
        ("v2-vitl", "official", dict(encoder="vitl"), 5, [3]),
    ]
    for name, layout, kw, seed, chosen in specs:
        case_images = [images[i] for i in chosen]
        samples = [DepthAnythingV2.image2tensor(None, cv2.imread(str(p)), s)[0]
                   for p, s in case_images]
        done = out / name / "case.json"
        if done.exists() and json.loads(done.read_text()).get("version") == VERSION:
            cases.append(json.loads(done.read_text())["case"])
            print(f"{name}: up to date")
            continue
        print(f"{name}: writing checkpoint ({layout} layout)")
        if layout == "official":
            weights = out / name / f"depth_anything_v2_{kw['encoder']}.pth"
            model = official_checkpoint(weights, kw["encoder"], seed, samples)
        else:
            model, weights = hf_checkpoint(out / name, kw["version"], kw["metric_max_depth"], seed, samples)
        results = []
        for i, (image, input_size) in zip(chosen, case_images):
            raw = cv2.imread(str(image))
            with torch.no_grad():
                tensor, (h, w) = model.image2tensor(raw, input_size)
                depth = model.infer_image(raw, input_size)
            depth = np.asarray(depth, dtype=np.float32)
            assert depth.shape == (h, w)
            lo, hi = float(depth.min()), float(depth.max())
            positive = float((depth > 0).mean())
            assert hi - lo > 1e-3 and positive > 0.9, f"degenerate reference {name} {image}: range {hi - lo}, positive {positive}"
            stem = f"{i}_{image.stem}_{input_size}"
            np.save(out / name / f"{stem}.depth.npy", depth)
            if layout == "official" and name == "v2-vits":
                np.save(out / f"{stem}.input.npy", tensor.numpy().astype(np.float32)[0])
            results.append(dict(image=str(image), input_size=input_size,
                                depth=f"{name}/{stem}.depth.npy",
                                input=f"{stem}.input.npy", range=hi - lo,
                                std=float(depth.std()), positive=positive))
            print(f"  {image.name} @ {input_size}: {w}x{h}, range {lo:.4g}..{hi:.4g}")
        case = dict(name=name, layout=layout, weights=str(weights.relative_to(out)),
                    version=kw.get("version", "v2"),
                    metric_max_depth=kw.get("metric_max_depth"), images=results)
        done.write_text(json.dumps(dict(version=VERSION, case=case), indent=1))
        cases.append(case)
    manifest_path.write_text(json.dumps(dict(version=VERSION, cases=cases), indent=1))
    print(f"wrote {manifest_path}")


if __name__ == "__main__":
    main()
