//! Writing checkpoints: the inverse of [`crate::weights`] and [`crate::pth`].
//!
//! [`write_pth`] writes a state dict as `torch.save(OrderedDict(...), path)` does: a zip
//! archive laid out exactly as PyTorch's writer (miniz) lays it out, with a protocol-2
//! pickle, so `torch.load(path, weights_only=True)` and the official `load_state_dict`
//! take it. [`write_hf_safetensors`] writes the Hugging Face `transformers` layout
//! (`DepthAnythingForDepthEstimation`): the weights under its names, and a `config.json`
//! beside them. [`to_hf_names`] is the renaming alone.
//!
//! Every file is written atomically: into a temporary file in the destination's folder,
//! synced to disk, then renamed over the destination. When anything fails, the previous
//! file (if any) is left as it was and the temporary file is removed. Tensors are copied
//! to the CPU one at a time while writing, so a model is never held twice in memory.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anydepth_model::config::{Ffn, Head, ModelConfig};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Writes `tensors` as `torch.save(collections.OrderedDict(tensors), path)` would, in the
/// zip format of PyTorch 1.6 and later.
///
/// The archive holds `<stem>/data.pkl` (pickle protocol 2: an `OrderedDict` of tensors
/// rebuilt by `torch._utils._rebuild_tensor_v2`), one record `<stem>/data/<i>` per tensor
/// (its elements, contiguous, little-endian, aligned to 64 bytes), `.format_version`,
/// `.storage_alignment`, `byteorder`, `version` and `.data/serialization_id`, where
/// `<stem>` is the file name without its extension, as PyTorch names it. Each tensor gets
/// its own storage (shared storages are not preserved); dtypes, shapes and values are.
/// The write is atomic (see the [module documentation](self)).
///
/// # Errors
/// [`Error::Export`] when two tensors have the same name, a tensor is undefined, sparse or
/// of a dtype `torch.save` has no storage class for (complex, quantised), or the file
/// cannot be written; the previous file at `path` is then untouched.
pub fn write_pth(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let fail = |reason: String| Error::Export {
        reason,
        path: path.to_path_buf(),
    };
    check_destination(path).map_err(fail)?;
    let metas = describe(tensors).map_err(fail)?;
    let pickle = state_dict_pickle(tensors, &metas).map_err(fail)?;
    let prefix = archive_name(path);
    let mut file = AtomicFile::create(path).map_err(fail)?;
    write_pth_records(
        file.writer().map_err(fail)?,
        &prefix,
        tensors,
        &metas,
        &pickle,
    )
    .map_err(fail)?;
    file.persist().map_err(fail)
}

/// Writes `tensors`, named as in the official checkpoints (`pretrained.*`,
/// `depth_head.*`), as a Hugging Face `DepthAnythingForDepthEstimation` checkpoint:
/// the tensors renamed by [`to_hf_names`] into the safetensors file `path` (usually
/// `model.safetensors`), and `config.json` beside it describing `config` (encoder, release
/// through the blocks that feed the head, relative or metric head with its range), which
/// `transformers` loads and [`crate::weights::Checkpoint::read`] reads back. (A metric
/// range of whole metres is written as an integer: `transformers` 5 refuses anything else,
/// so a fractional range only loads in older versions.)
///
/// Both files are written atomically (see the [module documentation](self)): both are
/// complete on disk before either replaces a previous file.
///
/// # Errors
/// [`Error::Export`] when a tensor has no Hugging Face name, the tensors are not of
/// `config`'s encoder, a tensor cannot be written (undefined, sparse, a dtype safetensors
/// does not have), or a file cannot be written; previous files are then untouched.
pub fn write_hf_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    config: &ModelConfig,
) -> Result<()> {
    let fail = |reason: String| Error::Export {
        reason,
        path: path.to_path_buf(),
    };
    let config_path = path
        .parent()
        .map_or_else(|| PathBuf::from("config.json"), |d| d.join("config.json"));
    if path.file_name() == config_path.file_name() {
        return Err(fail("the weights cannot be named config.json".into()));
    }
    check_destination(path).map_err(fail)?;
    check_destination(&config_path).map_err(fail)?;
    check_encoder(tensors, config).map_err(fail)?;
    let hf = to_hf_names(tensors).map_err(|e| fail(e.to_string()))?;
    let metas = describe(&hf).map_err(fail)?;
    let header = safetensors_header(&hf, &metas).map_err(fail)?;
    let dtype = metas
        .iter()
        .map(|m| m.kind)
        .find(|k| matches!(k, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double))
        .unwrap_or(Kind::Float);
    let mut json = serde_json::to_vec_pretty(&hf_config(config, dtype))
        .map_err(|e| fail(format!("config.json: {e}")))?;
    json.push(b'\n');

    let mut weights = AtomicFile::create(path).map_err(fail)?;
    write_safetensors_data(weights.writer().map_err(fail)?, &header, &hf, &metas).map_err(fail)?;
    weights.finish().map_err(fail)?;
    let config_fail = |reason: String| Error::Export {
        reason,
        path: config_path.clone(),
    };
    let mut config_file = AtomicFile::create(&config_path).map_err(config_fail)?;
    config_file
        .writer()
        .map_err(config_fail)?
        .write_all(&json)
        .map_err(|e| config_fail(e.to_string()))?;
    config_file.finish().map_err(config_fail)?;
    weights.persist().map_err(fail)?;
    config_file.persist().map_err(config_fail)
}

/// Writes `tensors` under their own names as one safetensors file (training state, label
/// caches), atomically (see the [module documentation](self)).
///
/// # Errors
/// [`Error::Export`] when a tensor cannot be written (undefined, sparse, a dtype
/// safetensors does not have) or the file cannot be written; a previous file is then
/// untouched.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let fail = |reason: String| Error::Export {
        reason,
        path: path.to_path_buf(),
    };
    check_destination(path).map_err(fail)?;
    let metas = describe(tensors).map_err(fail)?;
    let header = safetensors_header(tensors, &metas).map_err(fail)?;
    let mut file = AtomicFile::create(path).map_err(fail)?;
    write_safetensors_data(file.writer().map_err(fail)?, &header, tensors, &metas).map_err(fail)?;
    file.persist().map_err(fail)
}

/// Renames tensors from the official layout to the Hugging Face `transformers` one, the
/// inverse of the renaming [`crate::weights::Checkpoint`] does on reading: the fused
/// `attn.qkv` projections are split into `query`, `key` and `value` (views, no copy), the
/// DPT fusion blocks are numbered from the deepest level (`refinenet4` is layer 0), and
/// the rest is renamed one to one. A leading `module.` (from `DataParallel`) is dropped.
/// The order of `tensors` is kept.
///
/// # Errors
/// [`Error::Invalid`] naming a tensor that has no Hugging Face name, or a `qkv` projection
/// whose first dimension is not divisible by three.
pub fn to_hf_names(tensors: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(tensors.len() + tensors.len() / 4);
    for (name, tensor) in tensors {
        let name = name.strip_prefix("module.").unwrap_or(name);
        if let Some((block, which)) = split_official_qkv(name) {
            let rows = tensor.size().first().copied().unwrap_or(0);
            if rows == 0 || rows % 3 != 0 {
                return Err(Error::Invalid(format!(
                    "{name}: {rows} rows cannot be split into query, key and value"
                )));
            }
            let parts = tensor.f_split(rows / 3, 0)?;
            for (proj, part) in ["query", "key", "value"].into_iter().zip(parts) {
                out.push((
                    format!("backbone.encoder.layer.{block}.attention.attention.{proj}.{which}"),
                    part,
                ));
            }
            continue;
        }
        let hf = official_to_hf(name).ok_or_else(|| {
            Error::Invalid(format!(
                "tensor {name} has no name in the Hugging Face Depth Anything layout"
            ))
        })?;
        out.push((hf, tensor.shallow_clone()));
    }
    Ok(out)
}

// ------------------------------------------------------------------------ renaming

/// `pretrained.blocks.N.attn.qkv.{weight,bias}` -> (`N`, `weight`/`bias`).
fn split_official_qkv(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("pretrained.blocks.")?;
    let (block, rest) = rest.split_once('.')?;
    block.parse::<usize>().ok()?;
    let which = rest.strip_prefix("attn.qkv.")?;
    matches!(which, "weight" | "bias").then_some((block, which))
}

/// Replaces the first matching prefix of `rest` by its counterpart.
fn swap_prefix(rest: &str, table: &[(&str, &str)]) -> Option<String> {
    table
        .iter()
        .find_map(|(from, to)| rest.strip_prefix(from).map(|r| format!("{to}{r}")))
}

/// One official name (other than `attn.qkv`) in the Hugging Face layout.
fn official_to_hf(name: &str) -> Option<String> {
    const WHOLE: [(&str, &str); 3] = [
        ("pretrained.cls_token", "backbone.embeddings.cls_token"),
        ("pretrained.mask_token", "backbone.embeddings.mask_token"),
        (
            "pretrained.pos_embed",
            "backbone.embeddings.position_embeddings",
        ),
    ];
    const PREFIXES: [(&str, &str); 5] = [
        (
            "pretrained.patch_embed.proj.",
            "backbone.embeddings.patch_embeddings.projection.",
        ),
        ("pretrained.norm.", "backbone.layernorm."),
        ("depth_head.scratch.output_conv1.", "head.conv1."),
        ("depth_head.scratch.output_conv2.0.", "head.conv2."),
        ("depth_head.scratch.output_conv2.2.", "head.conv3."),
    ];
    const BLOCK: [(&str, &str); 9] = [
        ("attn.proj.", "attention.output.dense."),
        ("ls1.gamma", "layer_scale1.lambda1"),
        ("ls2.gamma", "layer_scale2.lambda1"),
        ("mlp.w12.", "mlp.weights_in."),
        ("mlp.w3.", "mlp.weights_out."),
        ("mlp.fc1.", "mlp.fc1."),
        ("mlp.fc2.", "mlp.fc2."),
        ("norm1.", "norm1."),
        ("norm2.", "norm2."),
    ];
    const FUSION: [(&str, &str); 5] = [
        ("out_conv.", "projection."),
        ("resConfUnit1.conv1.", "residual_layer1.convolution1."),
        ("resConfUnit1.conv2.", "residual_layer1.convolution2."),
        ("resConfUnit2.conv1.", "residual_layer2.convolution1."),
        ("resConfUnit2.conv2.", "residual_layer2.convolution2."),
    ];
    if let Some((_, hf)) = WHOLE.iter().find(|(official, _)| *official == name) {
        return Some((*hf).to_string());
    }
    if let Some(hf) = swap_prefix(name, &PREFIXES) {
        return Some(hf);
    }
    let index = |s: &str| s.parse::<usize>().ok();
    if let Some(rest) = name.strip_prefix("pretrained.blocks.") {
        let (block, rest) = rest.split_once('.')?;
        index(block)?;
        let rest = swap_prefix(rest, &BLOCK)?;
        return Some(format!("backbone.encoder.layer.{block}.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("depth_head.projects.") {
        let (i, rest) = rest.split_once('.')?;
        index(i)?;
        return Some(format!(
            "neck.reassemble_stage.layers.{i}.projection.{rest}"
        ));
    }
    if let Some(rest) = name.strip_prefix("depth_head.resize_layers.") {
        let (i, rest) = rest.split_once('.')?;
        index(i)?;
        return Some(format!("neck.reassemble_stage.layers.{i}.resize.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("depth_head.scratch.layer") {
        let (level, rest) = rest.split_once("_rn.")?;
        let level = index(level).filter(|l| (1..=4).contains(l))?;
        return Some(format!("neck.convs.{}.{rest}", level - 1));
    }
    if let Some(rest) = name.strip_prefix("depth_head.scratch.refinenet") {
        let (level, rest) = rest.split_once('.')?;
        let level = index(level).filter(|l| (1..=4).contains(l))?;
        let rest = swap_prefix(rest, &FUSION)?;
        // Hugging Face fuses from the deepest level: its layer 0 is refinenet4.
        return Some(format!("neck.fusion_stage.layers.{}.{rest}", 4 - level));
    }
    None
}

/// The tensors are of `config`'s encoder (judged by the embedding width).
fn check_encoder(
    tensors: &[(String, Tensor)],
    config: &ModelConfig,
) -> std::result::Result<(), String> {
    let pos = tensors
        .iter()
        .find(|(n, _)| n.strip_prefix("module.").unwrap_or(n) == "pretrained.pos_embed")
        .ok_or("no position embedding (`pretrained.pos_embed`) among the tensors")?;
    if !pos.1.defined() {
        return Err("pretrained.pos_embed is an undefined tensor".into());
    }
    let width = pos.1.size().last().copied().unwrap_or(0);
    if width != config.vit.embed_dim {
        return Err(format!(
            "the tensors have embedding width {width}, but {} has {}",
            config.describe(),
            config.vit.embed_dim
        ));
    }
    Ok(())
}

/// A `config.json` that `transformers` loads as `DepthAnythingConfig`, as
/// `save_pretrained` writes it for the released models.
fn hf_config(config: &ModelConfig, dtype: Kind) -> serde_json::Value {
    let vit = &config.vit;
    let out_indices: Vec<usize> = config.intermediate_layers.iter().map(|i| i + 1).collect();
    let out_features: Vec<String> = out_indices.iter().map(|i| format!("stage{i}")).collect();
    let stage_names: Vec<String> = std::iter::once("stem".to_string())
        .chain((1..=vit.depth).map(|i| format!("stage{i}")))
        .collect();
    let (estimation, max_depth) = match config.head {
        Head::Relative => ("relative", json!(1)),
        // transformers 5 types `max_depth` as an int and refuses `20.0`: whole metres are
        // written as integers (a fractional range only loads in older versions).
        Head::Metric { max_depth_m } if max_depth_m.fract() == 0.0 && max_depth_m.abs() < 1e15 => {
            ("metric", json!(max_depth_m as i64))
        }
        Head::Metric { max_depth_m } => ("metric", json!(max_depth_m)),
    };
    let dtype = match dtype {
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Double => "float64",
        _ => "float32",
    };
    json!({
        "architectures": ["DepthAnythingForDepthEstimation"],
        "backbone_config": {
            "apply_layernorm": true,
            "attention_probs_dropout_prob": 0.0,
            "drop_path_rate": 0.0,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "hidden_size": vit.embed_dim,
            "image_size": vit.pos_grid * vit.patch_size,
            "initializer_range": 0.02,
            "layer_norm_eps": vit.layer_norm_eps,
            "layerscale_value": 1.0,
            "mlp_ratio": vit.mlp_ratio,
            "model_type": "dinov2",
            "num_attention_heads": vit.num_heads,
            "num_channels": 3,
            "num_hidden_layers": vit.depth,
            "out_features": out_features,
            "out_indices": out_indices,
            "patch_size": vit.patch_size,
            "qkv_bias": true,
            "reshape_hidden_states": false,
            "stage_names": stage_names,
            "use_mask_token": true,
            "use_swiglu_ffn": vit.ffn == Ffn::SwiGlu,
        },
        "depth_estimation_type": estimation,
        "dtype": dtype,
        "fusion_hidden_size": config.dpt.features,
        "head_hidden_size": config.dpt.head_features,
        "head_in_index": -1,
        "initializer_range": 0.02,
        "max_depth": max_depth,
        "model_type": "depth_anything",
        "neck_hidden_sizes": config.dpt.out_channels,
        "patch_size": vit.patch_size,
        "reassemble_factors": [4, 2, 1, 0.5],
        "reassemble_hidden_size": vit.embed_dim,
    })
}

// ------------------------------------------------------------------------ tensors

/// What is known of a tensor before its data is read.
struct Meta {
    kind: Kind,
    shape: Vec<i64>,
    numel: u64,
}

impl Meta {
    fn nbytes(&self) -> u64 {
        self.numel * self.kind.elt_size_in_bytes() as u64
    }
}

/// Kinds, shapes and sizes of `tensors`, whose names must be distinct.
fn describe(tensors: &[(String, Tensor)]) -> std::result::Result<Vec<Meta>, String> {
    let mut seen = HashSet::new();
    tensors
        .iter()
        .map(|(name, t)| {
            if !seen.insert(name.as_str()) {
                return Err(format!("two tensors are named {name:?}"));
            }
            if !t.defined() {
                return Err(format!("tensor {name} is undefined"));
            }
            let kind = t.f_kind().map_err(|e| format!("tensor {name}: {e}"))?;
            let shape = t.size();
            let numel = shape.iter().try_fold(1u64, |n, &d| {
                u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
            });
            let numel = numel.ok_or_else(|| format!("tensor {name}: bad shape {shape:?}"))?;
            Ok(Meta { kind, shape, numel })
        })
        .collect()
}

/// The elements of `t`, row-major and in the machine's byte order, from a contiguous CPU
/// copy (none is made when `t` already is one).
fn tensor_bytes(name: &str, t: &Tensor, meta: &Meta) -> std::result::Result<Vec<u8>, String> {
    let fail = |e: String| format!("tensor {name}: {e}");
    if t.is_sparse() {
        return Err(fail("sparse tensors cannot be written".into()));
    }
    let t = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| fail(e.to_string()))?;
    let len = usize::try_from(meta.nbytes()).map_err(|e| fail(e.to_string()))?;
    let mut bytes = vec![0u8; len];
    let numel = t.numel();
    if numel as u64 != meta.numel || t.f_kind().ok() != Some(meta.kind) {
        return Err(fail("changed while being written".into()));
    }
    if numel > 0 {
        t.f_copy_data_u8(&mut bytes, numel)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(bytes)
}

// ------------------------------------------------------------------------ pickle

/// The legacy storage class `torch.save` names for a dtype.
fn storage_class(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "FloatStorage",
        Kind::Double => "DoubleStorage",
        Kind::Half => "HalfStorage",
        Kind::BFloat16 => "BFloat16Storage",
        Kind::Int64 => "LongStorage",
        Kind::Int => "IntStorage",
        Kind::Int16 => "ShortStorage",
        Kind::Int8 => "CharStorage",
        Kind::Uint8 => "ByteStorage",
        Kind::Bool => "BoolStorage",
        _ => return None,
    })
}

/// A pickle writer emitting what Python's protocol-2 `Pickler` emits for a state dict,
/// memo entries included.
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
    memo_len: u32,
    /// Objects Python would meet again as the same object: globals and constant strings.
    shared: Vec<(String, u32)>,
}

impl Pickler {
    fn put(&mut self) -> u32 {
        let i = self.memo_len;
        self.memo_len += 1;
        match u8::try_from(i) {
            Ok(i) => self.out.extend([b'q', i]),
            Err(_) => {
                self.out.push(b'r');
                self.out.extend(i.to_le_bytes());
            }
        }
        i
    }

    fn get(&mut self, i: u32) {
        match u8::try_from(i) {
            Ok(i) => self.out.extend([b'h', i]),
            Err(_) => {
                self.out.push(b'j');
                self.out.extend(i.to_le_bytes());
            }
        }
    }

    fn recall(&mut self, key: &str) -> bool {
        match self.shared.iter().find(|(k, _)| k == key) {
            Some(&(_, i)) => {
                self.get(i);
                true
            }
            None => false,
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("c{module}\n{name}");
        if self.recall(&key) {
            return;
        }
        self.out.push(b'c');
        for part in [module, name] {
            self.out.extend(part.as_bytes());
            self.out.push(b'\n');
        }
        let i = self.put();
        self.shared.push((key, i));
    }

    fn unicode(&mut self, s: &str) -> std::result::Result<(), String> {
        let len = u32::try_from(s.len()).map_err(|_| "string too long to pickle")?;
        self.out.push(b'X');
        self.out.extend(len.to_le_bytes());
        self.out.extend(s.as_bytes());
        self.put();
        Ok(())
    }

    /// A string that is the same Python object at every use (`'storage'`, `'cpu'`).
    fn shared_unicode(&mut self, s: &str) -> std::result::Result<(), String> {
        let key = format!("X{s}");
        if self.recall(&key) {
            return Ok(());
        }
        self.unicode(s)?;
        self.shared.push((key, self.memo_len - 1));
        Ok(())
    }

    fn int(&mut self, v: i64) {
        if let Ok(v) = u8::try_from(v) {
            self.out.extend([b'K', v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.out.push(b'M');
            self.out.extend(v.to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(b'J');
            self.out.extend(v.to_le_bytes());
        } else {
            // LONG1, two's complement, as `pickle.encode_long`.
            let mut bytes = i128::from(v).to_le_bytes()[..9].to_vec();
            let n = (v.unsigned_abs().ilog2() as usize + 1) / 8 + 1;
            bytes.truncate(n);
            if v < 0 && n > 1 && bytes[n - 1] == 0xff && bytes[n - 2] & 0x80 != 0 {
                bytes.pop();
            }
            self.out.extend([0x8a, bytes.len() as u8]);
            self.out.extend(bytes);
        }
    }

    fn int_tuple(&mut self, values: &[i64]) {
        match values.len() {
            0 => self.out.push(b')'),
            n @ 1..=3 => {
                for &v in values {
                    self.int(v);
                }
                self.out.push(0x84 + n as u8);
                self.put();
            }
            _ => {
                self.out.push(b'(');
                for &v in values {
                    self.int(v);
                }
                self.out.push(b't');
                self.put();
            }
        }
    }
}

/// Strides of a contiguous tensor as PyTorch computes them (empty dimensions count as 1).
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

/// `data.pkl`: `OrderedDict` of `_rebuild_tensor_v2(storage i, 0, size, stride, False,
/// OrderedDict())`, byte for byte as `torch.save` pickles it.
fn state_dict_pickle(
    tensors: &[(String, Tensor)],
    metas: &[Meta],
) -> std::result::Result<Vec<u8>, String> {
    // Python's Pickler sets dict items in batches of 1000.
    const BATCH: usize = 1000;
    let mut p = Pickler::default();
    p.out.extend([0x80, 2]);
    p.global("collections", "OrderedDict");
    p.out.extend([b')', b'R']);
    p.put();
    let items: Vec<_> = tensors.iter().zip(metas).enumerate().collect();
    for batch in items.chunks(BATCH) {
        if batch.len() > 1 {
            p.out.push(b'(');
        }
        for (key, ((name, _), meta)) in batch {
            let class = storage_class(meta.kind)
                .ok_or_else(|| format!("tensor {name}: torch.save cannot store {:?}", meta.kind))?;
            let numel = i64::try_from(meta.numel).map_err(|e| e.to_string())?;
            p.unicode(name)?;
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.out.extend([b'(', b'(']);
            p.shared_unicode("storage")?;
            p.global("torch", class);
            p.unicode(&key.to_string())?;
            p.shared_unicode("cpu")?;
            p.int(numel);
            p.out.push(b't');
            p.put();
            p.out.push(b'Q');
            p.int(0);
            p.int_tuple(&meta.shape);
            p.int_tuple(&contiguous_strides(&meta.shape));
            p.out.push(0x89);
            p.global("collections", "OrderedDict");
            p.out.extend([b')', b'R']);
            p.put();
            p.out.push(b't');
            p.put();
            p.out.push(b'R');
            p.put();
        }
        p.out.push(if batch.len() > 1 { b'u' } else { b's' });
    }
    p.out.push(b'.');
    Ok(p.out)
}

// ------------------------------------------------------------------------ zip

/// The folder PyTorch names the records after: the file name without its extension.
fn archive_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "archive".into())
}

fn write_pth_records(
    out: &mut BufWriter<File>,
    prefix: &str,
    tensors: &[(String, Tensor)],
    metas: &[Meta],
    pickle: &[u8],
) -> std::result::Result<(), String> {
    let io = |e: io::Error| e.to_string();
    let mut zip = ZipWriter::new(out);
    zip.add(&format!("{prefix}/data.pkl"), pickle).map_err(io)?;
    zip.add(&format!("{prefix}/.format_version"), b"1")
        .map_err(io)?;
    zip.add(&format!("{prefix}/.storage_alignment"), b"64")
        .map_err(io)?;
    let byteorder: &[u8] = if cfg!(target_endian = "little") {
        b"little"
    } else {
        b"big"
    };
    zip.add(&format!("{prefix}/byteorder"), byteorder)
        .map_err(io)?;
    for (i, ((name, tensor), meta)) in tensors.iter().zip(metas).enumerate() {
        let bytes = tensor_bytes(name, tensor, meta)?;
        zip.add(&format!("{prefix}/data/{i}"), &bytes).map_err(io)?;
    }
    zip.add(&format!("{prefix}/version"), b"3\n").map_err(io)?;
    let id = zip.serialization_id();
    zip.add(&format!("{prefix}/.data/serialization_id"), id.as_bytes())
        .map_err(io)?;
    zip.finish().map_err(io)
}

/// Data records start on multiples of this, as PyTorch aligns them (for `mmap`).
const ALIGNMENT: u64 = 64;
/// Sizes and offsets from this on need ZIP64 fields.
const ZIP64_LIMIT: u64 = 0xFFFF_FFFF;

struct ZipEntry {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
}

/// A zip writer of stored records laid out as miniz lays them out for PyTorch: no
/// timestamps, data aligned by padding the local header's extra field (`FB` + `Z`s), a
/// data descriptor after each non-empty record, ZIP64 fields only where needed and a
/// ZIP64 end record always.
struct ZipWriter<'a, W: Write> {
    out: &'a mut W,
    pos: u64,
    entries: Vec<ZipEntry>,
    zip64_limit: u64,
}

impl<'a, W: Write> ZipWriter<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Self {
            out,
            pos: 0,
            entries: Vec::new(),
            zip64_limit: ZIP64_LIMIT,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// The ZIP64 extended information of a record: sizes when they overflow, then the
    /// header offset when it does.
    fn zip64_extra(&self, size: u64, offset: u64) -> Vec<u8> {
        let mut fields = Vec::new();
        if size >= self.zip64_limit {
            fields.extend(size.to_le_bytes());
            fields.extend(size.to_le_bytes());
        }
        if offset >= self.zip64_limit {
            fields.extend(offset.to_le_bytes());
        }
        if fields.is_empty() {
            return fields;
        }
        let mut extra = vec![0x01, 0x00];
        extra.extend((fields.len() as u16).to_le_bytes());
        extra.extend(fields);
        extra
    }

    fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let offset = self.pos;
        let size = data.len() as u64;
        let name_len = u16::try_from(name.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record name too long"))?;
        let mut extra = self.zip64_extra(size, offset);
        let start = offset + 30 + name.len() as u64 + extra.len() as u64 + 4;
        let padding = (ALIGNMENT - start % ALIGNMENT) % ALIGNMENT;
        extra.extend(b"FB");
        extra.extend((padding as u16).to_le_bytes());
        extra.resize(extra.len() + padding as usize, b'Z');
        let crc = crc32(data);
        // Bit 3: sizes and CRC follow the data; bit 11: UTF-8 names.
        let flags: u16 = if size > 0 { 0x0808 } else { 0x0800 };
        let mut header = Vec::with_capacity(30 + name.len() + extra.len());
        header.extend(0x0403_4b50u32.to_le_bytes());
        header.extend(0u16.to_le_bytes()); // version needed, as miniz writes it
        header.extend(flags.to_le_bytes());
        header.extend([0u8; 2 + 2 + 2 + 4 + 4 + 4]); // stored, no time, CRC/sizes later
        header.extend(name_len.to_le_bytes());
        header.extend((extra.len() as u16).to_le_bytes());
        header.extend(name.as_bytes());
        header.extend(&extra);
        self.write(&header)?;
        self.write(data)?;
        if size > 0 {
            let mut descriptor = Vec::with_capacity(24);
            descriptor.extend(0x0807_4b50u32.to_le_bytes());
            descriptor.extend(crc.to_le_bytes());
            if size >= self.zip64_limit || offset >= self.zip64_limit {
                descriptor.extend(size.to_le_bytes());
                descriptor.extend(size.to_le_bytes());
            } else {
                descriptor.extend((size as u32).to_le_bytes());
                descriptor.extend((size as u32).to_le_bytes());
            }
            self.write(&descriptor)?;
        }
        self.entries.push(ZipEntry {
            name: name.to_string(),
            offset,
            size,
            crc,
        });
        Ok(())
    }

    /// 40 digits naming the archive, as PyTorch derives them from the record names and
    /// CRCs (its hash differs; nothing checks it, `torch.load` only reports it).
    fn serialization_id(&self) -> String {
        let combine = |seed: u64, v: u64| {
            seed ^ v
                .wrapping_add(0x9e37_79b9)
                .wrapping_add(seed << 6)
                .wrapping_add(seed >> 2)
        };
        let fnv = |s: &str| {
            s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        let names = self.entries.iter().fold(0, |h, e| combine(h, fnv(&e.name)));
        let crcs = self
            .entries
            .iter()
            .fold(0, |h, e| combine(h, u64::from(e.crc)));
        format!("{names:020}{crcs:020}")
    }

    /// The central directory and the end records.
    fn finish(mut self) -> io::Result<()> {
        let directory_offset = self.pos;
        let limit = self.zip64_limit;
        let clamp = |v: u64| if v >= limit { 0xFFFF_FFFF } else { v as u32 };
        let mut directory = Vec::new();
        for e in &self.entries {
            let extra = self.zip64_extra(e.size, e.offset);
            let flags: u16 = if e.size > 0 { 0x0808 } else { 0x0800 };
            let needed: u16 = if extra.is_empty() { 0 } else { 45 };
            directory.extend(0x0201_4b50u32.to_le_bytes());
            directory.extend(0u16.to_le_bytes()); // made by
            directory.extend(needed.to_le_bytes());
            directory.extend(flags.to_le_bytes());
            directory.extend([0u8; 6]); // stored, no time
            directory.extend(e.crc.to_le_bytes());
            directory.extend(clamp(e.size).to_le_bytes());
            directory.extend(clamp(e.size).to_le_bytes());
            directory.extend((e.name.len() as u16).to_le_bytes());
            directory.extend((extra.len() as u16).to_le_bytes());
            directory.extend([0u8; 2 + 2 + 2 + 4]); // comment, disk, attributes
            directory.extend(clamp(e.offset).to_le_bytes());
            directory.extend(e.name.as_bytes());
            directory.extend(extra);
        }
        self.write(&directory)?;
        let directory_size = directory.len() as u64;
        let count = self.entries.len() as u64;
        let zip64_end = self.pos;
        let mut end = Vec::with_capacity(56 + 20 + 22);
        end.extend(0x0606_4b50u32.to_le_bytes());
        end.extend(44u64.to_le_bytes());
        end.extend(0x031eu16.to_le_bytes());
        end.extend(0x002du16.to_le_bytes());
        end.extend([0u8; 8]); // disks
        end.extend(count.to_le_bytes());
        end.extend(count.to_le_bytes());
        end.extend(directory_size.to_le_bytes());
        end.extend(directory_offset.to_le_bytes());
        end.extend(0x0706_4b50u32.to_le_bytes());
        end.extend(0u32.to_le_bytes());
        end.extend(zip64_end.to_le_bytes());
        end.extend(1u32.to_le_bytes());
        let count16 = u16::try_from(count).unwrap_or(0xFFFF);
        end.extend(0x0605_4b50u32.to_le_bytes());
        end.extend([0u8; 4]); // disks
        end.extend(count16.to_le_bytes());
        end.extend(count16.to_le_bytes());
        end.extend(clamp(directory_size).to_le_bytes());
        end.extend(clamp(directory_offset).to_le_bytes());
        end.extend(0u16.to_le_bytes());
        self.write(&end)?;
        self.out.flush()
    }
}

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut t = 1;
        while t < 8 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            t += 1;
        }
        i += 1;
    }
    tables
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

/// CRC-32 (IEEE) of `data`, eight bytes at a time.
fn crc32(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// ------------------------------------------------------------------------ safetensors

fn safetensors_dtype(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// The length-prefixed JSON header, with `{"format": "pt"}` metadata as
/// `save_pretrained` writes, padded with spaces to 8 bytes.
fn safetensors_header(
    tensors: &[(String, Tensor)],
    metas: &[Meta],
) -> std::result::Result<Vec<u8>, String> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0u64;
    for ((name, _), meta) in tensors.iter().zip(metas) {
        if name == "__metadata__" {
            return Err("a tensor cannot be named __metadata__".into());
        }
        let dtype = safetensors_dtype(meta.kind)
            .ok_or_else(|| format!("tensor {name}: safetensors cannot store {:?}", meta.kind))?;
        let end = offset + meta.nbytes();
        header.insert(
            name.clone(),
            json!({ "dtype": dtype, "shape": meta.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| format!("safetensors header: {e}"))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    Ok(out)
}

fn write_safetensors_data(
    out: &mut BufWriter<File>,
    header: &[u8],
    tensors: &[(String, Tensor)],
    metas: &[Meta],
) -> std::result::Result<(), String> {
    out.write_all(header).map_err(|e| e.to_string())?;
    for ((name, tensor), meta) in tensors.iter().zip(metas) {
        let bytes = tensor_bytes(name, tensor, meta)?;
        out.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

// ------------------------------------------------------------------------ atomic files

/// Refuses destinations that cannot be replaced by a file.
fn check_destination(path: &Path) -> std::result::Result<(), String> {
    if path.file_name().is_none() {
        return Err("the destination has no file name".into());
    }
    if path.is_dir() {
        return Err("the destination is a directory".into());
    }
    Ok(())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written under a temporary name in its destination's folder, renamed over the
/// destination by [`AtomicFile::persist`]; dropped before that, it is removed.
struct AtomicFile {
    dest: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
    persisted: bool,
}

impl AtomicFile {
    fn create(dest: &Path) -> std::result::Result<Self, String> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = dest.file_name().ok_or("the destination has no file name")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".{}-{}-{nanos}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = dir.join(temp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            persisted: false,
        })
    }

    /// The open file (until [`AtomicFile::finish`]).
    fn writer(&mut self) -> std::result::Result<&mut BufWriter<File>, String> {
        let temp = &self.temp;
        self.file
            .as_mut()
            .ok_or_else(|| format!("{} is already closed", temp.display()))
    }

    /// Flushes and syncs the file to disk and closes it.
    fn finish(&mut self) -> std::result::Result<(), String> {
        if let Some(writer) = self.file.take() {
            let file = writer
                .into_inner()
                .map_err(|e| format!("writing {}: {}", self.temp.display(), e.error()))?;
            file.sync_all()
                .map_err(|e| format!("syncing {}: {e}", self.temp.display()))?;
        }
        Ok(())
    }

    /// Finishes the file and renames it over the destination.
    fn persist(mut self) -> std::result::Result<(), String> {
        self.finish()?;
        std::fs::rename(&self.temp, &self.dest).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                self.temp.display(),
                self.dest.display()
            )
        })?;
        self.persisted = true;
        // Make the rename itself durable (best effort: not every system can open a
        // folder).
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.persisted {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    #[test]
    fn crc32_is_the_zip_one() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        // Eight at a time and one at a time agree.
        let bytewise = long.iter().fold(!0u32, |crc, &b| {
            CRC_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
        });
        assert_eq!(crc32(&long), !bytewise);
    }

    #[test]
    fn integers_are_pickled_as_python_pickles_them() {
        let cases: [(i64, &[u8]); 8] = [
            (0, b"K\x00"),
            (255, b"K\xff"),
            (256, b"M\x00\x01"),
            (-1, b"J\xff\xff\xff\xff"),
            (70_000, b"J\x70\x11\x01\x00"),
            (1 << 31, b"\x8a\x05\x00\x00\x00\x80\x00"),
            (-(1 << 39), b"\x8a\x05\x00\x00\x00\x00\x80"),
            (i64::MIN, b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"),
        ];
        for (v, expected) in cases {
            let mut p = Pickler::default();
            p.int(v);
            assert_eq!(p.out, expected, "{v}");
        }
    }

    #[test]
    fn names_map_to_hugging_face_ones() {
        let cases = [
            (
                "pretrained.pos_embed",
                "backbone.embeddings.position_embeddings",
            ),
            (
                "pretrained.blocks.3.ls2.gamma",
                "backbone.encoder.layer.3.layer_scale2.lambda1",
            ),
            (
                "pretrained.blocks.0.mlp.w12.weight",
                "backbone.encoder.layer.0.mlp.weights_in.weight",
            ),
            (
                "depth_head.scratch.refinenet4.resConfUnit1.conv2.bias",
                "neck.fusion_stage.layers.0.residual_layer1.convolution2.bias",
            ),
            ("depth_head.scratch.layer3_rn.weight", "neck.convs.2.weight"),
            (
                "depth_head.resize_layers.3.weight",
                "neck.reassemble_stage.layers.3.resize.weight",
            ),
            ("depth_head.scratch.output_conv2.2.bias", "head.conv3.bias"),
        ];
        for (official, hf) in cases {
            assert_eq!(official_to_hf(official).as_deref(), Some(hf), "{official}");
        }
        assert_eq!(official_to_hf("pretrained.pos_embed.x"), None);
        assert_eq!(official_to_hf("pretrained.blocks.x.norm1.weight"), None);
    }

    /// Records past 4 GiB get ZIP64 fields: forced here from the first byte, the archive
    /// still reads back, with every record's data aligned.
    #[test]
    fn zip64_fields_read_back() {
        let mut out = Vec::new();
        let records: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| (format!("a/data/{i}"), vec![i as u8; i * 37]))
            .collect();
        let mut zip = ZipWriter::new(&mut out);
        zip.zip64_limit = 0;
        for (name, data) in &records {
            zip.add(name, data).expect("add");
        }
        zip.finish().expect("finish");
        let mut archive = zip::ZipArchive::new(Cursor::new(&out)).expect("zip64 archive");
        for (name, data) in &records {
            let mut entry = archive.by_name(name).expect("record");
            assert_eq!(entry.data_start() % ALIGNMENT, 0, "{name} aligned");
            let mut read = Vec::new();
            entry.read_to_end(&mut read).expect("read, CRC checked");
            assert_eq!(&read, data, "{name}");
        }
    }
}
