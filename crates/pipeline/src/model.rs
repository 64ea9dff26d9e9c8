//! Which depth model a job runs, and where its weights come from: a file, or the released
//! checkpoint from the Hugging Face hub cache (downloaded once).

use std::path::{Path, PathBuf};

use anydepth_model::config::{Encoder, Head, Metric, Version};
use anydepth_model::da3::{Da3Engine, Da3Model};
use anydepth_model::hub::{self, Hub};
use anydepth_model::{
    ClipEngine, DepthEngine, DeviceChoice, EngineLoader, EstimatorOptions, ModelSpec, Precision,
    Preprocessing,
};

use crate::error::{bail, Context, Result};

/// The official shorter side of the network input.
pub const DEFAULT_INPUT_SIZE: u32 = 518;

/// Which depth model to run, and where: shared by every job that runs one.
///
/// `Default` is what the command line gives without flags.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ModelRequest {
    /// Encoder size; with --weights it must match the file.
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub model: Option<Encoder>,

    /// Depth Anything release [default: v2, or what the weights file says].
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub version: Option<Version>,

    /// Use a metric model: depth in metres instead of relative disparity.
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub metric: Option<Metric>,

    /// Checkpoint file (.pth or .safetensors); without it the released model is
    /// downloaded once from the Hugging Face hub into its cache.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub weights: Option<PathBuf>,

    /// auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    #[cfg_attr(feature = "clap", arg(long, default_value = "auto"))]
    pub device: DeviceChoice,

    /// Floating-point precision of the network (fp16 is slow on the CPU).
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "fp32"))]
    pub precision: Precision,

    /// Shorter side of the network input, rounded to a multiple of 14; larger sharpens.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = DEFAULT_INPUT_SIZE, value_name = "N")
    )]
    pub input_size: u32,

    /// Allow TensorFloat-32 in fp32 convolutions and matrix products on CUDA GPUs: faster,
    /// about 1e-3 relative error (without it fp32 matches the CPU). In convolutions always
    /// with fp16 and bf16, for those that stay fp32.
    #[cfg_attr(feature = "clap", arg(long))]
    pub tf32: bool,

    /// Capture the network as a CUDA graph for each of the first four input shapes and
    /// replay it (V1/V2 on a CUDA device): less launch overhead for small batches, more
    /// GPU memory.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cuda_graphs: bool,

    /// Where photos are resized and normalised: auto (on a GPU there, else exact), exact
    /// (on the host, as the official code to float32 rounding), device (within 1e-3).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "preprocess",
            value_enum,
            default_value = "auto",
            value_name = "WHERE"
        )
    )]
    pub preprocessing: Preprocessing,
}

impl Default for ModelRequest {
    fn default() -> Self {
        Self {
            model: None,
            version: None,
            metric: None,
            weights: None,
            device: DeviceChoice::default(),
            precision: Precision::default(),
            input_size: DEFAULT_INPUT_SIZE,
            tf32: false,
            preprocessing: Preprocessing::default(),
            cuda_graphs: false,
        }
    }
}

impl ModelRequest {
    /// The model the request asks for; `metric_max_depth_m` overrides the metric head's
    /// range (and asks for a metric head when `metric` is absent).
    ///
    /// # Errors
    /// When the input size, the range or the combination is invalid.
    pub fn spec(&self, metric_max_depth_m: Option<f64>) -> Result<ModelSpec> {
        if self.input_size < 14 {
            bail!("--input-size must be at least 14 (the patch size); 518 as trained");
        }
        if let Some(m) = metric_max_depth_m {
            if !(m.is_finite() && m > 0.0) {
                bail!("--max-depth must be a positive number of metres, got {m}");
            }
        }
        if self.metric.is_some() && self.version == Some(Version::V1) {
            bail!(
                "Depth Anything V1 has no metric models here (its metric models are ZoeDepth networks)"
            );
        }
        let head = match (self.metric, metric_max_depth_m) {
            (Some(metric), m) => Some(metric.head(m)),
            (None, Some(m)) => Some(Head::Metric { max_depth_m: m }),
            (None, None) => None,
        };
        Ok(ModelSpec {
            encoder: self.model,
            version: self.version,
            head,
        })
    }

    /// How inference runs, with `batch_size` images per forward pass.
    pub fn options(&self, batch_size: usize) -> EstimatorOptions {
        EstimatorOptions {
            device: self.device,
            precision: self.precision,
            input_size: self.input_size,
            batch_size,
            allow_tf32: self.tf32,
            preprocessing: self.preprocessing,
            cuda_graphs: self.cuda_graphs,
        }
    }

    /// Resolves the weights (file or hub) and loads the model with `loader`;
    /// `download_progress` hears of a download's bytes as `(done, total)`.
    ///
    /// # Errors
    /// When the request is invalid, the weights cannot be found or downloaded, or the
    /// model does not load.
    pub fn load(
        &self,
        loader: &dyn EngineLoader,
        metric_max_depth_m: Option<f64>,
        batch_size: usize,
        download_progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<(Box<dyn DepthEngine>, PathBuf)> {
        let spec = self.spec(metric_max_depth_m)?;
        let weights = self.resolve_weights(metric_max_depth_m.is_some(), download_progress)?;
        let engine = loader
            .load(&weights, spec, self.options(batch_size))
            .context("cannot load the model")?;
        tracing::info!(
            "{} on {} from {}",
            engine.config().describe(),
            engine.device_name(),
            weights.display()
        );
        Ok((engine, weights))
    }

    /// Loads the model for clips: the weights given (Video Depth Anything or not, as its
    /// tensors say), or the released Video Depth Anything (metric with `--metric`), or with
    /// `per_frame` the released image model.
    ///
    /// # Errors
    /// As [`ModelRequest::load`].
    pub fn load_for_clips(
        &self,
        loader: &dyn EngineLoader,
        per_frame: bool,
        metric_max_depth_m: Option<f64>,
        download_progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<(ClipEngine, PathBuf)> {
        let spec = self.spec(metric_max_depth_m)?;
        let weights = if self.weights.is_some() || per_frame {
            self.resolve_weights(metric_max_depth_m.is_some(), download_progress)?
        } else {
            if self.version == Some(Version::V1) {
                bail!(
                    "Video Depth Anything is built on V2; add --per-frame to run V1 on each frame"
                );
            }
            let file =
                hub::released_video(self.model.unwrap_or(Encoder::Vits), self.metric.is_some())
                    .map_err(anydepth_model::Error::from)?;
            fetch_released(&file, download_progress)?
        };
        // A Video Depth Anything file's name says whether it is metric; --metric overrides.
        let metric = self.metric.map(|_| true);
        let engine = loader
            .load_for_clips(&weights, spec, metric, self.options(1))
            .context("cannot load the model")?;
        if per_frame {
            if let ClipEngine::Video(video) = &engine {
                bail!(
                    "--per-frame runs an image model, but {} is {}",
                    weights.display(),
                    video.config().describe()
                );
            }
        }
        Ok((engine, weights))
    }

    /// The weights file: the one given, or the released model from the hub cache
    /// (downloaded when missing; `progress` hears `(file name, done, total)` bytes).
    ///
    /// # Errors
    /// When the file is missing, the model was never released, or the download fails.
    pub fn resolve_weights(
        &self,
        custom_max_depth: bool,
        progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<PathBuf> {
        if let Some(path) = &self.weights {
            return existing_file(path);
        }
        let version = self.version.unwrap_or(Version::V2);
        let encoder = self.model.unwrap_or(Encoder::Vits);
        if self.metric.is_none() && custom_max_depth {
            bail!("--max-depth without --metric needs a metric checkpoint: pass --weights FILE or --metric indoor|outdoor")
        }
        let file =
            hub::released(version, encoder, self.metric).map_err(anydepth_model::Error::from)?;
        fetch_released(&file, progress)
    }
}

/// Which Depth Anything 3 model to run, and where: `anydepth views` and the commands that
/// take Depth Anything 3 weights.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Da3ModelRequest {
    /// Depth Anything 3 checkpoint: a released folder (model.safetensors and config.json),
    /// or its model.safetensors (with config.json beside it, or --model); without it the
    /// released --model is downloaded once from the Hugging Face hub into its cache.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub weights: Option<PathBuf>,

    /// The released model [default: da3-small, or what config.json names]. Weights:
    /// da3-small, da3-base, da3mono-large, da3metric-large Apache-2.0; da3-large,
    /// da3-giant CC BY-NC 4.0.
    #[cfg_attr(feature = "clap", arg(long, value_enum, value_name = "MODEL"))]
    pub model: Option<Da3Model>,

    /// auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    #[cfg_attr(feature = "clap", arg(long, default_value = "auto"))]
    pub device: DeviceChoice,

    /// Floating-point precision of the encoder's patch embedding, linear layers and
    /// attention; its norms, the heads and the cameras stay fp32, as in the official
    /// code's autocast (fp16 is slow on the CPU).
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "fp32"))]
    pub precision: Precision,

    /// Allow TensorFloat-32 in fp32 convolutions and matrix products on CUDA GPUs (in
    /// convolutions always with fp16 and bf16).
    #[cfg_attr(feature = "clap", arg(long))]
    pub tf32: bool,

    /// Carried from a V1/V2 request's `--cuda-graphs`, which Depth Anything 3 does not
    /// use: its loader says so.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub cuda_graphs: bool,
}

impl Da3ModelRequest {
    /// The Depth Anything 3 request of a [`ModelRequest`] whose weights hold `model`
    /// (`depth`, `cloud`, `mesh` and `fuse` take Depth Anything 3 weights by `--weights`).
    pub fn from_weights(request: &ModelRequest, model: Da3Model) -> Self {
        Self {
            weights: request.weights.clone(),
            model: Some(model),
            device: request.device,
            precision: request.precision,
            tf32: request.tf32,
            cuda_graphs: request.cuda_graphs,
        }
    }

    /// The model that will load, as far as the request tells without reading tensors:
    /// `--model`, else what `config.json` names, else da3-small for a download.
    pub fn expected_model(&self) -> Option<Da3Model> {
        match (&self.model, &self.weights) {
            (Some(model), _) => Some(*model),
            (None, Some(weights)) => anydepth_model::da3::checkpoint_model(weights),
            (None, None) => Some(Da3Model::Small),
        }
    }

    /// Resolves the weights (given, or the released model from the hub cache, downloaded
    /// once; `progress` hears `(file name, done, total)` bytes) and loads them with
    /// `loader`.
    ///
    /// # Errors
    /// When the weights are missing, cannot be downloaded, or do not load.
    pub fn load(
        &self,
        loader: &dyn EngineLoader,
        progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<Box<dyn Da3Engine>> {
        let weights = match &self.weights {
            Some(path) => {
                if !path.exists() {
                    bail!("weights not found: {}", path.display());
                }
                path.clone()
            }
            None => {
                let model = self.model.unwrap_or(Da3Model::Small);
                fetch_released(&hub::released_da3(model), progress)?
            }
        };
        let options = EstimatorOptions {
            device: self.device,
            precision: self.precision,
            allow_tf32: self.tf32,
            cuda_graphs: self.cuda_graphs,
            ..Default::default()
        };
        // Released files come without config.json here: the model is the one asked for.
        let hint = self
            .model
            .or(self.weights.is_none().then_some(Da3Model::Small));
        let engine = loader
            .load_da3(&weights, hint, options)
            .with_context(|| format!("cannot load {}", weights.display()))?;
        tracing::info!(
            "{} on {} from {}",
            engine.model(),
            engine.device_name(),
            weights.display()
        );
        Ok(engine)
    }
}

/// `file` from the hub cache, downloaded when missing.
fn fetch_released(
    file: &hub::HubFile,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<PathBuf> {
    let hub = Hub::from_env().map_err(anydepth_model::Error::from)?;
    if let Some(path) = hub.cached(file).map_err(anydepth_model::Error::from)? {
        return Ok(path);
    }
    let name = file.filename.clone();
    let path = hub
        .download(file, &mut |done, total| progress(&name, done, total))
        .map_err(anydepth_model::Error::from)?;
    Ok(path)
}

fn existing_file(path: &Path) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("weights file not found: {}", path.display());
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ModelRequest {
        ModelRequest {
            input_size: 518,
            ..Default::default()
        }
    }

    #[test]
    fn spec_follows_the_request() {
        let indoor = ModelRequest {
            metric: Some(Metric::Indoor),
            ..request()
        };
        assert_eq!(indoor.spec(None).expect("valid").head, Some(Head::INDOOR));
        assert_eq!(
            indoor.spec(Some(5.0)).expect("valid").head,
            Some(Head::Metric { max_depth_m: 5.0 })
        );
        assert_eq!(request().spec(None).expect("valid").head, None);
        let v1_metric = ModelRequest {
            version: Some(Version::V1),
            ..indoor
        };
        assert!(v1_metric.spec(None).is_err());
        let tiny = ModelRequest {
            input_size: 13,
            ..request()
        };
        assert!(tiny.spec(None).is_err());
        assert!(request().spec(Some(-1.0)).is_err());
    }

    #[test]
    fn a_missing_weights_file_is_named() {
        let missing = ModelRequest {
            weights: Some("no/such/model.pth".into()),
            ..request()
        };
        let err = missing
            .resolve_weights(false, &mut |_, _, _| {})
            .expect_err("missing file");
        assert_eq!(err.to_string(), "weights file not found: no/such/model.pth");
    }
}
