//! Training as data: what to train on, how, and what a front end hears while it runs.
//!
//! A front end builds a [`TrainPlan`] (fine-tuning on depth ground truth) and hands it to
//! [`crate::EngineLoader::train`] with a [`TrainObserver`]; the loop itself runs on
//! LibTorch in `anydepth-torch`. Nothing here links libtorch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Head;
use crate::engine::{DepthEngine, DeviceChoice, ModelSpec};
use crate::error::Result;

/// One training photo and its metric ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSample {
    /// A name for messages.
    pub name: String,
    /// The photo.
    pub rgb: PathBuf,
    /// The ground-truth depth file (16-bit PNG/PGM, `.npy`, `.pfm`, `.exr`).
    pub depth: PathBuf,
    /// Units of the depth file per metre (1000 for millimetres; 1 for files in metres).
    pub depth_scale: f64,
}

/// How the optimiser, the schedule and the augmentation run. The defaults are the
/// official metric fine-tuning recipe, apart from the number of steps and the batch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Optimiser steps in all (including those of a resumed run).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// The side of the square training crop (a multiple of 14).
    pub input_size: u32,
    /// The encoder's learning rate at step 0 (official: 5e-6).
    pub lr: f64,
    /// The decoder's learning rate over the encoder's (official: 10).
    pub decoder_lr_factor: f64,
    /// AdamW's decoupled weight decay (official: 0.01).
    pub weight_decay: f64,
    /// The learning rate is `lr · (1 − step/steps)^poly_power` (official: 0.9).
    pub poly_power: f64,
    /// The probability of a horizontal flip (official: 0.5).
    pub flip_probability: f64,
    /// Ground truth at or below this many metres does not count (official: 0.001).
    pub min_depth_m: f64,
    /// Ground truth at or above this many metres does not count; the metric head's range
    /// when `None`, else no limit.
    pub max_depth_m: Option<f64>,
    /// Seeds the sample order, the crops and the flips.
    pub seed: u64,
    /// Where training runs.
    #[serde(skip)]
    pub device: DeviceChoice,
    /// Validate (and keep the best checkpoint) every this many steps; 0: only at the end.
    pub val_every: usize,
    /// The input size validation runs at (the evaluation's default: 518).
    pub val_input_size: u32,
    /// Write a resumable checkpoint every this many steps; 0: only at the end.
    pub save_every: usize,
    /// Keep the resized training samples in memory up to this many bytes; a larger set
    /// is read from disk again for every batch, one batch ahead. Results do not depend on
    /// it.
    #[serde(default = "default_sample_memory")]
    pub sample_memory: usize,
}

/// 4 GiB of resized samples: about 700 photos at 518.
fn default_sample_memory() -> usize {
    4 << 30
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch: 4,
            input_size: 518,
            lr: 5e-6,
            decoder_lr_factor: 10.0,
            weight_decay: 0.01,
            poly_power: 0.9,
            flip_probability: 0.5,
            min_depth_m: 1e-3,
            max_depth_m: None,
            seed: 0,
            device: DeviceChoice::Auto,
            val_every: 0,
            val_input_size: 518,
            save_every: 0,
            sample_memory: default_sample_memory(),
        }
    }
}

/// A fine-tuning run: a model, its training data, and where the result goes.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    /// The checkpoint the weights start from (`.pth` or `.safetensors`).
    pub init: PathBuf,
    /// What the caller says of the model; a metric head here trains with SiLog, a
    /// relative one with the affine-invariant loss.
    pub spec: ModelSpec,
    /// The training samples.
    pub samples: Vec<TrainSample>,
    /// How training runs.
    pub options: TrainOptions,
    /// The checkpoint to write: official `.pth`, or Hugging Face `.safetensors` with a
    /// `config.json` beside it. Its sibling files are named by [`TrainOutputs`].
    pub out: PathBuf,
    /// A training checkpoint to continue from (its sidecar state must be beside it).
    pub resume: Option<PathBuf>,
}

/// How the student's input is perturbed during distillation (the teacher always sees
/// the clean photo). The defaults are Depth Anything V1's strong perturbations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perturbations {
    /// Colour jitter strength: brightness, contrast and saturation each scaled by a
    /// factor drawn from `[1 − s, 1 + s]` (0: off).
    pub color_jitter: f64,
    /// The probability of a Gaussian blur (sigma drawn from 0.1 to 2 pixels at 518, scaled
    /// with the crop).
    pub blur_probability: f64,
    /// The probability that a batch is mixed by CutMix: each image takes a box of the
    /// next image of the batch, and that box is scored against the other image's label.
    pub cutmix_probability: f64,
}

impl Default for Perturbations {
    fn default() -> Self {
        Self {
            color_jitter: 0.4,
            blur_probability: 0.5,
            cutmix_probability: 0.5,
        }
    }
}

impl Perturbations {
    /// No perturbation at all.
    pub const NONE: Self = Self {
        color_jitter: 0.0,
        blur_probability: 0.0,
        cutmix_probability: 0.0,
    };
}

/// The student of a distillation: a checkpoint, or a fresh model of a size whose encoder
/// starts from the teacher's weights where they fit (none do across sizes: random).
#[derive(Clone, Debug, PartialEq)]
pub enum Student {
    /// Start from this checkpoint.
    Checkpoint(PathBuf),
    /// A freshly initialised model of this size.
    Fresh(crate::config::Encoder),
}

/// A distillation run: a teacher labels unlabelled photos once (cached as fp16), and a
/// student learns the labels under perturbations.
#[derive(Clone, Debug)]
pub struct DistillPlan {
    /// The teacher's checkpoint.
    pub teacher: PathBuf,
    /// What the caller says of the teacher.
    pub teacher_spec: ModelSpec,
    /// The input size the teacher labels at (518 as the released models).
    pub teacher_input_size: u32,
    /// The student.
    pub student: Student,
    /// What the caller says of the student.
    pub student_spec: ModelSpec,
    /// The unlabelled photos.
    pub images: Vec<PathBuf>,
    /// Held-out photos, labelled by the teacher too: the student's affine-invariant error
    /// to their labels (centre crops) is the validation that ranks checkpoints.
    pub validation: Option<Vec<PathBuf>>,
    /// Where labels are cached (one fp16 file per photo and teacher).
    pub label_cache: PathBuf,
    /// Label only the photos of this shard `(index, count)`, then stop.
    pub shard: Option<(usize, usize)>,
    /// Labelled samples mixed in, one labelled batch after each unlabelled one.
    pub labelled: Vec<TrainSample>,
    /// The perturbations of the student's input.
    pub perturbations: Perturbations,
    /// The weight of the feature-alignment loss against the student's initial encoder
    /// (0: off; Depth Anything V1 uses it with the margin below).
    pub feature_alignment: f64,
    /// Tokens whose cosine similarity is above this are not pushed further (0.85).
    pub feature_margin: f64,
    /// The weight of MiDaS's gradient-matching term in the student's loss (0.5 as in the
    /// relative loss; 0: the trimmed affine-invariant loss alone).
    pub gradient_weight: f64,
    /// How training runs.
    pub options: TrainOptions,
    /// The student checkpoint to write.
    pub out: PathBuf,
    /// A training checkpoint to continue from.
    pub resume: Option<PathBuf>,
}

/// Where labels are cached by default: `$XDG_CACHE_HOME/anydepth/labels`, else
/// `~/.cache/anydepth/labels`; `None` without either variable.
pub fn default_label_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("anydepth").join("labels"))
}

/// What labelling did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelReport {
    /// Photos labelled now.
    pub labelled: usize,
    /// Photos whose label was already in the cache.
    pub cached: usize,
    /// Photos that could not be read, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// How a distillation ended: its labelling, and its training unless it labelled a shard.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillReport {
    /// What labelling did.
    pub labels: LabelReport,
    /// The training, `None` when only a shard was labelled.
    pub training: Option<TrainReport>,
}

/// The files a run writes beside its output checkpoint `OUT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainOutputs {
    /// `OUT`: the weights after the last step.
    pub last: PathBuf,
    /// `OUT` with `.best` before its extension: the weights of the best validation.
    pub best: PathBuf,
    /// `OUT.state`: the optimiser's moments, the step and the seed, to resume from.
    pub state: PathBuf,
    /// `OUT` with `.log.csv` as extension: one line per step.
    pub log_csv: PathBuf,
    /// `OUT` with `.log.json` as extension: the whole history and the validations.
    pub log_json: PathBuf,
}

impl TrainOutputs {
    /// The files of a run writing `out`.
    pub fn for_checkpoint(out: &Path) -> Self {
        let stem = out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = out
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pth".into());
        let sibling = |name: String| out.with_file_name(name);
        Self {
            last: out.to_path_buf(),
            best: sibling(format!("{stem}.best.{ext}")),
            state: sibling(format!("{stem}.{ext}.state")),
            log_csv: sibling(format!("{stem}.log.csv")),
            log_json: sibling(format!("{stem}.log.json")),
        }
    }
}

/// What happened at one optimiser step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step, from 1.
    pub step: usize,
    /// The loss of its batch.
    pub loss: f64,
    /// The encoder's learning rate it used.
    pub lr: f64,
    /// Its images per second (data loading included).
    pub images_per_second: f64,
}

/// The result of one validation: named metrics, and the one that picks the best model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// The step it was taken after.
    pub step: usize,
    /// Every metric by name (for example `abs_rel`, `delta1`).
    pub metrics: Vec<(String, f64)>,
    /// The name of the metric that ranks checkpoints.
    pub key: String,
    /// Its value; lower is better.
    pub value: f64,
}

/// What a run says as its steps begin.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainStart {
    /// The first step it takes (after a resume, the one after the checkpoint's).
    pub first_step: usize,
    /// The steps in all.
    pub steps: usize,
    /// The samples it draws from (after those that could not be read were left out).
    pub samples: usize,
    /// The device, as LibTorch names it.
    pub device: String,
    /// The model being trained, e.g. "Depth Anything V2 vits metric (max 20 m)".
    pub model: String,
    /// The loss it minimises, e.g. "SiLog".
    pub loss: &'static str,
}

/// What a front end hears from a training run, and how it validates and stops it.
pub trait TrainObserver {
    /// The steps begin.
    fn started(&mut self, _start: &TrainStart) {}

    /// `done` of `total` photos have a label (cached or made now).
    fn labelling(&mut self, _done: usize, _total: usize) {}

    /// A sample could not be read and is left out.
    fn skipped(&mut self, _path: &Path, _why: &str) {}

    /// One optimiser step is done.
    fn step(&mut self, _record: &StepRecord) {}

    /// Scores the current model; `None`: no validation set.
    ///
    /// # Errors
    /// When validation fails; training stops.
    fn validate(
        &mut self,
        _step: usize,
        _engine: Box<dyn DepthEngine>,
    ) -> Result<Option<Validation>> {
        Ok(None)
    }

    /// A validation was taken (by [`TrainObserver::validate`] or by the run itself).
    fn validated(&mut self, _validation: &Validation) {}

    /// A checkpoint was written.
    fn saved(&mut self, _path: &Path) {}

    /// Whether the user asked to stop (Ctrl-C): the run writes a resumable checkpoint
    /// and returns.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// How a training run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The step it reached.
    pub step: usize,
    /// The steps it was asked for.
    pub steps: usize,
    /// Whether it stopped early because the user asked.
    pub interrupted: bool,
    /// The loss of the last step.
    pub last_loss: Option<f64>,
    /// The best validation, if any.
    pub best: Option<Validation>,
    /// The files written.
    pub outputs: TrainOutputs,
    /// Samples left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Mean images per second over the run's steps.
    pub images_per_second: f64,
    /// The head that was trained. A `.pth` file does not record it, so a metric one must
    /// be named again (`--max-depth`) to run the weights.
    pub head: Head,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_named_after_the_checkpoint() {
        let outputs = TrainOutputs::for_checkpoint(Path::new("runs/student.pth"));
        assert_eq!(outputs.best, Path::new("runs/student.best.pth"));
        assert_eq!(outputs.state, Path::new("runs/student.pth.state"));
        assert_eq!(outputs.log_csv, Path::new("runs/student.log.csv"));
        let hf = TrainOutputs::for_checkpoint(Path::new("out/model.safetensors"));
        assert_eq!(hf.best, Path::new("out/model.best.safetensors"));
    }
}
