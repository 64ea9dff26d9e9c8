#!/usr/bin/env python3
"""Writes random-weight Depth Anything 3 checkpoints in the official Hugging Face layout and
the official code's outputs on real images, for anydepth's DA3 parity tests.

Official code: the PyPI package `depth-anything-3` 0.1.1 (installed by scripts/setup.sh with
--no-deps from scripts/da3-requirements.txt, with exactly what `import depth_anything_3.api`
needs). Nothing is stubbed: `depth_anything_3.api.DepthAnything3` is imported as shipped and
every case runs through its real `inference()` flow: InputProcessor (load, upper-bound resize,
resize to multiples of 14, ImageNet normalisation, intrinsics scaling), extrinsics
normalisation, the network, OutputProcessor, and for posed input the Umeyama Sim(3) alignment
(evo) of the input poses onto the predicted ones.

fp32: on CPU `DepthAnything3.forward` runs the network under torch.autocast(float16)
(`torch.cuda.is_bf16_supported()` is False without CUDA). For fp32 references, `fp32_flow()`
below sets an instance attribute `forward` on the DepthAnything3 object for the duration of a
case (the class method is untouched; the attribute is deleted afterwards): it calls
`self.model(...)` with the same arguments under torch.inference_mode() and autocast disabled,
which is what the shipped forward does minus the autocast. The same context manager observes
the official flow without changing it: forward hooks on the head, backbone and camera encoder
clone their outputs, and two module globals are wrapped while a case runs (and restored):
`vision_transformer.select_reference_view` (to read the selected reference view) and
`api.align_poses_umeyama` (to read the Sim(3) the API computes and discards).

Random weights that do not make the tests vacuous (recipe of shared/docs/DA3.md):
torch.manual_seed(seed) and the official constructor's default init; then, from a generator
seeded seed+1: every LayerNorm w = 1 + 0.1 N, b = 0.05 N; backbone LayerScale gamma ~ U(0.2, 0.6),
camera-encoder gamma ~ U(0.05, 0.2); pos_embed and cls_token 0.5 N; camera_token N(0, 1).
Calibration: fp32 forwards on fixed probes (the cases' own images at process_res 280) rescale
and shift the LAST layers only, per output channel, so that over the probes: depth logit mean 0 /
std 0.6, conf logit 0 / 0.5, ray (7 channels, aux head) 0 / 0.5, sky pre-ReLU -0.1 / 0.5 (about
20% of pixels above the 0.3 sky threshold); camera decoder: biases shifted so t ~ 0,
q ~ (0, 0, 0, 1) and fov ~ (1.0, 1.2) rad (fov_h, fov_w). Two additions to the recipe: (1) da3-small is
calibrated on two probes with equal weight, the 3 redwood views and the 1-view photo (a random
net's depth logits move with the image: calibrated on the redwood views alone, the photo's depth
spans 0.2..170); (2) the rows of fc_t and of fc_qvec's x, y, z are scaled to a spread of 0.1
over the probe views (after the perturbation they differ by 0.003..0.05), so the views get
distinct poses (a transposed rotation or a sign error in the pose code shows clearly, and the
Sim(3) alignment of the posed case is well conditioned). The statistics before and after
are in the manifest ("calibration").

Checkpoints: OUT/<model_name>/{model.safetensors, config.json, README.md} written by the official
`DepthAnything3.save_pretrained` (huggingface_hub's PyTorchModelHubMixin; config.json is
{"model_name": ...}); the script reloads each with `DepthAnything3.from_pretrained(dir)`, checks
that every state_dict tensor equals the saved one, and runs the cases on the reloaded model.
The file stores the DualDPT's shared LayerNorm once (output_conv2_aux.0.2.*; aliases in the
safetensors metadata), so its sha256 varies: the manifest has a digest of the tensors.

Cases (OUT/cases/<case>/, float32 .npy; sizes and metadata in the manifest):
  small_1view        da3-small, one landscape photo, process_res 504
  small_3view        da3-small, redwood-livingroom frames 0, 2, 4, 504, ref_view_strategy
                     saddle_balanced (selected view in the manifest; backbone features saved)
  small_3view_posed  the same frames with the dataset's poses (w2c) and intrinsics: camera
                     encoder, extrinsics normalisation, Umeyama alignment (align_to_input_ext_scale)
  mono_1view         da3mono-large, one photo, process_res 336 (below 100000 non-sky pixels the
                     official sky post-processing takes the 0.99 quantile of all of them, not of a
                     torch.randint subsample)
  metric_1view       da3metric-large, one NYU frame, 336, plus metric_depth = depth * ((fx+fy)/2)
                     / 300 with the official `apply_metric_scaling` and the NYU intrinsics as the
                     official InputProcessor scales them (input_intrinsics.npy)
  preprocess_mixed   InputProcessor only: photos of different sizes and aspects (input.npy)
Files per case (those that exist for the model):
  input.npy          (N,3,H,W) the image tensor the network receives (ImageNet-normalised)
  depth.npy          (N,H,W) Prediction.depth (after sky post-processing / pose alignment)
  conf.npy           (N,H,W) Prediction.conf (any-view models)
  sky.npy            (N,H,W) raw sky head output (ReLU, before any threshold; mono/metric)
  extrinsics.npy     (N,3,4) Prediction.extrinsics, w2c OpenCV
  intrinsics.npy     (N,3,3) Prediction.intrinsics (processed pixels)
  raw_<key>.npy      the head's output dict (depth before the sky post-processing, depth_conf,
                     ray, ray_conf, sky) and the network's camera outputs (raw_extrinsics,
                     raw_intrinsics: before any alignment), batch dimension removed
  posed only:        given_extrinsics (N,4,4 w2c as passed), given_intrinsics (N,3,3 original
                     pixels), input_extrinsics_normalized / input_intrinsics (what the network
                     gets), pred_extrinsics (N,3,4 before alignment), raw_cam_tokens (camera
                     encoder output), sim3_rotation, sim3_translation, aligned_extrinsics
  small_3view:       ref_select_tokens (N,C: token 0 of each view, the selector's input),
                     backbone_feat{k} (N,P,2C) and backbone_cam{k} (N,2C) for the 4 out layers
  metric only:       metric_depth, input_intrinsics

Usage: .venv/bin/python scripts/reference/da3_reference.py [OUT_DIR]
  OUT_DIR defaults to .cache/reference/da3; data from $ANYDEPTH_DATA or ../shared/data.
Writes OUT_DIR/manifest.json last; reruns are skipped while its version matches VERSION.
"""
import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

VERSION = 1  # bump when outputs change
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANYDEPTH_DATA", ROOT.parent / "shared" / "data"))
SEEDS = {"da3-small": 30, "da3mono-large": 31, "da3metric-large": 32}
PROBE_RES = 280

PHOTO_SMALL = "photos/demo01.jpg"  # 2048x1362 -> 504x335 (INTER_AREA) -> 504x336 (INTER_CUBIC)
PHOTO_MONO = "photos/david-kohler-VFRTXGw1VjU-unsplash.jpg"  # 1200x875 -> 336x245 -> 336x252 (tie, up)
REDWOOD_FRAMES = [0, 2, 4]
NYU_FRAME = "nyu-samples/rgb/rgb_00000.jpg"
MIXED = [  # landscape, portrait and another landscape aspect
    "photos/demo08.jpg",  # 640x425
    "photos/jonathan-borba-CnthDZXCdoY-unsplash.jpg",  # 800x1200
    "photos/demo04.jpg",  # 1600x1041
]
REDWOOD_K = [[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]]

TARGETS_DUALDPT = {"depth": (0.0, 0.6), "conf": (0.0, 0.5)}
TARGET_RAY = (0.0, 0.5)
TARGETS_DPT = {"depth": (0.0, 0.6), "sky": (-0.1, 0.5)}
POSE_SPREAD = 0.1
FOV_TARGET = (1.0, 1.2)  # (fov_h, fov_w) in radians


def np32(t):
    return t.detach().float().cpu().numpy().astype(np.float32)


def stats(a):
    a = np.asarray(a, dtype=np.float64)
    return dict(min=float(a.min()), max=float(a.max()), mean=float(a.mean()), std=float(a.std()))


# ----------------------------------------------------------------------------- weights

def perturb(model, seed):
    """The DA3.md perturbation: non-trivial norms, layer scales and embeddings."""
    g = torch.Generator().manual_seed(seed + 1)

    def normal(t, std, mean=0.0):
        t.copy_(mean + std * torch.randn(t.shape, generator=g))

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    count = dict(layernorm=0, layerscale_backbone=0, layerscale_cam_enc=0)
    with torch.no_grad():
        for _, module in model.named_modules():  # deduplicated: the shared LN is seen once
            if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                normal(module.weight, 0.1, 1.0)
                normal(module.bias, 0.05)
                count["layernorm"] += 1
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                if ".cam_enc." in name:
                    uniform(p, 0.05, 0.2)
                    count["layerscale_cam_enc"] += 1
                else:
                    uniform(p, 0.2, 0.6)
                    count["layerscale_backbone"] += 1
        vit = model.model.backbone.pretrained
        normal(vit.pos_embed, 0.5)
        normal(vit.cls_token, 0.5)
        if hasattr(vit, "camera_token"):
            normal(vit.camera_token, 1.0)
    return count


def last_layers(net):
    """(name, module, {channel: (mean, std or None)}) for every output layer to calibrate."""
    head = net.head
    layers = []
    if hasattr(head.scratch, "output_conv2_aux"):  # DualDPT (any-view)
        layers.append(("head.scratch.output_conv2.2", head.scratch.output_conv2[-1],
                       {0: TARGETS_DUALDPT["depth"], 1: TARGETS_DUALDPT["conf"]}))
        aux = head.scratch.output_conv2_aux[-1][-1]
        layers.append(("head.scratch.output_conv2_aux.3.5", aux,
                       {c: TARGET_RAY for c in range(aux.out_channels)}))
    else:  # DPT (mono / metric)
        layers.append(("head.scratch.output_conv2.2", head.scratch.output_conv2[-1],
                       {0: TARGETS_DPT["depth"]}))
        layers.append(("head.scratch.sky_output_conv2.2", head.scratch.sky_output_conv2[-1],
                       {0: TARGETS_DPT["sky"]}))
    if net.cam_dec is not None:
        dec = net.cam_dec
        layers.append(("cam_dec.fc_t", dec.fc_t, {c: (0.0, POSE_SPREAD) for c in range(3)}))
        layers.append(("cam_dec.fc_qvec", dec.fc_qvec,
                       {0: (0.0, POSE_SPREAD), 1: (0.0, POSE_SPREAD), 2: (0.0, POSE_SPREAD), 3: (1.0, None)}))
        layers.append(("cam_dec.fc_fov.0", dec.fc_fov[0], {0: (FOV_TARGET[0], None), 1: (FOV_TARGET[1], None)}))
    return layers


def channel_stats(out):
    """Per output channel mean / std of a conv (B,C,H,W) or linear (B,C) output."""
    x = out.detach().float()
    x = x.transpose(0, 1).reshape(x.shape[1], -1)
    return x.mean(dim=1), x.std(dim=1, unbiased=False)


def probe_outputs(net, layers, probes):
    """Per output channel (mean, std) of each layer, pooled over the probe batches with equal
    weight (a mixture: mean of means, mean of (var + mean^2) - mean^2)."""
    per_probe = []
    for imgs in probes:
        seen = {}
        handles = [m.register_forward_hook(lambda _m, _i, o, n=name: seen.__setitem__(n, channel_stats(o)))
                   for name, m, _ in layers]
        try:
            with torch.no_grad(), torch.autocast("cpu", enabled=False):
                net(imgs)
        finally:
            for h in handles:
                h.remove()
        per_probe.append(seen)
    pooled = {}
    for name, _, _ in layers:
        means = torch.stack([p[name][0] for p in per_probe])
        second = torch.stack([p[name][1] ** 2 + p[name][0] ** 2 for p in per_probe])
        mean = means.mean(dim=0)
        pooled[name] = (mean, (second.mean(dim=0) - mean ** 2).clamp_min(0).sqrt())
    return pooled, per_probe


def calibrate(model, probe_sets):
    """Rescale / shift the last layers per output channel on fp32 probe forwards."""
    net = model.model
    probes = [model.input_processor(paths, None, None, PROBE_RES, "upper_bound_resize")[0][None].float()
              for paths in probe_sets]
    layers = last_layers(net)
    before, _ = probe_outputs(net, layers, probes)
    report = {}
    with torch.no_grad():
        for name, module, targets in layers:
            mean, std = before[name]
            entry = dict(before_mean=mean.tolist(), before_std=std.tolist(), scale=[], shift=[])
            for c in range(module.weight.shape[0]):
                target_mean, target_std = targets.get(c, (None, None))
                if target_mean is None:
                    entry["scale"].append(1.0)
                    entry["shift"].append(0.0)
                    continue
                a = 1.0 if target_std is None else target_std / max(float(std[c]), 1e-12)
                # out' = a (W x + b - mean) + target = (a W) x + a (b - mean) + target
                module.weight[c].mul_(a)
                module.bias[c] = a * (module.bias[c] - mean[c]) + target_mean
                entry["scale"].append(a)
                entry["shift"].append(float(target_mean - a * mean[c]))
            report[name] = entry
    after, after_per_probe = probe_outputs(net, layers, probes)
    for name, _, _ in layers:
        mean, std = after[name]
        report[name].update(after_mean=mean.tolist(), after_std=std.tolist(),
                            after_per_probe=[dict(mean=p[name][0].tolist(), std=p[name][1].tolist())
                                             for p in after_per_probe])
    report["probes"] = [dict(images=[str(Path(p).relative_to(DATA)) for p in paths], shape=list(x.shape))
                        for paths, x in zip(probe_sets, probes)]
    report["probe_res"] = PROBE_RES
    return report


def tensor_digest(path):
    from safetensors import safe_open
    h = hashlib.sha256()
    with safe_open(str(path), "pt") as f:
        keys = sorted(f.keys())
        for k in keys:
            t = f.get_tensor(k).contiguous()
            h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
            h.update(t.numpy().tobytes())
    return len(keys), h.hexdigest()


def make_checkpoint(DepthAnything3, name, out_dir, probe_sets):
    seed = SEEDS[name]
    torch.manual_seed(seed)
    model = DepthAnything3(model_name=name).eval()
    perturbed = perturb(model, seed)
    calibration = calibrate(model, probe_sets)
    calibration["perturbed"] = perturbed
    calibration["seed"] = seed
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    del model
    reloaded = DepthAnything3.from_pretrained(str(out_dir)).eval()
    state = reloaded.state_dict()
    assert set(state) == set(saved), f"{name}: key sets differ after reload"
    bad = [k for k in saved if not torch.equal(saved[k], state[k])]
    assert not bad, f"{name}: tensors differ after from_pretrained: {bad[:5]}"
    count, digest = tensor_digest(out_dir / "model.safetensors")
    info = dict(dir=name, config=json.loads((out_dir / "config.json").read_text()),
                tensors_in_file=count, state_dict_tensors=len(state), tensor_digest=digest,
                parameters=int(sum(p.numel() for p in reloaded.parameters())),
                file_bytes=(out_dir / "model.safetensors").stat().st_size,
                reload_check="from_pretrained: every state_dict tensor equal to the saved one")
    print(f"{name}: {count} tensors in file, {info['parameters'] / 1e6:.1f}M parameters, reload equal")
    return reloaded, info, calibration


# ----------------------------------------------------------------------------- the flow

@contextlib.contextmanager
def fp32_flow(model, record):
    """Runs DepthAnything3.inference in fp32 and records what the official flow computes."""
    import depth_anything_3.api as api
    from depth_anything_3.model.dinov2 import vision_transformer as vt

    net = model.model

    def clone_tree(x):
        if isinstance(x, torch.Tensor):
            return x.detach().clone()
        if isinstance(x, dict):
            return {k: clone_tree(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(clone_tree(v) for v in x)
        return x

    def forward(image, extrinsics=None, intrinsics=None, export_feat_layers=None, infer_gs=False,
                use_ray_pose=False, ref_view_strategy="saddle_balanced"):
        # DepthAnything3.forward without its torch.autocast(float16).
        record["net_in"] = dict(image=image.clone(),
                                extrinsics=None if extrinsics is None else extrinsics.clone(),
                                intrinsics=None if intrinsics is None else intrinsics.clone())
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device_type=image.device.type, enabled=False):
            out = net(image, extrinsics, intrinsics, export_feat_layers, infer_gs, use_ray_pose,
                      ref_view_strategy)
        record["forward_s"] = time.perf_counter() - start
        record["net_out"] = clone_tree(dict(out))  # the API later divides depth in place
        return out

    original_select = vt.select_reference_view
    original_align = api.align_poses_umeyama

    def select(x, strategy="saddle_balanced"):
        b_idx = original_select(x, strategy=strategy)
        record["ref_select"] = dict(tokens=x[:, :, 0].detach().clone(), b_idx=b_idx.clone(), strategy=strategy)
        return b_idx

    def align(ext_ref, ext_est, *args, **kwargs):
        result = original_align(ext_ref, ext_est, *args, **kwargs)
        record["align"] = dict(ext_ref=np.array(ext_ref), ext_est=np.array(ext_est), result=result,
                               kwargs=dict(kwargs))
        return result

    handles = [
        net.head.register_forward_hook(lambda _m, _i, o: record.__setitem__("head_out", clone_tree(dict(o)))),
        net.backbone.register_forward_hook(lambda _m, _i, o: record.__setitem__("backbone_out", clone_tree(o))),
    ]
    if net.cam_enc is not None:
        handles.append(net.cam_enc.register_forward_hook(
            lambda _m, _i, o: record.__setitem__("cam_tokens", o.detach().clone())))
    model.forward = forward  # instance attribute: shadows the class's autocast forward
    vt.select_reference_view = select
    api.align_poses_umeyama = align
    try:
        yield
    finally:
        del model.forward
        vt.select_reference_view = original_select
        api.align_poses_umeyama = original_align
        for h in handles:
            h.remove()


def redwood_poses():
    """odometry.log: per frame a line 'i i i+1' and a 4x4 world_from_camera matrix."""
    lines = [l.split() for l in (DATA / "redwood-livingroom" / "odometry.log").read_text().splitlines() if l.strip()]
    poses = []
    for i in range(0, len(lines), 5):
        poses.append(np.array([[float(v) for v in row] for row in lines[i + 1:i + 5]], dtype=np.float64))
    return poses


def nyu_intrinsics(rel):
    meta = json.loads((DATA / "nyu-samples" / "test_annotations.json").read_text())
    for entry in meta["files"]:
        if Path(entry["rgb"]).name == Path(rel).name:
            fx, fy, cx, cy = entry["cam_in"]
            return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
    raise KeyError(rel)


def fov_of(K, h, w):
    K = np.asarray(K, dtype=np.float64)
    return dict(fov_h=(2 * np.arctan(h / 2 / K[:, 1, 1])).tolist(), fov_w=(2 * np.arctan(w / 2 / K[:, 0, 0])).tolist())


def run_case(model, model_name, name, rels, out, process_res, extrinsics=None, intrinsics=None):
    case_dir = out / "cases" / name
    case_dir.mkdir(parents=True, exist_ok=True)
    paths = [str(DATA / r) for r in rels]
    record = {}
    with fp32_flow(model, record):
        pred = model.inference(paths, extrinsics=extrinsics, intrinsics=intrinsics, process_res=process_res,
                               ref_view_strategy="saddle_balanced", align_to_input_ext_scale=True)
    files = {}

    def save(fname, arr):
        arr = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        np.save(case_dir / f"{fname}.npy", arr)
        files[fname] = list(arr.shape)
        return arr

    inp = record["net_in"]
    save("input", np32(inp["image"][0]))
    n, _, h, w = inp["image"][0].shape
    depth = save("depth", pred.depth)
    summary = dict(depth=stats(depth))
    if pred.conf is not None:
        summary["conf"] = stats(save("conf", pred.conf))
    if pred.extrinsics is not None:
        save("extrinsics", pred.extrinsics[..., :3, :])
    if pred.intrinsics is not None:
        save("intrinsics", pred.intrinsics)
        summary["intrinsics_fov"] = fov_of(pred.intrinsics, h, w)
    for key, value in record["head_out"].items():
        if isinstance(value, torch.Tensor):
            save(f"raw_{key}", np32(value[0]))
    net_out = record["net_out"]
    if "sky" in net_out:
        sky = save("sky", np32(net_out["sky"][0]))
        summary["sky"] = stats(sky)
        summary["sky_share_ge_0.3"] = float((sky >= 0.3).mean())
        summary["sky_share_ge_0.5"] = float((sky >= 0.5).mean())
        near = np.abs(sky - 0.3) < 1e-3
        summary["sky_pixels_within_1e-3_of_0.3"] = int(near.sum())
        raw = np32(record["head_out"]["depth"][0])
        summary["raw_depth"] = stats(raw)
        nonsky = sky < 0.3
        summary["sky_fill_value"] = float(depth[~nonsky][0]) if (~nonsky).any() else None
    for key in ("extrinsics", "intrinsics"):
        if key in net_out:
            save(f"raw_{key}", np32(net_out[key][0]))
    if "intrinsics" in net_out:
        summary["predicted_fov"] = fov_of(np32(net_out["intrinsics"][0]), h, w)
        summary["predicted_camera_centres"] = (
            -np.einsum("nji,nj->ni", np32(net_out["extrinsics"][0])[:, :3, :3], np32(net_out["extrinsics"][0])[:, :3, 3])
        ).tolist()

    info = dict(
        model=model_name,
        images=rels,
        images_abs=paths,
        original_sizes=[list(cv2.imread(p).shape[1::-1]) for p in paths],  # (w, h)
        process_res=process_res,
        process_res_method="upper_bound_resize",
        processed_size=[int(h), int(w)],  # (H, W)
        views=int(n),
        ref_view_strategy="saddle_balanced",
        posed=extrinsics is not None,
        forward_seconds_fp32=record["forward_s"],
        threads=torch.get_num_threads(),
    )
    if "ref_select" in record:
        sel = record["ref_select"]
        info["selected_reference_view"] = int(sel["b_idx"][0])
        save("ref_select_tokens", np32(sel["tokens"][0]))
    elif n >= 3 and extrinsics is not None:
        info["selected_reference_view"] = None
        info["selected_reference_view_note"] = "no selection with poses: the camera encoder's tokens replace token 0"
    else:
        info["selected_reference_view"] = None
        info["selected_reference_view_note"] = "fewer than 3 views (THRESH_FOR_REF_SELECTION): no selection or reordering"

    if extrinsics is not None:
        save("given_extrinsics", extrinsics)
        save("given_intrinsics", intrinsics)
        save("input_extrinsics_normalized", np32(inp["extrinsics"][0]))
        save("input_intrinsics", np32(inp["intrinsics"][0]))
        save("raw_cam_tokens", np32(record["cam_tokens"][0]))
        al = record["align"]
        r, t, s, aligned = al["result"]
        save("pred_extrinsics", al["ext_ref"][..., :3, :])
        save("sim3_rotation", r)
        save("sim3_translation", t)
        save("aligned_extrinsics", aligned[..., :3, :])
        info["sim3_scale"] = float(s)
        info["sim3_ransac"] = bool(al["kwargs"].get("ransac"))
        info["align_to_input_ext_scale"] = True
        info["given_intrinsics_size"] = [640, 480]
        unaligned = np32(net_out["depth"][0])  # the network's depth, before depth /= s
        info["check_depth_times_scale_equals_net_depth"] = float(np.abs(depth * s - unaligned).max() / np.abs(unaligned).max())
        summary["input_fov"] = fov_of(np32(inp["intrinsics"][0]), h, w)

    if name == "small_3view":
        (feats, _aux) = record["backbone_out"]
        for k, (feat, cam) in enumerate(feats):
            save(f"backbone_feat{k}", np32(feat[0]))
            save(f"backbone_cam{k}", np32(cam[0]))

    info["summary"] = summary
    info["files"] = files
    print(f"{name}: {n} view(s) {h}x{w}, depth {summary['depth']['min']:.3g}..{summary['depth']['max']:.3g}, "
          f"forward {record['forward_s']:.2f} s" + (f", ref view {info['selected_reference_view']}"
                                                    if info.get("selected_reference_view") is not None else ""))
    return info, record, pred


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "reference" / "da3"
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        try:
            if json.loads(manifest_path.read_text()).get("version") == VERSION:
                print(f"DA3 references up to date in {out}")
                return
        except json.JSONDecodeError:
            pass
    for rel in [PHOTO_SMALL, PHOTO_MONO, NYU_FRAME, *MIXED, "redwood-livingroom/odometry.log"]:
        if not (DATA / rel).exists():
            sys.exit(f"data not found: {DATA / rel} (set ANYDEPTH_DATA)")

    from depth_anything_3.api import DepthAnything3
    from depth_anything_3.utils.alignment import apply_metric_scaling

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    if manifest_path.exists():
        manifest_path.unlink()
    models, calibration, cases = {}, {}, {}

    # --- da3-small: one view, three views, three posed views
    redwood = [f"redwood-livingroom/color/{i:05d}.jpg" for i in REDWOOD_FRAMES]
    model, models["da3-small"], calibration["da3-small"] = make_checkpoint(
        DepthAnything3, "da3-small", out / "da3-small",
        [[str(DATA / r) for r in redwood], [str(DATA / PHOTO_SMALL)]])
    cases["small_1view"], _, _ = run_case(model, "da3-small", "small_1view", [PHOTO_SMALL], out, 504)
    cases["small_3view"], _, _ = run_case(model, "da3-small", "small_3view", redwood, out, 504)
    poses = redwood_poses()
    w2c = np.stack([np.linalg.inv(poses[i]) for i in REDWOOD_FRAMES]).astype(np.float32)
    K = np.stack([np.array(REDWOOD_K, dtype=np.float32)] * len(REDWOOD_FRAMES))
    cases["small_3view_posed"], _, _ = run_case(model, "da3-small", "small_3view_posed", redwood, out, 504,
                                                extrinsics=w2c, intrinsics=K)
    cases["small_3view_posed"]["poses_source"] = (
        "redwood-livingroom/odometry.log (world_from_camera), inverted to w2c; intrinsics 525, 525, 319.5, 239.5")
    del model

    # --- da3mono-large
    model, models["da3mono-large"], calibration["da3mono-large"] = make_checkpoint(
        DepthAnything3, "da3mono-large", out / "da3mono-large", [[str(DATA / PHOTO_MONO)]])
    cases["mono_1view"], _, _ = run_case(model, "da3mono-large", "mono_1view", [PHOTO_MONO], out, 336)
    del model

    # --- da3metric-large, with the NYU intrinsics (scaled by the official InputProcessor)
    model, models["da3metric-large"], calibration["da3metric-large"] = make_checkpoint(
        DepthAnything3, "da3metric-large", out / "da3metric-large", [[str(DATA / NYU_FRAME)]])
    K_nyu = nyu_intrinsics(NYU_FRAME)[None]
    info, record, pred = run_case(model, "da3metric-large", "metric_1view", [NYU_FRAME], out, 336,
                                  intrinsics=K_nyu)
    case_dir = out / "cases" / "metric_1view"
    k_in = record["net_in"]["intrinsics"]  # (1, N, 3, 3) as InputProcessor scaled them
    metric = apply_metric_scaling(torch.from_numpy(pred.depth)[None], k_in)[0].numpy().astype(np.float32)
    np.save(case_dir / "metric_depth.npy", metric)
    np.save(case_dir / "input_intrinsics.npy", np32(k_in[0]))
    np.save(case_dir / "given_intrinsics.npy", K_nyu.astype(np.float32))
    info["files"].update(metric_depth=list(metric.shape), input_intrinsics=list(k_in[0].shape),
                         given_intrinsics=list(K_nyu.shape))
    info["summary"]["metric_depth"] = stats(metric)
    info["nyu_intrinsics"] = K_nyu[0].tolist()
    info["input_intrinsics"] = np32(k_in[0, 0]).tolist()
    info["metric_scaling"] = ("depth_anything_3.utils.alignment.apply_metric_scaling(Prediction.depth, K): "
                              "depth * ((fx + fy) / 2) / 300, K = NYU intrinsics scaled by InputProcessor "
                              "(row 0 by w'/w, row 1 by h'/h, cx and cy included, no half-pixel offset)")
    cases["metric_1view"] = info
    del model

    # --- preprocessing only: different sizes and aspects
    from depth_anything_3.utils.io.input_processor import InputProcessor
    proc = InputProcessor()
    mixed_paths = [str(DATA / r) for r in MIXED]
    imgs, _, _ = proc(mixed_paths, None, None, 504, "upper_bound_resize")
    case_dir = out / "cases" / "preprocess_mixed"
    case_dir.mkdir(parents=True, exist_ok=True)
    np.save(case_dir / "input.npy", np32(imgs))
    single_sizes = [list(proc([p], None, None, 504, "upper_bound_resize")[0].shape[-2:]) for p in mixed_paths]
    cases["preprocess_mixed"] = dict(
        model=None, images=MIXED, images_abs=mixed_paths,
        original_sizes=[list(cv2.imread(p).shape[1::-1]) for p in mixed_paths],
        process_res=504, process_res_method="upper_bound_resize",
        sizes_before_unify=single_sizes, processed_size=list(imgs.shape[-2:]), views=len(MIXED),
        files=dict(input=list(imgs.shape)),
        notes=("Each image is resized on its own (upper bound 504, then to multiples of 14). "
               "InputProcessor._unify_batch_shapes then centre-crops every view to (min H, min W) over the "
               "batch, taken per dimension (torchvision CenterCrop; offsets (H-minH)//2, (W-minW)//2; cx, cy "
               "shifted when intrinsics are given); it only logs a warning. Nothing is padded and nothing "
               "raises, whatever the aspects: a portrait next to a landscape leaves a near-square crop of both."),
    )
    print(f"preprocess_mixed: {single_sizes} -> {list(imgs.shape[-2:])}")

    import PIL
    manifest = dict(
        version=VERSION,
        packages={"depth_anything_3": _version("depth-anything-3"), "torch": torch.__version__,
                  "numpy": np.__version__, "cv2": cv2.__version__, "pillow": PIL.__version__,
                  "evo": _version("evo"), "huggingface_hub": _version("huggingface_hub")},
        data_dir=str(DATA),
        precision="fp32: DepthAnything3.forward's torch.autocast(float16) bypassed, see the script's docstring",
        models=models,
        calibration=calibration,
        cases=cases,
        notes=[
            "Extrinsics are w2c (world-to-camera) OpenCV; Prediction.extrinsics is (N,3,4).",
            "Mono/metric models output no extrinsics/intrinsics; Prediction.sky = raw sky >= 0.5, while the "
            "sky post-processing uses non-sky = raw sky < 0.3 and sets sky pixels to the 0.99 quantile of "
            "non-sky depth (torch.quantile; with > 100000 non-sky pixels a torch.randint subsample).",
            "Intrinsics given to InputProcessor are scaled with the two resizes: K[0] *= w'/w, K[1] *= h'/h "
            "(cx, cy scaled the same way, no half-pixel offset).",
            "With poses, the network gets extrinsics normalised to the first view (ext @ inv(ext[0])) with "
            "translations divided by max(median camera distance, 0.1); the Umeyama Sim(3) (evo, scale on, no "
            "RANSAC below 10 views) aligns the INPUT camera centres onto the PREDICTED ones; depth /= scale and "
            "extrinsics / intrinsics become the (processed) input ones.",
            "DualDPT stores one LayerNorm for output_conv2_aux.{0..3}.2: the file has output_conv2_aux.0.2.*.",
        ],
        wall_seconds=time.time() - started,
    )
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"wrote {manifest_path} ({manifest['wall_seconds']:.0f} s)")


def _version(dist):
    from importlib.metadata import version
    return version(dist)


if __name__ == "__main__":
    main()
