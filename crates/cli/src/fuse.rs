//! `anydepth fuse`: many views (RGB-D frames, or photos through the depth engine) into one
//! mesh or point cloud.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::OnceLock;

use anydepth_core::camera::Intrinsics;
use anydepth_core::Prediction;
use anydepth_model::EngineLoader;
use anydepth_pipeline::fuse::{FuseObserver, FuseRequest, FusedModel};
use anydepth_pipeline::BoxError;
use anydepth_viz::Recording;
use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use nalgebra::Isometry3;

use crate::progress::{progress_bar, DownloadBar};
use crate::viz::{self, RerunArgs};

/// Arguments of `anydepth fuse`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # RGB-D frames with poses (Open3D .log, TUM, COLMAP, NeRF transforms.json, or
  # `tx ty tz qx qy qz qw` per line):
  anydepth fuse --color 'color/*.jpg' --depth 'depth/*.png' --depth-scale 1000 \\
      --intrinsics 525,525,319.5,239.5 --poses odometry.log -o room.ply
  # No poses: each frame is tracked against the model fused so far (ICP).
  anydepth fuse --depth 'depth/*.png' --intrinsics 525,525,319.5,239.5 \\
      --save-poses poses.txt -o room.ply
  # Photos and a COLMAP model: relative depth fitted to the model's sparse points.
  anydepth fuse images/ --poses sparse/0 -o scene.ply
  # Photos and a metric model, each view's scale fitted to the model fused so far.
  anydepth fuse images/ --metric indoor --poses transforms.json -o room.ply")]
pub struct FuseArgs {
    #[command(flatten)]
    pub request: FuseRequest,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// The progress bars, messages and the Rerun recording, as the job's observer.
struct Observer<'a> {
    args: &'a FuseArgs,
    recording: OnceLock<Option<Recording>>,
    bar: OnceLock<ProgressBar>,
    download: RefCell<DownloadBar>,
}

impl Observer<'_> {
    fn recording(&self) -> Option<&Recording> {
        self.recording.get().and_then(Option::as_ref)
    }
}

impl FuseObserver for Observer<'_> {
    fn start(&self) -> std::result::Result<(), BoxError> {
        let recording = self.args.rerun.start()?;
        let _ = self.recording.set(recording);
        Ok(())
    }

    fn frames(&self, count: usize) {
        let _ = self.bar.set(progress_bar(count, self.args.quiet));
    }

    fn item(&self, name: &str) {
        if let Some(bar) = self.bar.get() {
            bar.set_message(name.to_owned());
        }
    }

    fn advance(&self) {
        if let Some(bar) = self.bar.get() {
            bar.inc(1);
        }
    }

    fn note(&self, message: &str) {
        if !self.args.quiet {
            eprintln!("{message}");
        }
    }

    fn download(&self, file: &str, done: u64, total: Option<u64>) {
        self.download.borrow_mut().update(file, done, total);
    }

    fn view(
        &self,
        index: usize,
        time_s: Option<f64>,
        colors: Option<&[[u8; 3]]>,
        prediction: &Prediction,
    ) -> std::result::Result<(), BoxError> {
        let Some(recording) = self.recording() else {
            return Ok(());
        };
        recording.set_frame(index as u64);
        if let Some(t) = time_s {
            recording.set_time_secs(t);
        }
        if let Some(colors) = colors {
            recording.log_rgb8(prediction.width(), prediction.height(), colors)?;
        }
        recording.log_prediction(prediction, Default::default())?;
        Ok(())
    }

    fn camera(
        &self,
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
    ) -> std::result::Result<(), BoxError> {
        if let Some(recording) = self.recording() {
            recording.log_camera(camera, world_from_camera)?;
        }
        Ok(())
    }
}

/// Runs `anydepth fuse`.
pub fn run(args: FuseArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let observer = Observer {
        args: &args,
        recording: OnceLock::new(),
        bar: OnceLock::new(),
        download: RefCell::new(DownloadBar::new(args.quiet)),
    };
    let outcome = args.request.run(loader, &observer);
    if let Some(bar) = observer.bar.get() {
        bar.finish_and_clear();
    }
    let outcome = outcome?;
    let request = &args.request;
    let recording = observer.recording.into_inner().flatten();
    let what = match &outcome.model {
        FusedModel::Cloud(cloud) => {
            if let Some(recording) = &recording {
                let radius = anydepth_viz::PointRadius::Metres(outcome.voxel_size / 2.0);
                recording.log_model_cloud(cloud, radius)?;
            }
            format!("{} points", cloud.len())
        }
        FusedModel::Mesh(mesh) => {
            if let Some(recording) = &recording {
                recording.log_model_mesh(mesh)?;
            }
            format!(
                "{} vertices, {} triangles",
                mesh.vertices.len(),
                mesh.faces.len()
            )
        }
    };
    if !args.quiet {
        for line in outcome.summary_lines() {
            eprintln!("{line}");
        }
        eprintln!(
            "{} frames fused ({} blocks, {:.1} MB): {what} written to {}",
            outcome.reports.len(),
            outcome.block_count,
            outcome.memory_bytes as f64 / 1e6,
            request.output.path.display()
        );
    }
    viz::finish(recording)?;
    Ok(ExitCode::SUCCESS)
}
