//! `anydepth depth`: photos in, depth maps out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anydepth_core::{Prediction, RgbImage};
use anydepth_model::da3::checkpoint_model;
use anydepth_model::EngineLoader;
use anydepth_pipeline::depth::{Da3Photos, DepthJob, DepthObserver, DepthReport};
use anydepth_pipeline::model::{Da3ModelRequest, ModelRequest};
use anydepth_pipeline::output::Format;
use anydepth_pipeline::scene::CameraRequest;
use anydepth_pipeline::BoxError;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;

use crate::colormap::ColormapArg;
use crate::progress::{progress_bar, DownloadBar};
use crate::viz::{self, RerunArgs};

/// Arguments of `anydepth depth`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth depth photo.jpg --out depth/
  anydepth depth photos/ 'more/*.png' --out depth/ --formats npy,color,side-by-side
  anydepth depth room.jpg --metric indoor --formats npy,png16 --out depth/
  anydepth depth photo.jpg --weights depth_anything_v2_vitb.pth --device cuda --precision fp16 \\
      --out depth/
  # Depth Anything 3 (a released folder): metres from DA3METRIC-LARGE, relative depth
  # (not disparity) from the others
  anydepth depth room.jpg --weights DA3METRIC-LARGE/ --fov 70 --out depth/
Clips (Video Depth Anything unless --per-frame):
  anydepth depth clip.mp4 --out depth/ --formats npy,mp4
  anydepth depth --sequence frames/ --out depth/ --formats npy,side-by-side-mp4
  anydepth depth clip.mov --per-frame --stabilize --out depth/
  anydepth depth --live /dev/video0 --out live/ --formats mp4 --spawn")]
pub struct DepthArgs {
    /// Image files, folders (their images) or glob patterns; video files; with
    /// --sequence, the frames of one clip; with --live, the live source.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output folder (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub model: ModelRequest,

    /// Largest depth of a metric model, in metres [default: 20 indoor, 80 outdoor].
    #[arg(long, value_name = "M")]
    pub max_depth: Option<f64>,

    /// Images per forward pass (images of the same network input size run together).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: usize,

    /// Outputs to write, comma-separated.
    // Keep in step with `output::DEFAULT_FORMATS` (a test checks).
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

    /// Depth Anything 3 weights: the long side of the network input (--input-size is the
    /// shorter side for V1 and V2).
    #[arg(long, default_value_t = anydepth_model::da3::DEFAULT_PROCESS_RES, value_name = "N")]
    pub process_res: u32,

    /// The metric Depth Anything 3 model's camera, whose focal length gives metres [default:
    /// EXIF, else the 60-degree guess].
    #[command(flatten)]
    pub camera: CameraRequest,

    #[command(flatten)]
    pub clip: crate::video::ClipArgs,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// The progress bar and the Rerun recording, as the job's observer.
struct Observer<'a> {
    bar: &'a ProgressBar,
    recording: Option<&'a anydepth_viz::Recording>,
    colormap: ColormapArg,
}

impl DepthObserver for Observer<'_> {
    fn item(&self, name: &str) {
        self.bar.set_message(name.to_owned());
    }

    fn advance(&self) {
        self.bar.inc(1);
    }

    fn logs(&self) -> bool {
        self.recording.is_some()
    }

    fn log(
        &self,
        frame: u64,
        file: &Path,
        image: &RgbImage,
        prediction: &Prediction,
    ) -> std::result::Result<(), BoxError> {
        let Some(recording) = self.recording else {
            return Ok(());
        };
        log_photo(recording, frame, file, image, prediction, self.colormap).map_err(Into::into)
    }
}

/// Runs `anydepth depth`; returns exit code 1 when some inputs failed.
pub fn run(args: DepthArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let da3 = args.model.weights.as_deref().and_then(checkpoint_model);
    if crate::video::is_clip_job(&args) {
        if da3.is_some() {
            anyhow::bail!(
                "Depth Anything 3 runs on photos; for clips use Video Depth Anything (the \
                 default) or a V2 model with --per-frame"
            );
        }
        return crate::video::run(args, loader);
    }
    let job = DepthJob {
        inputs: args.inputs.clone(),
        out_dir: args.out.clone(),
        model: args.model.clone(),
        max_depth_m: args.max_depth,
        batch: args.batch,
        formats: args.formats.clone(),
        colormap: args.colormap.0,
        force: args.force,
    };
    let plan = job.plan()?;
    for file in &plan.ignored {
        tracing::info!("not an image by its extension, ignored: {}", file.display());
    }
    let out_dir = &args.out;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the output folder {}", out_dir.display()))?;

    // Inputs whose outputs all exist are kept as they are.
    let (todo, kept) = job.pending(&plan);
    if !args.quiet {
        for k in &kept {
            eprintln!(
                "kept existing outputs of {} (pass --force to replace): {}",
                k.file.display(),
                k.existing.display()
            );
        }
    }
    if todo.is_empty() {
        eprintln!(
            "nothing to do: all {} inputs have their outputs",
            kept.len()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let recording = args.rerun.start()?;
    let mut download = DownloadBar::new(args.quiet);
    let mut progress = |file: &str, done, total| download.update(file, done, total);
    let bar = progress_bar(todo.len(), args.quiet);
    let observer = Observer {
        bar: &bar,
        recording: recording.as_ref(),
        colormap: args.colormap,
    };
    // The job's time, after the model loaded.
    let (report, took) = match da3 {
        Some(model) => {
            anydepth_model::da3::check_process_res(args.process_res)?;
            let request = Da3ModelRequest::from_weights(&args.model, model);
            let engine = request.load(loader, &mut progress)?;
            drop(download);
            let notes = |message: &str| bar.println(message);
            let photos = Da3Photos {
                engine: engine.as_ref(),
                process_res: args.process_res,
                camera: args.camera.clone(),
                notes: &notes,
            };
            timed(|| job.run(&plan, &photos, &todo, &observer))?
        }
        None => {
            let (engine, _weights) =
                args.model
                    .load(loader, args.max_depth, args.batch, &mut progress)?;
            drop(download);
            timed(|| job.run(&plan, &engine.as_ref(), &todo, &observer))?
        }
    };
    bar.finish_and_clear();

    let code = summarise(&report, took, out_dir, kept.len(), args.quiet);
    viz::finish(recording)?;
    Ok(code)
}

/// What `run` returned, with the time it took.
fn timed<T, E>(
    run: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<(T, Duration), E> {
    let started = Instant::now();
    run().map(|done| (done, started.elapsed()))
}

/// Prints what was written in `took` (with the rate), kept and failed; exit code 1 when
/// something failed.
fn summarise(
    report: &DepthReport,
    took: Duration,
    out_dir: &Path,
    kept: usize,
    quiet: bool,
) -> ExitCode {
    if !quiet {
        let seconds = took.as_secs_f64();
        eprintln!(
            "{} written to {} in {seconds:.2} s ({:.2} photos/s), {kept} kept, {} failed",
            report.written,
            out_dir.display(),
            report.written as f64 / seconds.max(1e-9),
            report.failures.len()
        );
    }
    if report.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("failed:");
    for (file, reason) in &report.failures {
        eprintln!("  {}: {reason}", file.display());
    }
    ExitCode::from(1)
}

/// Logs one photo at `frame`: the photo, its depth, and a camera from EXIF (or a guess)
/// at the origin, so the viewer back-projects metric depth.
fn log_photo(
    recording: &anydepth_viz::Recording,
    frame: u64,
    file: &Path,
    image: &RgbImage,
    prediction: &Prediction,
    colormap: ColormapArg,
) -> Result<()> {
    recording.set_frame(frame);
    let camera = viz::photo_camera(file, image.width, image.height)?;
    recording.log_camera(&camera, &nalgebra::Isometry3::identity())?;
    recording.log_image(image)?;
    recording.log_prediction(prediction, colormap.0)?;
    Ok(())
}
