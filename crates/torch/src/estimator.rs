//! [`DepthEstimator`]: photos in, typed depth maps out.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use anydepth_core::{DepthMap, Prediction, RgbImage};
use rayon::prelude::*;
use tch::{nn, Device, Kind, Tensor};

use anydepth_model::config::{Head, ModelConfig};
use anydepth_model::engine::{
    ClipEngine, DepthEngine, DeviceChoice, EngineLoader, EstimatorOptions, ForwardTimings,
    ModelSpec, PhotoStager, Precision, Preprocessing, StageTimings, StagedPhotos,
};
use anydepth_model::RuntimeReport;

use crate::copy_stream::{Copied, CopyStream};
use crate::cuda_graph::GraphedForward;
use crate::dinov2::cast_linear_layers;
use crate::error::{Error, Result};
use crate::network::DepthAnything;
use crate::preprocess::{
    checked_target_size, preprocess, preprocess_on_device, upload, Preprocessed,
};
use crate::weights::Checkpoint;

/// The LibTorch device `choice` means on this machine. `Auto` and `Cuda` load LibTorch's
/// CUDA part first ([`crate::cuda::load`]); `Cpu` never does.
///
/// # Errors
/// When CUDA is asked for and not usable, saying why.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Auto => {
            let device = if crate::cuda::device_count() > 0 {
                Device::Cuda(0)
            } else {
                Device::Cpu
            };
            match crate::cuda::load() {
                Ok(_) if device == Device::Cpu => {
                    tracing::info!(
                        "--device auto chose the CPU: no usable CUDA device (`anydepth doctor` \
                         says why)"
                    );
                }
                Ok(_) => tracing::info!("--device auto chose {device:?}"),
                Err(why) => tracing::info!("--device auto chose the CPU: {why}"),
            }
            Ok(device)
        }
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) => {
            if let Err(why) = crate::cuda::load() {
                return Err(Error::Invalid(format!(
                    "CUDA device {i} is not available: {why}; use --device cpu"
                )));
            }
            let n = crate::cuda::device_count();
            if i >= n {
                return Err(Error::Invalid(format!(
                    "CUDA device {i} is not available ({n} CUDA devices usable by this \
                     LibTorch; `anydepth doctor` says why); use --device cpu"
                )));
            }
            Ok(Device::Cuda(i))
        }
    }
}

/// The tensor kind of the network input at `precision`, and of the layers that run in it.
pub fn kind_of(precision: Precision) -> Kind {
    match precision {
        Precision::Fp32 => Kind::Float,
        Precision::Fp16 => Kind::Half,
        Precision::Bf16 => Kind::BFloat16,
    }
}

/// A loaded Depth Anything model ready for inference.
///
/// ```no_run
/// use anydepth_torch::{DepthEstimator, EstimatorOptions, ModelSpec};
///
/// let estimator = DepthEstimator::from_checkpoint(
///     "depth_anything_v2_vits.pth".as_ref(),
///     ModelSpec::default(),
///     EstimatorOptions::default(),
/// )?;
/// let photo = anydepth_core::load_image("photo.jpg".as_ref())?;
/// let depth = estimator.predict(&photo)?;
/// println!("{} x {} {}", depth.width(), depth.height(), depth.kind_name());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DepthEstimator {
    /// With CUDA graphs, those captured so far (first: dropped before the weights).
    graphs: Option<Mutex<GraphCache>>,
    _vs: nn::VarStore,
    model: DepthAnything,
    device: Device,
    options: EstimatorOptions,
}

/// Input shapes captured as CUDA graphs per model: the first ones it meets. The graphs
/// share one memory pool, which holds about the activations of the largest shape.
const MAX_CUDA_GRAPHS: usize = 4;

/// The CUDA graphs of a model: one per input shape for the first [`MAX_CUDA_GRAPHS`]
/// shapes it meets. Other shapes run directly, and so do the shapes met after a capture
/// failed (once is enough to know, and a failed capture can cost memory).
#[derive(Debug, Default)]
struct GraphCache {
    graphs: Vec<GraphedForward>,
    failed: bool,
}

impl DepthEstimator {
    /// Loads a checkpoint (`.pth` or `.safetensors`) onto the chosen device.
    ///
    /// # Errors
    /// When the file cannot be read, its tensors do not match the model, `spec.encoder`
    /// contradicts the file, or the device or options are unusable.
    pub fn from_checkpoint(
        path: &Path,
        spec: ModelSpec,
        options: EstimatorOptions,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::read(path)?;
        if crate::video::is_video_checkpoint(&checkpoint) {
            return Err(Error::UnknownModel {
                reason: "this is Video Depth Anything, which runs on clips (videos, \
                         --sequence folders, live sources), not on single photos"
                    .into(),
                path: path.to_path_buf(),
            });
        }
        let config = checkpoint.config(spec)?;
        Self::from_parts(&checkpoint, config, options)
    }

    /// Builds `config` and fills it from `checkpoint`.
    ///
    /// # Errors
    /// As [`DepthEstimator::from_checkpoint`].
    pub fn from_parts(
        checkpoint: &Checkpoint,
        config: ModelConfig,
        options: EstimatorOptions,
    ) -> Result<Self> {
        validate_options(&options)?;
        check_cuda_graphs(&options)?;
        let (vs, model) = load_store(checkpoint, &options, &config.describe(), |root| {
            DepthAnything::new(root, config)
        })?;
        let device = vs.device();
        let mut options = options;
        options.cuda_graphs = cuda_graphs_on(&options, device)?;
        Ok(Self {
            graphs: options.cuda_graphs.then(Mutex::default),
            _vs: vs,
            model,
            device,
            options,
        })
    }

    /// The network on a prepared batch: replayed from the CUDA graph of its shape when
    /// graphs are on (captured on first use, see [`GraphCache`]), else run directly. A
    /// capture that fails is an error unless `fall_back`, which warns and runs directly.
    fn forward(&self, x: &Tensor, fall_back: bool) -> Result<Tensor> {
        let Some(cache) = &self.graphs else {
            return self.model.forward(x);
        };
        // A panic while the lock is held changes no graph: they stay usable.
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        let size = x.size();
        if let Some(graph) = cache.graphs.iter_mut().find(|g| g.input_size() == size) {
            return graph.run(x);
        }
        if cache.failed || cache.graphs.len() == MAX_CUDA_GRAPHS {
            drop(cache);
            return self.model.forward(x);
        }
        // Capturing queues nothing: the first result comes from a replay.
        // One memory pool for all of them: they run one at a time, behind this lock.
        let captured = GraphedForward::capture(x, cache.graphs.first(), |x| self.model.forward(x))
            .and_then(|mut graph| Ok((graph.run(x)?, graph)));
        match captured {
            Ok((out, graph)) => {
                cache.graphs.push(graph);
                Ok(out)
            }
            Err(e) if fall_back => {
                tracing::warn!("{e}; shapes this model meets from now on run without CUDA graphs");
                cache.failed = true;
                drop(cache);
                self.model.forward(x)
            }
            Err(e) => Err(e),
        }
    }

    /// The model that runs.
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
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
    pub fn network(&self) -> &DepthAnything {
        &self.model
    }

    /// The kind of tensors the network takes (its encoder's precision).
    pub fn input_kind(&self) -> Kind {
        kind_of(self.options.precision)
    }

    /// The network input for `image`, exactly as the official `image2tensor` makes it.
    ///
    /// # Errors
    /// When the image is empty.
    pub fn preprocess(&self, image: &RgbImage) -> Result<Preprocessed> {
        preprocess(image, self.options.input_size)
    }

    /// Depth of one image at its own resolution.
    ///
    /// # Errors
    /// When the image is empty or inference fails (for example out of GPU memory).
    pub fn predict(&self, image: &RgbImage) -> Result<Prediction> {
        let mut out = self.predict_batch(std::slice::from_ref(image))?;
        out.pop()
            .ok_or_else(|| Error::Invalid("no prediction returned".into()))
    }

    /// Depth of many images, each at its own resolution, in order. Images whose network
    /// input has the same size run together, up to `batch_size` at a time.
    ///
    /// # Errors
    /// As [`DepthEstimator::predict`].
    pub fn predict_batch(&self, images: &[RgbImage]) -> Result<Vec<Prediction>> {
        self.predict_batch_with(images, None)
    }

    /// [`DepthEstimator::predict_batch`], adding the time of each stage to `timings` when
    /// given (synchronising the device between stages).
    ///
    /// # Errors
    /// As [`DepthEstimator::predict`].
    pub fn predict_batch_with(
        &self,
        images: &[RgbImage],
        timings: Option<&mut StageTimings>,
    ) -> Result<Vec<Prediction>> {
        self.predict_from(images, None, timings)
    }

    /// [`DepthEstimator::predict_batch`] on `images`, with what a [`Stager`] made of them
    /// when given; adds the time of each stage to `timings` when given.
    fn predict_from(
        &self,
        images: &[RgbImage],
        staged: Option<Staged>,
        mut timings: Option<&mut StageTimings>,
    ) -> Result<Vec<Prediction>> {
        let started = Instant::now();
        let on_device = self.preprocesses_on_device();
        // Exact: the network inputs, made here or ahead; on the device: only their sizes,
        // for now, and the photos when uploaded ahead (each taken once its group runs).
        let was_staged = staged.is_some();
        let (host, mut uploaded) = match staged {
            None if on_device => (Vec::new(), None::<Vec<Option<Tensor>>>),
            None => {
                let size = self.options.input_size;
                let inputs = images.par_iter().map(|img| preprocess(img, size));
                (inputs.collect::<Result<_>>()?, None)
            }
            Some(Staged::Host(inputs)) if !on_device => {
                (inputs.into_iter().collect::<Result<_>>()?, None)
            }
            Some(Staged::OnDevice { photos, copied }) if on_device => {
                if let Some(copied) = copied {
                    copied.wait(&photos)?;
                }
                (Vec::new(), Some(photos.into_iter().map(Some).collect()))
            }
            Some(_) => {
                return Err(Error::Invalid(
                    "photos staged for another preprocessing mode".into(),
                ))
            }
        };
        let sizes: Vec<(u32, u32)> = if on_device {
            images
                .iter()
                .map(|img| checked_target_size(img, self.options.input_size))
                .collect::<Result<_>>()?
        } else {
            host.iter().map(|p| (p.width, p.height)).collect()
        };
        if was_staged && !self.made_from(images, &host, uploaded.as_deref()) {
            return Err(Error::Invalid(
                "staged photos do not match these images (their sizes or device)".into(),
            ));
        }
        if let Some(timings) = timings.as_deref_mut() {
            timings.preprocess += started.elapsed().as_secs_f64();
        }
        let key = |i: usize| (sizes[i].1, sizes[i].0);
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.sort_by_key(|&i| (key(i), i));
        let mut results: Vec<Option<Prediction>> = (0..images.len()).map(|_| None).collect();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && end - start < self.options.batch_size
                && key(order[end]) == key(order[start])
            {
                end += 1;
            }
            let group = &order[start..end];
            let batch = Batch {
                photos: group.iter().map(|&i| &images[i]).collect(),
                input: if on_device {
                    BatchInput::OnDevice {
                        size: sizes[group[0]],
                        uploaded: uploaded
                            .as_mut()
                            .map(|photos| group.iter().filter_map(|&i| photos[i].take()).collect()),
                    }
                } else {
                    BatchInput::Host(group.iter().map(|&i| &host[i]).collect())
                },
            };
            let predictions = self.run(&batch, timings.as_deref_mut())?;
            for (&i, prediction) in group.iter().zip(predictions) {
                results[i] = Some(prediction);
            }
            start = end;
        }
        results
            .into_iter()
            .map(|p| p.ok_or_else(|| Error::Invalid("missing prediction".into())))
            .collect()
    }

    /// Whether the staged network inputs `host` (exact preprocessing) or photos `uploaded`
    /// (device preprocessing) were made from `images` for this model, as far as their
    /// sizes and device tell.
    fn made_from(
        &self,
        images: &[RgbImage],
        host: &[Preprocessed],
        uploaded: Option<&[Option<Tensor>]>,
    ) -> bool {
        if !self.preprocesses_on_device() {
            return host.len() == images.len()
                && host.iter().zip(images).all(|(input, img)| {
                    checked_target_size(img, self.options.input_size)
                        .is_ok_and(|size| size == (input.width, input.height))
                });
        }
        let Some(photos) = uploaded else {
            return false;
        };
        photos.len() == images.len()
            && photos.iter().zip(images).all(|(photo, img)| {
                photo.as_ref().is_some_and(|photo| {
                    let shape = [i64::from(img.height), i64::from(img.width), 3];
                    photo.device() == self.device && photo.size() == shape
                })
            })
    }

    /// Whether photos are resized and normalised on the device (see [`Preprocessing`]).
    pub fn preprocesses_on_device(&self) -> bool {
        match self.options.preprocessing {
            Preprocessing::Auto => self.device.is_cuda(),
            Preprocessing::Exact => false,
            Preprocessing::Device => true,
        }
    }

    /// Network output for photos whose inputs have one size, resized back to each photo's
    /// size bilinearly with corners aligned, as the official `infer_image`. Adds the time
    /// of upload, (device) preprocessing, network and resize back to `timings` when given.
    fn run(
        &self,
        batch: &Batch<'_>,
        timings: Option<&mut StageTimings>,
    ) -> Result<Vec<Prediction>> {
        let _guard = tch::no_grad_guard();
        let kind = kind_of(self.options.precision);
        let sizes: Vec<(u32, u32)> = batch.photos.iter().map(|p| (p.width, p.height)).collect();
        let mut clock = timings.map(|timings| StageClock::start(timings, self.device));
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Prediction>> {
            let x = match &batch.input {
                BatchInput::OnDevice { size, uploaded } => {
                    let photos: Vec<Tensor> = match uploaded {
                        Some(uploaded) => uploaded.iter().map(Tensor::shallow_clone).collect(),
                        None => batch
                            .photos
                            .iter()
                            .map(|photo| upload(photo, self.device))
                            .collect(),
                    };
                    lap(&mut clock, |t| &mut t.upload);
                    let x = preprocess_on_device(&photos, *size).to_kind(kind);
                    lap(&mut clock, |t| &mut t.preprocess);
                    x
                }
                BatchInput::Host(inputs) => {
                    let planes: Vec<Tensor> = inputs
                        .iter()
                        .map(|p| {
                            Tensor::from_slice(&p.data).view([
                                3,
                                i64::from(p.height),
                                i64::from(p.width),
                            ])
                        })
                        .collect();
                    let x = Tensor::stack(&planes, 0)
                        .to_device(self.device)
                        .to_kind(kind);
                    lap(&mut clock, |t| &mut t.upload);
                    x
                }
            };
            let out = self
                .forward(&x, /* fall_back= */ true)?
                .to_kind(Kind::Float);
            lap(&mut clock, |t| &mut t.network);
            let predictions = sizes
                .iter()
                .enumerate()
                .map(|(j, &(ow, oh))| {
                    let depth = out
                        .narrow(0, j as i64, 1)
                        .unsqueeze(1)
                        .upsample_bilinear2d(
                            [oh as i64, ow as i64],
                            /* align_corners= */ true,
                            None,
                            None,
                        )
                        .reshape([-1])
                        .to_device(Device::Cpu);
                    let values = Vec::<f32>::try_from(&depth)?;
                    Ok(match self.config().head {
                        Head::Relative => Prediction::Disparity(DepthMap::new(ow, oh, values)?),
                        Head::Metric { .. } => Prediction::Metric(DepthMap::new(ow, oh, values)?),
                    })
                })
                .collect();
            lap(&mut clock, |t| &mut t.resize_back);
            predictions
        }));
        outcome.unwrap_or_else(|panic| Err(inference_failed(panic)))
    }
}

/// The error for a LibTorch failure that tch raised as a panic (out of GPU memory, a
/// kernel error): its message, as an error rather than a crash.
pub(crate) fn inference_failed(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown error".into());
    Error::Invalid(format!("inference failed: {message}"))
}

/// Photos whose network inputs have one size, run together.
struct Batch<'a> {
    photos: Vec<&'a RgbImage>,
    input: BatchInput<'a>,
}

/// The network input of a batch: made on the host, or to be made on the device of size
/// `size` (from the photos uploaded ahead, when they were).
enum BatchInput<'a> {
    Host(Vec<&'a Preprocessed>),
    OnDevice {
        size: (u32, u32),
        uploaded: Option<Vec<Tensor>>,
    },
}

/// Stages photos for a [`DepthEstimator`] on another thread ([`DepthEngine::stager`]): makes
/// their network inputs on the host with exact preprocessing; with device preprocessing,
/// uploads them, on a copy stream of their own on a GPU when this build has the CUDA shim.
#[derive(Debug)]
struct Stager {
    device: Device,
    input_size: u32,
    on_device: bool,
    copy: Option<CopyStream>,
}

/// What a [`Stager`] made of a batch of photos.
enum Staged {
    /// Exact preprocessing: the network inputs, made on the host, or why one could not be
    /// (reported when the batch runs, as without staging).
    Host(Vec<Result<Preprocessed>>),
    /// Device preprocessing: the photos on the device as they travelled ([`upload`]), and
    /// the end of their copy when they went up on the copy stream.
    OnDevice {
        photos: Vec<Tensor>,
        copied: Option<Copied>,
    },
}

impl Stager {
    /// A stager for `estimator`.
    fn new(estimator: &DepthEstimator) -> Self {
        let on_device = estimator.preprocesses_on_device();
        let copy = match estimator.device {
            Device::Cuda(i) if on_device => CopyStream::new(i)
                .map_err(|why| tracing::info!("uploads run on the compute stream: {why}"))
                .ok(),
            _ => None,
        };
        Self {
            device: estimator.device,
            input_size: estimator.options.input_size,
            on_device,
            copy,
        }
    }

    /// Makes `images` ready for the network.
    ///
    /// # Errors
    /// When the device fails (out of memory); unusable images are found when the batch
    /// runs.
    fn stage_photos(&self, images: &[&RgbImage]) -> Result<Staged> {
        if !self.on_device {
            // One photo at a time: this runs beside the network, which has the cores.
            return Ok(Staged::Host(
                images
                    .iter()
                    .map(|img| preprocess(img, self.input_size))
                    .collect(),
            ));
        }
        let upload_all =
            || -> Vec<Tensor> { images.iter().map(|img| upload(img, self.device)).collect() };
        catch_unwind(AssertUnwindSafe(|| -> Result<Staged> {
            Ok(match &self.copy {
                Some(copy) => {
                    let (photos, copied) = copy.run(upload_all)?;
                    Staged::OnDevice {
                        photos,
                        copied: Some(copied),
                    }
                }
                None => Staged::OnDevice {
                    photos: upload_all(),
                    copied: None,
                },
            })
        }))
        .unwrap_or_else(|panic| Err(inference_failed(panic)))
    }
}

impl PhotoStager for Stager {
    fn stage(&self, images: &[&RgbImage]) -> anydepth_model::Result<StagedPhotos> {
        Ok(StagedPhotos::new(self.stage_photos(images)?))
    }
}

/// Times consecutive stages on `device`, synchronising it at each boundary so that queued
/// GPU work is counted in the stage that queued it.
struct StageClock<'a> {
    timings: &'a mut StageTimings,
    device: Device,
    since: Instant,
}

impl<'a> StageClock<'a> {
    fn start(timings: &'a mut StageTimings, device: Device) -> Self {
        synchronize(device);
        Self {
            timings,
            device,
            since: Instant::now(),
        }
    }
}

/// Ends the current stage of `clock` (if timing) and adds its time to `stage`.
fn lap(clock: &mut Option<StageClock<'_>>, stage: impl Fn(&mut StageTimings) -> &mut f64) {
    if let Some(clock) = clock {
        synchronize(clock.device);
        let now = Instant::now();
        *stage(clock.timings) += (now - clock.since).as_secs_f64();
        clock.since = now;
    }
}

/// Waits for the work queued on `device` (nothing to wait for on the CPU).
pub(crate) fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Loads [`DepthEstimator`]s: the engine loader of binaries that link libtorch.
#[derive(Clone, Copy, Debug, Default)]
pub struct TorchLoader;

impl EngineLoader for TorchLoader {
    fn load(
        &self,
        weights: &Path,
        spec: ModelSpec,
        options: EstimatorOptions,
    ) -> anydepth_model::Result<Box<dyn DepthEngine>> {
        Ok(Box::new(DepthEstimator::from_checkpoint(
            weights, spec, options,
        )?))
    }

    fn load_for_clips(
        &self,
        weights: &Path,
        spec: ModelSpec,
        metric: Option<bool>,
        options: EstimatorOptions,
    ) -> anydepth_model::Result<ClipEngine> {
        let checkpoint = Checkpoint::read(weights)?;
        if crate::video::is_video_checkpoint(&checkpoint) {
            let config = crate::video::video_config(&checkpoint, spec, metric)?;
            Ok(ClipEngine::Video(Box::new(
                crate::video::VideoDepthModel::from_parts(&checkpoint, config, options)?,
            )))
        } else {
            let config = checkpoint.config(spec)?;
            Ok(ClipEngine::PerFrame(Box::new(DepthEstimator::from_parts(
                &checkpoint,
                config,
                options,
            )?)))
        }
    }

    fn load_da3(
        &self,
        weights: &Path,
        model: Option<anydepth_model::da3::Da3Model>,
        options: EstimatorOptions,
    ) -> anydepth_model::Result<Box<dyn anydepth_model::da3::Da3Engine>> {
        Ok(Box::new(crate::da3::Da3Estimator::load(
            weights, model, options,
        )?))
    }

    fn runtime(&self) -> anydepth_model::Result<RuntimeReport> {
        let mut cuda = crate::cuda::report();
        // Makes a graph on GPU 0: for `doctor`, not for every load that reads the report.
        let graphs = if cuda.available {
            crate::cuda_graph::probe()
        } else {
            crate::cuda_shim::load().and(Err(Error::Invalid("needs a usable CUDA device".into())))
        };
        cuda.graphs_available = graphs.is_ok();
        cuda.graphs_problem = graphs.err().map(|e| e.to_string());
        let library_dir = crate::cuda::libtorch_dir();
        Ok(RuntimeReport {
            library: "LibTorch".into(),
            library_version: library_dir
                .as_deref()
                .and_then(crate::cuda::libtorch_version),
            library_dir,
            auto_device: format!("{:?}", resolve_device(DeviceChoice::Auto)?),
            cuda,
        })
    }

    fn train(
        &self,
        plan: &anydepth_model::train::TrainPlan,
        observer: &mut dyn anydepth_model::train::TrainObserver,
    ) -> anydepth_model::Result<anydepth_model::train::TrainReport> {
        Ok(crate::train::train(plan, observer)?)
    }

    fn distill(
        &self,
        plan: &anydepth_model::train::DistillPlan,
        observer: &mut dyn anydepth_model::train::TrainObserver,
    ) -> anydepth_model::Result<anydepth_model::train::DistillReport> {
        Ok(crate::train::distill(plan, observer)?)
    }
}

impl DepthEngine for DepthEstimator {
    fn config(&self) -> &ModelConfig {
        DepthEstimator::config(self)
    }

    fn device_name(&self) -> String {
        format!("{:?}", self.device)
    }

    fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    fn predict_batch(&self, images: &[RgbImage]) -> anydepth_model::Result<Vec<Prediction>> {
        Ok(DepthEstimator::predict_batch(self, images)?)
    }

    fn predict_batch_timed(
        &self,
        images: &[RgbImage],
    ) -> anydepth_model::Result<(Vec<Prediction>, StageTimings)> {
        let mut timings = StageTimings::default();
        let predictions = self.predict_batch_with(images, Some(&mut timings))?;
        Ok((predictions, timings))
    }

    fn stager(&self) -> Option<Box<dyn PhotoStager>> {
        Some(Box::new(Stager::new(self)))
    }

    fn predict_staged(
        &self,
        images: &[RgbImage],
        staged: StagedPhotos,
    ) -> anydepth_model::Result<Vec<Prediction>> {
        let staged = staged
            .downcast::<Staged>()
            .map_err(|_| Error::Invalid("photos staged by another kind of engine".into()))?;
        Ok(self.predict_from(images, Some(staged), None)?)
    }

    fn time_forward(
        &self,
        batch: usize,
        (width, height): (u32, u32),
        warmup: usize,
        iters: usize,
    ) -> anydepth_model::Result<ForwardTimings> {
        if width < 14 || height < 14 || width % 14 != 0 || height % 14 != 0 {
            return Err(anydepth_model::Error::Invalid(format!(
                "network input {width}x{height} must be multiples of 14"
            )));
        }
        let sync = || synchronize(self.device);
        let _guard = tch::no_grad_guard();
        let x = Tensor::randn(
            [batch as i64, 3, i64::from(height), i64::from(width)],
            (self.input_kind(), self.device),
        );
        // The memory from here on: the weights, the input and the passes, without what
        // loading left cached (the copies the weights were converted from). Without the
        // shim the timings still count and the memory is left out (`-v` says why).
        let memory_unread = |why: Error| tracing::info!("device memory not measured: {why}");
        let gpu = match self.device {
            Device::Cuda(index) => {
                match crate::cuda_memory::release_cached()
                    .and_then(|()| crate::cuda_memory::reset_peaks(index))
                {
                    Ok(()) => Some(index),
                    Err(why) => {
                        memory_unread(why);
                        None
                    }
                }
            }
            _ => None,
        };
        let mut seconds = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            sync();
            let t0 = std::time::Instant::now();
            let y = self.forward(&x, /* fall_back= */ false)?;
            sync();
            drop(y);
            if i >= warmup {
                seconds.push(t0.elapsed().as_secs_f64());
            }
        }
        let memory = gpu.and_then(|index| {
            crate::cuda_memory::device_memory(index)
                .map_err(memory_unread)
                .ok()
        });
        Ok(ForwardTimings { seconds, memory })
    }
}

/// The device `options` ask for, with TensorFloat-32 allowed or not as
/// [`EstimatorOptions::tf32`] says when it is a GPU (a process-wide LibTorch setting).
///
/// # Errors
/// As [`resolve_device`].
pub(crate) fn prepare_device(options: &EstimatorOptions) -> Result<Device> {
    let device = resolve_device(options.device)?;
    if device.is_cuda() {
        let tf32 = options.tf32();
        if let Err(why) = crate::cuda::set_tf32(tf32) {
            tracing::warn!("cannot set TensorFloat-32 to {tf32:?}: {why}");
        }
    }
    Ok(device)
}

/// Refuses CUDA graphs that cannot run before any weights load: with `--device cpu`, or
/// with `--device cuda` when this build or LibTorch cannot make them.
///
/// # Errors
/// Those two cases, saying what to do.
fn check_cuda_graphs(options: &EstimatorOptions) -> Result<()> {
    match (options.cuda_graphs, options.device) {
        (true, DeviceChoice::Cpu) => Err(Error::Invalid(
            "--cuda-graphs needs a CUDA device (--device cuda)".into(),
        )),
        (true, DeviceChoice::Cuda(_)) => load_shim_for_graphs(),
        _ => Ok(()),
    }
}

/// Loads the CUDA shim for CUDA graphs, saying so where it cannot.
fn load_shim_for_graphs() -> Result<()> {
    crate::cuda_shim::load().map_err(|why| {
        Error::Invalid(format!(
            "no CUDA graphs: {why}; or run without --cuda-graphs"
        ))
    })
}

/// Whether a model loaded on `device` runs from CUDA graphs: when `options` ask for them
/// and it is a CUDA device. `--device auto` that found no GPU only warns.
///
/// # Errors
/// When graphs cannot be made here (see [`crate::cuda_shim::load`]).
fn cuda_graphs_on(options: &EstimatorOptions, device: Device) -> Result<bool> {
    if !options.cuda_graphs {
        return Ok(false);
    }
    if !device.is_cuda() {
        tracing::warn!("--cuda-graphs has no effect on the CPU (--device auto found no GPU)");
        return Ok(false);
    }
    load_shim_for_graphs()?;
    Ok(true)
}

/// Where V1/V2 and Video Depth Anything keep their DINOv2 encoder's variables (their
/// heads, under `depth_head.` or `head.`, have `proj` layers too, which stay fp32).
const ENCODER_PREFIX: &str = "pretrained.";

/// Builds a network with `build` on the device `options` ask for (TensorFloat-32 set as
/// [`prepare_device`] does), fills it from `checkpoint`, freezes it and casts it to the precision:
/// in fp16 the whole network; in bf16 the encoder's linear layers and patch embedding
/// alone, the rest staying fp32.
pub(crate) fn load_store<M>(
    checkpoint: &Checkpoint,
    options: &EstimatorOptions,
    description: &str,
    build: impl FnOnce(&nn::Path) -> M,
) -> Result<(nn::VarStore, M)> {
    let device = prepare_device(options)?;
    let mut vs = nn::VarStore::new(device);
    let model = build(&vs.root());
    checkpoint.copy_into(&vs.variables(), description)?;
    vs.freeze();
    match options.precision {
        Precision::Fp32 => {}
        Precision::Fp16 => vs.half(),
        // bf16's 8-bit mantissa in the DPT head costs about 1.2e-2 of the depth's range
        // (V2-S); the encoder as autocast runs it and the head in fp32 stay within 1e-2:
        // about 3e-3 on the relative model, up to 9.6e-3 on the metric test checkpoint
        // (docs/BENCHMARKS.md, V1/V2's "Reduced precision").
        Precision::Bf16 => cast_linear_layers(&vs, ENCODER_PREFIX, Kind::BFloat16),
    }
    tracing::info!(model = %description, ?device, precision = ?options.precision, "model loaded");
    Ok((vs, model))
}

/// Refuses options no model can run with.
pub(crate) fn validate_options(options: &EstimatorOptions) -> Result<()> {
    if options.input_size < 14 || options.input_size > 8192 {
        return Err(Error::Invalid(format!(
            "input size {} is out of range: use 14..=8192 (518 as trained)",
            options.input_size
        )));
    }
    if options.batch_size == 0 {
        return Err(Error::Invalid("batch size must be at least 1".into()));
    }
    Ok(())
}
