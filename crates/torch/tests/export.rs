//! Checkpoint export: `write_pth` and `write_hf_safetensors` write what PyTorch, the
//! official Depth Anything code and `transformers` load, and what our reader reads back
//! bit for bit; writes are atomic.
//!
//! The Python checks run the project's virtual environment (`$ANYDEPTH_PYTHON`, default
//! `.venv/bin/python`) on the random-weight references of
//! `scripts/reference/make_references.py`. Without them the tests say so and pass, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anydepth_torch::export::{to_hf_names, write_hf_safetensors, write_pth};
use anydepth_torch::pth::StateDict;
use anydepth_torch::safetensors_file::SafetensorsFile;
use anydepth_torch::weights::{Checkpoint, CheckpointHints};
use anydepth_torch::{Encoder, Error, Head, ModelConfig, Version};
use tch::{Device, Kind, Tensor};

// ------------------------------------------------------------------------ helpers

/// The project's Python, or `None` (after saying so) when there is none.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("ANYDEPTH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::project_root().join(".venv/bin/python"));
    if python.exists() {
        Some(python)
    } else {
        common::missing(&format!(
            "no Python at {} (set ANYDEPTH_PYTHON or create .venv)",
            python.display()
        ));
        None
    }
}

/// A reference file, or `None` (after saying so) when the references are absent.
fn reference(relative: &str) -> Option<PathBuf> {
    let path = common::reference_dir()?.join(relative);
    if path.is_file() {
        Some(path)
    } else {
        common::missing(&format!(
            "{} not found (run .venv/bin/python scripts/reference/make_references.py)",
            path.display()
        ));
        None
    }
}

/// Runs an inline Python script; panics with its output when it fails.
fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The raw bytes of a tensor, for bit-exact comparisons.
fn bytes(t: &Tensor) -> Vec<u8> {
    let t = t.to_device(Device::Cpu).contiguous();
    let mut out = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut out, t.numel());
    out
}

/// Same names, dtypes, shapes and bits.
fn assert_identical(ours: &BTreeMap<String, Tensor>, expected: &BTreeMap<String, Tensor>) {
    let names: Vec<_> = ours.keys().collect();
    assert_eq!(names, expected.keys().collect::<Vec<_>>(), "tensor names");
    for (name, t) in expected {
        let o = &ours[name];
        assert_eq!(o.kind(), t.kind(), "{name}: dtype");
        assert_eq!(o.size(), t.size(), "{name}: shape");
        assert!(bytes(o) == bytes(t), "{name}: values differ");
    }
}

/// A checkpoint's tensors, read from its file if it was indexed.
fn tensors_of(checkpoint: &Checkpoint) -> BTreeMap<String, Tensor> {
    checkpoint.tensors().expect("reads the tensors")
}

fn as_list(tensors: &BTreeMap<String, Tensor>) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

/// The names of the files in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Tensors of every dtype the writer must keep, with awkward layouts.
fn mixed_tensors() -> Vec<(String, Tensor)> {
    let opts = (Kind::Float, Device::Cpu);
    let f32s = Tensor::randn([3, 4, 5], opts);
    let mut special = Tensor::from_slice(&[
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
    ]);
    special = special.view([7]);
    vec![
        ("encoder.weight".into(), f32s.shallow_clone()),
        ("encoder.special".into(), special),
        ("half".into(), Tensor::randn([17], opts).to_kind(Kind::Half)),
        (
            "bfloat".into(),
            Tensor::randn([2, 3], opts).to_kind(Kind::BFloat16),
        ),
        (
            "steps".into(),
            Tensor::from_slice(&[0i64, -1, 255, 256, 70_000, i64::MAX, i64::MIN, -(1 << 40)]),
        ),
        // Non-contiguous: a transposed view, and a slice with a storage offset.
        ("transposed".into(), f32s.select(0, 1).tr()),
        ("sliced".into(), f32s.narrow(0, 1, 2)),
        ("scalar".into(), Tensor::from(2.5f64)),
        ("empty".into(), Tensor::zeros([0, 3], opts)),
        ("flags".into(), Tensor::from_slice(&[true, false, true])),
        (
            "conv.weight".into(),
            Tensor::randn([4, 3, 2, 2], opts).to_kind(Kind::Double),
        ),
    ]
}

// ------------------------------------------------------------------------ .pth

#[test]
fn pth_round_trips_bit_for_bit_through_our_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.pth");
    let tensors = mixed_tensors();
    assert!(
        !tensors[5].1.is_contiguous(),
        "the transposed view is strided"
    );
    write_pth(&path, &tensors).expect("writes");
    let read = anydepth_torch::pth::read_state_dict(&path).expect("reads back");
    let names: Vec<&str> = read.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected, "names and their order");
    for ((name, ours), (_, original)) in read.iter().zip(&tensors) {
        assert_eq!(ours.kind(), original.kind(), "{name}: dtype");
        assert_eq!(ours.size(), original.size(), "{name}: shape");
        assert!(bytes(ours) == bytes(original), "{name}: values differ");
    }
    assert_eq!(listing(dir.path()), ["mixed.pth"], "no temporary file left");
}

/// A copy of the `.pth` archive `from` at `to`, with the storage `key` cut to its first
/// `keep` bytes.
fn with_truncated_storage(from: &Path, to: &Path, key: &str, keep: usize) {
    use std::io::{Read, Write};
    let file = std::fs::File::open(from).expect("opens the archive");
    let mut archive = zip::ZipArchive::new(file).expect("a zip archive");
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).expect("creates the copy"));
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("an entry");
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("reads the entry");
        if name.ends_with(&format!("/data/{key}")) {
            bytes.truncate(keep);
        }
        out.start_file(name, stored).expect("starts the entry");
        out.write_all(&bytes).expect("writes the entry");
    }
    out.finish().expect("finishes the copy");
}

#[test]
fn pth_tensors_beyond_their_storage_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.pth");
    write_pth(&path, &mixed_tensors()).expect("writes");
    let state_dict = StateDict::open(&path).expect("indexes the file");
    assert_eq!(state_dict.entries()[0].1.size(), [3, 4, 5]);

    // `encoder.weight` (60 floats) is storage 0.
    let short = dir.path().join("short.pth");
    with_truncated_storage(&path, &short, "0", 40);
    let err = StateDict::open(&short).expect_err("a short storage is refused");
    assert!(
        err.contains("encoder.weight needs 60 elements of storage 0, which holds 10"),
        "{err}"
    );

    // The indexed file overwritten before its tensors were read: an error, not a crash.
    std::fs::copy(&short, &path).expect("overwrites the file");
    let err = state_dict
        .for_each_tensor(0..state_dict.entries().len(), |_, _| Ok(()))
        .expect_err("the storage no longer holds the tensor");
    assert!(err.contains("encoder.weight: outside its storage"), "{err}");
}

#[test]
fn safetensors_are_read_one_tensor_at_a_time_and_short_files_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.safetensors");
    let tensors: Vec<(String, Tensor)> = mixed_tensors()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.contiguous()))
        .collect();
    Tensor::write_safetensors(&tensors, &path).expect("writes");
    let file = SafetensorsFile::open(&path).expect("indexes the file");
    assert_eq!(file.entries().len(), tensors.len());
    let mut read = BTreeMap::new();
    file.for_each_tensor(0..tensors.len(), |i, tensor| {
        read.insert(file.entries()[i].0.clone(), tensor);
        Ok(())
    })
    .expect("reads every tensor");
    let expected: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    assert_identical(&read, &expected);

    // The last tensor's bytes cut short: refused when indexed, an error when read.
    let bytes = std::fs::metadata(&path).expect("size").len();
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("opens for writing");
    cut.set_len(bytes - 4).expect("truncates");
    let err = SafetensorsFile::open(&path).expect_err("a short file is refused");
    assert!(err.contains("beyond the file's"), "{err}");
    let count = file.entries().len();
    let err = file
        .for_each_tensor(0..count, |_, _| Ok(()))
        .expect_err("the file no longer holds the last tensor");
    assert!(
        file.entries()
            .iter()
            .any(|(name, _)| err.starts_with(&format!("{name}: "))),
        "names the tensor: {err}"
    );
}

/// A ViT-S in Hugging Face's names, as far as recognising it needs (the position embedding
/// and 12 layers' query, key and value), with `value_width` columns in the values' weights.
fn hugging_face_attention(value_width: i64) -> Vec<(String, Tensor)> {
    let opts = (Kind::Float, Device::Cpu);
    let mut tensors = vec![(
        "backbone.embeddings.position_embeddings".to_string(),
        Tensor::randn([1, 2, 384], opts),
    )];
    for layer in 0..12 {
        // Different rows per part, so a swapped order shows in the shape too.
        for (rows, proj) in [(2, "query"), (3, "key"), (4, "value")] {
            let width = if proj == "value" { value_width } else { 3 };
            let prefix = format!("backbone.encoder.layer.{layer}.attention.attention.{proj}");
            tensors.push((
                format!("{prefix}.weight"),
                Tensor::randn([rows, width], opts),
            ));
            tensors.push((format!("{prefix}.bias"), Tensor::randn([rows], opts)));
        }
    }
    tensors
}

#[test]
fn hugging_face_query_key_and_value_are_fused_as_they_are_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    let tensors = hugging_face_attention(3);
    Tensor::write_safetensors(&tensors, &path).expect("writes");
    let indexed = Checkpoint::read(&path).expect("indexes the file");
    assert_eq!(indexed.encoder, Encoder::Vits);
    let qkv = "pretrained.blocks.5.attn.qkv.weight";
    assert_eq!(indexed.shapes()[qkv], [9, 3]);
    let read = tensors_of(&indexed);
    let part = |proj: &str| {
        let name = format!("backbone.encoder.layer.5.attention.attention.{proj}.weight");
        let (_, tensor) = tensors.iter().find(|(n, _)| *n == name).expect("the part");
        tensor.shallow_clone()
    };
    let expected = Tensor::cat(&[part("query"), part("key"), part("value")], 0);
    assert!(bytes(&read[qkv]) == bytes(&expected), "q, k, v in order");
    let in_memory = Checkpoint::from_tensors(&path, tensors, CheckpointHints::default())
        .expect("the same tensors given in memory");
    assert_identical(&read, &tensors_of(&in_memory));

    Tensor::write_safetensors(&hugging_face_attention(5), &path).expect("writes");
    let err = Checkpoint::read(&path).expect_err("values of another width");
    assert!(err.to_string().contains("cannot be joined"), "{err}");
}

/// `torch.save` of views sharing two storages (tied, offset, strided, a scalar, empty, in
/// fp32 and fp16), and beside it each view saved as a clone on a storage of its own.
const TORCH_SHARED_STORAGES: &str = r#"
import collections, sys, torch
torch.manual_seed(0)
base = torch.randn(4, 6)
halves = torch.randn(10).half()
shared = collections.OrderedDict([
    ("base", base), ("tied", base), ("row", base[2]), ("cols", base[:, 1:4]),
    ("transposed", base.t()), ("tail", halves[3:]), ("scalar", base[1, 2]),
    ("halves", halves), ("empty", base[:0]),
])
torch.save(shared, sys.argv[1])
torch.save(collections.OrderedDict((k, v.clone()) for k, v in shared.items()), sys.argv[2])
"#;

#[test]
fn pth_views_sharing_a_storage_read_as_torch_saved_them() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared.pth");
    let separate = dir.path().join("separate.pth");
    run_python(&python, TORCH_SHARED_STORAGES, &[&shared, &separate]);
    let index = StateDict::open(&shared).expect("indexes the shared file");
    assert_eq!(index.entries().len(), 9);
    let ours = anydepth_torch::pth::read_state_dict(&shared).expect("reads the shared file");
    let clones = anydepth_torch::pth::read_state_dict(&separate).expect("reads the clones");
    let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "tied",
            "row",
            "cols",
            "transposed",
            "tail",
            "scalar",
            "halves",
            "empty"
        ]
    );
    for ((name, view), (_, clone)) in ours.iter().zip(&clones) {
        assert_eq!(view.kind(), clone.kind(), "{name}: dtype");
        assert_eq!(view.size(), clone.size(), "{name}: shape");
        assert!(bytes(view) == bytes(clone), "{name}: values differ");
    }
    // Some of them only: each is still the right view of its storage.
    let mut picked = Vec::new();
    index
        .for_each_tensor([4, 2], |i, tensor| {
            picked.push((i, tensor));
            Ok(())
        })
        .expect("reads two");
    assert_eq!(picked.len(), 2);
    for (i, tensor) in &picked {
        assert!(bytes(tensor) == bytes(&clones[*i].1), "{}", clones[*i].0);
    }
}

/// torch.load reads our file as the same OrderedDict; torch.save of what it read gives
/// the same archive byte for byte up to the serialization id (a hash we cannot match).
const TORCH_RESAVE_CHECK: &str = r#"
import collections, os, sys, tempfile, zipfile, torch
ours = sys.argv[1]
sd = torch.load(ours, map_location="cpu", weights_only=True)
assert type(sd) is collections.OrderedDict, type(sd)
print(" ".join(f"{k}:{str(v.dtype)[6:]}:{'x'.join(map(str, v.shape))}" for k, v in sd.items()))
with tempfile.TemporaryDirectory() as d:
    theirs = os.path.join(d, os.path.basename(ours))
    torch.save(sd, theirs)
    za, zb = zipfile.ZipFile(ours), zipfile.ZipFile(theirs)
    ia, ib = za.infolist(), zb.infolist()
    assert [i.filename for i in ia] == [i.filename for i in ib], ([i.filename for i in ia], [i.filename for i in ib])
    for a, b in zip(ia, ib):
        assert a.filename.endswith("serialization_id") or a.CRC == b.CRC, a.filename
        for f in ("header_offset", "file_size", "compress_type", "flag_bits", "extra"):
            assert getattr(a, f) == getattr(b, f), (a.filename, f, getattr(a, f), getattr(b, f))
        if a.file_size and not a.filename.endswith("serialization_id"):
            assert za.read(a) == zb.read(b), a.filename
    last = ia[-1].header_offset
    assert open(ours, "rb").read()[:last] == open(theirs, "rb").read()[:last]
    again = torch.load(theirs, map_location="cpu", weights_only=True)
    for k in sd:
        assert torch.equal(sd[k], again[k]), k
print("identical to torch.save")
"#;

#[test]
fn pth_is_what_torch_save_writes() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.pth");
    let tensors = mixed_tensors();
    write_pth(&path, &tensors).expect("writes");
    let out = run_python(&python, TORCH_RESAVE_CHECK, &[&path]);
    let described = out.lines().next().unwrap_or_default();
    let expected: Vec<String> = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = match t.kind() {
                Kind::Float => "float32",
                Kind::Half => "float16",
                Kind::BFloat16 => "bfloat16",
                Kind::Int64 => "int64",
                Kind::Double => "float64",
                Kind::Bool => "bool",
                other => panic!("unexpected {other:?}"),
            };
            let shape: Vec<String> = t.size().iter().map(i64::to_string).collect();
            format!("{n}:{dtype}:{}", shape.join("x"))
        })
        .collect();
    assert_eq!(
        described,
        expected.join(" "),
        "names, order, dtypes, shapes"
    );
    assert!(out.contains("identical to torch.save"), "{out}");
}

const OFFICIAL_LOAD_CHECK: &str = r#"
import sys, torch
from depth_anything_v2.dpt import DepthAnythingV2
from torch.utils.serialization import config
ours, original = sys.argv[1], sys.argv[2]
sd = torch.load(ours, map_location="cpu", weights_only=True)
ref = torch.load(original, map_location="cpu", weights_only=True)
assert sorted(sd) == sorted(ref), set(sd) ^ set(ref)
for k, v in ref.items():
    assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
    assert torch.equal(sd[k], v), k
model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
model.load_state_dict(sd, strict=True)
for k, v in model.state_dict().items():
    assert torch.equal(v, ref[k]), k
# mmap, with offsets computed from miniz's layout instead of read from the headers.
config.load.calculate_storage_offsets = True
mapped = torch.load(ours, map_location="cpu", weights_only=True, mmap=True)
for k, v in ref.items():
    assert torch.equal(mapped[k], v), k
print("official model loads", len(sd), "tensors")
"#;

#[test]
fn pth_of_v2_small_loads_into_the_official_model() {
    let Some(original) = reference("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    let Some(python) = python() else { return };
    let checkpoint = Checkpoint::read(&original).expect("reads reference");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("depth_anything_v2_vits.pth");
    write_pth(&path, &as_list(&tensors_of(&checkpoint))).expect("writes");
    let out = run_python(&python, OFFICIAL_LOAD_CHECK, &[&path, &original]);
    assert!(out.contains("official model loads"), "{out}");
    eprintln!("{}", out.trim());

    let back = Checkpoint::read(&path).expect("our reader reads it");
    assert_eq!(back.encoder, Encoder::Vits);
    assert_eq!(back.hints, checkpoint.hints, "hints from the file name");
    assert_identical(&tensors_of(&back), &tensors_of(&checkpoint));
}

// ------------------------------------------------------------------------ Hugging Face

#[test]
fn hugging_face_names_invert_the_reader_on_v2_small() {
    let Some(original) = reference("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    let official = Checkpoint::read(&original).expect("reads reference");
    let hf = to_hf_names(&as_list(&tensors_of(&official))).expect("every name maps");
    // Each block's qkv weight and bias become three tensors each.
    assert_eq!(
        hf.len(),
        official.shapes().len() + 4 * 12,
        "qkv split in three"
    );
    assert!(hf
        .iter()
        .all(|(n, _)| !n.starts_with("pretrained.") && !n.starts_with("depth_head.")));
    let back = Checkpoint::from_tensors(Path::new("hf"), hf, CheckpointHints::default())
        .expect("reads the renamed tensors");
    assert_identical(&tensors_of(&back), &tensors_of(&official));

    // The names are exactly those transformers writes (its own V2-S metric checkpoint).
    let Some(hf_file) = reference("v2-vits-metric-indoor/model.safetensors") else {
        return;
    };
    let theirs = Tensor::read_safetensors(&hf_file).expect("reads safetensors");
    let metric = Checkpoint::read(&hf_file).expect("reads HF reference");
    let ours = to_hf_names(&as_list(&tensors_of(&metric))).expect("every name maps");
    let ours: BTreeMap<String, Tensor> = ours.into_iter().collect();
    let theirs: BTreeMap<String, Tensor> = theirs.into_iter().collect();
    assert_identical(&ours, &theirs);
}

#[test]
fn unknown_names_have_no_hugging_face_name() {
    let t = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    for name in [
        "pretrained.blocks.0.attn.extra.weight",
        "depth_head.scratch.refinenet5.out_conv.weight",
        "depth_head.scratch.layer0_rn.weight",
        "something.else",
    ] {
        let err =
            to_hf_names(&[(name.to_string(), t.shallow_clone())]).expect_err("must be refused");
        assert!(err.to_string().contains(name), "{err}");
    }
    let odd = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
    assert!(to_hf_names(&[("pretrained.blocks.0.attn.qkv.weight".into(), odd)]).is_err());
}

/// transformers loads the folder with nothing missing or unexpected, its tensors are the
/// file's, and its output matches the official model (`.pth`) or transformers' own
/// checkpoint (a folder) on the same input.
const TRANSFORMERS_CHECK: &str = r#"
import sys, tempfile, warnings, torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import DepthAnythingForDepthEstimation
folder, kind, max_depth, reference = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model, info = DepthAnythingForDepthEstimation.from_pretrained(folder, output_loading_info=True)
for w in caught:
    print("warning:", w.message)
problems = {k: v for k, v in info.items() if v}
assert not problems, problems
cfg = model.config
assert cfg.depth_estimation_type == kind, cfg.depth_estimation_type
assert kind == "relative" or cfg.max_depth == max_depth, cfg.max_depth
with safe_open(folder + "/model.safetensors", "pt") as f:
    assert f.metadata() == {"format": "pt"}, f.metadata()
# transformers 5 renames tensors in memory (q_proj, ...); what it saves must be our file.
sd = load_file(folder + "/model.safetensors")
with tempfile.TemporaryDirectory() as d:
    model.save_pretrained(d)
    saved = load_file(d + "/model.safetensors")
assert set(sd) == set(saved), set(sd) ^ set(saved)
for k, v in sd.items():
    assert saved[k].dtype == v.dtype and torch.equal(saved[k], v), k
torch.manual_seed(0)
x = torch.randn(1, 3, 518, 518)
model.eval()
with torch.no_grad():
    ours = model(pixel_values=x).predicted_depth
    if reference.endswith(".pth"):
        from depth_anything_v2.dpt import DepthAnythingV2
        official = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
        official.load_state_dict(torch.load(reference, map_location="cpu", weights_only=True))
        official.eval()
        theirs = official(x)
    else:
        theirs = DepthAnythingForDepthEstimation.from_pretrained(reference).eval()(pixel_values=x).predicted_depth
err = float((ours - theirs).abs().max() / (theirs.max() - theirs.min()))
assert ours.shape == theirs.shape and err < 1e-4, (ours.shape, theirs.shape, err)
print(f"transformers loads it: {len(sd)} tensors, {kind}, output within {err:.1e} of the reference")
"#;

fn check_hf_export(
    name: &str,
    source: &Path,
    config: ModelConfig,
    reference: &Path,
    python: &Path,
) {
    let official = Checkpoint::read(source).expect("reads reference");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    write_hf_safetensors(&path, &as_list(&tensors_of(&official)), &config).expect("writes");
    assert_eq!(
        listing(dir.path()),
        ["config.json", "model.safetensors"],
        "{name}: the two files, no temporary one"
    );

    let back = Checkpoint::read(&path).expect("our reader reads it");
    assert_eq!(back.encoder, config.encoder, "{name}");
    assert_eq!(
        back.hints,
        CheckpointHints {
            version: Some(config.version),
            head: Some(config.head)
        },
        "{name}: hints from config.json"
    );
    assert_identical(&tensors_of(&back), &tensors_of(&official));

    let (kind, max_depth) = match config.head {
        Head::Relative => ("relative", 1.0),
        Head::Metric { max_depth_m } => ("metric", max_depth_m),
    };
    let out = run_python(
        python,
        TRANSFORMERS_CHECK,
        &[
            dir.path(),
            Path::new(kind),
            Path::new(&max_depth.to_string()),
            reference,
        ],
    );
    eprintln!("{name}: {}", out.trim());
}

#[test]
fn hugging_face_export_loads_in_transformers() {
    let Some(pth) = reference("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    let Some(metric) = reference("v2-vits-metric-indoor/model.safetensors") else {
        return;
    };
    let Some(python) = python() else { return };
    check_hf_export(
        "V2-S relative",
        &pth,
        ModelConfig::v2(Encoder::Vits),
        &pth,
        &python,
    );
    let metric_dir = metric.parent().expect("folder");
    check_hf_export(
        "V2-S metric indoor",
        &metric,
        ModelConfig::v2_metric_indoor(Encoder::Vits),
        metric_dir,
        &python,
    );
}

#[test]
fn hugging_face_config_tells_v1_and_outdoor_apart() {
    let Some(v1) = reference("v1-vits/model.safetensors") else {
        return;
    };
    let official = Checkpoint::read(&v1).expect("reads reference");
    assert_eq!(official.hints.version, Some(Version::V1));
    let dir = tempfile::tempdir().expect("temp dir");
    for config in [
        ModelConfig::v1(Encoder::Vits),
        ModelConfig::v2_metric_outdoor(Encoder::Vits),
        ModelConfig::new(
            Version::V2,
            Encoder::Vits,
            Head::Metric { max_depth_m: 7.5 },
        ),
    ] {
        let path = dir.path().join("model.safetensors");
        write_hf_safetensors(&path, &as_list(&tensors_of(&official)), &config).expect("writes");
        let back = Checkpoint::read(&path).expect("reads back");
        assert_eq!(
            back.hints.version,
            Some(config.version),
            "{}",
            config.describe()
        );
        assert_eq!(back.hints.head, Some(config.head), "{}", config.describe());
    }
    let wrong = ModelConfig::v2(Encoder::Vitb);
    let err = write_hf_safetensors(
        &dir.path().join("b.safetensors"),
        &as_list(&tensors_of(&official)),
        &wrong,
    )
    .expect_err("a ViT-S is not a ViT-B");
    assert!(err.to_string().contains("768"), "{err}");
    assert_eq!(listing(dir.path()), ["config.json", "model.safetensors"]);
}

// ------------------------------------------------------------------------ atomicity

/// A tensor that fails only when its data is read, after the file has been started.
fn unreadable() -> Tensor {
    Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).to_sparse(None, None::<i64>, None::<i64>)
}

#[test]
fn failed_writes_leave_the_previous_file_and_no_temporary_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.pth");
    std::fs::write(&path, b"previous bytes").expect("seed file");
    let good = (
        "a".to_string(),
        Tensor::ones([1000], (Kind::Float, Device::Cpu)),
    );

    // Fails midway: the archive has records when the second tensor cannot be read.
    let err = write_pth(&path, &[good.clone_pair(), ("b".into(), unreadable())])
        .expect_err("a sparse tensor cannot be written");
    assert!(matches!(err, Error::Export { .. }), "{err}");
    assert!(err.to_string().contains("tensor b"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), b"previous bytes");
    assert_eq!(listing(dir.path()), ["model.pth"]);

    // Refused before writing: duplicate names, a dtype torch.save has no storage for.
    let complex = Tensor::ones([2], (Kind::ComplexFloat, Device::Cpu));
    assert!(write_pth(&path, &[good.clone_pair(), good.clone_pair()]).is_err());
    assert!(write_pth(&path, &[("c".into(), complex)]).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), b"previous bytes");

    // The destination is a directory: it stays as it was.
    let folder = dir.path().join("folder.pth");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("inside"), b"x").expect("write");
    assert!(write_pth(&folder, &[good.clone_pair()]).is_err());
    assert_eq!(listing(&folder), ["inside"]);

    // The temporary file cannot be created: its folder does not exist.
    let nowhere = dir.path().join("missing/model.pth");
    let err = write_pth(&nowhere, &[good.clone_pair()]).expect_err("no folder");
    assert!(err.to_string().contains("temporary"), "{err}");
    assert_eq!(listing(dir.path()), ["folder.pth", "model.pth"]);

    // A successful write replaces the file, leaving nothing else.
    write_pth(&path, &[good.clone_pair()]).expect("writes");
    assert_ne!(std::fs::read(&path).expect("read"), b"previous bytes");
    assert_eq!(listing(dir.path()), ["folder.pth", "model.pth"]);
}

#[test]
fn failed_hugging_face_writes_leave_both_previous_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    let config_path = dir.path().join("config.json");
    std::fs::write(&path, b"old weights").expect("seed");
    std::fs::write(&config_path, b"old config").expect("seed");
    let opts = (Kind::Float, Device::Cpu);
    let tensors = vec![
        (
            "pretrained.pos_embed".to_string(),
            Tensor::zeros([1, 1370, 384], opts),
        ),
        (
            "pretrained.cls_token".to_string(),
            Tensor::zeros([1, 1, 384], opts),
        ),
        ("pretrained.norm.weight".to_string(), unreadable()),
    ];
    let err = write_hf_safetensors(&path, &tensors, &ModelConfig::v2(Encoder::Vits))
        .expect_err("fails on the sparse tensor");
    assert!(
        err.to_string().contains("backbone.layernorm.weight"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"old weights");
    assert_eq!(std::fs::read(&config_path).expect("read"), b"old config");
    assert_eq!(listing(dir.path()), ["config.json", "model.safetensors"]);

    // config.json cannot be replaced (a directory): the weights are not replaced either.
    std::fs::remove_file(&config_path).expect("rm");
    std::fs::create_dir(&config_path).expect("mkdir");
    let fine = &tensors[..2];
    assert!(write_hf_safetensors(&path, fine, &ModelConfig::v2(Encoder::Vits)).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), b"old weights");
    assert_eq!(listing(dir.path()), ["config.json", "model.safetensors"]);
}

trait ClonePair {
    fn clone_pair(&self) -> Self;
}

impl ClonePair for (String, Tensor) {
    fn clone_pair(&self) -> Self {
        (self.0.clone(), self.1.shallow_clone())
    }
}
