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
use crate::weights::{copy_into_variable, shapes_of, verify_shapes};

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

/// A Depth Anything 3 checkpoint, read and checked.
#[derive(Debug)]
pub struct Da3Checkpoint {
    /// The weights file.
    pub path: PathBuf,
    /// The model `config.json` names.
    pub model: Da3Model,
    /// Tensors without the `model.` prefix.
    pub tensors: BTreeMap<String, Tensor>,
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
        let file_bytes = std::fs::metadata(&weights)
            .map_err(|e| Error::Checkpoint {
                reason: e.to_string(),
                path: weights.clone(),
            })?
            .len();
        check_memory(model, file_bytes, device)?;
        let raw = Tensor::read_safetensors(&weights).map_err(|e| Error::Checkpoint {
            reason: e.to_string(),
            path: weights.clone(),
        })?;
        let tensors = official_names(raw, &weights)?;
        tracing::debug!(path = %weights.display(), model = %model, tensors = tensors.len(), "read Depth Anything 3 checkpoint");
        Ok(Self {
            path: weights,
            model,
            tensors,
        })
    }

    /// Copies the tensors into a network's `variables`, after checking that they are
    /// exactly its variables.
    ///
    /// # Errors
    /// [`Error::TensorMismatch`] naming every missing, unexpected and mis-shaped tensor, or
    /// a LibTorch failure.
    pub fn copy_into(&self, variables: &HashMap<String, Tensor>) -> Result<()> {
        verify_shapes(
            &shapes_of(&self.tensors),
            variables,
            self.model.model_name(),
            &self.path,
        )?;
        tch::no_grad(|| {
            self.tensors
                .iter()
                .try_for_each(|(name, src)| copy_into_variable(variables, name, src))
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

/// The tensors without the wrapper's `model.` prefix, Giant's unused heads left out, copies
/// of the shared LayerNorm folded into the one stored.
fn official_names(raw: Vec<(String, Tensor)>, path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for (name, tensor) in raw {
        let name = name.strip_prefix("model.").unwrap_or(&name).to_string();
        if UNUSED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        tensors.insert(name, tensor);
    }
    let copies: Vec<String> = tensors
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
        let Some(copy) = tensors.remove(&name) else {
            continue;
        };
        match tensors.get(&stored) {
            Some(original) if original.size() == copy.size() && original.equal(&copy) => {}
            Some(_) => {
                return Err(Error::Checkpoint {
                    reason: format!(
                        "{name} should be the same tensor as {stored} (the ray head's levels \
                         share one LayerNorm), but differs"
                    ),
                    path: path.to_path_buf(),
                })
            }
            None => {
                tensors.insert(stored, copy);
            }
        }
    }
    Ok(tensors)
}

/// Refuses a model the machine cannot hold: the file is read into host memory, then the
/// network is built in fp32 on `device` (and cast to `precision` afterwards).
fn check_memory(model: Da3Model, file_bytes: u64, device: Device) -> Result<()> {
    // The file is read into host memory first, on every device.
    let host_available = available_host_memory();
    match device {
        Device::Cuda(index) => {
            if let Some(available) = host_available {
                refuse_if_short(
                    model,
                    file_bytes + MEMORY_MARGIN_BYTES / 2,
                    available,
                    "this machine",
                )?;
            }
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
        _ => match host_available {
            Some(available) => refuse_if_short(
                model,
                file_bytes + fp32_bytes(model) + MEMORY_MARGIN_BYTES,
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

    #[test]
    fn copies_of_the_shared_norm_are_folded_and_the_prefix_dropped() {
        let norm = Tensor::from_slice(&[1.0f32, 2.0]);
        let raw = vec![
            (format!("model.{SHARED_NORM}.weight"), norm.copy()),
            (
                "model.head.scratch.output_conv2_aux.3.2.weight".to_string(),
                norm.copy(),
            ),
            ("model.gs_head.x".to_string(), norm.copy()),
        ];
        let tensors = official_names(raw, Path::new("x")).expect("equal copies");
        assert_eq!(
            tensors.keys().collect::<Vec<_>>(),
            vec![&format!("{SHARED_NORM}.weight")]
        );
        let raw = vec![
            (format!("model.{SHARED_NORM}.weight"), norm.copy()),
            (
                "model.head.scratch.output_conv2_aux.1.2.weight".to_string(),
                norm.copy() * 2.0,
            ),
        ];
        assert!(official_names(raw, Path::new("x")).is_err());
    }

    #[test]
    fn giant_is_refused_where_memory_is_short() {
        // Giant's fp32 weights alone are 4.6 GB.
        let needed = 4_600_000_000 + fp32_bytes(Da3Model::Giant) + MEMORY_MARGIN_BYTES;
        let err = refuse_if_short(Da3Model::Giant, needed, 8 << 30, "this machine")
            .expect_err("8 GiB is too little");
        assert!(
            err.to_string().contains("da3-giant needs about 10.6 GiB"),
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
