#!/usr/bin/env python3
"""Times the official Depth Anything 3 forward on CPU: da3-small, the 3 redwood-livingroom
frames (0, 2, 4) of the DA3 parity tests, process_res 504 (3 x 378x504), 2 threads.

  shipped_autocast  `DepthAnything3.forward` as shipped: on CPU it runs the network under
                    torch.autocast(float16) (bf16 is chosen only when CUDA supports it)
  fp32              the bare network `DepthAnything3.model(...)` in fp32, autocast disabled
                    (what scripts/reference/da3_reference.py runs)

Each: 1 warm-up, then the median of 3 runs (preprocessing excluded; both get the same tensor
from the official InputProcessor). Weights: the reference checkpoint
.cache/reference/da3/da3-small (scripts/reference/da3_reference.py) if present, else the
constructor's random init (speed does not depend on the values).
Prints one JSON object.

Usage: .venv/bin/python scripts/bench/da3_official.py [--threads N] [--runs N]
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANYDEPTH_DATA", ROOT.parent / "shared" / "data"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--process-res", type=int, default=504)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from depth_anything_3.api import DepthAnything3

    ckpt = ROOT / ".cache" / "reference" / "da3" / "da3-small"
    if (ckpt / "model.safetensors").exists():
        model = DepthAnything3.from_pretrained(str(ckpt)).eval()
        weights = str(ckpt.relative_to(ROOT))
    else:
        torch.manual_seed(0)
        model = DepthAnything3(model_name="da3-small").eval()
        weights = "random init"
    frames = [str(DATA / "redwood-livingroom" / "color" / f"{i:05d}.jpg") for i in (0, 2, 4)]
    imgs, _, _ = model.input_processor(frames, None, None, args.process_res, "upper_bound_resize")
    x = imgs[None].float()

    def shipped():
        return model.forward(x, export_feat_layers=[])  # as inference() passes it (None fails)

    def fp32():
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            return model.model(x)

    result = dict(model="da3-small", weights=weights, views=x.shape[1], size=list(x.shape[-2:]),
                  threads=torch.get_num_threads(), torch=torch.__version__, runs=args.runs)
    outputs = {}
    for name, fn in (("shipped_autocast", shipped), ("fp32", fp32)):
        outputs[name] = fn()  # warm-up
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        result[f"{name}_median_s"] = statistics.median(times)
        result[f"{name}_times_s"] = times
    a = outputs["shipped_autocast"].depth.float()
    b = outputs["fp32"].depth.float()
    result["autocast_vs_fp32_depth_max_rel_diff"] = float(((a - b).abs() / b.abs()).max())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
