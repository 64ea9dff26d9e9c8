//! `anydepth train` (fine-tune on depth ground truth, official metric recipe or the
//! affine-invariant loss for relative models) and `anydepth distill` (a teacher labels
//! unlabelled photos, a student learns them): validation, checkpoints, logs, exact
//! resumption, Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anydepth_core::colormap::Colormap;
use anydepth_eval::datasets::{self, Dataset, DatasetKind, DepthSample};
use anydepth_model::config::{Encoder, Head};
use anydepth_model::train::{
    DistillPlan, Perturbations, StepRecord, Student, TrainObserver, TrainOptions, TrainOutputs,
    TrainPlan, TrainReport, TrainSample, TrainStart, Validation,
};
use anydepth_model::{DepthEngine, DeviceChoice, EngineLoader, ModelSpec, Precision};
use anydepth_pipeline::model::ModelRequest;
use anydepth_pipeline::sources::expand_images;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::DownloadBar;
use crate::viz::RerunArgs;
use anydepth_viz::{paths, Recording};

/// The flags every training run shares.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// The checkpoint to write: `.pth` (official layout) or `.safetensors` (Hugging
    /// Face, with config.json beside it).
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,

    /// Optimiser steps in all.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub steps: usize,

    /// Images per step.
    #[arg(long, default_value_t = 4, value_name = "B")]
    pub batch: usize,

    /// The encoder's learning rate; the decoder's is 10 times it.
    #[arg(long, default_value_t = 5e-6, value_name = "LR")]
    pub lr: f64,

    /// Seeds the sample order, crops, flips and perturbations.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub seed: u64,

    /// Validate every N steps (and before the first and after the last).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub val_every: usize,

    /// Write a resumable checkpoint every N steps (and after the last).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub save_every: usize,

    /// Stop after step N, as Ctrl-C would: a resumable checkpoint is written and
    /// --resume continues the same run (its schedule still ends at --steps).
    #[arg(long, value_name = "N")]
    pub stop_at: Option<usize>,

    /// Continue from a checkpoint this command wrote (OUT.state must be beside it).
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,

    /// Keep the resized training samples in memory up to this many GiB; a larger set is
    /// read from disk again for every batch, the next batch on a background thread while
    /// a step runs. The results are the same either way.
    #[arg(long, default_value_t = 4.0, value_name = "GIB")]
    pub sample_memory: f64,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

impl RunFlags {
    /// The options these flags set, on top of the official recipe's defaults.
    fn options(&self, input_size: u32, device: DeviceChoice) -> Result<TrainOptions> {
        if self.stop_at == Some(0) {
            bail!("--stop-at must be at least 1");
        }
        if !(self.sample_memory.is_finite() && self.sample_memory >= 0.0) {
            bail!(
                "--sample-memory must be a size in GiB, 0 or more, got {}",
                self.sample_memory
            );
        }
        if let Some(resume) = &self.resume {
            let state = TrainOutputs::for_checkpoint(resume).state;
            if !state.is_file() {
                bail!(
                    "cannot resume from {}: its training state {} is missing",
                    resume.display(),
                    state.display()
                );
            }
        }
        Ok(TrainOptions {
            steps: self.steps,
            batch: self.batch,
            input_size,
            lr: self.lr,
            seed: self.seed,
            device,
            val_every: self.val_every,
            val_input_size: input_size,
            save_every: self.save_every,
            sample_memory: (self.sample_memory * f64::from(1u32 << 30)) as usize,
            ..TrainOptions::default()
        })
    }
}

/// Arguments of `anydepth train`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth train --weights depth_anything_v2_vits.pth --dataset nyu path/to/nyu \\
      --metric indoor --out nyu_vits.pth --steps 20000 --batch 4
  anydepth train --model vits --dataset list train.txt --max-depth 10 \\
      --val path/to/nyu --val-kind nyu --val-every 500 --out runs/indoor.safetensors
  anydepth train --weights runs/indoor.safetensors --resume runs/indoor.safetensors \\
      --dataset list train.txt --max-depth 10 --out runs/indoor.safetensors

A metric head (--metric, --max-depth, or a metric checkpoint) trains with SiLog on metres;
a relative one with the affine-invariant loss plus gradient matching on disparity.
Besides OUT it writes OUT.state (optimiser, step, seed: --resume reads it), the weights of
the best validation as <stem>.best.<ext>, and <stem>.log.csv / <stem>.log.json.")]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelRequest,

    /// The training data: its layout (nyu, kitti, list) and its folder or list file.
    #[arg(long, num_args = 2, value_names = ["KIND", "PATH"], required = true)]
    pub dataset: Vec<String>,

    /// Train a metric head with this range, metres (and ground truth beyond it is
    /// ignored); with --metric, overrides its 20 or 80 m.
    #[arg(long, value_name = "M")]
    pub max_depth: Option<f64>,

    /// A validation set scored with the evaluation protocol; the best checkpoint is kept.
    #[arg(long, value_name = "PATH")]
    pub val: Option<PathBuf>,

    /// The validation set's layout [default: the training set's].
    #[arg(long, value_enum, value_name = "KIND")]
    pub val_kind: Option<DatasetKind>,

    #[command(flatten)]
    pub run: RunFlags,
}

/// Arguments of `anydepth distill`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth distill --teacher depth_anything_v2_vitl.pth --student depth_anything_v2_vits.pth \\
      --images photos/ --out student.pth --steps 20000 --batch 8 --lr 5e-6
  anydepth distill --teacher teacher.pth --student-model vits --images 'raw/**/*.jpg' \\
      --labels /data/labels --shard 3/16 --out unused.pth     # label one shard only

The teacher labels every photo once; labels are cached as fp16 under --labels (per teacher
and input size), so an interrupted or later run reuses them. With --shard i/n a run labels
every n-th photo from the i-th and stops: run the shards on many machines with one shared
--labels folder, then train once. Training runs on one GPU.")]
pub struct DistillArgs {
    /// The teacher's checkpoint (a relative model).
    #[arg(long, value_name = "T")]
    pub teacher: PathBuf,

    /// The student's starting checkpoint (a relative model).
    #[arg(
        long,
        value_name = "S",
        conflicts_with = "student_model",
        required_unless_present = "student_model"
    )]
    pub student: Option<PathBuf>,

    /// A freshly initialised student of this size (random weights; a checkpoint whose
    /// encoder is pre-trained learns far faster).
    #[arg(long, value_enum, value_name = "SIZE")]
    pub student_model: Option<Encoder>,

    /// The unlabelled photos: files, folders or globs.
    #[arg(long, num_args = 1.., required = true, value_name = "DIR")]
    pub images: Vec<PathBuf>,

    /// Held-out photos (files, folders or globs), labelled by the teacher too: the
    /// student's affine-invariant error to them ranks checkpoints.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub val: Vec<PathBuf>,

    /// Where labels are cached [default: $XDG_CACHE_HOME/anydepth/labels or
    /// ~/.cache/anydepth/labels].
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,

    /// Label only shard I of N (every N-th photo from the I-th, from 0) and stop.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,

    /// Labelled data mixed in (one batch per step): layout (nyu, kitti, list) and path.
    #[arg(long, num_args = 2, value_names = ["KIND", "PATH"])]
    pub labelled: Vec<String>,

    /// Add the feature-alignment loss with this weight: the student's encoder features
    /// against a frozen copy of its initial encoder (cosine similarity).
    #[arg(long, value_name = "W", num_args = 0..=1, default_missing_value = "1.0")]
    pub feature_align: Option<f64>,

    /// Feature alignment leaves tokens whose similarity is above this alone.
    #[arg(long, default_value_t = 0.85, value_name = "ALPHA")]
    pub feature_margin: f64,

    /// The weight of MiDaS's gradient-matching term in the student's loss (0: the trimmed
    /// affine-invariant loss alone).
    #[arg(long, default_value_t = 0.5, value_name = "W")]
    pub gradient_weight: f64,

    /// Colour jitter strength of the student's input (0: off).
    #[arg(long, default_value_t = 0.4, value_name = "S")]
    pub color_jitter: f64,

    /// Probability of a Gaussian blur of the student's input.
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    pub blur: f64,

    /// Probability that a batch is mixed by CutMix.
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    pub cutmix: f64,

    /// The side of the student's square training crop (a multiple of 14).
    #[arg(long, default_value_t = 518, value_name = "S")]
    pub input_size: u32,

    /// The input size the teacher labels at.
    #[arg(long, default_value_t = 518, value_name = "S")]
    pub teacher_input_size: u32,

    /// Where training and labelling run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,

    #[command(flatten)]
    pub run: RunFlags,
}

fn parse_shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let parsed = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => Err(format!("{text:?}: expected I/N with 0 <= I < N")),
    }
}

/// The dataset named by `KIND PATH`.
fn dataset_arg(values: &[String], flag: &str) -> Result<(DatasetKind, PathBuf)> {
    let [kind, path] = values else {
        bail!("{flag} takes two values: KIND PATH");
    };
    let kind = match DatasetKind::from_str(kind, true) {
        Ok(DatasetKind::Da2k) | Err(_) => {
            bail!("{flag} {kind}: the layout must be nyu, kitti or list")
        }
        Ok(kind) => kind,
    };
    Ok((kind, PathBuf::from(path)))
}

fn depth_samples(kind: DatasetKind, path: &Path) -> Result<Vec<DepthSample>> {
    match datasets::load(kind, path)? {
        Dataset::Depth(samples) if !samples.is_empty() => Ok(samples),
        Dataset::Depth(_) => bail!("the dataset {} holds no sample", path.display()),
        Dataset::Pairs(_) => bail!("{} holds point pairs, not depth", path.display()),
    }
}

fn train_samples(samples: &[DepthSample]) -> Vec<TrainSample> {
    samples
        .iter()
        .map(|s| TrainSample {
            name: s.name.clone(),
            rgb: s.rgb.clone(),
            depth: s.depth.clone(),
            depth_scale: s.depth_scale,
        })
        .collect()
}

/// Runs `anydepth train`.
pub fn run(args: TrainArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    if args.model.precision != Precision::Fp32 {
        bail!("training runs in fp32: leave --precision at its default");
    }
    if args.model.cuda_graphs {
        bail!("training runs without CUDA graphs: drop --cuda-graphs");
    }
    if args.model.tf32 {
        bail!(
            "training keeps TensorFloat-32 off, so that every step runs the same float32 \
             arithmetic on any GPU: drop --tf32"
        );
    }
    let spec = args.model.spec(args.max_depth)?;
    let mut options = args.run.options(args.model.input_size, args.model.device)?;
    options.max_depth_m = args.max_depth;
    let (kind, path) = dataset_arg(&args.dataset, "--dataset")?;
    let samples = depth_samples(kind, &path)?;
    let validation = match &args.val {
        Some(val) => {
            let val_kind = args.val_kind.unwrap_or(kind);
            Some((val_kind, depth_samples(val_kind, val)?))
        }
        None => None,
    };
    let init = {
        let mut download = DownloadBar::new(args.run.quiet);
        args.model
            .resolve_weights(args.max_depth.is_some(), &mut |file, done, total| {
                download.update(file, done, total)
            })?
    };
    let plan = TrainPlan {
        init,
        spec,
        samples: train_samples(&samples),
        options,
        out: args.run.out.clone(),
        resume: args.run.resume.clone(),
    };
    let mut observer = Observer::new(&args.run, validation)?;
    let report = loader.train(&plan, &mut observer);
    observer.finish()?;
    finish(&args.run, &observer, report.context("training failed")?)
}

/// Checks the flags of `anydepth distill` that need no file.
fn check_distill_args(args: &DistillArgs) -> Result<()> {
    if args.teacher_input_size < 14 {
        bail!("--teacher-input-size must be at least 14");
    }
    if args
        .feature_align
        .is_some_and(|w| !(w.is_finite() && w >= 0.0))
    {
        bail!("--feature-align must be a weight >= 0");
    }
    if !(args.gradient_weight.is_finite() && args.gradient_weight >= 0.0) {
        bail!("--gradient-weight must be a weight >= 0");
    }
    for (flag, p) in [("--blur", args.blur), ("--cutmix", args.cutmix)] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{flag} is a probability, between 0 and 1: got {p}");
        }
    }
    if !(0.0..1.0).contains(&args.color_jitter) {
        bail!(
            "--color-jitter must be in [0, 1): got {}",
            args.color_jitter
        );
    }
    Ok(())
}

/// Runs `anydepth distill`.
pub fn run_distill(args: DistillArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    check_distill_args(&args)?;
    let options = args.run.options(args.input_size, args.device)?;
    if !args.teacher.is_file() {
        bail!("teacher checkpoint not found: {}", args.teacher.display());
    }
    let student = match (&args.student, args.student_model) {
        (Some(path), _) if !path.is_file() => {
            bail!("student checkpoint not found: {}", path.display())
        }
        (Some(path), _) => Student::Checkpoint(path.clone()),
        (None, Some(encoder)) => Student::Fresh(encoder),
        (None, None) => bail!("give --student CKPT or --student-model SIZE"),
    };
    let images = expand_images(&args.images)?.files;
    if images.is_empty() {
        bail!("no photos found in {:?}", args.images);
    }
    let validation = if args.val.is_empty() {
        None
    } else {
        Some(expand_images(&args.val)?.files)
    };
    let labelled = if args.labelled.is_empty() {
        Vec::new()
    } else {
        let (kind, path) = dataset_arg(&args.labelled, "--labelled")?;
        train_samples(&depth_samples(kind, &path)?)
    };
    let label_cache = match &args.labels {
        Some(dir) => dir.clone(),
        None => anydepth_model::train::default_label_cache()
            .context("no cache folder for labels: set --labels DIR")?,
    };
    let plan = DistillPlan {
        teacher: args.teacher.clone(),
        teacher_spec: ModelSpec::default(),
        teacher_input_size: args.teacher_input_size,
        student,
        student_spec: ModelSpec::default(),
        images,
        validation,
        label_cache,
        shard: args.shard,
        labelled,
        perturbations: Perturbations {
            color_jitter: args.color_jitter,
            blur_probability: args.blur,
            cutmix_probability: args.cutmix,
        },
        feature_alignment: args.feature_align.unwrap_or(0.0),
        feature_margin: args.feature_margin,
        gradient_weight: args.gradient_weight,
        options,
        out: args.run.out.clone(),
        resume: args.run.resume.clone(),
    };
    let mut observer = Observer::new(&args.run, None)?;
    let report = loader.distill(&plan, &mut observer);
    observer.finish()?;
    let report = report.context("distillation failed")?;
    let labels = &report.labels;
    if !args.run.quiet {
        eprintln!(
            "labels: {} made, {} from the cache, {} photo(s) left out",
            labels.labelled,
            labels.cached,
            labels.skipped.len()
        );
    }
    match report.training {
        Some(training) => finish(&args.run, &observer, training),
        None => {
            for (path, why) in &labels.skipped {
                eprintln!("  {}: {why}", path.display());
            }
            println!(
                "labelled shard {}: {} photo(s) in {}",
                args.shard
                    .map_or_else(String::new, |(i, n)| format!("{i}/{n}")),
                labels.labelled + labels.cached,
                plan.label_cache.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The summary of a finished or stopped run.
fn finish(flags: &RunFlags, observer: &Observer, report: TrainReport) -> Result<ExitCode> {
    if !report.skipped.is_empty() {
        eprintln!("{} sample(s) left out:", report.skipped.len());
        for (path, why) in &report.skipped {
            eprintln!("  {}: {why}", path.display());
        }
    }
    if report.interrupted {
        if flags.stop_at.is_some() && !observer.interrupted() {
            println!(
                "stopped after step {} of {} as asked: continue with --resume {}",
                report.step,
                report.steps,
                report.outputs.last.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "stopped at step {} of {}: continue with --resume {}",
            report.step,
            report.steps,
            report.outputs.last.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!(
        "trained {} steps ({:.1} images/s), last loss {}",
        report.step,
        report.images_per_second,
        report
            .last_loss
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.5}"))
    );
    if let Some(best) = &report.best {
        println!(
            "best validation: {} {:.4} at step {} -> {}",
            best.key,
            best.value,
            best.step,
            report.outputs.best.display()
        );
    }
    println!("weights: {}", report.outputs.last.display());
    if let Head::Metric { max_depth_m } = report.head {
        if report.outputs.last.extension().is_some_and(|e| e == "pth") {
            println!(
                "a .pth does not record its metric head: run it with --max-depth {max_depth_m}, \
                 as in anydepth depth photo.jpg --weights {} --max-depth {max_depth_m}",
                report.outputs.last.display()
            );
        }
    }
    println!(
        "log: {} and {}",
        report.outputs.log_csv.display(),
        report.outputs.log_json.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress bars, validation with the evaluation protocol, Rerun time series and sample
/// predictions, --stop-at and Ctrl-C.
struct Observer {
    bar: Option<ProgressBar>,
    recording: Option<Recording>,
    /// Set when logging to Rerun failed: said once, then training goes on without it.
    rerun_failed: bool,
    quiet: bool,
    validation: Option<(DatasetKind, Vec<DepthSample>)>,
    ctrl_c: Arc<AtomicBool>,
    stop_at: Option<usize>,
    reached_stop_at: bool,
}

impl Observer {
    fn new(flags: &RunFlags, validation: Option<(DatasetKind, Vec<DepthSample>)>) -> Result<Self> {
        let recording = flags.rerun.start()?;
        let ctrl_c = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ctrl_c);
        // A second Ctrl-C while the checkpoint is written ends the process.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        Ok(Self {
            bar: None,
            recording,
            rerun_failed: false,
            quiet: flags.quiet,
            validation,
            ctrl_c,
            stop_at: flags.stop_at,
            reached_stop_at: false,
        })
    }

    /// Logs to Rerun, if asked; a failure is said once and logging stops.
    fn rerun(&mut self, log: impl FnOnce(&Recording) -> anydepth_viz::Result<()>) {
        let Some(recording) = &self.recording else {
            return;
        };
        if let Err(e) = log(recording) {
            if !self.rerun_failed {
                self.say(format!("Rerun logging stopped: {e}"));
            }
            self.rerun_failed = true;
            self.recording = None;
        }
    }

    fn interrupted(&self) -> bool {
        self.ctrl_c.load(Ordering::SeqCst)
    }

    fn new_bar(&mut self, len: usize, template: &str) -> &ProgressBar {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.insert(bar)
    }

    fn clear_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Clears the bar and flushes the recording.
    fn finish(&mut self) -> Result<()> {
        self.clear_bar();
        crate::viz::finish(self.recording.take())
    }

    fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl TrainObserver for Observer {
    fn labelling(&mut self, done: usize, total: usize) {
        if done == 0 || self.bar.is_none() {
            self.new_bar(
                total,
                "labelling {bar:40} {pos}/{len} [{elapsed_precise}, eta {eta}]",
            );
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn started(&mut self, start: &TrainStart) {
        let TrainStart {
            first_step,
            steps,
            samples,
            ..
        } = *start;
        self.clear_bar();
        self.say(format!(
            "training {} ({} loss) on {samples} samples on {}, steps {first_step}..={steps}",
            start.model, start.loss, start.device
        ));
        let bar = self.new_bar(
            steps,
            "{bar:40} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]",
        );
        bar.set_position(first_step.saturating_sub(1) as u64);
        bar.reset_eta();
    }

    fn skipped(&mut self, path: &Path, why: &str) {
        tracing::warn!("left out {}: {why}", path.display());
    }

    fn step(&mut self, record: &StepRecord) {
        self.reached_stop_at |= self.stop_at.is_some_and(|n| record.step >= n);
        self.rerun(|r| {
            r.set_step(record.step as u64);
            r.log_scalar(paths::TRAIN_LOSS, record.loss)?;
            r.log_scalar(paths::TRAIN_LR, record.lr)?;
            r.log_scalar(paths::TRAIN_SPEED, record.images_per_second)
        });
        if let Some(bar) = &self.bar {
            bar.set_position(record.step as u64);
            bar.set_message(format!(
                "loss {:.4}, {:.1} img/s",
                record.loss, record.images_per_second
            ));
        }
    }

    fn validate(
        &mut self,
        step: usize,
        engine: Box<dyn DepthEngine>,
    ) -> anydepth_model::Result<Option<Validation>> {
        let Some((kind, samples)) = &self.validation else {
            return Ok(None);
        };
        if let (Some(recording), Some(first)) = (&self.recording, samples.first()) {
            // A sample prediction on the step timeline: the first validation photo.
            let predicted = anydepth_core::load_image(&first.rgb)
                .map_err(|e| e.to_string())
                .and_then(|photo| match engine.predict(&photo) {
                    Ok(prediction) => Ok((photo, prediction)),
                    Err(e) => Err(e.to_string()),
                });
            let logged = predicted.and_then(|(photo, prediction)| {
                recording.set_step(step as u64);
                recording
                    .log_image(&photo)
                    .and_then(|()| recording.log_prediction(&prediction, Colormap::default()))
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = logged {
                self.say(format!("cannot log the sample prediction: {e}"));
            }
        }
        anydepth_eval::job::validate_training(step, engine, samples, *kind)
            .map(Some)
            .map_err(|e| anydepth_model::Error::Invalid(format!("validation failed: {e:#}")))
    }

    fn validated(&mut self, validation: &Validation) {
        let metrics = validation
            .metrics
            .iter()
            .map(|(name, value)| format!("{name} {value:.4}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.say(format!("step {}: {metrics}", validation.step));
        self.rerun(|r| {
            r.set_step(validation.step as u64);
            for (name, value) in &validation.metrics {
                r.log_scalar(&format!("{}/{name}", paths::TRAIN_VALIDATION), *value)?;
            }
            Ok(())
        });
    }

    fn stop_requested(&self) -> bool {
        self.interrupted() || self.reached_stop_at
    }
}
