//! The one interface between the depth networks and everything that uses them.
//!
//! The networks run on LibTorch in `anydepth-torch`; the application layer, the front ends
//! and the tests see only [`DepthEngine`] and [`EngineLoader`], so they build, start and
//! run without libtorch until a network is actually needed.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anydepth_core::{Prediction, RgbImage};

use crate::config::{Encoder, Head, ModelConfig, Version, VideoConfig};
use crate::error::{Error, Result};

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA GPU when one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU of this index.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
            },
        }
    }
}

/// The floating-point precision a network runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Precision {
    /// 32-bit float, as the weights were trained.
    #[default]
    Fp32,
    /// 16-bit float (half); fast on CUDA, slow on the CPU. The whole V1/V2 and Video Depth
    /// Anything network; Depth Anything 3's encoder, as its official autocast.
    Fp16,
    /// bfloat16 (fp32's range): the encoder's linear layers and attention, as PyTorch's
    /// autocast runs them; its norms and residual stream, and the heads, in fp32.
    Bf16,
}

/// Where photos become network input (resized and normalised).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Preprocessing {
    /// On the device when it is a GPU, else exact.
    #[default]
    Auto,
    /// On the host, exactly as the official code (OpenCV's cubic resize): network input
    /// equal to the official tensor to float32 rounding.
    Exact,
    /// On the device: the photo is uploaded as it is, then resized (LibTorch's bicubic)
    /// and normalised there. Depth within 1e-3 of the range of the exact mode's.
    Device,
}

/// What the caller knows about the model, overriding what the checkpoint suggests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelSpec {
    /// Checked against the size recognised from the tensors.
    pub encoder: Option<Encoder>,
    /// The release, overriding what the checkpoint suggests (V2 when neither tells).
    pub version: Option<Version>,
    /// The head, overriding what the checkpoint suggests (relative when neither tells).
    pub head: Option<Head>,
}

/// How inference runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstimatorOptions {
    /// Where inference runs.
    pub device: DeviceChoice,
    /// The precision the network runs in (which layers it reaches: [`Precision`]).
    pub precision: Precision,
    /// The shorter side of the network input (rounded to a multiple of 14); 518 as trained.
    pub input_size: u32,
    /// Most images per forward pass.
    pub batch_size: usize,
    /// Allow TensorFloat-32 in float32 convolutions and matrix products on CUDA GPUs:
    /// faster, with inputs rounded to 10 mantissa bits. Off, float32 stays float32, as on
    /// the CPU. No effect on the CPU; at fp16 and bf16 convolutions use it anyway
    /// ([`EstimatorOptions::tf32`]). A process-wide LibTorch setting: the model loaded
    /// last decides it.
    pub allow_tf32: bool,
    /// Where photos are resized and normalised.
    pub preprocessing: Preprocessing,
    /// Capture the V1/V2 network as a CUDA graph for each of the first four input shapes
    /// (batch size included) it meets and replay it: one launch instead of hundreds, for
    /// small batches; other shapes run directly. CUDA devices only; the graphs share one
    /// memory pool for their activations.
    pub cuda_graphs: bool,
}

impl Default for EstimatorOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
            input_size: 518,
            batch_size: 1,
            allow_tf32: false,
            preprocessing: Preprocessing::Auto,
            cuda_graphs: false,
        }
    }
}

/// Where TensorFloat-32 is allowed on a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tf32 {
    /// In float32 convolutions (cuDNN).
    pub convolutions: bool,
    /// In float32 matrix products (cuBLAS).
    pub matrix_products: bool,
}

impl EstimatorOptions {
    /// Where TensorFloat-32 is allowed on a GPU: everywhere when asked for; else in
    /// convolutions at fp16 and bf16, as PyTorch's default (under which the official
    /// Depth Anything 3 runs its fp32 heads): the convolutions that stay float32 there
    /// (the heads) lose next to nothing to it beside the half-precision encoder
    /// (docs/BENCHMARKS.md, "Reduced precision": V2-S in bf16 went from 3.0e-3 to 3.2e-3
    /// of the depth's range at most with the head's convolutions rounded as TF32 does).
    pub fn tf32(&self) -> Tf32 {
        Tf32 {
            convolutions: self.allow_tf32 || self.precision != Precision::Fp32,
            matrix_products: self.allow_tf32,
        }
    }
}

/// Timings of the bare network, in seconds per forward pass (after the warm-up), and on a
/// GPU the memory it held.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardTimings {
    /// Seconds of each timed forward pass, in order.
    pub seconds: Vec<f64>,
    /// On a CUDA device, where the engine can read it: the device memory after the timed
    /// passes, with its peaks over the warm-up and the timed passes (weights, input and
    /// passes; nothing left cached from loading).
    pub memory: Option<DeviceMemory>,
}

/// Memory of a GPU held through LibTorch's caching allocator, in bytes. Allocated bytes
/// are its blocks in use (sizes rounded up, and library workspaces such as cuBLAS's
/// included), not the tensors' exact sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Allocated now.
    pub allocated: u64,
    /// The most allocated at once since the peaks were last reset.
    pub peak_allocated: u64,
    /// Reserved from the device now: tensors, the allocator's cache of freed blocks, and
    /// CUDA graphs' memory pools.
    pub reserved: u64,
    /// The most reserved at once since the peaks were last reset.
    pub peak_reserved: u64,
}

/// Where the time of [`DepthEngine::predict_batch_timed`] went, in seconds. On a GPU the
/// stages are separated by synchronising the device, so they add up to the wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimings {
    /// Photos to network input (resize, normalise), on the host or the device.
    pub preprocess: f64,
    /// Network input onto the device (host preprocessing: also to the network's precision;
    /// device preprocessing counts that conversion in `preprocess`).
    pub upload: f64,
    /// The forward pass.
    pub network: f64,
    /// Output resized back to each photo's size and copied to host memory.
    pub resize_back: f64,
}

impl StageTimings {
    /// The sum of the stages.
    pub fn total(&self) -> f64 {
        self.preprocess + self.upload + self.network + self.resize_back
    }
}

impl std::ops::AddAssign for StageTimings {
    fn add_assign(&mut self, other: Self) {
        self.preprocess += other.preprocess;
        self.upload += other.upload;
        self.network += other.network;
        self.resize_back += other.resize_back;
    }
}

/// Photos made ready for a [`DepthEngine`] by its [`PhotoStager`], ahead of their turn:
/// network inputs made on the host, or photos already on their way to the GPU. Only the
/// engine that staged them knows what they hold.
pub struct StagedPhotos(Box<dyn std::any::Any + Send>);

impl StagedPhotos {
    /// Wraps what an engine's stager made.
    pub fn new<T: std::any::Any + Send>(staged: T) -> Self {
        Self(Box::new(staged))
    }

    /// What the stager made, if it is a `T`.
    ///
    /// # Errors
    /// Gives `self` back when it holds something else.
    pub fn downcast<T: std::any::Any>(self) -> std::result::Result<T, Self> {
        self.0.downcast::<T>().map(|staged| *staged).map_err(Self)
    }
}

impl fmt::Debug for StagedPhotos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StagedPhotos")
    }
}

/// Prepares photos for a [`DepthEngine`] on another thread than the one that runs it
/// ([`DepthEngine::stager`]), so that the preparation of the next batch overlaps the
/// network on the current one.
pub trait PhotoStager: Send + Sync {
    /// `images` made ready for [`DepthEngine::predict_staged`].
    ///
    /// # Errors
    /// When the device fails (out of memory). An image the engine cannot use is better
    /// reported by [`DepthEngine::predict_staged`], as [`DepthEngine::predict_batch`]
    /// would report it.
    fn stage(&self, images: &[&RgbImage]) -> Result<StagedPhotos>;
}

/// A loaded depth network: photos in, typed depth maps out.
pub trait DepthEngine {
    /// The model that runs.
    fn config(&self) -> &ModelConfig;

    /// The device it runs on, as LibTorch names it (`Cpu`, `Cuda(0)`).
    fn device_name(&self) -> String;

    /// The options it was loaded with.
    fn options(&self) -> &EstimatorOptions;

    /// Depth of many images, each at its own resolution, in order.
    ///
    /// # Errors
    /// When an image is empty or inference fails (for example out of GPU memory).
    fn predict_batch(&self, images: &[RgbImage]) -> Result<Vec<Prediction>>;

    /// [`DepthEngine::predict_batch`], also saying where the time went (for benchmarks: the
    /// stages are separated by synchronising the device, which costs a little overlap).
    ///
    /// # Errors
    /// As [`DepthEngine::predict_batch`].
    fn predict_batch_timed(&self, images: &[RgbImage]) -> Result<(Vec<Prediction>, StageTimings)>;

    /// Something that prepares photos for this engine on another thread while it runs
    /// earlier ones, where that pays; `None` (the default) where it has nothing to
    /// prepare ahead.
    fn stager(&self) -> Option<Box<dyn PhotoStager>> {
        None
    }

    /// [`DepthEngine::predict_batch`] on `images`, which this engine's
    /// [`DepthEngine::stager`] made into `staged`.
    ///
    /// # Errors
    /// As [`DepthEngine::predict_batch`], and when `staged` does not come from this
    /// engine's stager or from these images.
    fn predict_staged(&self, images: &[RgbImage], staged: StagedPhotos) -> Result<Vec<Prediction>> {
        drop(staged);
        self.predict_batch(images)
    }

    /// Depth of one image at its own resolution.
    ///
    /// # Errors
    /// As [`DepthEngine::predict_batch`].
    fn predict(&self, image: &RgbImage) -> Result<Prediction> {
        let mut out = self.predict_batch(std::slice::from_ref(image))?;
        out.pop()
            .ok_or_else(|| Error::Invalid("no prediction returned".into()))
    }

    /// Times `iters` forward passes of the bare network on random input of `batch` x 3 x
    /// `height` x `width` (`size` = (width, height), multiples of 14), after `warmup`
    /// untimed ones.
    ///
    /// # Errors
    /// When the size is not a multiple of 14 or inference fails.
    fn time_forward(
        &self,
        batch: usize,
        size: (u32, u32),
        warmup: usize,
        iters: usize,
    ) -> Result<ForwardTimings>;
}

impl fmt::Debug for dyn DepthEngine + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DepthEngine")
            .field("model", &self.config().describe())
            .field("device", &self.device_name())
            .finish()
    }
}

/// How a video model goes through a clip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ClipMode {
    /// Overlapping 32-frame windows, as the official `infer_video_depth`: the steadiest
    /// depth, each frame final at most a window (22 frames) and a blend (8) later.
    #[default]
    Windowed,
    /// One frame at a time against the cached temporal states of earlier frames, as the
    /// official streaming class: one frame of latency, for live sources.
    Streaming,
}

/// One clip going through a video model: frames in, in order; depth out, in order, once
/// final.
pub trait ClipDepth {
    /// Adds the next frame; returns the frames whose depth became final (maybe none).
    ///
    /// # Errors
    /// When the frame's size differs from the first frame's, or inference fails.
    fn push(&mut self, frame: &RgbImage) -> Result<Vec<Prediction>>;

    /// Ends the clip; returns the frames still held back.
    ///
    /// # Errors
    /// When no frame was pushed, or inference fails.
    fn finish(self: Box<Self>) -> Result<Vec<Prediction>>;
}

/// A loaded video network (Video Depth Anything): clips in, depth per frame out.
pub trait VideoEngine {
    /// The model that runs.
    fn config(&self) -> &VideoConfig;

    /// The device it runs on, as LibTorch names it.
    fn device_name(&self) -> String;

    /// The options it was loaded with.
    fn options(&self) -> &EstimatorOptions;

    /// Starts a clip.
    fn start(&self, mode: ClipMode) -> Box<dyn ClipDepth + '_>;
}

impl fmt::Debug for dyn VideoEngine + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoEngine")
            .field("model", &self.config().describe())
            .field("device", &self.device_name())
            .finish()
    }
}

/// What a checkpoint loads as for a clip: a video network, or an image network run on
/// each frame.
#[derive(Debug)]
pub enum ClipEngine {
    /// Video Depth Anything: frames attend to each other.
    Video(Box<dyn VideoEngine>),
    /// Depth Anything V1/V2: each frame on its own.
    PerFrame(Box<dyn DepthEngine>),
}

/// Loads depth engines from checkpoint files.
pub trait EngineLoader {
    /// Loads the checkpoint at `weights` (`.pth` or `.safetensors`).
    ///
    /// # Errors
    /// When the file cannot be read, does not match `spec`, or the device or options are
    /// unusable.
    fn load(
        &self,
        weights: &Path,
        spec: ModelSpec,
        options: EstimatorOptions,
    ) -> Result<Box<dyn DepthEngine>>;

    /// Loads the checkpoint at `weights` for clips: Video Depth Anything (recognised from
    /// its tensors; `metric` overrides what the file name says) as a [`VideoEngine`], any
    /// other Depth Anything model as a per-frame [`DepthEngine`].
    ///
    /// # Errors
    /// As [`EngineLoader::load`]; by default, that this binary runs no video models.
    fn load_for_clips(
        &self,
        _weights: &Path,
        _spec: ModelSpec,
        _metric: Option<bool>,
        _options: EstimatorOptions,
    ) -> Result<ClipEngine> {
        Err(Error::Invalid(
            "this binary does not run video models".into(),
        ))
    }

    /// Loads a Depth Anything 3 checkpoint (a released folder with `model.safetensors` and
    /// `config.json`, or the weights file with `config.json` beside it; without
    /// `config.json`, `model` says which model it is, and with one they must agree).
    ///
    /// # Errors
    /// As [`EngineLoader::load`]; by default, that this binary runs no networks.
    fn load_da3(
        &self,
        _weights: &Path,
        _model: Option<crate::da3::Da3Model>,
        _options: EstimatorOptions,
    ) -> Result<Box<dyn crate::da3::Da3Engine>> {
        Err(Error::Invalid(
            "this binary does not run Depth Anything 3".into(),
        ))
    }

    /// What the runtime finds on this machine: library version, CUDA, GPUs, and the
    /// device `--device auto` resolves to. Loads the runtime's CUDA part when it has one.
    ///
    /// # Errors
    /// When this loader has no runtime.
    fn runtime(&self) -> Result<crate::RuntimeReport>;

    /// Runs a training plan to its end (or until the observer asks to stop).
    ///
    /// # Errors
    /// When this loader cannot train, the plan is unusable, or training fails (a
    /// non-finite loss, a checkpoint that cannot be written); the last good checkpoint is
    /// kept.
    fn train(
        &self,
        _plan: &crate::train::TrainPlan,
        _observer: &mut dyn crate::train::TrainObserver,
    ) -> Result<crate::train::TrainReport> {
        Err(Error::Invalid("this binary does not train models".into()))
    }

    /// Runs a distillation plan: labels, then (unless it labels a shard) trains.
    ///
    /// # Errors
    /// As [`EngineLoader::train`], and when teacher and student cannot be paired.
    fn distill(
        &self,
        _plan: &crate::train::DistillPlan,
        _observer: &mut dyn crate::train::TrainObserver,
    ) -> Result<crate::train::DistillReport> {
        Err(Error::Invalid("this binary does not train models".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorfloat_32_everywhere_when_asked_in_convolutions_at_reduced_precision() {
        let at = |precision, allow_tf32| {
            let tf32 = EstimatorOptions {
                precision,
                allow_tf32,
                ..Default::default()
            }
            .tf32();
            (tf32.convolutions, tf32.matrix_products)
        };
        assert_eq!(at(Precision::Fp32, false), (false, false));
        assert_eq!(at(Precision::Fp32, true), (true, true));
        assert_eq!(at(Precision::Fp16, false), (true, false));
        assert_eq!(at(Precision::Bf16, false), (true, false));
        assert_eq!(at(Precision::Bf16, true), (true, true));
    }
}
