//! `anydepth depth`: photos in, depth maps out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anydepth_core::{load_image, RgbImage};
use anydepth_model::hub::{self, HubEncoder, HubKind, HubVersion};
use anydepth_model::{
    DepthEstimator, DeviceChoice, Encoder, EstimatorOptions, Head, ModelSpec, Precision, Version,
};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::colormap::ColormapArg;
use crate::inputs;
use crate::output::{self, Format};
use crate::viz::{self, RerunArgs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    Vits,
    Vitb,
    Vitl,
    Vitg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VersionArg {
    V1,
    V2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// Trained on Hypersim, depth up to 20 m.
    Indoor,
    /// Trained on Virtual KITTI, depth up to 80 m.
    Outdoor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Fp16,
    Bf16,
}

/// `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceArg(DeviceChoice);

impl DeviceArg {
    pub fn choice(self) -> DeviceChoice {
        self.0
    }
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let choice = match s {
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => DeviceChoice::Cuda(i),
                _ => return Err(format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
            },
        };
        Ok(Self(choice))
    }
}

/// Which depth model to run, and where: shared by every command that runs one.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Encoder size; with --weights it must match the file.
    #[arg(long, value_enum)]
    pub model: Option<ModelArg>,

    /// Depth Anything release [default: v2, or what the weights file says].
    #[arg(long, value_enum)]
    pub version: Option<VersionArg>,

    /// Use a metric model: depth in metres instead of relative disparity.
    #[arg(long, value_enum)]
    pub metric: Option<MetricArg>,

    /// Checkpoint file (.pth or .safetensors); without it the released model is
    /// downloaded once from the Hugging Face hub into its cache.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceArg,

    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,

    /// Shorter side of the network input, rounded to a multiple of 14; larger sharpens.
    #[arg(long, default_value_t = 518, value_name = "N")]
    pub input_size: u32,
}

impl ModelArgs {
    /// The model the arguments ask for; `metric_max_depth_m` overrides the metric head's
    /// range (and asks for a metric head when `--metric` is absent).
    pub fn spec(&self, metric_max_depth_m: Option<f64>) -> Result<ModelSpec> {
        if self.input_size < 14 {
            bail!("--input-size must be at least 14 (the patch size); 518 as trained");
        }
        if let Some(m) = metric_max_depth_m {
            if !(m.is_finite() && m > 0.0) {
                bail!("--max-depth must be a positive number of metres, got {m}");
            }
        }
        if self.metric.is_some() && self.version == Some(VersionArg::V1) {
            bail!(
                "Depth Anything V1 has no metric models here (its metric models are ZoeDepth networks)"
            );
        }
        let head = match (self.metric, metric_max_depth_m) {
            (Some(MetricArg::Indoor), m) => Some(Head::Metric {
                max_depth_m: m.unwrap_or(20.0),
            }),
            (Some(MetricArg::Outdoor), m) => Some(Head::Metric {
                max_depth_m: m.unwrap_or(80.0),
            }),
            (None, Some(m)) => Some(Head::Metric { max_depth_m: m }),
            (None, None) => None,
        };
        Ok(ModelSpec {
            encoder: self.model.map(encoder_of),
            version: self.version.map(|v| match v {
                VersionArg::V1 => Version::V1,
                VersionArg::V2 => Version::V2,
            }),
            head,
        })
    }

    pub fn options(&self, batch_size: usize) -> EstimatorOptions {
        EstimatorOptions {
            device: self.device.0,
            precision: self.precision.into(),
            input_size: self.input_size,
            batch_size,
        }
    }

    /// Resolves the weights (file or hub) and loads the model.
    pub fn load(
        &self,
        metric_max_depth_m: Option<f64>,
        batch_size: usize,
        quiet: bool,
    ) -> Result<(DepthEstimator, PathBuf)> {
        let spec = self.spec(metric_max_depth_m)?;
        let weights = resolve_weights(self, metric_max_depth_m.is_some(), quiet)?;
        let estimator = DepthEstimator::from_checkpoint(&weights, spec, self.options(batch_size))
            .context("cannot load the model")?;
        tracing::info!(
            "{} on {:?} from {}",
            estimator.config().describe(),
            estimator.device(),
            weights.display()
        );
        Ok((estimator, weights))
    }
}

/// Arguments of `anydepth depth`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth depth photo.jpg --out depth/
  anydepth depth photos/ 'more/*.png' --out depth/ --formats npy,color,side-by-side
  anydepth depth room.jpg --metric indoor --formats npy,png16 --out depth/
  anydepth depth photo.jpg --weights depth_anything_v2_vitb.pth --device cuda --precision fp16")]
pub struct DepthArgs {
    /// Image files, folders (their images) or glob patterns.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output folder (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Largest depth of a metric model, in metres [default: 20 indoor, 80 outdoor].
    #[arg(long, value_name = "M")]
    pub max_depth: Option<f64>,

    /// Images per forward pass (images of the same network input size run together).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: usize,

    /// Outputs to write, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "npy,color")]
    pub formats: Vec<Format>,

    /// Colour map of the `color` and `side-by-side` outputs.
    #[arg(long, value_enum, default_value_t = ColormapArg::default())]
    pub colormap: ColormapArg,

    /// Replace existing outputs (otherwise inputs whose outputs exist are skipped).
    #[arg(long)]
    pub force: bool,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// What the arguments ask for, validated.
struct Plan {
    files: Vec<PathBuf>,
    formats: Vec<Format>,
}

fn plan(args: &DepthArgs) -> Result<Plan> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    // Checked here, before any work, though the model is loaded later.
    args.model.spec(args.max_depth)?;
    let mut formats = args.formats.clone();
    formats.dedup();
    if formats.is_empty() {
        bail!("--formats lists nothing to write");
    }
    let inputs = inputs::expand(&args.inputs)?;
    for file in &inputs.ignored {
        tracing::info!("not an image by its extension, ignored: {}", file.display());
    }
    Ok(Plan {
        files: inputs.files,
        formats,
    })
}

fn encoder_of(m: ModelArg) -> Encoder {
    match m {
        ModelArg::Vits => Encoder::Vits,
        ModelArg::Vitb => Encoder::Vitb,
        ModelArg::Vitl => Encoder::Vitl,
        ModelArg::Vitg => Encoder::Vitg,
    }
}

/// The weights file: the one given, or the released model from the hub cache.
fn resolve_weights(args: &ModelArgs, custom_max_depth: bool, quiet: bool) -> Result<PathBuf> {
    if let Some(path) = &args.weights {
        if !path.is_file() {
            bail!("weights file not found: {}", path.display());
        }
        return Ok(path.clone());
    }
    let version = match args.version {
        Some(VersionArg::V1) => HubVersion::V1,
        _ => HubVersion::V2,
    };
    let encoder = match args.model.unwrap_or(ModelArg::Vits) {
        ModelArg::Vits => HubEncoder::Vits,
        ModelArg::Vitb => HubEncoder::Vitb,
        ModelArg::Vitl => HubEncoder::Vitl,
        ModelArg::Vitg => HubEncoder::Vitg,
    };
    let kind = match args.metric {
        Some(MetricArg::Indoor) => HubKind::MetricIndoor,
        Some(MetricArg::Outdoor) => HubKind::MetricOutdoor,
        None if custom_max_depth => {
            bail!("--max-depth without --metric needs a metric checkpoint: pass --weights FILE or --metric indoor|outdoor")
        }
        None => HubKind::Relative,
    };
    let file = hub::released(version, encoder, kind)?;
    let hub = hub::Hub::from_env()?;
    if let Some(path) = hub.cached(&file)? {
        return Ok(path);
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "downloading {msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(file.filename.clone());
    let path = hub.download(&file, &mut |done, total| {
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(path?)
}

/// Runs `anydepth depth`; returns exit code 1 when some inputs failed.
pub fn run(args: DepthArgs) -> Result<ExitCode> {
    let plan = plan(&args)?;
    let out_dir = &args.out;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the output folder {}", out_dir.display()))?;

    // Inputs whose outputs all exist are kept as they are.
    let mut todo = Vec::new();
    let mut kept = 0usize;
    for file in &plan.files {
        let stem = inputs::stem(file);
        let existing: Vec<PathBuf> = plan
            .formats
            .iter()
            .map(|&f| output::output_path(out_dir, &stem, f))
            .filter(|p| p.exists())
            .collect();
        if !args.force && !existing.is_empty() {
            kept += 1;
            if !args.quiet {
                eprintln!(
                    "kept existing outputs of {} (pass --force to replace): {}",
                    file.display(),
                    existing[0].display()
                );
            }
            continue;
        }
        todo.push(file.clone());
    }
    if todo.is_empty() {
        eprintln!("nothing to do: all {kept} inputs have their outputs");
        return Ok(ExitCode::SUCCESS);
    }

    let recording = args.rerun.start()?;
    let (estimator, _weights) = args.model.load(args.max_depth, args.batch, args.quiet)?;

    let bar = crate::output::progress_bar(todo.len(), args.quiet);
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let mut written = 0usize;
    let mut frame = 0u64;
    for chunk in todo.chunks(args.batch) {
        let mut files: Vec<&PathBuf> = Vec::new();
        let mut images: Vec<RgbImage> = Vec::new();
        for file in chunk {
            bar.set_message(inputs::stem(file));
            match load_image(file) {
                Ok(img) => {
                    files.push(file);
                    images.push(img);
                }
                Err(e) => {
                    failures.push((file.clone(), e.to_string()));
                    bar.inc(1);
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        match estimator.predict_batch(&images) {
            Ok(predictions) => {
                for ((file, image), prediction) in files.iter().zip(&images).zip(predictions) {
                    // The photo and its depth go to Rerun while the outputs are written.
                    let outcome = viz::log_beside(
                        recording.as_ref(),
                        |r| log_photo(r, frame, file, image, &prediction, args.colormap),
                        || write_all(out_dir, file, image, &prediction, &plan.formats, &args),
                    )?;
                    match outcome {
                        Ok(()) => written += 1,
                        Err(e) => failures.push(((*file).clone(), format!("{e:#}"))),
                    }
                    frame += 1;
                    bar.inc(1);
                }
            }
            Err(e) => {
                for file in files {
                    failures.push((file.clone(), e.to_string()));
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();

    if !args.quiet {
        eprintln!(
            "{written} written to {}, {kept} kept, {} failed",
            out_dir.display(),
            failures.len()
        );
    }
    let code = if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("failed:");
        for (file, reason) in &failures {
            eprintln!("  {}: {reason}", file.display());
        }
        ExitCode::from(1)
    };
    viz::finish(recording)?;
    Ok(code)
}

/// Logs one photo at `frame`: the photo, its depth, and a camera from EXIF (or a guess)
/// at the origin, so the viewer back-projects metric depth.
fn log_photo(
    recording: &anydepth_viz::Recording,
    frame: u64,
    file: &Path,
    image: &RgbImage,
    prediction: &anydepth_core::Prediction,
    colormap: ColormapArg,
) -> Result<()> {
    recording.set_frame(frame);
    let camera = viz::photo_camera(file, image.width, image.height)?;
    recording.log_camera(&camera, &nalgebra::Isometry3::identity())?;
    recording.log_image(image)?;
    recording.log_prediction(prediction, colormap.0)?;
    Ok(())
}

fn write_all(
    out_dir: &Path,
    file: &Path,
    image: &RgbImage,
    prediction: &anydepth_core::Prediction,
    formats: &[Format],
    args: &DepthArgs,
) -> Result<()> {
    let stem = inputs::stem(file);
    for &format in formats {
        let path = output::output_path(out_dir, &stem, format);
        output::write_output(
            &path,
            format,
            prediction.values(),
            prediction.width(),
            prediction.height(),
            Some(image),
            args.colormap.0,
            args.force,
        )?;
    }
    Ok(())
}
