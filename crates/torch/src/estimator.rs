//! [`DepthEstimator`]: photos in, typed depth maps out.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anydepth_core::{DepthMap, Prediction, RgbImage};
use tch::{nn, Device, Kind, Tensor};

use anydepth_model::config::{Head, ModelConfig, Version};
use anydepth_model::engine::{
    DepthEngine, DeviceChoice, EngineLoader, EstimatorOptions, ForwardTimings, ModelSpec, Precision,
};

use crate::error::{Error, Result};
use crate::network::DepthAnything;
use crate::preprocess::{preprocess, Preprocessed};
use crate::weights::Checkpoint;

/// The LibTorch device `choice` means on this machine.
///
/// # Errors
/// When CUDA is asked for and not usable.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Auto => Ok(if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) => {
            let n = tch::Cuda::device_count();
            if !tch::Cuda::is_available() || i as i64 >= n {
                return Err(Error::Invalid(format!(
                    "CUDA device {i} is not available ({n} CUDA devices usable by this \
                     build of libtorch); use --device cpu"
                )));
            }
            Ok(Device::Cuda(i))
        }
    }
}

/// The tensor kind of weights and activations at `precision`.
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
    _vs: nn::VarStore,
    model: DepthAnything,
    device: Device,
    options: EstimatorOptions,
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
        if let Some(encoder) = spec.encoder {
            if encoder != checkpoint.encoder {
                return Err(Error::UnknownModel {
                    reason: format!(
                        "{encoder} was asked for, but the file holds a {} model",
                        checkpoint.encoder
                    ),
                    path: path.to_path_buf(),
                });
            }
        }
        let config = ModelConfig::new(
            spec.version
                .or(checkpoint.hints.version)
                .unwrap_or(Version::V2),
            checkpoint.encoder,
            spec.head
                .or(checkpoint.hints.head)
                .unwrap_or(Head::Relative),
        );
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
        let device = resolve_device(options.device)?;
        let mut vs = nn::VarStore::new(device);
        let model = DepthAnything::new(&vs.root(), config);
        checkpoint.copy_into(&vs.variables(), &config.describe())?;
        vs.freeze();
        match options.precision {
            Precision::Fp32 => {}
            Precision::Fp16 => vs.half(),
            Precision::Bf16 => vs.bfloat16(),
        }
        tracing::info!(model = %config.describe(), ?device, precision = ?options.precision, "model loaded");
        Ok(Self {
            _vs: vs,
            model,
            device,
            options,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    /// The network, for callers that prepare input tensors themselves (benchmarks).
    pub fn network(&self) -> &DepthAnything {
        &self.model
    }

    /// The tensor kind of the weights and activations.
    pub fn kind(&self) -> Kind {
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
        let inputs = images
            .iter()
            .map(|img| self.preprocess(img))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.sort_by_key(|&i| (inputs[i].height, inputs[i].width, i));
        let mut results: Vec<Option<Prediction>> = (0..images.len()).map(|_| None).collect();
        let mut start = 0;
        while start < order.len() {
            let key = |i: usize| (inputs[i].height, inputs[i].width);
            let mut end = start + 1;
            while end < order.len()
                && end - start < self.options.batch_size
                && key(order[end]) == key(order[start])
            {
                end += 1;
            }
            let group = &order[start..end];
            let batch: Vec<&Preprocessed> = group.iter().map(|&i| &inputs[i]).collect();
            let sizes: Vec<(u32, u32)> = group
                .iter()
                .map(|&i| (images[i].width, images[i].height))
                .collect();
            for (&i, prediction) in group.iter().zip(self.run(&batch, &sizes)?) {
                results[i] = Some(prediction);
            }
            start = end;
        }
        results
            .into_iter()
            .map(|p| p.ok_or_else(|| Error::Invalid("missing prediction".into())))
            .collect()
    }

    /// Network output for preprocessed inputs of one size, resized back to each
    /// `(width, height)` bilinearly with corners aligned, as the official `infer_image`.
    fn run(&self, batch: &[&Preprocessed], sizes: &[(u32, u32)]) -> Result<Vec<Prediction>> {
        let _guard = tch::no_grad_guard();
        let (w, h) = (batch[0].width as i64, batch[0].height as i64);
        let kind = kind_of(self.options.precision);
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Prediction>> {
            let planes: Vec<Tensor> = batch
                .iter()
                .map(|p| Tensor::from_slice(&p.data).view([3, h, w]))
                .collect();
            let x = Tensor::stack(&planes, 0)
                .to_device(self.device)
                .to_kind(kind);
            let out = self.model.forward(&x)?.to_kind(Kind::Float);
            sizes
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
                .collect()
        }));
        match outcome {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown error".into());
                Err(Error::Invalid(format!("inference failed: {message}")))
            }
        }
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
        let sync = || {
            if let Device::Cuda(i) = self.device {
                tch::Cuda::synchronize(i as i64);
            }
        };
        let _guard = tch::no_grad_guard();
        let x = Tensor::randn(
            [batch as i64, 3, i64::from(height), i64::from(width)],
            (self.kind(), self.device),
        );
        let mut seconds = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            sync();
            let t0 = std::time::Instant::now();
            let y = self.model.forward(&x)?;
            sync();
            drop(y);
            if i >= warmup {
                seconds.push(t0.elapsed().as_secs_f64());
            }
        }
        Ok(ForwardTimings { seconds })
    }
}

fn validate_options(options: &EstimatorOptions) -> Result<()> {
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
