//! `anydepth eval`: a model (or predictions on disk) scored on a dataset with the papers'
//! protocol (see `anydepth_eval::protocol`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anydepth_core::camera::Intrinsics;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{read_trajectory, PoseEntry, PoseFormat, PoseKey};
use anydepth_core::Metres;
use anydepth_eval::datasets::{self, Dataset, DatasetKind, DepthSample};
use anydepth_eval::job::{self, EvalObserver, ReportHeader, Sequence, Source};
use anydepth_eval::protocol::{Alignment, CropName, Metrics, Protocol};
use anydepth_eval::report::{DepthReport, Report};
use anydepth_eval::temporal::FrameCamera;
use anydepth_model::{EngineLoader, Preprocessing};
use anydepth_pipeline::model::ModelRequest;
use anydepth_pipeline::sources::stem;
use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use crate::progress::{progress_bar, DownloadBar};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlignArg {
    /// Metric predictions as they are.
    None,
    /// Metric predictions scaled by median(gt) / median(prediction) per image.
    Median,
    /// Least-squares scale and shift in disparity space per image (relative models).
    Affine,
}

/// `--crop`: the dataset's default crop, or one of [`CropName`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropArg {
    /// The dataset's crop (nyu: nyu-eigen; kitti: kitti-garg; list: none).
    Auto,
    /// A named crop.
    Named(CropName),
}

impl CropArg {
    /// The parser of `--crop`: `auto`, then the values (and help) of [`CropName`].
    fn parser() -> impl TypedValueParser<Value = CropArg> {
        let auto = PossibleValue::new("auto").help("nyu: nyu-eigen; kitti: kitti-garg; list: none");
        let named = CropName::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value);
        PossibleValuesParser::new(std::iter::once(auto).chain(named)).map(|value| {
            // Only `auto` and the names of `CropName` get here.
            CropName::from_str(&value, false).map_or(CropArg::Auto, CropArg::Named)
        })
    }
}

/// `--intrinsics`: four numbers or a JSON file.
#[derive(Clone, Debug, PartialEq)]
pub enum CameraArg {
    /// fx, fy, cx, cy in pixels, for frames of the ground truth's size.
    Values([f64; 4]),
    /// A JSON file read by [`Intrinsics::from_json_file`].
    File(PathBuf),
}

impl CameraArg {
    /// `fx,fy,cx,cy` (four numbers) or, without a comma, a file path.
    fn parse(text: &str) -> Result<CameraArg, String> {
        if !text.contains(',') {
            return Ok(CameraArg::File(PathBuf::from(text)));
        }
        let values: Result<Vec<f64>, _> = text.split(',').map(|v| v.trim().parse()).collect();
        match values.as_deref() {
            Ok(&[fx, fy, cx, cy]) => Ok(CameraArg::Values([fx, fy, cx, cy])),
            _ => Err(format!(
                "expected four numbers fx,fy,cx,cy or a JSON file, got {text:?}"
            )),
        }
    }
}

/// Arguments of `anydepth eval`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth eval --dataset nyu path/to/nyu --model vits --json nyu_vits.json
  anydepth eval --dataset kitti path/to/kitti --weights depth_anything_v2_vitb.pth
  anydepth eval --dataset list split.txt --predictions depth/ --max-depth 20
  anydepth eval --dataset list video.txt --predictions depth/ --poses poses.txt --intrinsics camera.json
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
    pub model: ModelRequest,

    /// How predictions become metres [default: affine for relative models, none for
    /// metric ones].
    #[arg(long, value_enum)]
    pub align: Option<AlignArg>,

    /// Pixels evaluated.
    #[arg(long, value_parser = CropArg::parser(), default_value = "auto")]
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

    /// Camera poses of the list's frames, which then form a video in list order: TUM,
    /// `tx ty tz qx qy qz qw` per line, Open3D .log, a COLMAP text model or NeRF
    /// transforms.json (matched by order, time or name, as `fuse` matches them). Adds the
    /// temporal alignment error (TAE) of Video Depth Anything's benchmark: the sequence
    /// aligned once, each frame reprojected into the next and back. Only with --dataset list.
    #[arg(long, value_name = "FILE")]
    pub poses: Option<PathBuf>,

    /// Format of --poses [default: recognised from the content]: tum, plain, log, colmap,
    /// nerf, cameras (anydepth's cameras.json).
    #[arg(long, value_name = "FORMAT", requires = "poses")]
    pub pose_format: Option<PoseFormat>,

    /// The frames' camera for TAE: fx,fy,cx,cy in pixels (pixel centres at integer
    /// coordinates) or a JSON file ({"width", "height", "fx", "fy", "cx", "cy"}, or Open3D's
    /// "intrinsic_matrix") [default: the pose file's (COLMAP, NeRF)].
    #[arg(long, value_name = "FX,FY,CX,CY|FILE", requires = "poses", value_parser = CameraArg::parse)]
    pub intrinsics: Option<CameraArg>,

    /// Write the results as JSON (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The protocol the arguments ask for; the alignment is settled once the model is known.
fn protocol(args: &EvalArgs) -> Result<Protocol> {
    let mut protocol = args.dataset.default_protocol();
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
        CropArg::Named(name) => name.crop(),
    };
    Ok(protocol)
}

/// Files the run will read that do not exist.
fn missing_files(dataset: &Dataset, args: &EvalArgs) -> Vec<PathBuf> {
    let mut needed: Vec<PathBuf> = Vec::new();
    let prediction = |name: &str| {
        args.predictions
            .as_ref()
            .map(|dir| Source::prediction_path(dir, name))
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
                needed.extend(prediction(&stem(&s.rgb)));
            }
        }
    }
    needed.retain(|p| !p.is_file());
    needed
}

/// `model` with the papers' protocol's preprocessing, the official code's: `auto` becomes
/// `exact`, so a GPU evaluates what the CPU does.
fn exact_by_default(model: &ModelRequest) -> ModelRequest {
    let mut model = model.clone();
    if model.preprocessing == Preprocessing::Auto {
        model.preprocessing = Preprocessing::Exact;
    }
    model
}

/// Refuses flags that contradict each other or the dataset.
fn check_flags(args: &EvalArgs) -> Result<()> {
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
    if args.poses.is_some() {
        if args.dataset != DatasetKind::List {
            bail!("--poses makes the frames of a list a video: it applies to --dataset list");
        }
        if args.align == Some(AlignArg::Median) {
            bail!(
                "with --poses, TAE aligns the whole sequence with one scale and shift (--align \
                 affine) or takes metric depth as it is (--align none), not --align median"
            );
        }
    }
    Ok(())
}

/// Runs `anydepth eval`.
pub fn run(args: EvalArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    // Validate everything before loading a model.
    let mut protocol = protocol(&args)?;
    check_flags(&args)?;
    args.model.spec(None)?;
    let mut dataset = datasets::load(args.dataset, &args.path)?;
    if let Some(n) = args.limit {
        dataset.truncate(n);
    }
    if let (Some(_), Dataset::Pairs(samples)) = (&args.predictions, &dataset) {
        let mut stems: Vec<String> = samples.iter().map(|s| stem(&s.rgb)).collect();
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
    let sequence = match (&args.poses, &dataset) {
        (Some(poses), Dataset::Depth(samples)) => Some(
            video_cameras(samples, poses, args.pose_format, args.intrinsics.as_ref())
                .context("the frames as a video (--poses)")?,
        ),
        _ => None,
    };

    let source = match &args.predictions {
        Some(dir) => Source::Files {
            dir: dir.clone(),
            metric: args.model.metric.is_some(),
        },
        None => {
            let mut download = DownloadBar::new(args.quiet);
            let (engine, weights) =
                exact_by_default(&args.model).load(loader, None, 1, &mut |file, done, total| {
                    download.update(file, done, total)
                })?;
            Source::Model { engine, weights }
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

    let bar = progress_bar(dataset.len(), args.quiet);
    let header = ReportHeader {
        dataset: args.dataset.name().to_owned(),
        path: args.path.display().to_string(),
        model: source.describe(),
        count: dataset.len(),
    };
    let observer = Bar(&bar);
    let result = match (&dataset, &sequence) {
        (Dataset::Depth(samples), Some(sequence)) => {
            job::evaluate_sequence(samples, &source, &protocol, sequence, header, &observer)
                .map(Report::Depth)
        }
        (Dataset::Depth(samples), None) => {
            job::evaluate_depth(samples, &source, &protocol, header, &observer).map(Report::Depth)
        }
        (Dataset::Pairs(samples), _) => {
            job::evaluate_pairs(samples, &source, header, &observer).map(Report::Pairs)
        }
    };
    let report = match result {
        Ok(report) => {
            print_report(&report);
            report
        }
        Err(e) => {
            bar.finish_and_clear();
            return Err(e.into());
        }
    };
    bar.finish_and_clear();
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        if !args.quiet {
            eprintln!("results written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The camera of every frame of `samples`: poses from `path`, matched to the frames by
/// order, time or name, and the intrinsics of `camera`, else of the pose file.
fn video_cameras(
    samples: &[DepthSample],
    path: &Path,
    format: Option<PoseFormat>,
    camera: Option<&CameraArg>,
) -> Result<Sequence> {
    let Some(first) = samples.first().filter(|_| samples.len() >= 2) else {
        bail!(
            "TAE compares consecutive frames: the list holds {} (see --limit)",
            samples.len()
        );
    };
    let trajectory = read_trajectory(path, format)?;
    let by_order = trajectory
        .poses
        .iter()
        .all(|entry| matches!(entry.key, PoseKey::Index(_)));
    let entries: Vec<&PoseEntry> = if by_order {
        trajectory.poses_for_frames(samples.len())?
    } else {
        let photos: Vec<&Path> = samples.iter().map(|s| s.rgb.as_path()).collect();
        trajectory.poses_for_files(&photos)?
    };
    let given = match camera {
        None => None,
        Some(CameraArg::File(file)) => Some(Intrinsics::from_json_file(file)?),
        Some(&CameraArg::Values([fx, fy, cx, cy])) => {
            // For frames of the ground truth's size.
            let gt = read_depth_values::<Metres>(&first.depth, first.depth_scale)?;
            Some(Intrinsics::new(fx, fy, cx, cy, gt.width(), gt.height())?)
        }
    };
    let cameras = entries
        .into_iter()
        .map(|entry| {
            let Some(intrinsics) = given.or(entry.intrinsics) else {
                bail!(
                    "TAE needs the frames' camera: pass --intrinsics FX,FY,CX,CY or a JSON file \
                     ({} gives none)",
                    path.display()
                );
            };
            Ok(FrameCamera {
                intrinsics,
                world_from_camera: entry.world_from_camera,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Sequence {
        cameras,
        poses: path.display().to_string(),
    })
}

/// The progress bar as the evaluation's observer.
struct Bar<'a>(&'a ProgressBar);

impl EvalObserver for Bar<'_> {
    fn item(&self, name: &str) {
        self.0.set_message(name.to_owned());
    }

    fn advance(&self) {
        self.0.inc(1);
    }
}

const HEADER: &str = "absrel  delta1  delta2  delta3     rmse  log_rmse";

fn metrics_row(name: &str, m: &Metrics) -> String {
    format!(
        "{name:<28} {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:>7.4}  {:>8.4}",
        m.absrel, m.delta1, m.delta2, m.delta3, m.rmse, m.log_rmse
    )
}

/// The table on stdout (and the count of resized predictions on stderr).
fn print_report(report: &Report) {
    match report {
        Report::Depth(r) => {
            println!("{:<28} {HEADER}", "image");
            for row in &r.images {
                println!("{}", metrics_row(&row.name, &row.metrics()));
            }
            let mean = Metrics {
                absrel: r.absrel,
                delta1: r.delta1,
                delta2: r.delta2,
                delta3: r.delta3,
                rmse: r.rmse,
                log_rmse: r.log_rmse,
            };
            let title = format!("mean of {} images", r.images.len());
            println!("{}", metrics_row(&title, &mean));
            print_temporal(r);
            if r.resized > 0 {
                eprintln!(
                    "{} prediction(s) resized (bilinear) to the ground truth's size before scoring",
                    r.resized
                );
            }
        }
        Report::Pairs(r) => println!(
            "DA-2K: {} of {} pairs ordered correctly, accuracy {:.4} ({} images)",
            r.correct,
            r.pairs,
            r.accuracy,
            r.images.len()
        ),
    }
}

/// The temporal alignment error, pair by pair, when the frames were a video.
fn print_temporal(report: &DepthReport) {
    let (Some(tae), Some(temporal)) = (report.tae, &report.temporal) else {
        return;
    };
    println!();
    println!(
        "{:<28} {:>7}  {:>7}  {:>8}",
        "frame pair", "tae(%)", "forward", "backward"
    );
    for pair in &temporal.pairs {
        let name = format!("{} -> {}", pair.first, pair.second);
        println!(
            "{name:<28} {:>7.4}  {:>7.4}  {:>8.4}",
            pair.tae, pair.forward, pair.backward
        );
    }
    let title = format!("TAE over {} pairs", temporal.pairs.len());
    println!("{title:<28} {tae:>7.4}");
}

fn write_json(path: &Path, report: &Report) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let text = report.to_json()?;
    Ok(anydepth_core::fs::write_atomically(path, true, |out| {
        out.write_all(text.as_bytes())
    })?)
}
