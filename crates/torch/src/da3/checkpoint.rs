//! Depth Anything 3 checkpoints in the released Hugging Face layout: a folder with
//! `model.safetensors` (the wrapper's state dict: every name starts with `model.`) and
//! `config.json`, whose `model_name` says which model it is.
//!
//! Unlike the official loader (`strict=False`, which leaves missing tensors random), every
//! tensor must be there with its shape and nothing else, with two exceptions the official
//! files need: the LayerNorm the four ray-head levels share is stored once (as level 0's;
//! copies under the other levels' names are accepted when equal), and Giant's Gaussian-splat
//! head (`gs_head`, `gs_adapter`), which is not used, is skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use anydepth_model::da3::Da3Model;

use crate::error::{Error, Result};
use crate::safetensors_file::SafetensorsFile;
use crate::weights::{copy_into_variable, verify_shapes};

/// The file name of the weights in a released folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The file name of the configuration beside it.
pub const CONFIG_FILE: &str = "config.json";

/// The shared LayerNorm of the ray head, under the name checkpoints store it.
const SHARED_NORM: &str = "head.scratch.output_conv2_aux.0.2";
/// Prefixes of tensors that are read past (Giant's Gaussian-splat head).
const UNUSED_PREFIXES: [&str; 2] = ["gs_head.", "gs_adapter."];

/// Memory kept free beyond the weights, for activations and the rest of the process.
const MEMORY_MARGIN_BYTES: u64 = 2 << 30;

/// A Depth Anything 3 checkpoint, indexed and checked: its tensors are read one at a time
/// when they are copied into a network ([`Da3Checkpoint::copy_into`]).
#[derive(Debug)]
pub struct Da3Checkpoint {
    /// The weights file.
    pub path: PathBuf,
    /// The model `config.json` names.
    pub model: Da3Model,
    file: SafetensorsFile,
    /// The file's entry behind each tensor the network has (names without `model.`).
    entry_of: BTreeMap<String, usize>,
}

impl Da3Checkpoint {
    /// Reads `path` (a released folder, or its `model.safetensors` with `config.json`
    /// beside it; without `config.json`, `hint` names the model, and with one they must
    /// agree), after checking that the machine has the memory to run it on `device`.
    ///
    /// # Errors
    /// When a file is missing or unreadable, `model_name` is absent or not a released
    /// model, it contradicts `hint`, or the memory is short.
    pub fn read(path: &Path, hint: Option<Da3Model>, device: Device) -> Result<Self> {
        let (weights, config) = if path.is_dir() {
            (path.join(WEIGHTS_FILE), path.join(CONFIG_FILE))
        } else {
            let folder = path.parent().unwrap_or(Path::new("."));
            (path.to_path_buf(), folder.join(CONFIG_FILE))
        };
        let model = match (config.is_file(), hint) {
            (false, Some(model)) => model,
            (_, hint) => {
                let named = model_from_config(&config)?;
                if let Some(hint) = hint.filter(|h| *h != named) {
                    return Err(Error::UnknownModel {
                        reason: format!("{hint} was asked for, but config.json names {named}"),
                        path: config,
                    });
                }
                named
            }
        };
        let file = SafetensorsFile::open(&weights).map_err(|reason| Error::Checkpoint {
            reason,
            path: weights.clone(),
        })?;
        check_memory(model, device)?;
        let entry_of = official_entries(&file).map_err(|reason| Error::Checkpoint {
            reason,
            path: weights.clone(),
        })?;
        tracing::debug!(path = %weights.display(), model = %model, tensors = entry_of.len(), "read Depth Anything 3 checkpoint");
        Ok(Self {
            path: weights,
            model,
            file,
            entry_of,
        })
    }

    /// Copies the tensors into a network's `variables`, after checking that they are
    /// exactly its variables.
    ///
    /// # Errors
    /// [`Error::TensorMismatch`] naming every missing, unexpected and mis-shaped tensor, or
    /// a LibTorch failure.
    pub fn copy_into(&self, variables: &HashMap<String, Tensor>) -> Result<()> {
        let shapes = self
            .entry_of
            .iter()
            .map(|(name, &i)| (name.clone(), self.file.entries()[i].1.size().to_vec()))
            .collect();
        verify_shapes(&shapes, variables, self.model.model_name(), &self.path)?;
        let mut name_of = vec![""; self.file.entries().len()];
        for (name, &i) in &self.entry_of {
            name_of[i] = name.as_str();
        }
        tch::no_grad(|| {
            self.file
                .for_each_tensor(self.entry_of.values().copied(), |i, src| {
                    copy_into_variable(variables, name_of[i], &src)
                        .map_err(|e| format!("{}: {e}", name_of[i]))
                })
                .map_err(|reason| Error::Checkpoint {
                    reason,
                    path: self.path.clone(),
                })
        })
    }
}

/// The model a `config.json` names.
fn model_from_config(config: &Path) -> Result<Da3Model> {
    let err = |reason: String| Error::UnknownModel {
        reason,
        path: config.to_path_buf(),
    };
    let text = std::fs::read_to_string(config).map_err(|e| {
        err(format!(
            "a Depth Anything 3 checkpoint needs its config.json ({e})"
        ))
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("config.json is not JSON: {e}")))?;
    let name = json
        .get("model_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| err("config.json has no \"model_name\"".into()))?;
    Da3Model::from_model_name(name).ok_or_else(|| {
        let known: Vec<&str> = Da3Model::ALL.iter().map(|m| m.model_name()).collect();
        err(format!(
            "unknown model_name \"{name}\" (known: {})",
            known.join(", ")
        ))
    })
}

/// The file's entry behind each tensor the network has: names without `model.`, Giant's
/// unused splat head left out, and copies of the ray head's shared LayerNorm under the
/// other levels' names checked to equal the stored one (read now: they are small) and
/// dropped, or taken as it where it is absent.
fn official_entries(
    file: &SafetensorsFile,
) -> std::result::Result<BTreeMap<String, usize>, String> {
    let mut entry_of = BTreeMap::new();
    for (i, (name, _)) in file.entries().iter().enumerate() {
        let name = name.strip_prefix("model.").unwrap_or(name);
        if UNUSED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        entry_of.insert(name.to_string(), i);
    }
    let copies: Vec<String> = entry_of
        .keys()
        .filter(|name| {
            (1..4)
                .any(|level| name.starts_with(&format!("head.scratch.output_conv2_aux.{level}.2.")))
        })
        .cloned()
        .collect();
    for name in copies {
        let Some(suffix) = name.rsplit('.').next() else {
            continue;
        };
        let stored = format!("{SHARED_NORM}.{suffix}");
        let Some(copy) = entry_of.remove(&name) else {
            continue;
        };
        let Some(&original) = entry_of.get(&stored) else {
            entry_of.insert(stored, copy);
            continue;
        };
        let mut pair = Vec::new();
        file.for_each_tensor([original, copy], |_, tensor| {
            pair.push(tensor);
            Ok(())
        })?;
        let same = |a: &Tensor, b: &Tensor| {
            a.kind() == b.kind() && a.size() == b.size() && a.f_equal(b).unwrap_or(false)
        };
        if !matches!(pair.as_slice(), [a, b] if same(a, b)) {
            return Err(format!(
                "{name} should be the same tensor as {stored} (the ray head's levels share \
                 one LayerNorm), but differs"
            ));
        }
    }
    Ok(entry_of)
}

/// Refuses a model the machine cannot hold: the network is built in fp32 on `device` (and
/// cast to `precision` afterwards), and the file read into it one tensor at a time.
fn check_memory(model: Da3Model, device: Device) -> Result<()> {
    match device {
        Device::Cuda(index) => {
            let total = crate::cuda::report()
                .gpus
                .iter()
                .find(|g| g.index as usize == index)
                .map(|g| g.memory_bytes);
            match total {
                // Built in fp32, then cast: the peak is the fp32 network.
                Some(total) => refuse_if_short(
                    model,
                    fp32_bytes(model) + MEMORY_MARGIN_BYTES,
                    total,
                    &format!("GPU {index}"),
                ),
                None => Ok(()),
            }
        }
        _ => match available_host_memory() {
            Some(available) => refuse_if_short(
                model,
                fp32_bytes(model) + MEMORY_MARGIN_BYTES,
                available,
                "this machine",
            ),
            None => Ok(()),
        },
    }
}

/// The network's weights in fp32, in bytes.
fn fp32_bytes(model: Da3Model) -> u64 {
    model.approximate_parameters() * 4
}

/// Refuses when `needed` bytes exceed what `place` has `available`.
fn refuse_if_short(model: Da3Model, needed: u64, available: u64, place: &str) -> Result<()> {
    if needed <= available {
        return Ok(());
    }
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    Err(Error::Invalid(format!(
        "{model} needs about {:.1} GiB of memory to load and run, but {place} has {:.1} GiB \
         available; use a smaller model (da3-small, da3-base) or a machine with more memory",
        gib(needed),
        gib(available),
    )))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (`None` where there is no such file).
fn available_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries a safetensors file of `tensors` gives, by name.
    fn entries_of(tensors: &[(String, Tensor)]) -> std::result::Result<Vec<String>, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join(WEIGHTS_FILE);
        Tensor::write_safetensors(tensors, &path).map_err(|e| e.to_string())?;
        let file = SafetensorsFile::open(&path)?;
        let entry_of = official_entries(&file)?;
        Ok(entry_of
            .iter()
            .map(|(name, &i)| format!("{name} <- {}", file.entries()[i].0))
            .collect())
    }

    #[test]
    fn copies_of_the_shared_norm_are_folded_and_the_prefix_dropped() {
        let norm = Tensor::from_slice(&[1.0f32, 2.0]);
        let copy = "head.scratch.output_conv2_aux.3.2.weight";
        let tensors = vec![
            (format!("model.{SHARED_NORM}.weight"), norm.copy()),
            (format!("model.{copy}"), norm.copy()),
            ("model.gs_head.x".to_string(), norm.copy()),
        ];
        assert_eq!(
            entries_of(&tensors).expect("equal copies"),
            [format!(
                "{SHARED_NORM}.weight <- model.{SHARED_NORM}.weight"
            )]
        );
        // Only a copy: it is taken as the shared one.
        let only_copy = vec![(format!("model.{copy}"), norm.copy())];
        assert_eq!(
            entries_of(&only_copy).expect("a copy alone"),
            [format!("{SHARED_NORM}.weight <- model.{copy}")]
        );
        let differing = vec![
            (format!("model.{SHARED_NORM}.weight"), norm.copy()),
            (
                "model.head.scratch.output_conv2_aux.1.2.weight".to_string(),
                norm.copy() * 2.0,
            ),
        ];
        let err = entries_of(&differing).expect_err("a differing copy");
        assert!(err.contains("but differs"), "{err}");
    }

    #[test]
    fn giant_is_refused_where_memory_is_short() {
        // Giant's fp32 weights alone are 4.6 GB.
        let needed = fp32_bytes(Da3Model::Giant) + MEMORY_MARGIN_BYTES;
        let err = refuse_if_short(Da3Model::Giant, needed, 6 << 30, "this machine")
            .expect_err("6 GiB is too little");
        assert!(
            err.to_string().contains("da3-giant needs about 6.3 GiB"),
            "{err}"
        );
        assert!(refuse_if_short(Da3Model::Giant, needed, 32 << 30, "this machine").is_ok());
    }

    #[test]
    fn config_names_a_released_model() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join(CONFIG_FILE);
        std::fs::write(&config, r#"{"model_name": "da3-small"}"#).expect("write");
        assert_eq!(model_from_config(&config).ok(), Some(Da3Model::Small));
        std::fs::write(&config, r#"{"model_name": "da3-tiny"}"#).expect("write");
        let err = model_from_config(&config).expect_err("unknown model");
        assert!(err.to_string().contains("da3-tiny") && err.to_string().contains("da3-small"));
    }
}
