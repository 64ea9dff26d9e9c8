//! Video Depth Anything: the V2 encoder and a DPT head with temporal motion modules,
//! run over a clip as the official code runs it.
//!
//! Two ways through a clip, each a state machine that takes frames one at a time, so a
//! clip is never held in memory whole:
//! - [`WindowedDepth`], the official `infer_video_depth`: windows of 32 frames with a
//!   stride of 22; the first 10 inputs of each window after the first are keyframes of
//!   the previous window (its frames 0, 12 and 24-31); each window's relative depth is
//!   fitted by scale and shift to the previous one on two keyframes, and the 8 frames
//!   where windows meet are blended linearly. Frames come out once nothing later can
//!   change them (at most a window behind).
//! - [`StreamingDepth`], the official streaming class (`infer_video_depth_one`): one frame
//!   in, its depth out, attending to the cached temporal states of earlier frames.

use std::collections::VecDeque;
use std::path::Path;

use anydepth_core::{DepthMap, Prediction, RgbImage};
use tch::{nn, Device, Kind, Tensor};

use anydepth_model::config::{Encoder, VideoConfig};
use anydepth_model::engine::{ClipDepth, ClipMode, EstimatorOptions, ModelSpec, VideoEngine};

use crate::dinov2::DinoV2;
use crate::dpt::DptHead;
use crate::error::{Error, Result};
use crate::estimator::{kind_of, load_store, validate_options};
use crate::preprocess::preprocess;
use crate::weights::Checkpoint;

/// Frames per window (`INFER_LEN`).
pub const WINDOW: usize = 32;
/// Frames each window shares with the previous one, as keyframes (`OVERLAP`).
pub const OVERLAP: usize = 10;
/// Positions in the previous window whose inputs open the next one (`KEYFRAMES`).
pub const KEYFRAMES: [usize; OVERLAP] = [0, 12, 24, 25, 26, 27, 28, 29, 30, 31];
/// Frames blended where two windows meet (`INTERP_LEN`).
pub const BLEND: usize = 8;
/// New frames per window after the first.
const STRIDE: usize = WINDOW - OVERLAP;
/// Keyframes the scale and shift between windows are fitted on (`OVERLAP - INTERP_LEN`).
const ALIGN: usize = OVERLAP - BLEND;

/// The tensor names that only Video Depth Anything has.
const TEMPORAL_TENSOR: &str = "head.motion_modules.0.temporal_transformer.proj_in.weight";

/// Whether `checkpoint` holds Video Depth Anything (it has motion modules).
pub fn is_video_checkpoint(checkpoint: &Checkpoint) -> bool {
    checkpoint.contains(TEMPORAL_TENSOR)
}

/// The network, with its variables named like the official checkpoints (`pretrained.*`,
/// `head.*`).
#[derive(Debug)]
pub struct VideoDepthNetwork {
    cfg: VideoConfig,
    encoder: DinoV2,
    head: DptHead,
}

impl VideoDepthNetwork {
    /// Builds the network (zero weights) with its variables under `p`.
    pub fn new(p: &nn::Path, cfg: VideoConfig) -> Self {
        let base = cfg.base;
        Self {
            encoder: DinoV2::new(p / "pretrained", &base.vit),
            head: DptHead::temporal(
                p / "head",
                &base.dpt,
                base.vit.patch_size,
                cfg.temporal_heads,
                cfg.window,
            ),
            cfg,
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &VideoConfig {
        &self.cfg
    }

    /// Depth of `frames` normalised inputs `(frames, 3, h, w)` (sides multiples of 14)
    /// attending to each other, or, with `cached`, a single frame attending to the cached
    /// states of earlier ones. Returns `(frames, h, w)` and the states to cache for these
    /// frames.
    ///
    /// # Errors
    /// When the input's shape is not of that form.
    pub fn forward(&self, x: &Tensor, cached: Option<&[Tensor]>) -> Result<(Tensor, Vec<Tensor>)> {
        let patch = self.cfg.base.vit.patch_size;
        let (n, c, h, w) = x.size4().map_err(|_| {
            Error::Invalid(format!(
                "expected a (frames, 3, h, w) tensor, got {:?}",
                x.size()
            ))
        })?;
        if n < 1 || c != 3 || h < patch || w < patch || h % patch != 0 || w % patch != 0 {
            return Err(Error::Invalid(format!(
                "input of shape {:?}: need (frames >= 1, 3, h, w) with h and w positive multiples of {patch}",
                x.size()
            )));
        }
        if cached.is_some() && n != 1 {
            return Err(Error::Invalid(format!(
                "with cached states the input is one frame, got {n}"
            )));
        }
        if cached.is_none() && n > self.cfg.window {
            return Err(Error::Invalid(format!(
                "at most {} frames attend to each other, got {n}",
                self.cfg.window
            )));
        }
        let tokens = self
            .encoder
            .intermediate_layers(x, &self.cfg.base.intermediate_layers);
        let (depth, cache) = self
            .head
            .forward_frames(&tokens, h / patch, w / patch, n, cached);
        // The official forward resizes to the input size (a no-op here) and applies ReLU.
        Ok((depth.relu(), cache))
    }
}

/// Video Depth Anything loaded on a device, ready to start clips.
#[derive(Debug)]
pub struct VideoDepthModel {
    _vs: nn::VarStore,
    network: VideoDepthNetwork,
    device: Device,
    options: EstimatorOptions,
}

impl VideoDepthModel {
    /// Loads a Video Depth Anything checkpoint. The file's name tells a metric model
    /// (`metric_video_depth_anything_*.pth`) unless `metric` says.
    ///
    /// # Errors
    /// When the file cannot be read, holds no Video Depth Anything model or one of another
    /// size than `spec.encoder`, or the device or options are unusable.
    pub fn from_checkpoint(
        path: &Path,
        spec: ModelSpec,
        metric: Option<bool>,
        options: EstimatorOptions,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::read(path)?;
        let config = video_config(&checkpoint, spec, metric)?;
        Self::from_parts(&checkpoint, config, options)
    }

    /// Builds `config` and fills it from `checkpoint`.
    ///
    /// # Errors
    /// As [`VideoDepthModel::from_checkpoint`].
    pub fn from_parts(
        checkpoint: &Checkpoint,
        config: VideoConfig,
        options: EstimatorOptions,
    ) -> Result<Self> {
        validate_options(&options)?;
        if options.cuda_graphs {
            tracing::warn!(
                "--cuda-graphs applies to V1/V2 models: Video Depth Anything runs without"
            );
        }
        let (vs, network) = load_store(checkpoint, &options, &config.describe(), |root| {
            VideoDepthNetwork::new(root, config)
        })?;
        let device = vs.device();
        Ok(Self {
            _vs: vs,
            network,
            device,
            options,
        })
    }

    /// The model that runs.
    pub fn config(&self) -> &VideoConfig {
        self.network.config()
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    /// The network, for callers that prepare input tensors themselves (benchmarks).
    pub fn network(&self) -> &VideoDepthNetwork {
        &self.network
    }

    /// A clip run in overlapping windows, as the official `infer_video_depth`.
    pub fn windowed(&self) -> WindowedDepth<'_> {
        WindowedDepth::new(self)
    }

    /// A clip run one frame at a time with cached temporal states, as the official
    /// streaming class.
    pub fn streaming(&self) -> StreamingDepth<'_> {
        StreamingDepth::new(self)
    }

    /// The network input of `frame` on the device, `(3, h, w)`, at the input size the
    /// official code uses for frames of this shape.
    fn input(&self, frame: &RgbImage) -> Result<Tensor> {
        let input_size = clip_input_size(frame.width, frame.height, self.options.input_size);
        let p = preprocess(frame, input_size)?;
        Ok(Tensor::from_slice(&p.data)
            .view([3, i64::from(p.height), i64::from(p.width)])
            .to_device(self.device)
            .to_kind(kind_of(self.options.precision)))
    }

    /// Runs the network on `(frames, 3, h, w)` and resizes the depth to `(height, width)`
    /// (bilinear, corners aligned), as float32 on the device.
    fn depth(
        &self,
        x: &Tensor,
        cached: Option<&[Tensor]>,
        (width, height): (u32, u32),
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let _guard = tch::no_grad_guard();
        let (depth, cache) = self.network.forward(x, cached)?;
        let depth = depth
            .to_kind(Kind::Float)
            .unsqueeze(1)
            .upsample_bilinear2d(
                [i64::from(height), i64::from(width)],
                /* align_corners= */ true,
                None,
                None,
            )
            .squeeze_dim(1);
        Ok((depth, cache))
    }

    /// A depth map (`(h, w)` tensor on the device) as the prediction this model makes.
    fn prediction(&self, depth: &Tensor, (width, height): (u32, u32)) -> Result<Prediction> {
        let values = Vec::<f32>::try_from(&depth.reshape([-1]).to_device(Device::Cpu))?;
        Ok(if self.config().metric {
            Prediction::Metric(DepthMap::new(width, height, values)?)
        } else {
            Prediction::Disparity(DepthMap::new(width, height, values)?)
        })
    }
}

/// The Video Depth Anything configuration of `checkpoint`, with what the caller says
/// overriding the file name.
///
/// # Errors
/// When the checkpoint has no motion modules, is a ViT-g, or `spec.encoder` contradicts
/// it.
pub fn video_config(
    checkpoint: &Checkpoint,
    spec: ModelSpec,
    metric: Option<bool>,
) -> Result<VideoConfig> {
    let unknown = |reason: String| Error::UnknownModel {
        reason,
        path: checkpoint.path.clone(),
    };
    if !is_video_checkpoint(checkpoint) {
        return Err(unknown(
            "no temporal motion modules (`head.motion_modules.*`): not Video Depth Anything".into(),
        ));
    }
    if let Some(encoder) = spec.encoder {
        if encoder != checkpoint.encoder {
            return Err(unknown(format!(
                "{encoder} was asked for, but the file holds a {} model",
                checkpoint.encoder
            )));
        }
    }
    if checkpoint.encoder == Encoder::Vitg {
        return Err(unknown("there is no ViT-g Video Depth Anything".into()));
    }
    let metric = metric.unwrap_or_else(|| {
        checkpoint
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.to_ascii_lowercase().contains("metric"))
    });
    Ok(VideoConfig::new(checkpoint.encoder, metric))
}

/// The input size the official code uses for `width` x `height` frames: `input_size`,
/// reduced for frames wider than 16:9 (`int(input_size * 1.777 / ratio)`, rounded to a
/// multiple of 14).
pub fn clip_input_size(width: u32, height: u32, input_size: u32) -> u32 {
    let (long, short) = (width.max(height), width.min(height).max(1));
    let ratio = f64::from(long) / f64::from(short);
    if ratio <= 1.78 {
        return input_size;
    }
    let reduced = (f64::from(input_size) * 1.777 / ratio).trunc();
    ((reduced / 14.0).round_ties_even() * 14.0).max(14.0) as u32
}

/// Checks that every frame of a clip has the first frame's size.
fn check_size(
    first: &mut Option<(u32, u32)>,
    frame: &RgbImage,
    index: usize,
) -> Result<(u32, u32)> {
    let size = (frame.width, frame.height);
    match *first {
        None => {
            *first = Some(size);
            Ok(size)
        }
        Some(expected) if expected == size => Ok(size),
        Some((w, h)) => Err(Error::Invalid(format!(
            "frame {index} is {} x {}, but the clip's frames are {w} x {h}",
            frame.width, frame.height
        ))),
    }
}

/// The official windowed inference over a clip, frame by frame: [`WindowedDepth::push`]
/// each frame, then [`WindowedDepth::finish`]. Every call returns the frames whose depth
/// is final, in order; together they are the clip's frames, one prediction each.
///
/// Memory: the inputs of one window and the depth of one window at the frames'
/// resolution, whatever the clip's length.
#[derive(Debug)]
pub struct WindowedDepth<'m> {
    model: &'m VideoDepthModel,
    size: Option<(u32, u32)>,
    /// Frames pushed so far.
    received: usize,
    /// Inputs of the window being gathered (after the first window: its new frames only).
    inputs: Vec<Tensor>,
    /// The inputs at [`KEYFRAMES`] of the last window run.
    keyframes: Vec<Tensor>,
    /// Windows run so far.
    windows: usize,
    /// Aligned depth of the last [`BLEND`] frames of the last window, still to be blended.
    pending: VecDeque<Tensor>,
    /// Aligned depth at the first [`ALIGN`] keyframes, which the next window is fitted to.
    reference: Vec<Tensor>,
    /// Frames returned so far.
    emitted: usize,
}

impl<'m> WindowedDepth<'m> {
    fn new(model: &'m VideoDepthModel) -> Self {
        Self {
            model,
            size: None,
            received: 0,
            inputs: Vec::with_capacity(WINDOW),
            keyframes: Vec::new(),
            windows: 0,
            pending: VecDeque::with_capacity(BLEND),
            reference: Vec::with_capacity(ALIGN),
            emitted: 0,
        }
    }

    /// Adds the next frame; returns the frames whose depth became final (often none).
    ///
    /// # Errors
    /// When the frame's size differs from the first frame's, or inference fails.
    pub fn push(&mut self, frame: &RgbImage) -> Result<Vec<Prediction>> {
        check_size(&mut self.size, frame, self.received)?;
        self.inputs.push(self.model.input(frame)?);
        self.received += 1;
        if self.keyframes.len() + self.inputs.len() == WINDOW {
            self.run_window()
        } else {
            Ok(Vec::new())
        }
    }

    /// Ends the clip: runs the last windows (padded with the last frame, as the official
    /// code pads) and returns the remaining frames.
    ///
    /// # Errors
    /// When no frame was pushed, or inference fails.
    pub fn finish(mut self) -> Result<Vec<Prediction>> {
        if self.received == 0 {
            return Err(Error::Invalid("the clip has no frames".into()));
        }
        let mut out = Vec::new();
        // Window k runs when the clip has a frame at k * STRIDE.
        while self.windows * STRIDE < self.received {
            let last = self
                .inputs
                .last()
                .or_else(|| self.keyframes.last())
                .map(Tensor::shallow_clone)
                .ok_or_else(|| Error::Invalid("no input to pad the clip with".into()))?;
            while self.keyframes.len() + self.inputs.len() < WINDOW {
                self.inputs.push(last.shallow_clone());
            }
            out.extend(self.run_window()?);
        }
        let size = self.size.unwrap_or_default();
        while let Some(depth) = self.pending.pop_front() {
            if self.emitted < self.received {
                out.push(self.model.prediction(&depth, size)?);
                self.emitted += 1;
            }
        }
        Ok(out)
    }

    /// Runs the gathered window and returns the frames it makes final.
    fn run_window(&mut self) -> Result<Vec<Prediction>> {
        let size = self.size.unwrap_or_default();
        let mut window: Vec<Tensor> = std::mem::take(&mut self.keyframes);
        window.append(&mut self.inputs);
        let x = Tensor::stack(&window, 0);
        let (depth, _) = self.model.depth(&x, None, size)?;
        self.keyframes = KEYFRAMES
            .iter()
            .map(|&i| window[i].shallow_clone())
            .collect();
        let first = self.windows == 0;
        self.windows += 1;

        let frame = |i: usize| depth.get(i as i64);
        let mut finals: Vec<Tensor> = Vec::with_capacity(WINDOW);
        if first {
            finals.extend((0..WINDOW).map(frame));
            self.reference = (0..ALIGN).map(|k| frame(KEYFRAMES[k])).collect();
        } else {
            let (scale, shift) = if self.model.config().metric {
                (1.0, 0.0)
            } else {
                let current: Vec<Tensor> = (0..ALIGN).map(frame).collect();
                scale_and_shift(&current, &self.reference)?
            };
            let aligned = |t: Tensor| (t * scale + shift).clamp_min(0.0);
            // Blend the previous window's last frames into this window's view of them.
            let blended: Vec<Tensor> = self
                .pending
                .drain(..)
                .enumerate()
                .map(|(i, before)| {
                    let w = i as f64 / (BLEND - 1) as f64;
                    before * (1.0 - w) + aligned(frame(ALIGN + i)) * w
                })
                .collect();
            finals.extend(blended);
            finals.extend((OVERLAP..WINDOW).map(|i| aligned(frame(i))));
            let keep = self.reference.first().map(Tensor::shallow_clone);
            self.reference = keep
                .into_iter()
                .chain(KEYFRAMES[1..ALIGN].iter().map(|&k| aligned(frame(k))))
                .collect();
        }
        // The last frames wait for the next window, if there is one.
        let hold = finals.len().saturating_sub(BLEND);
        self.pending = finals.split_off(hold).into();
        let mut out = Vec::with_capacity(finals.len());
        for depth in &finals {
            if self.emitted < self.received {
                out.push(self.model.prediction(depth, size)?);
                self.emitted += 1;
            }
        }
        Ok(out)
    }
}

/// Least-squares `scale` and `shift` taking `current` to `reference` over all their
/// pixels (the official `compute_scale_and_shift` with a full mask); `(1, 0)` when the
/// system is singular.
fn scale_and_shift(current: &[Tensor], reference: &[Tensor]) -> Result<(f64, f64)> {
    let p = Tensor::cat(current, 0).to_kind(Kind::Double);
    let t = Tensor::cat(reference, 0).to_kind(Kind::Double);
    let sum = |x: &Tensor| -> Result<f64> { Ok(x.sum(Kind::Double).double_value(&[])) };
    let a00 = sum(&(&p * &p))?;
    let a01 = sum(&p)?;
    let a11 = p.numel() as f64;
    let b0 = sum(&(&p * &t))?;
    let b1 = sum(&t)?;
    let det = a00 * a11 - a01 * a01;
    if det == 0.0 {
        return Ok((1.0, 0.0));
    }
    Ok(((a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det))
}

/// The official streaming inference: [`StreamingDepth::push`] a frame, get its depth.
/// Each frame attends to the cached temporal states of the first two frames of its
/// sliding window and of the latest ones, so latency is one frame and memory is bounded.
#[derive(Debug)]
pub struct StreamingDepth<'m> {
    model: &'m VideoDepthModel,
    size: Option<(u32, u32)>,
    /// Temporal states per frame of the sliding window (each one tensor per attention).
    states: VecDeque<Vec<Tensor>>,
    /// Frames pushed so far.
    received: usize,
}

/// Frames whose states the streaming window keeps before it starts dropping the oldest
/// (after the first): `(WINDOW - OVERLAP) * 2 - 1 - (OVERLAP - BLEND) + 1`.
const STREAM_KEEP: usize = STRIDE * 2 - ALIGN;

impl<'m> StreamingDepth<'m> {
    fn new(model: &'m VideoDepthModel) -> Self {
        Self {
            model,
            size: None,
            states: VecDeque::new(),
            received: 0,
        }
    }

    /// Depth of the next frame.
    ///
    /// # Errors
    /// When the frame's size differs from the first frame's, or inference fails.
    pub fn push(&mut self, frame: &RgbImage) -> Result<Prediction> {
        let size = check_size(&mut self.size, frame, self.received)?;
        let x = self.model.input(frame)?.unsqueeze(0);
        let depth = if self.states.is_empty() {
            let (depth, states) = self.model.depth(&x, None, size)?;
            // The first frame stands in for a whole window.
            self.states = (0..WINDOW)
                .map(|_| states.iter().map(Tensor::shallow_clone).collect())
                .collect();
            depth
        } else {
            // The first two states and the latest WINDOW - 3: the new frame makes WINDOW.
            let window: Vec<&Vec<Tensor>> = self
                .states
                .iter()
                .take(2)
                .chain(self.states.iter().skip(self.states.len() - (WINDOW - 3)))
                .collect();
            let slots = window.first().map_or(0, |s| s.len());
            let cached: Vec<Tensor> = (0..slots)
                .map(|slot| {
                    let parts: Vec<&Tensor> = window.iter().map(|s| &s[slot]).collect();
                    Tensor::cat(&parts, 1)
                })
                .collect();
            let (depth, states) = self.model.depth(&x, Some(&cached), size)?;
            self.states.push_back(states);
            depth
        };
        if self.received + WINDOW > STREAM_KEEP {
            self.states.remove(1);
        }
        self.received += 1;
        self.model.prediction(&depth.get(0), size)
    }
}

impl VideoEngine for VideoDepthModel {
    fn config(&self) -> &VideoConfig {
        VideoDepthModel::config(self)
    }

    fn device_name(&self) -> String {
        format!("{:?}", self.device)
    }

    fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    fn start(&self, mode: ClipMode) -> Box<dyn ClipDepth + '_> {
        match mode {
            ClipMode::Windowed => Box::new(self.windowed()),
            ClipMode::Streaming => Box::new(self.streaming()),
        }
    }
}

impl ClipDepth for WindowedDepth<'_> {
    fn push(&mut self, frame: &RgbImage) -> anydepth_model::Result<Vec<Prediction>> {
        Ok(WindowedDepth::push(self, frame)?)
    }

    fn finish(self: Box<Self>) -> anydepth_model::Result<Vec<Prediction>> {
        Ok(WindowedDepth::finish(*self)?)
    }
}

impl ClipDepth for StreamingDepth<'_> {
    fn push(&mut self, frame: &RgbImage) -> anydepth_model::Result<Vec<Prediction>> {
        Ok(vec![StreamingDepth::push(self, frame)?])
    }

    fn finish(self: Box<Self>) -> anydepth_model::Result<Vec<Prediction>> {
        if self.received == 0 {
            return Err(Error::Invalid("the clip has no frames".into()).into());
        }
        Ok(Vec::new())
    }
}
