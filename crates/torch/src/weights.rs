//! Reading checkpoints: official `.pth` state dicts and Hugging Face safetensors.
//!
//! Both are brought to the official tensor names (`pretrained.*`, `depth_head.*`), the model
//! size is recognised from the tensors, and the release (V1/V2) and head (relative/metric)
//! come from `config.json` beside a safetensors file, from the file name of a `.pth`
//! (`depth_anything_vits14.pth` is V1, `..._metric_hypersim_...` is metric indoor), or from
//! the caller.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::error::{Error, Result};
use crate::safetensors_file::SafetensorsFile;
use anydepth_model::config::{Encoder, Head, ModelConfig, Version};
use anydepth_model::ModelSpec;

/// What a checkpoint says about the model it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckpointHints {
    /// The release, from `config.json` or the file name (`None`: it does not say).
    pub version: Option<Version>,
    /// The head (relative or metric with its range), from `config.json` or the file name.
    pub head: Option<Head>,
}

/// Tensors of a checkpoint under official names, with what was recognised.
///
/// A file is indexed, not read: its tensors' names and shapes come from its header (a
/// `.pth`'s pickle, a safetensors file's JSON), and their data is read one tensor at a time
/// when they are copied into a model ([`Checkpoint::copy_into`]), so a model is loaded with
/// little more memory than the model itself; a damaged tensor is reported then.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// The encoder size, recognised from the tensors' shapes.
    pub encoder: Encoder,
    /// What the file's name or `config.json` say about the model.
    pub hints: CheckpointHints,
    tensors: Tensors,
}

/// A checkpoint's tensors under the official names.
#[derive(Debug)]
enum Tensors {
    /// In memory.
    Loaded(BTreeMap<String, Tensor>),
    /// A file's index, and where each official tensor lies in it.
    Indexed {
        file: IndexedFile,
        sources: BTreeMap<String, Source>,
    },
}

/// A checkpoint file whose tensors are read one at a time.
#[derive(Debug)]
enum IndexedFile {
    Pth(crate::pth::StateDict),
    Safetensors(SafetensorsFile),
}

/// Where an official tensor comes from, by index among the file's (or the given) tensors.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// One tensor.
    Entry(usize),
    /// Hugging Face's separate query, key and value, concatenated into `qkv`.
    FusedQkv([usize; 3]),
}

impl Source {
    fn entries(&self) -> &[usize] {
        match self {
            Source::Entry(i) => std::slice::from_ref(i),
            Source::FusedQkv(parts) => parts,
        }
    }

    /// Its shape, from the shapes of the tensors it is made of.
    fn size(self, size_of: impl Fn(usize) -> Vec<i64>) -> Vec<i64> {
        match self {
            Source::Entry(i) => size_of(i),
            Source::FusedQkv(parts) => {
                let mut size = size_of(parts[0]);
                if let Some(rows) = size.first_mut() {
                    *rows = parts
                        .iter()
                        .map(|&i| size_of(i).first().copied().unwrap_or(0))
                        .sum();
                }
                size
            }
        }
    }
}

impl IndexedFile {
    fn names(&self) -> Vec<&str> {
        match self {
            IndexedFile::Pth(file) => file.entries().iter().map(|(n, _)| n.as_str()).collect(),
            IndexedFile::Safetensors(file) => {
                file.entries().iter().map(|(n, _)| n.as_str()).collect()
            }
        }
    }

    fn size(&self, i: usize) -> Vec<i64> {
        let size = match self {
            IndexedFile::Pth(file) => file.entries().get(i).map(|(_, e)| e.size()),
            IndexedFile::Safetensors(file) => file.entries().get(i).map(|(_, e)| e.size()),
        };
        size.map(<[i64]>::to_vec).unwrap_or_default()
    }

    fn for_each_tensor(
        &self,
        wanted: impl IntoIterator<Item = usize>,
        f: impl FnMut(usize, Tensor) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        match self {
            IndexedFile::Pth(file) => file.for_each_tensor(wanted, f),
            IndexedFile::Safetensors(file) => file.for_each_tensor(wanted, f),
        }
    }
}

impl Checkpoint {
    /// Indexes a `.pth`/`.pt` (PyTorch zip) or `.safetensors` file: its tensors are read
    /// when they are needed (see [`Checkpoint`]).
    ///
    /// # Errors
    /// When the file cannot be read, is of neither format, or holds no ViT encoder.
    pub fn read(path: &Path) -> Result<Self> {
        let checkpoint_err = |reason: String| Error::Checkpoint {
            reason,
            path: path.to_path_buf(),
        };
        let meta = std::fs::metadata(path).map_err(|e| checkpoint_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(checkpoint_err("not a file".into()));
        }
        if meta.len() == 0 {
            return Err(checkpoint_err("empty file".into()));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name_hints = hints_from_file_name(path);
        let with_name_hints = |mut hints: CheckpointHints| {
            hints.version = hints.version.or(name_hints.version);
            hints.head = hints.head.or(name_hints.head);
            hints
        };
        let (file, hints) = if ext == "safetensors" {
            let file = SafetensorsFile::open(path).map_err(checkpoint_err)?;
            (IndexedFile::Safetensors(file), hints_from_hf_config(path)?)
        } else {
            let file = crate::pth::StateDict::open(path).map_err(|e| {
                checkpoint_err(format!(
                    "not a PyTorch state_dict saved with torch.save, nor safetensors: {e}"
                ))
            })?;
            (IndexedFile::Pth(file), CheckpointHints::default())
        };
        let sources = official_sources(&file.names()).map_err(|reason| Error::UnknownModel {
            reason,
            path: path.to_path_buf(),
        })?;
        for (name, source) in &sources {
            let Source::FusedQkv(parts) = *source else {
                continue;
            };
            let sizes = parts.map(|i| file.size(i));
            if sizes.iter().any(|size| size.get(1..) != sizes[0].get(1..)) {
                return Err(Error::UnknownModel {
                    reason: format!(
                        "{name}: query, key and value of shapes {sizes:?} cannot be joined"
                    ),
                    path: path.to_path_buf(),
                });
            }
        }
        let tensors = Tensors::Indexed { file, sources };
        Self::recognised(path, tensors, with_name_hints(hints))
    }

    /// A checkpoint from named tensors in either layout; `path` only labels errors.
    ///
    /// # Errors
    /// When the tensors hold no recognisable ViT encoder.
    pub fn from_tensors(
        path: &Path,
        raw: Vec<(String, Tensor)>,
        hints: CheckpointHints,
    ) -> Result<Self> {
        let unknown = |reason: String| Error::UnknownModel {
            reason,
            path: path.to_path_buf(),
        };
        let names: Vec<&str> = raw.iter().map(|(name, _)| name.as_str()).collect();
        let sources = official_sources(&names).map_err(unknown)?;
        let tensors = sources
            .into_iter()
            .map(|(name, source)| {
                let parts: Vec<&Tensor> = source.entries().iter().map(|&i| &raw[i].1).collect();
                let tensor = match parts.as_slice() {
                    [one] => one.shallow_clone(),
                    parts => Tensor::f_cat(parts, 0)?,
                };
                Ok((name, tensor))
            })
            .collect::<Result<_>>()?;
        Self::recognised(path, Tensors::Loaded(tensors), hints)
    }

    /// A checkpoint of `tensors`, whose shapes tell its encoder.
    fn recognised(path: &Path, tensors: Tensors, hints: CheckpointHints) -> Result<Self> {
        let shapes = tensors.shapes();
        let encoder = recognise_encoder(&shapes).map_err(|reason| Error::UnknownModel {
            reason,
            path: path.to_path_buf(),
        })?;
        tracing::debug!(
            path = %path.display(),
            encoder = encoder.name(),
            tensors = shapes.len(),
            "read checkpoint"
        );
        Ok(Self {
            path: path.to_path_buf(),
            encoder,
            hints,
            tensors,
        })
    }

    /// The tensors' official names and shapes.
    pub fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.tensors.shapes()
    }

    /// Whether it holds a tensor of this official name.
    pub fn contains(&self, name: &str) -> bool {
        match &self.tensors {
            Tensors::Loaded(tensors) => tensors.contains_key(name),
            Tensors::Indexed { sources, .. } => sources.contains_key(name),
        }
    }

    /// The tensors under their official names, read from the file if it was indexed.
    ///
    /// # Errors
    /// When the file cannot be read, or has changed since it was indexed.
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        self.for_each_tensor(|name, tensor| {
            out.insert(name.to_string(), tensor);
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands `f` every tensor with its official name; an indexed file's are read one at a
    /// time (a `.pth`'s one storage at a time), each let go once `f` returns unless `f`
    /// keeps it.
    fn for_each_tensor(&self, mut f: impl FnMut(&str, Tensor) -> Result<()>) -> Result<()> {
        match &self.tensors {
            Tensors::Loaded(tensors) => tensors
                .iter()
                .try_for_each(|(name, tensor)| f(name, tensor.shallow_clone())),
            Tensors::Indexed { file, sources } => {
                // Each wanted entry: the official name it goes to, and its part of a
                // fused `qkv` (whose parts wait until all three are read).
                let mut target_of: HashMap<usize, (&str, Option<usize>)> = HashMap::new();
                for (name, source) in sources {
                    match *source {
                        Source::Entry(i) => {
                            target_of.insert(i, (name, None));
                        }
                        Source::FusedQkv(parts) => {
                            for (part, i) in parts.into_iter().enumerate() {
                                target_of.insert(i, (name, Some(part)));
                            }
                        }
                    }
                }
                let mut waiting: HashMap<&str, [Option<Tensor>; 3]> = HashMap::new();
                // `f`'s own error, kept whole while the reader stops on a placeholder.
                let mut failed = None;
                let mut hand_over = |name: &str, tensor: Tensor| {
                    f(name, tensor).map_err(|e| {
                        let reason = e.to_string();
                        failed = Some(e);
                        reason
                    })
                };
                let wanted: Vec<usize> = target_of.keys().copied().collect();
                let read = file.for_each_tensor(wanted, |i, tensor| {
                    let Some(&(name, part)) = target_of.get(&i) else {
                        return Ok(());
                    };
                    let Some(part) = part else {
                        return hand_over(name, tensor);
                    };
                    let slots = waiting.entry(name).or_default();
                    slots[part] = Some(tensor);
                    if let [Some(q), Some(k), Some(v)] = slots {
                        let fused = Tensor::f_cat(&[&*q, &*k, &*v], 0)
                            .map_err(|e| format!("{name}: {e}"))?;
                        waiting.remove(name);
                        return hand_over(name, fused);
                    }
                    Ok(())
                });
                match (failed, read) {
                    (Some(e), _) => Err(e),
                    (None, Err(reason)) => Err(Error::Checkpoint {
                        reason,
                        path: self.path.clone(),
                    }),
                    (None, Ok(())) => match waiting.keys().next() {
                        Some(name) => Err(Error::Checkpoint {
                            reason: format!("{name}: query, key and value were not all read"),
                            path: self.path.clone(),
                        }),
                        None => Ok(()),
                    },
                }
            }
        }
    }

    /// The model this checkpoint holds, with what the caller says (`spec`) overriding what
    /// the file suggests: V2 and relative when neither tells.
    ///
    /// # Errors
    /// When `spec.encoder` contradicts the tensors.
    pub fn config(&self, spec: ModelSpec) -> Result<ModelConfig> {
        if let Some(encoder) = spec.encoder {
            if encoder != self.encoder {
                return Err(Error::UnknownModel {
                    reason: format!(
                        "{encoder} was asked for, but the file holds a {} model",
                        self.encoder
                    ),
                    path: self.path.clone(),
                });
            }
        }
        Ok(ModelConfig::new(
            spec.version.or(self.hints.version).unwrap_or(Version::V2),
            self.encoder,
            spec.head.or(self.hints.head).unwrap_or(Head::Relative),
        ))
    }

    /// Copies the tensors into `variables` (a model's named variables), after
    /// [`Checkpoint::verify`].
    ///
    /// # Errors
    /// As [`Checkpoint::verify`], when an indexed file cannot be read (or changed since), or
    /// when libtorch cannot copy.
    pub fn copy_into(&self, variables: &HashMap<String, Tensor>, model: &str) -> Result<()> {
        self.verify(variables, model)?;
        tch::no_grad(|| self.for_each_tensor(|name, src| copy_into_variable(variables, name, &src)))
    }

    /// Checks that the tensors' names and shapes are exactly the model's `variables`.
    ///
    /// # Errors
    /// [`Error::TensorMismatch`] naming every missing, unexpected and mis-shaped tensor.
    pub fn verify(&self, variables: &HashMap<String, Tensor>, model: &str) -> Result<()> {
        verify_shapes(&self.shapes(), variables, model, &self.path)
    }
}

impl Tensors {
    fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        match self {
            Tensors::Loaded(tensors) => tensors
                .iter()
                .map(|(name, tensor)| (name.clone(), tensor.size()))
                .collect(),
            Tensors::Indexed { file, sources } => sources
                .iter()
                .map(|(name, source)| (name.clone(), source.size(|i| file.size(i))))
                .collect(),
        }
    }
}

/// Copies `src` into the variable called `name`, if the model has one.
pub(crate) fn copy_into_variable(
    variables: &HashMap<String, Tensor>,
    name: &str,
    src: &Tensor,
) -> Result<()> {
    if let Some(var) = variables.get(name) {
        var.shallow_clone().f_copy_(src)?;
    }
    Ok(())
}

/// Checks that the tensors of `shapes` (read from `path`) are exactly a model's
/// `variables`, by name and shape.
///
/// # Errors
/// [`Error::TensorMismatch`] naming every missing, unexpected and mis-shaped tensor.
pub(crate) fn verify_shapes(
    shapes: &BTreeMap<String, Vec<i64>>,
    variables: &HashMap<String, Tensor>,
    model: &str,
    path: &Path,
) -> Result<()> {
    let missing: Vec<&String> = variables
        .keys()
        .filter(|k| !shapes.contains_key(*k))
        .collect();
    let unexpected: Vec<&String> = shapes
        .keys()
        .filter(|k| !variables.contains_key(*k))
        .collect();
    let mis_shaped: Vec<String> = shapes
        .iter()
        .filter_map(|(name, shape)| {
            let var = variables.get(name)?;
            (&var.size() != shape)
                .then(|| format!("{name}: file {shape:?}, model {:?}", var.size()))
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !mis_shaped.is_empty() {
        let mut details = String::new();
        let mut list = |title: &str, mut items: Vec<String>| {
            if items.is_empty() {
                return;
            }
            items.sort();
            details.push_str(&format!("\n  {} {title}:", items.len()));
            for item in items.iter().take(12) {
                details.push_str(&format!("\n    {item}"));
            }
            if items.len() > 12 {
                details.push_str(&format!("\n    ... and {} more", items.len() - 12));
            }
        };
        list("missing tensors", missing.into_iter().cloned().collect());
        list(
            "unexpected tensors",
            unexpected.into_iter().cloned().collect(),
        );
        list("tensors of the wrong shape", mis_shaped);
        return Err(Error::TensorMismatch {
            model: model.to_string(),
            details,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The model size from the width of the position embedding and the number of blocks.
fn recognise_encoder(shapes: &BTreeMap<String, Vec<i64>>) -> std::result::Result<Encoder, String> {
    let pos = shapes
        .get("pretrained.pos_embed")
        .ok_or("no position embedding (`pretrained.pos_embed` / `backbone.embeddings.position_embeddings`)")?;
    let dim = *pos.last().ok_or("position embedding has no dimensions")?;
    let encoder = Encoder::from_embed_dim(dim)
        .ok_or_else(|| format!("embedding width {dim} is none of 384, 768, 1024, 1536"))?;
    let blocks = shapes
        .keys()
        .filter_map(|k| k.strip_prefix("pretrained.blocks."))
        .filter_map(|k| k.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let expected = encoder.vit().depth;
    if blocks != expected {
        return Err(format!(
            "embedding width {dim} means {encoder} with {expected} blocks, but the file has {blocks}"
        ));
    }
    Ok(encoder)
}

/// Version and head from a file name as the released files are named.
pub fn hints_from_file_name(path: &Path) -> CheckpointHints {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let head = if name.contains("hypersim") || name.contains("indoor") {
        Some(Head::INDOOR)
    } else if name.contains("vkitti") || name.contains("outdoor") {
        Some(Head::OUTDOOR)
    } else {
        None
    };
    let version = if name.contains("v2") {
        Some(Version::V2)
    } else if name.starts_with("depth_anything_vit") || name.contains("v1") {
        Some(Version::V1)
    } else {
        None
    };
    CheckpointHints { version, head }
}

/// Version and head from the `config.json` that Hugging Face keeps beside the weights.
fn hints_from_hf_config(weights: &Path) -> Result<CheckpointHints> {
    let Some(config_path) = weights.parent().map(|d| d.join("config.json")) else {
        return Ok(CheckpointHints::default());
    };
    if !config_path.is_file() {
        return Ok(CheckpointHints::default());
    }
    let bad = |reason: String| Error::Checkpoint {
        reason,
        path: config_path.clone(),
    };
    let text = std::fs::read_to_string(&config_path).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let mut hints = CheckpointHints::default();
    // V2 feeds the head from blocks spread over the depth, V1 from the last four.
    let backbone = &json["backbone_config"];
    if let (Some(indices), Some(depth)) = (
        backbone["out_indices"].as_array(),
        backbone["num_hidden_layers"].as_u64(),
    ) {
        let indices: Vec<u64> = indices.iter().filter_map(|v| v.as_u64()).collect();
        let last_four: Vec<u64> = (depth - 3..=depth).collect();
        hints.version = Some(if indices == last_four {
            Version::V1
        } else {
            Version::V2
        });
    }
    match json["depth_estimation_type"].as_str() {
        Some("metric") => {
            let max_depth_m = json["max_depth"].as_f64().unwrap_or(1.0);
            hints.head = Some(Head::Metric { max_depth_m });
        }
        Some("relative") | None => hints.head = Some(Head::Relative),
        Some(other) => return Err(bad(format!("unknown depth_estimation_type {other:?}"))),
    }
    Ok(hints)
}

/// Where each tensor of the official layout comes from among `names` (a file's or given
/// tensors' names, by index): Hugging Face names are translated, and their separate
/// query/key/value projections fused into `qkv`; a `module.` prefix is dropped. Of two
/// tensors under one official name, the later wins, as in the state dict PyTorch loads.
fn official_sources(names: &[&str]) -> std::result::Result<BTreeMap<String, Source>, String> {
    let names: Vec<String> = names.iter().map(|n| without_module_prefix(n)).collect();
    let is_hf = names.iter().any(|n| is_hf_name(n));
    if !is_hf {
        return Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, Source::Entry(i)))
            .collect());
    }
    let mut out = BTreeMap::new();
    let mut qkv: BTreeMap<(String, &'static str), [Option<usize>; 3]> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if let Some((block, part, which)) = split_hf_qkv(name) {
            qkv.entry((block, which)).or_default()[part] = Some(i);
            continue;
        }
        out.insert(hf_to_official(name), Source::Entry(i));
    }
    for ((block, which), parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            return Err(format!(
                "layer {block}: query, key and value {which} are not all present"
            ));
        };
        out.insert(
            format!("pretrained.blocks.{block}.attn.qkv.{which}"),
            Source::FusedQkv([q, k, v]),
        );
    }
    Ok(out)
}

/// A name as saved from `nn.DataParallel` (`module.` first) without that prefix.
fn without_module_prefix(name: &str) -> String {
    name.strip_prefix("module.").unwrap_or(name).to_string()
}

/// Whether a tensor name is Hugging Face's (`backbone.*`) rather than the official one.
fn is_hf_name(name: &str) -> bool {
    name.starts_with("backbone.")
}

/// `backbone.encoder.layer.N.attention.attention.{query,key,value}.{weight,bias}`.
fn split_hf_qkv(name: &str) -> Option<(String, usize, &'static str)> {
    let rest = name.strip_prefix("backbone.encoder.layer.")?;
    let (block, rest) = rest.split_once('.')?;
    let rest = rest.strip_prefix("attention.attention.")?;
    let (proj, which) = rest.split_once('.')?;
    let part = match proj {
        "query" => 0,
        "key" => 1,
        "value" => 2,
        _ => return None,
    };
    let which = match which {
        "weight" => "weight",
        "bias" => "bias",
        _ => return None,
    };
    Some((block.to_string(), part, which))
}

/// One Hugging Face name in the official layout; unknown names pass through unchanged
/// (and are then reported as unexpected).
fn hf_to_official(name: &str) -> String {
    const FIXED: [(&str, &str); 6] = [
        ("backbone.embeddings.cls_token", "pretrained.cls_token"),
        ("backbone.embeddings.mask_token", "pretrained.mask_token"),
        (
            "backbone.embeddings.position_embeddings",
            "pretrained.pos_embed",
        ),
        (
            "backbone.embeddings.patch_embeddings.projection.",
            "pretrained.patch_embed.proj.",
        ),
        ("backbone.layernorm.", "pretrained.norm."),
        ("head.conv1.", "depth_head.scratch.output_conv1."),
    ];
    for (hf, official) in FIXED {
        if let Some(rest) = name.strip_prefix(hf) {
            return format!("{official}{rest}");
        }
    }
    if let Some(rest) = name.strip_prefix("head.conv2.") {
        return format!("depth_head.scratch.output_conv2.0.{rest}");
    }
    if let Some(rest) = name.strip_prefix("head.conv3.") {
        return format!("depth_head.scratch.output_conv2.2.{rest}");
    }
    if let Some(rest) = name.strip_prefix("backbone.encoder.layer.") {
        if let Some((block, rest)) = rest.split_once('.') {
            let rest = [
                ("attention.output.dense.", "attn.proj."),
                ("layer_scale1.lambda1", "ls1.gamma"),
                ("layer_scale2.lambda1", "ls2.gamma"),
                ("mlp.weights_in.", "mlp.w12."),
                ("mlp.weights_out.", "mlp.w3."),
            ]
            .iter()
            .find_map(|(hf, official)| rest.strip_prefix(hf).map(|r| format!("{official}{r}")))
            .unwrap_or_else(|| rest.to_string());
            return format!("pretrained.blocks.{block}.{rest}");
        }
    }
    if let Some(rest) = name.strip_prefix("neck.reassemble_stage.layers.") {
        if let Some((i, rest)) = rest.split_once('.') {
            if let Some(r) = rest.strip_prefix("projection.") {
                return format!("depth_head.projects.{i}.{r}");
            }
            if let Some(r) = rest.strip_prefix("resize.") {
                return format!("depth_head.resize_layers.{i}.{r}");
            }
        }
    }
    if let Some(rest) = name.strip_prefix("neck.convs.") {
        if let Some((i, r)) = rest.split_once('.') {
            if let Ok(i) = i.parse::<usize>() {
                return format!("depth_head.scratch.layer{}_rn.{r}", i + 1);
            }
        }
    }
    if let Some(rest) = name.strip_prefix("neck.fusion_stage.layers.") {
        if let Some((i, rest)) = rest.split_once('.') {
            // Hugging Face fuses from the deepest level: its layer 0 is refinenet4.
            if let Ok(i) = i.parse::<usize>() {
                if i < 4 {
                    let rest = [
                        ("projection.", "out_conv."),
                        ("residual_layer1.convolution1.", "resConfUnit1.conv1."),
                        ("residual_layer1.convolution2.", "resConfUnit1.conv2."),
                        ("residual_layer2.convolution1.", "resConfUnit2.conv1."),
                        ("residual_layer2.convolution2.", "resConfUnit2.conv2."),
                    ]
                    .iter()
                    .find_map(|(hf, official)| {
                        rest.strip_prefix(hf).map(|r| format!("{official}{r}"))
                    })
                    .unwrap_or_else(|| rest.to_string());
                    return format!("depth_head.scratch.refinenet{}.{rest}", 4 - i);
                }
            }
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_map_to_official_ones() {
        let cases = [
            (
                "backbone.embeddings.position_embeddings",
                "pretrained.pos_embed",
            ),
            (
                "backbone.encoder.layer.3.layer_scale2.lambda1",
                "pretrained.blocks.3.ls2.gamma",
            ),
            (
                "backbone.encoder.layer.0.mlp.weights_in.weight",
                "pretrained.blocks.0.mlp.w12.weight",
            ),
            (
                "neck.fusion_stage.layers.0.residual_layer1.convolution2.bias",
                "depth_head.scratch.refinenet4.resConfUnit1.conv2.bias",
            ),
            ("neck.convs.2.weight", "depth_head.scratch.layer3_rn.weight"),
            (
                "neck.reassemble_stage.layers.3.resize.weight",
                "depth_head.resize_layers.3.weight",
            ),
            ("head.conv3.bias", "depth_head.scratch.output_conv2.2.bias"),
        ];
        for (hf, official) in cases {
            assert_eq!(hf_to_official(hf), official, "{hf}");
        }
    }

    #[test]
    fn file_names_tell_version_and_head() {
        let h = hints_from_file_name(Path::new("x/depth_anything_vits14.pth"));
        assert_eq!(h.version, Some(Version::V1));
        let h = hints_from_file_name(Path::new("depth_anything_v2_metric_vkitti_vitl.pth"));
        assert_eq!(
            (h.version, h.head),
            (Some(Version::V2), Some(Head::OUTDOOR))
        );
        let h = hints_from_file_name(Path::new("depth_anything_v2_vitb.pth"));
        assert_eq!((h.version, h.head), (Some(Version::V2), None));
    }
}
