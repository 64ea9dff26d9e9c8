#!/usr/bin/env python3
"""The GPU check: parity and speed of `anydepth` against the official Depth Anything V2
code on the same GPU, the same random-weight checkpoints and the same inputs.

Parity (V2-S on each photo at its own size, and on a GPU V2-L on the first: `anydepth
depth` against `infer_image`):
  - fp32, TensorFloat-32 off on both sides, exact preprocessing: max error within 1e-4 of
    the depth range; with preprocessing on the device: within 1e-3;
  - fp16 and bf16 (preprocessing on the device) against the official fp32: max and mean
    error, target 1e-2 of the range; on a GPU also fp16 replayed from CUDA graphs
    (`--cuda-graphs`), which must give what fp16 gives.
Speed (network only, median of --iters after a warm-up):
  - official eager fp32 and eager fp16 against `anydepth bench` fp32 and fp16 (and bf16,
    whose head stays fp32, and on a GPU fp16 with CUDA graphs), for V2-S and V2-L at
    518x518, batch 1 and 16; the official fp16 under torch.compile is added to these rows
    by the last section, `compile`, so that compiling (a while per model and batch) and
    any failure of the compiler come after every other figure;
  - a 1920x1080 photo end to end: official `cv2.imread` + `infer_image` (fp32) against
    `anydepth bench --photo` (fp32 and fp16), with anydepth's stages; and a folder of 48
    copies of it with the depth written as .npy, photos/s: the official loop one photo
    after another against `anydepth depth --batch 16` (fp32 and fp16).
  - on a GPU, each network timing's device memory at the peak (weights, input, passes).
Training (V2-S metric, batch 8 at 518x518, fp32): the median step of the plain PyTorch
loop (scripts/bench/train_step.py, random input) against `anydepth train`'s steps on
generated 640x480 photos (data loading included), and a short `anydepth distill` run
(labels made on the GPU) with its images/s.
Writes gpu_check.json and gpu_check.md into --out after each section, after each row of
the parity, speed and compile sections, and on SIGTERM (a run cut short keeps what it
measured); a section that fails is reported and the next one runs. Exits 1 when a parity
row fails or a section but `compile` failed (that one times only the official code, and
fails when no row compiled); a reduced-precision row that misses its target passes when
it is within 1.25x of the official code's own error run the way ours is (fp16: weights
cast; bf16: the encoder under autocast, the DPT head in fp32 with TF32 convolutions),
which the table shows beside it.
`--sections` runs some of them, in the order above (`--device cpu` leaves out `compile`
unless it is named; `compile` needs `speed`).

Usage (scripts/gpu_check.sh runs it):
  python3 scripts/bench/gpu_vs_official.py --anydepth target/release/anydepth --out DIR
`--device cpu` runs the same steps on the CPU with one photo, V2-S alone and batch 1 (pass
--iters 1), to check the script itself on a machine without a GPU (the official
`infer_image` moves its input to CUDA wherever CUDA exists)."""
import argparse
import copy
import json
import os
import re
import shutil
import signal
import statistics
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
from make_references import OfficialModel, make_non_degenerate  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from train_step import step_times  # noqa: E402

DATA = Path(os.environ.get("ANYDEPTH_DATA", ROOT.parent / "shared" / "data"))
# (precision, --preprocess, target max error as a share of the depth range, CUDA graphs);
# a CUDA-graphs case compares with the same case without graphs, listed before it.
PARITY_CASES = [("fp32", "exact", 1e-4, False), ("fp32", "device", 1e-3, False),
                ("fp16", "device", 1e-2, False), ("bf16", "device", 1e-2, False),
                ("fp16", "device", 1e-2, True)]


def log(message):
    print(message, file=sys.stderr, flush=True)


def half_dtype(device):
    """The official code's half precision: fp16 on a GPU, bf16 on the CPU."""
    return torch.float16 if device == "cuda" else torch.bfloat16


def model_name(encoder):
    return f"V2-{encoder[3:].upper()}"


def checkpoint(encoder, folder, device, seed=0):
    """A random-weight official checkpoint, made non-degenerate on a 518x518 input."""
    torch.manual_seed(seed)
    model = OfficialModel(encoder).eval().to(device)
    sample = torch.randn(1, 3, 518, 518, device=device)
    make_non_degenerate(model, [sample], metric=False)
    path = folder / f"depth_anything_v2_{encoder}.pth"
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
    return model, path


def photos(folder, count):
    """Up to `count` shared photos, else generated ones; and one at 1920x1080."""
    found = sorted((DATA / "photos").glob("*.jpg"))[:count]
    if not found:
        rng = np.random.default_rng(0)
        for i in range(count):
            path = folder / f"generated{i}.png"
            # Landscape, then portrait: two network input sizes (two CUDA graphs).
            shape = (480, 640, 3) if i % 2 == 0 else (640, 480, 3)
            cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
            found.append(path)
    big = folder / "photo_1920x1080.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(found[0])), (1920, 1080),
                                     interpolation=cv2.INTER_AREA))
    return found, big


def anydepth(binary, *args, stderr=None):
    """stdout of `binary args`; its stderr is appended to the list `stderr` when given
    (with warnings on, whatever RUST_LOG says)."""
    env = None if stderr is None else {**os.environ, "RUST_LOG": "warn"}
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"anydepth {' '.join(map(str, args))} failed:\n{done.stderr}")
    if stderr is not None:
        stderr.append(done.stderr)
    return done.stdout


# The network timings, as (column, key prefix in a speed row), in table order: the names
# `speed` (`official(...)`, `ours(...)`) and `compile_section` record; a name missing
# here is not shown.
NETWORK_RUNS = [("official fp32", "official_fp32"), ("official fp16", "official_fp16"),
                ("official compile fp16", "official_compile_fp16"),
                ("anydepth fp32", "anydepth_fp32"), ("anydepth fp16", "anydepth_fp16"),
                ("anydepth bf16", "anydepth_bf16"),
                ("anydepth fp16 graphs", "anydepth_fp16_graphs")]
# How `--precision fp16|bf16` runs V2, as (kind, mode of `official_half_error`).
HALF_PRECISIONS = {"fp16": (torch.float16, "weights"), "bf16": (torch.bfloat16, "encoder")}
# A reduced-precision row that misses its target still passes when it is within this
# factor of the official code's own error run the same way.
AS_OFFICIAL = 1.25
# Most a CUDA-graph replay may differ from the same precision run eagerly, as a share of
# the range: the same kernels give the same result, up to cuDNN picking another algorithm
# on the capture's stream.
GRAPHS_TO_EAGER = 1e-4
# Most photos run together, each batch staged (decoded and uploaded, on the copy stream on
# a GPU) while the one before runs, may differ from the same photos run one by one: the
# same kernels on the same input.
STAGED_TO_SINGLE = 1e-5
# The staged runs, as (precision, CUDA graphs); the graphs one is held to GRAPHS_TO_EAGER
# of the same photo replayed alone (cuDNN may pick another algorithm as memory differs).
STAGED_CASES = [("fp32", False), ("fp16", True)]


def depth_errors(depth, size, ref, span):
    """Max and mean error, as shares of `span`, of a network output `depth` (1, h, w)
    brought to the photo's `size` (h, w) as `infer_image` does, against `ref`."""
    with torch.no_grad():
        depth = torch.nn.functional.interpolate(depth[:, None].float(), size,
                                                mode="bilinear", align_corners=True)[0, 0]
    err = np.abs(depth.cpu().numpy().astype(np.float64) - ref) / span
    return float(err.max()), float(err.mean())


def official_half_error(model, image, ref, span, kind, mode="weights"):
    """Max and mean error, as shares of the range, of the official model in `kind` against
    its fp32 output `ref` (what `infer_image` does, in that precision). `mode`: "weights"
    (its weights cast to `kind`), "autocast" (PyTorch's mixed precision over the fp32
    weights) or "encoder" (the encoder under autocast, its features handed to the DPT
    head in fp32 with TensorFloat-32 in its convolutions, as Depth Anything 3's official
    code runs)."""
    with torch.no_grad():
        x, size = model.image2tensor(image, 518)
        if mode == "weights":
            net = copy.deepcopy(model).to(kind)
            depth = net(x.to(kind))
            del net
        elif mode == "autocast":
            with torch.autocast(x.device.type, dtype=kind):
                depth = model(x)
        elif mode == "encoder":
            with torch.autocast(x.device.type, dtype=kind):
                features = model.pretrained.get_intermediate_layers(
                    x, model.intermediate_layer_idx[model.encoder], return_class_token=True)
            features = [tuple(t.float() for t in level) for level in features]
            # TensorFloat-32 in the fp32 head's convolutions, as anydepth allows it at fp16
            # and bf16 (and PyTorch by default); nothing changes on the CPU.
            saved = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = True
            try:
                depth = model.depth_head(features, x.shape[-2] // 14, x.shape[-1] // 14)[:, 0]
            finally:
                torch.backends.cudnn.allow_tf32 = saved
            max_depth = getattr(model, "max_depth", None)  # a metric head ends in Sigmoid
            depth = depth * max_depth if max_depth else torch.relu(depth)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    return depth_errors(depth, size, ref, span)


def parity_section(binary, models, photo_paths, device, folder, rows, on_row):
    """`parity` of V2-S on every photo, then, where the check made a V2-L checkpoint, of
    V2-L on the first photo: the only look on a GPU at a large encoder in reduced
    precision and in a CUDA graph. Returns `rows`."""
    failures = []
    for encoder, photos_here in [("vits", photo_paths), ("vitl", photo_paths[:1])]:
        if encoder in models:
            try:
                parity(binary, model_name(encoder), *models[encoder], photos_here, device,
                       folder / encoder, rows, on_row)
            except Exception as e:  # the next model still runs
                log(f"  parity of {model_name(encoder)} failed: {e}")
                failures.append(f"{model_name(encoder)}: {e}")
    if failures:
        raise RuntimeError("\n".join(failures))
    return rows


def parity_row(label, photo, ref, precision, graphs, preprocessing, target, staged=False):
    """What a parity row says of its run before any figure: model, photo and size (of the
    official depth `ref`), precision (with CUDA graphs and staging named), preprocessing
    and target."""
    return dict(model=label, photo=photo.name, size=f"{ref.shape[1]}x{ref.shape[0]}",
                precision=precision + (", CUDA graphs" if graphs else "")
                + (", staged" if staged else ""),
                preprocessing=preprocessing, target=target)


def parity(binary, label, model, weights, photo_paths, device, folder, rows, on_row):
    """Appends rows of (model `label`, photo, precision, preprocessing, max error, mean
    error, target, the official code's own error at that precision, ok) to `rows`, calling
    `on_row` after each, as `speed` does. A CUDA-graphs row also has its max error to the
    same precision run directly (`max_error_to_eager`) and, when the capture failed,
    `graphs_failed`. With several photos, a last row per photo runs them all at once, one
    per batch, so that each is staged while the one before runs; it also has its max error
    to the same photo run alone (`max_error_to_single`). TensorFloat-32 is off (`main`) but
    in the official bf16 head, as in ours."""
    refs = {}  # photo: (official fp32 depth, its range)
    for photo in photo_paths:
        image = cv2.imread(str(photo))
        with torch.no_grad():
            ref = model.float().infer_image(image, 518)
        ref = np.asarray(ref, dtype=np.float64)
        span = float(ref.max() - ref.min())
        officials = {}  # the official code's error at each reduced precision, for
        refs[photo] = (ref, span, officials)  # the staged rows too
        for precision, preprocessing, target, graphs in PARITY_CASES:
            if graphs and device != "cuda":
                continue
            eager_out = folder / f"{precision}-{preprocessing}"
            out = eager_out.with_name(eager_out.name + "-graphs") if graphs else eager_out
            row = parity_row(label, photo, ref, precision, graphs, preprocessing, target)
            warnings = []
            try:
                anydepth(binary, "depth", photo, "--weights", weights, "--device", device,
                         "--precision", precision, "--preprocess", preprocessing, "--formats",
                         "npy", "--out", out, "--force", "--quiet",
                         *(["--cuda-graphs"] if graphs else []), stderr=warnings)
            except RuntimeError as e:
                if not graphs:
                    raise
                # No graphs here (a build without them, another LibTorch): a failed row,
                # and the other rows still run.
                log(f"  parity {label} {photo.name} {precision} with CUDA graphs failed: {e}")
                rows.append(dict(row, max_error=float("nan"), mean_error=float("nan"),
                                 official_max_error=None, ok=False,
                                 graphs_failed=str(e)[-500:]))
                on_row()
                continue
            ours = np.load(out / f"{photo.stem}.npy").astype(np.float64)
            err = np.abs(ours - ref) / span
            if precision in HALF_PRECISIONS and precision not in officials:
                officials[precision] = official_half_error(model, image, ref, span,
                                                           *HALF_PRECISIONS[precision])
            official, official_mean = officials.get(precision, (None, None))
            max_error = float(err.max())
            row.update(max_error=max_error, mean_error=float(err.mean()),
                       official_max_error=official, official_mean_error=official_mean,
                       ok=bool(max_error <= target or (
                           official is not None and max_error <= AS_OFFICIAL * official)))
            if graphs:
                # The replayed graph runs the same kernels: the same depth as without.
                eager = np.load(eager_out / f"{photo.stem}.npy").astype(np.float64)
                row["max_error_to_eager"] = float(np.abs(ours - eager).max() / span)
                # A capture that fails falls back to running directly, with a warning.
                fell_back = "without CUDA graphs" in warnings[0]
                if fell_back:
                    row["graphs_failed"] = warnings[0].strip()[-500:]
                row["ok"] = (row["ok"] and row["max_error_to_eager"] <= GRAPHS_TO_EAGER
                             and not fell_back)
            log(f"  parity {label} {photo.name} {row['precision']} {preprocessing}: max "
                f"{row['max_error']:.2e}, mean {row['mean_error']:.2e} of range "
                f"(target {target:g}"
                + (f"; official {precision} max {official:.2e}, mean {official_mean:.2e}"
                   if official is not None else "")
                + (f"; to eager {row['max_error_to_eager']:.2e}" if graphs else "")
                + ")")
            rows.append(row)
            on_row()
    if len(photo_paths) > 1:
        staged_rows(binary, label, weights, photo_paths, refs, device, folder, rows, on_row)


def staged_rows(binary, label, weights, photo_paths, refs, device, folder, rows, on_row):
    """The photos in one `anydepth depth` run with device preprocessing, one per batch:
    each after the first is decoded and uploaded (on the copy stream, on a GPU) while the
    one before runs; in fp32, and on a GPU also in fp16 with CUDA graphs (captured while
    the next photo goes up). Rows as `parity`'s, held to the precision's target and to the
    same photo run alone (`max_error_to_single`)."""
    for precision, graphs in STAGED_CASES:
        if graphs and device != "cuda":
            continue
        target = next(t for p, pre, t, g in PARITY_CASES
                      if (p, pre, g) == (precision, "device", graphs))
        name = f"{precision}-device" + ("-graphs" if graphs else "")
        alone, staged = folder / name, folder / f"{name}-staged"
        to_single = GRAPHS_TO_EAGER if graphs else STAGED_TO_SINGLE
        warnings = []
        try:
            anydepth(binary, "depth", *photo_paths, "--weights", weights, "--device", device,
                     "--precision", precision, "--preprocess", "device", "--batch", "1",
                     "--formats", "npy", "--out", staged, "--force", "--quiet",
                     *(["--cuda-graphs"] if graphs else []), stderr=warnings)
            # A capture that fails falls back to running directly, with a warning.
            fell_back = graphs and "without CUDA graphs" in warnings[0]
            failure = warnings[0].strip()[-500:] if fell_back else None
        except RuntimeError as e:
            log(f"  parity {label} of staged photos ({name}) failed: {e}")
            failure = str(e)[-500:]
        for photo in photo_paths:
            ref, span, officials = refs[photo]
            official, official_mean = officials.get(precision, (None, None))
            row = parity_row(label, photo, ref, precision, graphs, "device", target, staged=True)
            row.update(official_max_error=official, official_mean_error=official_mean)
            single_file = alone / f"{photo.stem}.npy"
            why_not = failure or (None if single_file.exists() else
                                  f"no run of {photo.name} alone to compare with ({name})")
            if why_not is not None:
                rows.append(dict(row, max_error=float("nan"), mean_error=float("nan"),
                                 ok=False, staged_failed=why_not))
                on_row()
                continue
            ours = np.load(staged / f"{photo.stem}.npy").astype(np.float64)
            err = np.abs(ours - ref) / span
            single = np.load(single_file).astype(np.float64)
            max_error = float(err.max())
            row.update(max_error=max_error, mean_error=float(err.mean()),
                       max_error_to_single=float(np.abs(ours - single).max() / span))
            # As the parity rows: within the target, or as close as the official code.
            within = max_error <= target or (
                official is not None and max_error <= AS_OFFICIAL * official)
            row["ok"] = bool(within and row["max_error_to_single"] <= to_single)
            log(f"  parity {label} {photo.name} {row['precision']}: max {max_error:.2e} of range "
                f"(target {target:g}; to one by one {row['max_error_to_single']:.2e})")
            rows.append(row)
            on_row()


def time_official(model, batch, size, dtype, iters, device, compiled=False):
    """Median seconds of a forward pass of a copy of `model` converted to `dtype` (the
    model itself keeps its float32 weights); on a GPU the most MiB the caching allocator
    had allocated meanwhile for that copy, its input and its passes, as `anydepth bench`
    counts it in a process of its own (cuBLAS's workspaces made again), else None; and
    the seconds of the first pass (under torch.compile: compiling it)."""
    on_gpu = device == "cuda"
    if on_gpu:
        torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()
    allocated_before = torch.cuda.memory_allocated() if on_gpu else 0
    net = copy.deepcopy(model).to(dtype)
    if compiled:
        net = torch.compile(net)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(3 + iters):
            sync()
            t0 = time.perf_counter()
            net(x)
            sync()
            times.append(time.perf_counter() - t0)
    peak_mib = ((torch.cuda.max_memory_allocated() - allocated_before) / 2**20 if on_gpu
                else None)
    del net, x
    if on_gpu:
        torch.cuda.empty_cache()
    return statistics.median(times[3:]), peak_mib, times[0]


def time_anydepth(binary, weights, batch, size, precision, iters, device, *extra):
    """Median seconds of `anydepth bench`'s network timing, and the MiB it allocated and
    reserved at the peak and reserved after, where it reports them (on a GPU), else None."""
    out = anydepth(binary, "bench", "--weights", weights, "--device", device, "--precision",
                   precision, "--batch", batch, "--size", f"{size}x{size}", "--iters", iters,
                   "--warmup", 3, *extra)
    lines = out.splitlines()
    line = next(l for l in lines if l.startswith("network"))
    seconds = float(line.split(":")[1].split("ms")[0]) / 1e3
    memory = next((l for l in lines if l.startswith("device memory:")), None)
    if memory is None:
        return seconds, None
    values = [float(part.split("MiB")[0]) for part in memory.split(":", 1)[1].split(",")]
    return seconds, dict(zip(["peak_allocated_mib", "peak_reserved_mib", "reserved_after_mib"],
                             values))


def record_official(row, name, seconds, peak_mib):
    """An official timing (`time_official`'s median and peak memory) into `row`, under
    `official_{name}_`."""
    row[f"official_{name}_ms"] = seconds * 1e3
    if peak_mib is not None:
        row[f"official_{name}_peak_allocated_mib"] = peak_mib


def speed(binary, models, batches, iters, device, rows, on_row):
    """Appends a row per model and batch to `rows`, calling `on_row` after each (the
    report holds `rows` and is saved then: the longest section keeps its finished rows).
    The official code under torch.compile is the `compile` section's."""
    half = half_dtype(device)
    for encoder, (model, weights) in models.items():
        for batch in batches:
            row = dict(model=model_name(encoder), input="518x518", batch=batch)

            def official(name, dtype):
                seconds, peak_mib, _ = time_official(model, batch, 518, dtype, iters, device)
                record_official(row, name, seconds, peak_mib)

            def ours(name, precision, *extra):
                seconds, memory = time_anydepth(binary, weights, batch, 518, precision, iters,
                                                device, *extra)
                row[f"anydepth_{name}_ms"] = seconds * 1e3
                for key, value in (memory or {}).items():
                    row[f"anydepth_{name}_{key}"] = value

            official("fp32", torch.float32)
            official("fp16", half)
            # bf16 keeps the DPT head in fp32: its cost against fp16 on a GPU.
            for precision in ["fp32", "fp16", "bf16"]:
                ours(precision, precision)
            if device == "cuda":
                try:
                    ours("fp16_graphs", "fp16", "--cuda-graphs")
                except RuntimeError as e:  # the capture failed: the rest still counts
                    row["anydepth_fp16_graphs_error"] = str(e)[-500:]
                    log(f"  CUDA graphs failed: {e}")
            best = min(row["anydepth_fp16_ms"], row.get("anydepth_fp16_graphs_ms", float("inf")))
            row["best_fp16_ms"] = best
            row["best_fp16_images_per_s"] = batch / best * 1e3
            row["best_fp16_ratio_to_official_eager"] = best / row["official_fp16_ms"]
            log(f"  speed {row}")
            rows.append(row)
            on_row()
    return rows


def compile_section(models, rows, iters, device, on_row):
    """The official network under torch.compile in half precision, added to the speed rows
    already measured (`rows`), calling `on_row` after each: the last section, since
    compiling takes a while for every model and batch size, and a compiler that fails
    must cost no other figure. A row whose compilation fails keeps its error; when the
    first one fails, the others are not tried (a missing compiler fails them all)."""
    if not rows:
        raise RuntimeError("no speed rows to add torch.compile to (the speed section failed "
                           "before its first row)")
    by_name = {model_name(encoder): model for encoder, (model, _) in models.items()}
    compiled_rows = 0
    first_failure_type = None
    for row in rows:
        if first_failure_type is not None and not compiled_rows:
            row["official_compile_fp16_error"] = (
                f"not tried: the first failed ({first_failure_type})")
            on_row()
            continue
        try:
            torch._dynamo.reset()  # each row compiles afresh, at its own static shape
            seconds, peak_mib, first_pass_s = time_official(
                by_name[row["model"]], row["batch"], 518, half_dtype(device), iters, device,
                compiled=True)
        except Exception as e:  # the compiler's errors are of many kinds
            row["official_compile_fp16_error"] = str(e)[-500:]
            first_failure_type = first_failure_type or type(e).__name__
            log(f"  torch.compile {row['model']} batch {row['batch']} failed: {e}")
        else:
            record_official(row, "compile_fp16", seconds, peak_mib)
            row["official_compile_fp16_first_pass_s"] = first_pass_s
            row["best_fp16_ratio_to_official_compile"] = row["best_fp16_ms"] / (seconds * 1e3)
            compiled_rows += 1
            log(f"  torch.compile {row['model']} batch {row['batch']}: "
                f"{row['official_compile_fp16_ms']:.2f} ms, first pass {first_pass_s:.1f} s")
        on_row()
    if not compiled_rows:
        raise RuntimeError("torch.compile failed for every row (see the speed rows' "
                           "official_compile_fp16_error)")
    return dict(compiled_rows=compiled_rows)


def end_to_end(binary, model, weights, photo, iters, device):
    """The 1920x1080 photo: official read + infer_image (median) against `anydepth bench
    --photo` (mean per photo), both without writing anything: anydepth's total minus its
    write stage."""
    times = []
    with torch.no_grad():
        model.float().infer_image(cv2.imread(str(photo)), 518)
        for _ in range(iters):
            t0 = time.perf_counter()
            model.infer_image(cv2.imread(str(photo)), 518)
            times.append(time.perf_counter() - t0)
    row = dict(photo="1920x1080", official_fp32_ms=statistics.median(times) * 1e3)
    for precision in ["fp32", "fp16"]:
        out = anydepth(binary, "bench", "--weights", weights, "--device", device,
                       "--precision", precision, "--size", "518x518", "--photo", photo,
                       "--iters", iters, "--warmup", 2)
        lines = out.splitlines()
        start = next(i for i, l in enumerate(lines) if l.startswith("pipeline"))
        total = float(lines[start].split(":")[1].split("ms")[0])
        stages = [l.strip() for l in lines[start + 1:]]
        write = next(float(l.split()[1]) for l in stages if l.startswith("write"))
        row[f"anydepth_{precision}_ms"] = total - write
        row[f"anydepth_{precision}_stages"] = stages
    log(f"  end to end {row}")
    return row


def end_to_end_section(section, binary, model, weights, photo, folder, iters, device, small):
    """The photo row, then the folder row, into `section` (which keeps the photo row when
    the folder fails)."""
    section["photo"] = end_to_end(binary, model, weights, photo, iters, device)
    section["folder"] = folder_throughput(binary, model, weights, photo, folder,
                                          4 if small else 48, 2 if small else 16, device)
    return section


def folder_throughput(binary, model, weights, photo, folder, count, batch, device):
    """Photos per second over a folder of `count` copies of `photo`, each depth map
    written as .npy: the official loop (`cv2.imread`, `infer_image`, `np.save`, one photo
    after another, after a warm-up) against `anydepth depth` on the folder (decoding, the
    network and writing overlap there). Ours is the rate past the first batch, which
    pays for a new process's first use of the GPU: the photos beyond it over the time
    its summary gives a run of them all beyond that of the first batch alone."""
    def copies(name, n):
        folder_n = folder / name
        folder_n.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shutil.copyfile(photo, folder_n / f"photo{i:03}{photo.suffix}")
        return folder_n

    photos_dir, first_batch_dir = copies("photos", count), copies("first_batch", batch)
    official_out = folder / "official"
    official_out.mkdir(exist_ok=True)
    files = sorted(photos_dir.iterdir())
    with torch.no_grad():
        model.float().infer_image(cv2.imread(str(files[0])), 518)  # warm-up
        t0 = time.perf_counter()
        for path in files:
            depth = model.infer_image(cv2.imread(str(path)), 518)
            np.save(official_out / f"{path.stem}.npy", depth)
        official_s = time.perf_counter() - t0
    row = dict(photos=count, photo="1920x1080", batch=batch,
               official_fp32_photos_per_s=count / official_s)

    def depth_seconds(inputs, out):
        stderr = []
        anydepth(binary, "depth", inputs, "--out", out, "--weights", weights, "--device",
                 device, "--precision", precision, "--batch", batch, "--formats", "npy",
                 stderr=stderr)
        summary = stderr[-1]  # the run's whole stderr; the summary ends it
        took = re.search(r" in ([0-9.]+) s \(", summary)
        if took is None:
            raise RuntimeError(f"no time in the summary of anydepth depth:\n{summary}")
        return float(took.group(1))

    for precision in ["fp32", "fp16"]:
        first = depth_seconds(first_batch_dir, folder / f"first_{precision}")
        whole = depth_seconds(photos_dir, folder / f"anydepth_{precision}")
        row[f"anydepth_{precision}_photos_per_s"] = (count - batch) / (whole - first)
        row[f"anydepth_{precision}_whole_run_photos_per_s"] = count / whole
    log(f"  folder {row}")
    return row


def logged_step_ms(log_csv, batch, skip):
    """The median step of an `anydepth train`/`distill` CSV log, in ms, after `skip` steps."""
    rows = log_csv.read_text().splitlines()[1 + skip:]
    per_second = [float(r.split(",")[3]) for r in rows]
    return 1000 * batch / statistics.median(per_second)


def training(binary, folder, device, small, teacher):
    """Step times of metric fine-tuning (official loop and `anydepth train`) and a short
    distillation from the V2-S checkpoint `teacher`, on generated photos. The official
    loop's step has its random input on the device already; anydepth's includes reading
    the batch and copying it there."""
    batch, size, steps, warmup = (2, 126, 4, 1) if small else (8, 518, 30, 5)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2 * batch):
        rgb, depth = folder / f"photo{i}.png", folder / f"photo{i}_depth.png"
        cv2.imwrite(str(rgb), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        cv2.imwrite(str(depth), rng.integers(500, 8000, (480, 640), dtype=np.uint16))
        rows.append(f"{rgb} {depth} 1000")
    listing = folder / "train.txt"
    listing.write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    model = OfficialModel("vits", "v2", 20.0)
    init = folder / "metric_vits.pth"
    torch.save(model.state_dict(), init)
    official = statistics.median(step_times(model, batch, size, steps, warmup, device, True))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    out = folder / "train" / "metric.pth"
    started = time.perf_counter()
    anydepth(binary, "train", "--weights", init, "--metric", "indoor", "--dataset", "list",
             listing, "--out", out, "--steps", steps + warmup, "--batch", batch,
             "--input-size", size, "--lr", "1e-4", "--device", device, "--quiet")
    train_s = time.perf_counter() - started
    ours = logged_step_ms(out.with_suffix(".log.csv"), batch, warmup)
    log(f"  train step, batch {batch} at {size}: official {1000 * official:.1f} ms, "
        f"anydepth {ours:.1f} ms")
    out = folder / "distill" / "student.pth"
    started = time.perf_counter()
    anydepth(binary, "distill", "--teacher", teacher, "--student-model", "vits", "--images",
             *[folder / f"photo{i}.png" for i in range(2 * batch)], "--labels",
             folder / "labels", "--out", out, "--steps", steps + warmup, "--batch", batch,
             "--input-size", size, "--teacher-input-size", size, "--device", device,
             "--quiet")
    distill_s = time.perf_counter() - started
    distill = logged_step_ms(out.with_suffix(".log.csv"), batch, warmup)
    log(f"  distill step: {distill:.1f} ms")
    return dict(batch=batch, size=size, steps=steps, official_step_ms=1000 * official,
                anydepth_train_step_ms=ours, anydepth_train_images_per_s=1000 * batch / ours,
                anydepth_train_seconds=train_s, anydepth_distill_step_ms=distill,
                anydepth_distill_images_per_s=1000 * batch / distill,
                anydepth_distill_seconds=distill_s)


def failed(section):
    """Whether a section's entry in the report is its error rather than its results."""
    return isinstance(section, dict) and "error" in section


def finished_rows(report, section):
    """The rows of the parity or speed section: all of them, or those finished before it
    failed."""
    value = report.get(section)  # the rows, or the error with the rows before it
    return value.get("rows", []) if failed(value) else value or []


def failed_block(title, section):
    return [f"## {title}", "", "failed:", "", "```", section["error"], "```", ""]


def markdown(report):
    lines = [f"# GPU check: {report['gpu']}", "",
             f"torch {report['torch']}; anydepth doctor: see doctor.txt", ""]
    if "setup" in report:
        lines += failed_block("Setup (photos and checkpoints)", report["setup"])
    if failed(report.get("parity")):
        lines += failed_block("Parity", report["parity"])
    parity_rows = finished_rows(report, "parity")
    if parity_rows:
        lines += ["## Parity (random weights, TF32 off except in bf16's fp32 head)", "",
                  "| model | photo | size | precision | preprocessing | max error / range "
                  "| mean error / range | target | official, run the same way: max (mean) "
                  "| ok |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in parity_rows:
            official, official_mean = r.get("official_max_error"), r.get("official_mean_error")
            official_cell = ("-" if official is None else f"{official:.2e}" + (
                "" if official_mean is None else f" ({official_mean:.2e})"))
            within = r["max_error"] <= r["target"]
            verdict = ("NO" if not r["ok"] else "yes" if within else "as official")
            if "max_error_to_eager" in r:
                verdict += f" (to eager {r['max_error_to_eager']:.1e})"
            if "max_error_to_single" in r:
                verdict += f" (to one by one {r['max_error_to_single']:.1e})"
            if "graphs_failed" in r:
                verdict += " (CUDA graphs failed: see graphs_failed in the JSON)"
            if "staged_failed" in r:
                verdict += " (staged run failed: see staged_failed in the JSON)"
            lines.append(f"| {r['model']} | {r['photo']} | {r['size']} | {r['precision']} "
                         f"| {r['preprocessing']} | {r['max_error']:.2e} "
                         f"| {r['mean_error']:.2e} | {r['target']:g} "
                         f"| {official_cell} | {verdict} |")
        lines.append("")
    if failed(report.get("speed")):
        lines += failed_block("Network", report["speed"])
    speed_rows = finished_rows(report, "speed")
    if speed_rows:
        runs = " | ".join(label for label, _ in NETWORK_RUNS)
        rule = "---|" * len(NETWORK_RUNS)

        def cell(r, run, figure, fmt):
            """Run `run`'s `figure` in row `r`, "failed" where the run failed."""
            value = r.get(f"{run}_{figure}")
            return (format(value, fmt) if value is not None
                    else "failed" if f"{run}_error" in r else "-")

        def to_compiled(r):
            """anydepth's best fp16 over the official compiled fp16, "-" without it."""
            ratio = r.get("best_fp16_ratio_to_official_compile")
            return "-" if ratio is None else f"{ratio:.2f}x"

        lines += ["## Network, median ms per batch", "",
                  "Ratios: anydepth's best fp16 (eager or CUDA graphs) over the official "
                  "eager fp16 and over the official compiled fp16.", "",
                  f"| model | batch | {runs} | best fp16 ratio | to compiled "
                  "| best anydepth fp16 images/s |",
                  f"|---|---|{rule}---|---|---|"]
        for r in speed_rows:
            times = " | ".join(cell(r, run, "ms", ".2f") for _, run in NETWORK_RUNS)
            lines.append(
                f"| {r['model']} | {r['batch']} | {times} "
                f"| {r['best_fp16_ratio_to_official_eager']:.2f}x | {to_compiled(r)} "
                f"| {r['best_fp16_images_per_s']:.0f} |")
        lines.append("")
        first_passes = [f"{r['model']} batch {r['batch']} "
                        f"{r['official_compile_fp16_first_pass_s']:.0f} s"
                        for r in speed_rows if "official_compile_fp16_first_pass_s" in r]
        if first_passes:
            lines += ["torch.compile's first pass (compiling): " + ", ".join(first_passes),
                      ""]
        if any("official_fp32_peak_allocated_mib" in r for r in speed_rows):
            lines += ["## Network, device memory at the peak (MiB): weights, input and passes",
                      "", "Allocated by the caching allocator (its blocks: rounded sizes, "
                      "cuBLAS workspaces); for CUDA graphs also what stays reserved after "
                      "the passes, their pool included.", "",
                      f"| model | batch | {runs} | graphs reserved after |",
                      f"|---|---|{rule}---|"]
            for r in speed_rows:
                peaks = " | ".join(cell(r, run, "peak_allocated_mib", ".0f")
                                   for _, run in NETWORK_RUNS)
                lines.append(f"| {r['model']} | {r['batch']} | {peaks} "
                             f"| {cell(r, 'anydepth_fp16_graphs', 'reserved_after_mib', '.0f')} |")
            lines.append("")
    if failed(report.get("compile")):
        lines += failed_block("Official code under torch.compile", report["compile"])
    e2e = report.get("end_to_end")
    if failed(e2e):
        lines += failed_block("1920x1080 photo end to end", e2e)
    elif e2e:
        e, f = e2e["photo"], e2e["folder"]
        lines += ["## 1920x1080 photo end to end, ms per photo, nothing written", "",
                  "| official fp32 (imread + infer_image, median) | anydepth fp32 (mean) "
                  "| anydepth fp16 (mean) |",
                  "|---|---|---|",
                  f"| {e['official_fp32_ms']:.2f} | {e['anydepth_fp32_ms']:.2f} "
                  f"| {e['anydepth_fp16_ms']:.2f} |", "", "anydepth fp16 stages:", "", "```",
                  *e["anydepth_fp16_stages"], "```", "",
                  f"## A folder of {f['photos']} such photos, .npy written, photos/s", "",
                  "Ours past the first batch (in brackets: the whole run, the first use of "
                  "the GPU included).", "",
                  "| official fp32 (imread + infer_image + np.save, one by one) "
                  f"| anydepth depth fp32 (batch {f['batch']}) "
                  f"| anydepth depth fp16 (batch {f['batch']}) |",
                  "|---|---|---|",
                  f"| {f['official_fp32_photos_per_s']:.1f} "
                  f"| {f['anydepth_fp32_photos_per_s']:.1f} "
                  f"({f['anydepth_fp32_whole_run_photos_per_s']:.1f}) "
                  f"| {f['anydepth_fp16_photos_per_s']:.1f} "
                  f"({f['anydepth_fp16_whole_run_photos_per_s']:.1f}) |", ""]
    tr = report.get("training")
    if failed(tr):
        lines += failed_block("Training", tr)
    elif tr:
        lines += [f"## Training, V2-S metric, batch {tr['batch']} at {tr['size']}x{tr['size']}, "
                  f"fp32, median of {tr['steps']} steps", "",
                  "| official loop, input on the device (ms/step) "
                  "| anydepth train, data included (ms/step) | ratio "
                  "| anydepth train images/s | anydepth distill (ms/step) "
                  "| anydepth distill images/s |",
                  "|---|---|---|---|---|---|",
                  f"| {tr['official_step_ms']:.1f} | {tr['anydepth_train_step_ms']:.1f} "
                  f"| {tr['anydepth_train_step_ms'] / tr['official_step_ms']:.2f} "
                  f"| {tr['anydepth_train_images_per_s']:.1f} "
                  f"| {tr['anydepth_distill_step_ms']:.1f} "
                  f"| {tr['anydepth_distill_images_per_s']:.1f} |", ""]
    if "stopped" in report:
        lines += [f"Stopped by {report['stopped']}: later rows and sections are missing.", ""]
    seconds = report.get("section_seconds", {})
    lines += ["Seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
              ""]
    return "\n".join(lines)


SECTIONS = ["parity", "speed", "end_to_end", "training", "compile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--anydepth", required=True, help="the anydepth binary")
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and .md")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the compile section (the official code under torch.compile)")
    ap.add_argument("--sections",
                    help=f"which to run, comma-separated, in this order: {','.join(SECTIONS)} "
                         "(default: all; with --device cpu all but compile)")
    args = ap.parse_args()
    # float32 without TensorFloat-32 on both sides in every section (anydepth's default;
    # PyTorch would allow it in convolutions).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = args.device
    small = device == "cpu"  # checking the script itself: tiny settings
    if args.sections is None:  # compiling on the CPU takes minutes: only when named
        asked = [name for name in SECTIONS if not (small and name == "compile")]
    else:
        asked = [name for name in args.sections.split(",") if name]
    unknown = sorted(set(asked) - set(SECTIONS))
    if unknown or not asked:
        ap.error(f"--sections takes some of {SECTIONS}, got {args.sections!r}")
    # In the listed order: the compile section fills in the speed section's rows.
    sections = [name for name in SECTIONS
                if name in asked and not (args.no_compile and name == "compile")]
    if not sections:
        ap.error("--no-compile leaves no section to run")
    if "compile" in sections and "speed" not in sections:
        ap.error("the compile section adds to the speed section's rows: name speed too")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = dict(gpu=torch.cuda.get_device_name() if device == "cuda" else "CPU (script check)",
                  torch=torch.__version__, section_seconds={})

    def save():
        # After every section, so a run cut short keeps what it measured; each file is
        # replaced whole, so one cut short mid-write keeps the previous version.
        report["seconds"] = time.perf_counter() - started
        for name, text in [("gpu_check.json", json.dumps(report, indent=2)),
                           ("gpu_check.md", markdown(report))]:
            partial = out / f".{name}.{time.monotonic_ns()}"  # its own, even in a signal
            try:
                partial.write_text(text)
                os.replace(partial, out / name)
            finally:  # a signal mid-write leaves no stray file
                partial.unlink(missing_ok=True)

    running = {}  # the section under way: its name and start

    def stop(signum, _frame):
        # A time limit's SIGTERM: keep what was measured, say where it stopped.
        report["stopped"] = f"signal {signum} after {time.perf_counter() - started:.0f} s"
        if running:
            report["stopped"] += f", during {running['name']}"
            report["section_seconds"][running["name"]] = time.perf_counter() - running["started"]
        try:
            save()
        finally:
            sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            photo_paths, big = photos(tmp, 1 if small else 2)
            with_vitl = not small and bool({"parity", "speed"} & set(sections))
            encoders = ["vits", "vitl"] if with_vitl else ["vits"]
            log("making random-weight checkpoints")
            models = {e: checkpoint(e, tmp, device) for e in encoders}
        except Exception as e:  # nothing can run; say why in the report
            log(f"setup failed: {e}")
            report["setup"] = dict(error=str(e))
            save()
            return 1
        runs = dict(
            parity=lambda: parity_section(args.anydepth, models, photo_paths, device,
                                          tmp / "parity", report.setdefault("parity", []),
                                          save),
            speed=lambda: speed(args.anydepth, models, [1] if small else [1, 16], args.iters,
                                device, report.setdefault("speed", []), save),
            end_to_end=lambda: end_to_end_section(
                report.setdefault("end_to_end", {}), args.anydepth, *models["vits"], big,
                tmp / "folder", args.iters, device, small),
            training=lambda: training(args.anydepth, tmp / "training", device, small,
                                      models["vits"][1]),
            compile=lambda: compile_section(models, finished_rows(report, "speed"),
                                            args.iters, device, save),
        )
        for name in sections:
            log(name)
            section_started = time.perf_counter()
            running.update(name=name, started=section_started)
            try:
                report[name] = runs[name]()
            except Exception as e:  # keep the other sections' results
                log(f"{name} failed: {e}")
                done = report.get(name)  # the parity or speed rows finished before it failed
                report[name] = dict(error=str(e), **({"rows": done} if done else {}))
            report["section_seconds"][name] = time.perf_counter() - section_started
            save()
    save()
    print(markdown(report))
    parity_rows = finished_rows(report, "parity")
    missed = [r for r in parity_rows if not r["ok"]]
    errors = [name for name in sections if failed(report.get(name))]
    if parity_rows:
        log(f"parity: {len(parity_rows) - len(missed)} of {len(parity_rows)} rows pass")
    log(f"done in {report['seconds']:.0f} s"
        + (f"; failed: {', '.join(errors)}" if errors else ""))
    # The compile section times the official code alone: its failure is reported, and
    # fails nothing of anydepth's.
    return 1 if missed or set(errors) - {"compile"} else 0


if __name__ == "__main__":
    sys.exit(main())
