//! `anydepth depth` on clips: video files, `--sequence` folders and `--live` sources,
//! through [`anydepth_pipeline::video::VideoJob`].

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anydepth_core::{Prediction, RgbImage};
use anydepth_model::{ClipEngine, ClipMode, EngineLoader};
use anydepth_pipeline::video::{self, ClipKind, VideoJob, VideoObserver};
use anydepth_pipeline::BoxError;
use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::colormap::ColormapArg;
use crate::depth::DepthArgs;
use crate::progress::DownloadBar;
use crate::viz;

/// The options of `anydepth depth` that only clips take.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Clips (videos, sequences, live sources)")]
pub struct ClipArgs {
    /// The inputs (folders, globs, files) are the frames of one clip, in name order.
    #[arg(long, conflicts_with = "live")]
    pub sequence: bool,

    /// The input is a live source FFmpeg opens (/dev/video0, rtsp://..., a pipe): frames are
    /// dropped rather than queued when the network falls behind; Ctrl-C ends it cleanly.
    #[arg(long)]
    pub live: bool,

    /// Run a V1/V2 image model on each frame instead of Video Depth Anything.
    #[arg(long)]
    pub per_frame: bool,

    /// With --per-frame: make the relative depth's scale and shift consistent over the
    /// clip, following the motion between frames.
    #[arg(long, requires = "per_frame")]
    pub stabilize: bool,

    /// How Video Depth Anything goes through a clip [default: windowed; streaming with
    /// --live].
    #[arg(long, value_enum, value_name = "MODE")]
    pub clip_mode: Option<ClipMode>,

    /// Frame rate of a --sequence, for its videos and timeline.
    #[arg(long, value_name = "FPS")]
    pub fps: Option<f64>,

    /// Stop each clip after N frames.
    #[arg(long, value_name = "N")]
    pub max_frames: Option<u64>,
}

/// Whether `anydepth depth` was given clips rather than photos.
pub fn is_clip_job(args: &DepthArgs) -> bool {
    args.clip.sequence || args.clip.live || args.inputs.iter().any(|p| video::is_video_name(p))
}

/// The progress bar, Rerun logging and messages, as the job's observer.
struct Observer<'a> {
    bar: &'a ProgressBar,
    recording: Option<&'a anydepth_viz::Recording>,
    colormap: ColormapArg,
    quiet: bool,
}

impl VideoObserver for Observer<'_> {
    fn clip(&self, name: &str, frames: Option<u64>) {
        self.bar.reset();
        match frames {
            Some(n) => {
                self.bar.set_length(n);
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} frames {msg} [{elapsed_precise}, eta {eta}, {per_sec}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            None => self.bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {pos} frames {msg} [{elapsed_precise}, {per_sec}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        self.bar.set_message(name.to_owned());
    }

    fn frame(&self) {
        self.bar.inc(1);
    }

    fn note(&self, text: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    fn logs(&self) -> bool {
        self.recording.is_some()
    }

    fn log(
        &self,
        _clip: &str,
        index: u64,
        time_secs: f64,
        image: &RgbImage,
        prediction: &Prediction,
    ) -> std::result::Result<(), BoxError> {
        let Some(recording) = self.recording else {
            return Ok(());
        };
        recording.set_frame(index);
        recording.set_time_secs(time_secs);
        recording.log_image(image)?;
        recording.log_prediction(prediction, self.colormap.0)?;
        Ok(())
    }
}

/// Runs `anydepth depth` on clips; exit code 1 when a clip ended early.
pub fn run(args: DepthArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let job = VideoJob {
        inputs: args.inputs.clone(),
        kind: if args.clip.live {
            ClipKind::Live
        } else if args.clip.sequence {
            ClipKind::Sequence
        } else {
            ClipKind::Files
        },
        out_dir: args.out.clone(),
        model: args.model.clone(),
        per_frame: args.clip.per_frame,
        stabilize: args.clip.stabilize,
        mode: args.clip.clip_mode,
        max_depth_m: args.max_depth,
        formats: args.formats.clone(),
        colormap: args.colormap.0,
        fps: args.clip.fps,
        max_frames: args.clip.max_frames,
        force: args.force,
    };
    let plan = job.plan()?;
    let recording = args.rerun.start()?;
    let mut download = DownloadBar::new(args.quiet);
    let (engine, _weights) = args.model.load_for_clips(
        loader,
        args.clip.per_frame,
        args.max_depth,
        &mut |file, done, total| download.update(file, done, total),
    )?;
    drop(download);
    if !args.quiet {
        let model = match &engine {
            ClipEngine::Video(e) => format!("{} ({:?})", e.config().describe(), plan.mode),
            ClipEngine::PerFrame(e) => format!("{}, per frame", e.config().describe()),
        };
        eprintln!("{model}");
    }

    // Ctrl-C ends the clip cleanly (its outputs finished); a second one ends the process.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    let observer = Observer {
        bar: &bar,
        recording: recording.as_ref(),
        colormap: args.colormap,
        quiet: args.quiet,
    };
    let report = job.run(&plan, &engine, &observer, &stop)?;
    bar.finish_and_clear();

    let mut failed = false;
    for clip in &report.clips {
        let rate = clip.frames as f64 / clip.seconds.max(1e-9);
        if !args.quiet {
            let dropped = if clip.dropped > 0 {
                format!(", {} dropped by the live source", clip.dropped)
            } else {
                String::new()
            };
            eprintln!(
                "{}: {} frames in {:.1} s ({rate:.2} frames/s){dropped}",
                clip.name, clip.frames, clip.seconds
            );
        }
        if let Some(error) = &clip.error {
            failed = true;
            eprintln!(
                "error: {}: {error} ({} frames before it were written)",
                clip.name, clip.frames
            );
        }
    }
    viz::finish(recording)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
