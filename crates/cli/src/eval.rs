//! `anydepth eval`: a model (or predictions on disk) scored on a dataset with the papers'
//! protocol (see `anydepth_geometry::eval`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, DepthMap, Metres, Prediction};
use anydepth_geometry::eval::{self, Alignment, Crop, Fit, ImageEvaluation, PairScore, Protocol};
use anydepth_model::{DepthEstimator, Head};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::datasets::{self, Dataset, DatasetKind, DepthSample, PairSample};
use crate::depth::ModelArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlignArg {
    /// Metric predictions as they are.
    None,
    /// Metric predictions scaled by median(gt) / median(prediction) per image.
    Median,
    /// Least-squares scale and shift in disparity space per image (relative models).
    Affine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CropArg {
    /// nyu: nyu-eigen; kitti: kitti-garg; list: none.
    Auto,
    None,
    /// Rows 45..471, columns 41..601 of 640 x 480 frames.
    NyuEigen,
    /// Garg et al.'s KITTI crop (fractions of the frame).
    KittiGarg,
    /// Eigen et al.'s KITTI crop (fractions of the frame).
    KittiEigen,
}

/// Arguments of `anydepth eval`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth eval --dataset nyu path/to/nyu --model vits --json nyu_vits.json
  anydepth eval --dataset kitti path/to/kitti --weights depth_anything_v2_vitb.pth
  anydepth eval --dataset list split.txt --predictions depth/ --max-depth 20
  anydepth eval --dataset da2k path/to/DA-2K --model vitl")]
pub struct EvalArgs {
    /// The dataset: its folder, or its annotation or list file.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// The dataset's layout.
    #[arg(long, value_enum)]
    pub dataset: DatasetKind,

    /// Score predictions already on disk instead of running a model: `<image stem>.npy`
    /// as `anydepth depth` writes them (disparity; metres with --metric).
    #[arg(long, value_name = "DIR")]
    pub predictions: Option<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,

    /// How predictions become metres [default: affine for relative models, none for
    /// metric ones].
    #[arg(long, value_enum)]
    pub align: Option<AlignArg>,

    /// Pixels evaluated.
    #[arg(long, value_enum, default_value = "auto")]
    pub crop: CropArg,

    /// Ground truth must be deeper than this, metres [default: 0.001].
    #[arg(long, value_name = "M")]
    pub min_depth: Option<f32>,

    /// Ground truth must be shallower than this, metres; also caps predictions [default:
    /// 10 nyu, 80 kitti; list: none, each image's deepest valid ground truth caps].
    #[arg(long, value_name = "M")]
    pub max_depth: Option<f32>,

    /// Evaluate only the first N images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Write the results as JSON (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Where predictions come from.
enum Source {
    Model(Box<DepthEstimator>, PathBuf),
    Files { dir: PathBuf, metric: bool },
}

impl Source {
    fn is_metric(&self) -> bool {
        match self {
            Source::Model(estimator, _) => matches!(estimator.config().head, Head::Metric { .. }),
            Source::Files { metric, .. } => *metric,
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Model(estimator, weights) => {
                format!("{} ({})", estimator.config().describe(), weights.display())
            }
            Source::Files { dir, metric } => format!(
                "predictions in {} ({})",
                dir.display(),
                if *metric { "metres" } else { "disparity" }
            ),
        }
    }

    /// The prediction for `rgb`, named `name`.
    fn predict(&self, name: &str, rgb: &Path) -> Result<Prediction> {
        match self {
            Source::Model(estimator, _) => {
                let image = load_image(rgb)?;
                Ok(estimator.predict(&image)?)
            }
            Source::Files { dir, metric } => {
                let path = dir.join(format!("{name}.npy"));
                let (w, h, values) = read_depth_values(&path, 1.0)?;
                Ok(if *metric {
                    Prediction::Metric(DepthMap::new(w, h, values)?)
                } else {
                    Prediction::Disparity(DepthMap::new(w, h, values)?)
                })
            }
        }
    }
}

fn default_protocol(kind: DatasetKind) -> Protocol {
    match kind {
        DatasetKind::Nyu => Protocol::NYU,
        DatasetKind::Kitti => Protocol::KITTI,
        DatasetKind::List | DatasetKind::Da2k => Protocol {
            min_depth_m: 1e-3,
            max_depth_m: None,
            crop: Crop::None,
            alignment: Alignment::Affine,
        },
    }
}

/// The protocol the arguments ask for; the alignment is settled once the model is known.
fn protocol(args: &EvalArgs) -> Result<Protocol> {
    let mut protocol = default_protocol(args.dataset);
    if let Some(m) = args.min_depth {
        if !(m.is_finite() && m >= 0.0) {
            bail!("--min-depth must be a number of metres >= 0, got {m}");
        }
        protocol.min_depth_m = m;
    }
    if let Some(m) = args.max_depth {
        if !(m.is_finite() && m > protocol.min_depth_m) {
            bail!(
                "--max-depth must be a number of metres above the minimum ({}), got {m}",
                protocol.min_depth_m
            );
        }
        protocol.max_depth_m = Some(m);
    }
    protocol.crop = match args.crop {
        CropArg::Auto => protocol.crop,
        CropArg::None => Crop::None,
        CropArg::NyuEigen => Crop::NYU_EIGEN,
        CropArg::KittiGarg => Crop::KITTI_GARG,
        CropArg::KittiEigen => Crop::KITTI_EIGEN,
    };
    Ok(protocol)
}

fn crop_name(crop: &Crop) -> &'static str {
    match *crop {
        Crop::None => "none",
        c if c == Crop::NYU_EIGEN => "nyu-eigen",
        c if c == Crop::KITTI_GARG => "kitti-garg",
        c if c == Crop::KITTI_EIGEN => "kitti-eigen",
        _ => "custom",
    }
}

/// Files the run will read that do not exist.
fn missing_files(dataset: &Dataset, args: &EvalArgs) -> Vec<PathBuf> {
    let mut needed: Vec<PathBuf> = Vec::new();
    let prediction = |name: &str| {
        args.predictions
            .as_ref()
            .map(|dir| dir.join(format!("{name}.npy")))
    };
    match dataset {
        Dataset::Depth(samples) => {
            for s in samples {
                needed.push(s.depth.clone());
                match prediction(&s.name) {
                    Some(p) => needed.push(p),
                    None => needed.push(s.rgb.clone()),
                }
            }
        }
        Dataset::Pairs(samples) => {
            for s in samples {
                needed.push(s.rgb.clone());
                needed.extend(prediction(&crate::inputs::stem(&s.rgb)));
            }
        }
    }
    needed.retain(|p| !p.is_file());
    needed
}

/// Runs `anydepth eval`.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    // Validate everything before loading a model.
    let mut protocol = protocol(&args)?;
    if args.limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    if args.predictions.is_some() && args.model.weights.is_some() {
        bail!("give --weights (run a model) or --predictions (score files), not both");
    }
    if args.dataset == DatasetKind::Da2k
        && (args.align.is_some()
            || args.crop != CropArg::Auto
            || args.min_depth.is_some()
            || args.max_depth.is_some())
    {
        bail!("DA-2K scores the order of point pairs: --align, --crop, --min-depth and --max-depth do not apply");
    }
    args.model.spec(None)?;
    let mut dataset = datasets::load(args.dataset, &args.path)?;
    if let Some(n) = args.limit {
        dataset.truncate(n);
    }
    if let (Some(_), Dataset::Pairs(samples)) = (&args.predictions, &dataset) {
        let mut stems: Vec<String> = samples
            .iter()
            .map(|s| crate::inputs::stem(&s.rgb))
            .collect();
        stems.sort();
        if let Some(w) = stems.windows(2).find(|w| w[0] == w[1]) {
            bail!(
                "two images share the name {:?}: predictions named <stem>.npy cannot tell them apart",
                w[0]
            );
        }
    }
    let missing = missing_files(&dataset, &args);
    if let Some(first) = missing.first() {
        bail!(
            "{} file(s) of the dataset are missing, the first: {}",
            missing.len(),
            first.display()
        );
    }

    let source = match &args.predictions {
        Some(dir) => Source::Files {
            dir: dir.clone(),
            metric: args.model.metric.is_some(),
        },
        None => {
            let (estimator, weights) = args.model.load(None, 1, args.quiet)?;
            Source::Model(Box::new(estimator), weights)
        }
    };
    let metric = source.is_metric();
    protocol.alignment = match (args.align, metric) {
        (Some(AlignArg::None), _) => Alignment::None,
        (Some(AlignArg::Median), _) => Alignment::Median,
        (Some(AlignArg::Affine), _) | (None, false) => Alignment::Affine,
        (None, true) => Alignment::None,
    };
    if !metric && protocol.alignment != Alignment::Affine && args.dataset != DatasetKind::Da2k {
        bail!(
            "a relative model predicts disparity up to an unknown scale and shift: --align {} \
             needs a metric model (or --metric with --predictions); use --align affine",
            protocol.alignment.name()
        );
    }

    let bar = crate::output::progress_bar(dataset.len(), args.quiet);
    let mut report = json!({
        "dataset": args.dataset.name(),
        "path": args.path.display().to_string(),
        "model": source.describe(),
        "count": dataset.len(),
    });
    let result = match &dataset {
        Dataset::Depth(samples) => evaluate_depth(samples, &source, &protocol, &bar, &mut report),
        Dataset::Pairs(samples) => evaluate_pairs(samples, &source, &bar, &mut report),
    };
    bar.finish_and_clear();
    result?;
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        if !args.quiet {
            eprintln!("results written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn metrics_json(m: &eval::Metrics) -> Value {
    json!({
        "absrel": m.absrel,
        "delta1": m.delta1,
        "delta2": m.delta2,
        "delta3": m.delta3,
        "rmse": m.rmse,
        "log_rmse": m.log_rmse,
    })
}

/// Merges the keys of `extra` (an object) into `object`.
fn merge(object: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (object.as_object_mut(), extra) {
        o.extend(e);
    }
}

const HEADER: &str = "absrel  delta1  delta2  delta3     rmse  log_rmse";

fn metrics_row(name: &str, m: &eval::Metrics) -> String {
    format!(
        "{name:<28} {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:>7.4}  {:>8.4}",
        m.absrel, m.delta1, m.delta2, m.delta3, m.rmse, m.log_rmse
    )
}

fn evaluate_depth(
    samples: &[DepthSample],
    source: &Source,
    protocol: &Protocol,
    bar: &ProgressBar,
    report: &mut Value,
) -> Result<()> {
    let mut per_image = Vec::new();
    let mut rows = Vec::new();
    let mut resized = 0usize;
    for sample in samples {
        bar.set_message(sample.name.clone());
        let result = evaluate_one(sample, source, protocol)
            .with_context(|| format!("image {}", sample.name))?;
        resized += usize::from(result.resized);
        let mut row = json!({ "name": sample.name, "pixels": result.pixels });
        merge(&mut row, metrics_json(&result.metrics));
        match result.fit {
            Fit::None => {}
            Fit::Median { scale } => merge(&mut row, json!({ "scale": scale })),
            Fit::Affine(a) => merge(&mut row, json!({ "scale": a.scale, "shift": a.shift })),
        }
        rows.push(row);
        per_image.push(result.metrics);
        bar.inc(1);
    }
    let Some(mean) = eval::mean(&per_image) else {
        bail!("no image was evaluated");
    };
    let title = format!("mean of {} images", per_image.len());
    println!("{:<28} {HEADER}", "image");
    for (row, m) in rows.iter().zip(&per_image) {
        let name = row.get("name").and_then(Value::as_str).unwrap_or_default();
        println!("{}", metrics_row(name, m));
    }
    println!("{}", metrics_row(&title, &mean));
    if resized > 0 {
        eprintln!(
            "{resized} prediction(s) resized (bilinear) to the ground truth's size before scoring"
        );
    }
    merge(report, metrics_json(&mean));
    merge(
        report,
        json!({
            "aggregation": "mean over images of the per-image metrics",
            "alignment": protocol.alignment.name(),
            "crop": crop_name(&protocol.crop),
            "min_depth_m": metres(protocol.min_depth_m),
            "max_depth_m": protocol.max_depth_m.map(metres),
            "resized": resized,
            "images": rows,
        }),
    );
    Ok(())
}

/// An `f32` range bound as the decimal it was written as (0.001, not 0.0010000000474974513).
fn metres(m: f32) -> f64 {
    (f64::from(m) * 1e6).round() / 1e6
}

fn evaluate_one(
    sample: &DepthSample,
    source: &Source,
    protocol: &Protocol,
) -> Result<ImageEvaluation> {
    let (w, h, values) = read_depth_values(&sample.depth, sample.depth_scale)?;
    let gt = DepthMap::<Metres>::new(w, h, values)?;
    let prediction = source.predict(&sample.name, &sample.rgb)?;
    Ok(eval::evaluate(&prediction, &gt, protocol)?)
}

fn evaluate_pairs(
    samples: &[PairSample],
    source: &Source,
    bar: &ProgressBar,
    report: &mut Value,
) -> Result<()> {
    let mut total = PairScore::default();
    let mut rows = Vec::new();
    for sample in samples {
        bar.set_message(sample.name.clone());
        let score = score_one(sample, source).with_context(|| format!("image {}", sample.name))?;
        total.add(score);
        rows.push(json!({
            "name": sample.name,
            "pairs": score.total,
            "correct": score.correct,
            "accuracy": score.accuracy(),
        }));
        bar.inc(1);
    }
    println!(
        "DA-2K: {} of {} pairs ordered correctly, accuracy {:.4} ({} images)",
        total.correct,
        total.total,
        total.accuracy(),
        samples.len()
    );
    merge(
        report,
        json!({
            "accuracy": total.accuracy(),
            "pairs": total.total,
            "correct": total.correct,
            "aggregation": "share of all pairs ordered correctly",
            "alignment": "none",
            "images": rows,
        }),
    );
    Ok(())
}

fn score_one(sample: &PairSample, source: &Source) -> Result<PairScore> {
    let name = crate::inputs::stem(&sample.rgb);
    let prediction = source.predict(&name, &sample.rgb)?;
    let prediction = match source {
        // A model predicts at the photo's size; files may be smaller.
        Source::Model(..) => prediction,
        Source::Files { .. } => {
            let image = load_image(&sample.rgb)?;
            eval::fit_to(&prediction, image.width, image.height)?.0
        }
    };
    Ok(eval::score_pairs(&prediction, &sample.pairs)?)
}

fn write_json(path: &Path, report: &Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    Ok(anydepth_core::fs::write_atomically(path, true, |out| {
        out.write_all(text.as_bytes())
    })?)
}
