#!/usr/bin/env python3
"""Writes a random-weight Video Depth Anything checkpoint in the official layout and the
official code's outputs on a short clip, for anydepth's video parity tests.

The official code is read from `../shared/reference/video-depth-anything` (or
$ANYDEPTH_VDA_REFERENCE): `VideoDepthAnything` (windowed `infer_video_depth`) and its
streaming class (`infer_video_depth_one`, one frame at a time with cached temporal states).

A fresh model would not test the temporal path: its motion modules end in zero-initialised
output projections (`proj_out`), so they add nothing. They are re-initialised here, as
`nn.Linear` initialises, and the script checks that the temporal path changes the output by
a good share of its range. As for the image models, the position embedding gets a large
spread and the last bias is shifted so nearly all outputs are positive.

Outputs (OUT_DIR, default .cache/reference/video):
  video_depth_anything_vits.pth   the checkpoint (`state_dict()`, as the released files)
  frames/000000.png ...           the clip: the first frames of the official example video,
                                  downscaled (PNG: both sides read the same pixels)
  windowed.npy                    infer_video_depth(frames, fps, input_size, 'cpu', fp32=True)
  windowed_metric.npy             the same with metric=True (no scale/shift between windows)
  streaming.npy                   infer_video_depth_one on each frame in turn
  layouts.json                    {encoder: {tensor name: shape}} of the official ViT-S, B
                                  and L models (a real-size random checkpoint of each would
                                  take gigabytes)
  manifest.json                   written last; reruns are skipped while VERSION matches

Usage: video_reference.py [OUT_DIR]
"""
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

VERSION = 2
ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("ANYDEPTH_VDA_REFERENCE", ROOT.parent / "shared" / "reference" / "video-depth-anything"))
FRAMES = 50  # three windows of 32 with a stride of 22, and past the streaming cache's limit
SIZE = (320, 180)  # the example clip is 854x480; downscaled to keep the test fast
INPUT_SIZE = 112
SEED = 7
FPS = 24.0
PRESETS = {
    "vits": dict(features=64, out_channels=[48, 96, 192, 384]),
    "vitb": dict(features=128, out_channels=[96, 192, 384, 768]),
    "vitl": dict(features=256, out_channels=[256, 512, 1024, 1024]),
}


def read_clip(path, count, size):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < count:
        sys.exit(f"{path}: only {len(frames)} frames decoded, {count} needed")
    return np.stack(frames)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "reference" / "video"
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("version") == VERSION:
                print(f"video references up to date in {out}")
                return
        except json.JSONDecodeError:
            pass
    if not (REFERENCE / "video_depth_anything").is_dir():
        sys.exit(f"Video Depth Anything reference code not found at {REFERENCE} (set ANYDEPTH_VDA_REFERENCE)")
    sys.path.insert(0, str(REFERENCE))
    from video_depth_anything.video_depth import VideoDepthAnything
    from video_depth_anything.video_depth_stream import VideoDepthAnything as VideoDepthAnythingStream

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out.mkdir(parents=True, exist_ok=True)
    frames = read_clip(REFERENCE / "assets" / "example_videos" / "davis_rollercoaster.mp4", FRAMES, SIZE)
    (out / "frames").mkdir(exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(out / "frames" / f"{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    layouts = {}
    for encoder, preset in PRESETS.items():
        state = VideoDepthAnything(encoder=encoder, **preset).state_dict()
        layouts[encoder] = {k: list(v.shape) for k, v in state.items()}
        del state
    (out / "layouts.json").write_text(json.dumps(layouts))

    config = dict(encoder="vits", **PRESETS["vits"])
    torch.manual_seed(SEED)
    model = VideoDepthAnything(**config).eval()
    with torch.no_grad():
        model.pretrained.pos_embed.normal_(0.0, 0.5)
        for module in model.head.motion_modules:
            module.temporal_transformer.proj_out.reset_parameters()

    # Calibrate the last layer on the first window, as the tests will run it.
    first = torch.stack([
        torch.from_numpy(model_transform(f)) for f in frames[:32]
    ]).unsqueeze(0)
    last = model.head.scratch.output_conv2[2]
    seen = {}
    handle = last.register_forward_hook(lambda _m, _i, o: seen.__setitem__("pre", o.detach().clone()))
    with torch.no_grad():
        model(first)
        last.weight.mul_(1.0 / max(float(seen["pre"].std()), 1e-12))
        model(first)
        last.bias.sub_(float(torch.quantile(seen["pre"].flatten().float(), 0.02)))
    handle.remove()
    weights = out / "video_depth_anything_vits.pth"
    torch.save(model.state_dict(), weights)

    with torch.no_grad():
        windowed, _ = model.infer_video_depth(frames, FPS, input_size=INPUT_SIZE, device="cpu", fp32=True)
        # How much the temporal path contributes: the same clip with the motion modules' output
        # projections zeroed.
        saved = [m.temporal_transformer.proj_out.weight.clone() for m in model.head.motion_modules]
        for m in model.head.motion_modules:
            m.temporal_transformer.proj_out.weight.zero_()
        without, _ = model.infer_video_depth(frames, FPS, input_size=INPUT_SIZE, device="cpu", fp32=True)
        for m, w in zip(model.head.motion_modules, saved):
            m.temporal_transformer.proj_out.weight.copy_(w)

        metric = VideoDepthAnything(**config, metric=True).eval()
        metric.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
        windowed_metric, _ = metric.infer_video_depth(frames, FPS, input_size=INPUT_SIZE, device="cpu", fp32=True)

        stream = VideoDepthAnythingStream(**config).eval()
        stream.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
        streaming = np.stack([
            stream.infer_video_depth_one(f, input_size=INPUT_SIZE, device="cpu", fp32=True) for f in frames
        ])

    stats = {}
    for name, depth in [("windowed", windowed), ("windowed_metric", windowed_metric), ("streaming", streaming)]:
        depth = np.asarray(depth, dtype=np.float32)
        assert depth.shape == (FRAMES, SIZE[1], SIZE[0]), depth.shape
        lo, hi = float(depth.min()), float(depth.max())
        positive = float((depth > 0).mean())
        assert hi - lo > 1e-3 and positive > 0.9, f"degenerate {name}: range {hi - lo}, positive {positive}"
        np.save(out / f"{name}.npy", depth)
        stats[name] = dict(range=hi - lo, positive=positive, std=float(depth.std()))
        print(f"{name}: range {lo:.4g}..{hi:.4g}, positive {positive:.3f}")
    temporal_share = float(np.abs(windowed - without).max() / (windowed.max() - windowed.min()))
    print(f"temporal path changes the output by up to {temporal_share:.1%} of its range")
    assert temporal_share > 0.05, "the temporal path hardly matters: the test would not exercise it"

    manifest.write_text(json.dumps(dict(
        version=VERSION, frames=FRAMES, width=SIZE[0], height=SIZE[1], input_size=INPUT_SIZE,
        fps=FPS, weights=weights.name, temporal_share=temporal_share, outputs=stats), indent=1))
    print(f"wrote {manifest}")


def model_transform(rgb):
    """The official transform (lower-bound resize to a multiple of 14, INTER_CUBIC,
    ImageNet normalisation), used only to calibrate the last layer."""
    from video_depth_anything.util.transform import Resize, NormalizeImage, PrepareForNet
    from torchvision.transforms import Compose
    transform = Compose([
        Resize(width=INPUT_SIZE, height=INPUT_SIZE, resize_target=False, keep_aspect_ratio=True,
               ensure_multiple_of=14, resize_method="lower_bound",
               image_interpolation_method=cv2.INTER_CUBIC),
        NormalizeImage(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        PrepareForNet(),
    ])
    return transform({"image": rgb.astype(np.float32) / 255.0})["image"]


if __name__ == "__main__":
    main()
