//! `anydepth views`: a few photos of one scene through Depth Anything 3, to depth,
//! confidence and cameras per photo, and the scene's points.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::OnceLock;

use anydepth_core::depth::{DepthMap, Metres};
use anydepth_model::EngineLoader;
use anydepth_pipeline::views::{view_points, ViewsObserver, ViewsRequest, ViewsResult};
use anydepth_pipeline::BoxError;
use anydepth_viz::{PointRadius, Recording};
use anyhow::Result;
use clap::Args;

use crate::progress::DownloadBar;
use crate::viz::{self, RerunArgs};

/// Arguments of `anydepth views`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Cameras, depth and confidence of a few photos, and the scene as a GLB and a COLMAP model:
  anydepth views photos/*.jpg --out scene/ --formats glb,colmap
  # A checkpoint on disk (a released folder with model.safetensors and config.json):
  anydepth views photos/*.jpg --weights DA3-BASE/ --out scene/
  # Known poses and intrinsics: depth comes out in the poses' units.
  anydepth views color/*.jpg --model da3-base --poses odometry.log \\
      --intrinsics 525,525,319.5,239.5 --out scene/
  # Look at every camera, photo, depth map and the points in Rerun:
  anydepth views photos/*.jpg --out scene/ --spawn")]
pub struct ViewsArgs {
    #[command(flatten)]
    pub request: ViewsRequest,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// Messages and the Rerun recording, as the job's observer.
struct Observer<'a> {
    args: &'a ViewsArgs,
    recording: OnceLock<Option<Recording>>,
    download: RefCell<DownloadBar>,
}

impl ViewsObserver for Observer<'_> {
    fn note(&self, message: &str) {
        if !self.args.quiet {
            eprintln!("{message}");
        }
    }

    fn stage(&self, what: &str) {
        if !self.args.quiet {
            eprintln!("{what}...");
        }
    }

    fn download(&self, file: &str, done: u64, total: Option<u64>) {
        self.download.borrow_mut().update(file, done, total);
    }

    fn result(&self, result: &ViewsResult) -> std::result::Result<(), BoxError> {
        let Some(recording) = self.recording.get().and_then(Option::as_ref) else {
            return Ok(());
        };
        for (index, view) in result.views.iter().enumerate() {
            recording.set_frame(index as u64);
            recording.log_image(&view.image)?;
            if let Some(camera) = &view.camera {
                recording.log_camera(&camera.intrinsics, &camera.world_from_camera)?;
            }
            let depth =
                DepthMap::<Metres>::new(view.image.width, view.image.height, view.depth.clone())?;
            recording.log_depth(&depth)?;
            let cloud = view_points(result, index);
            if let (false, Some(camera)) = (cloud.is_empty(), &view.camera) {
                let radius = PointRadius::for_depth(&view.depth, camera.intrinsics.fx);
                recording.log_cloud(anydepth_viz::paths::CLOUD, &cloud, radius)?;
            }
        }
        Ok(())
    }
}

/// Runs `anydepth views`.
pub fn run(args: ViewsArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let observer = Observer {
        args: &args,
        recording: OnceLock::new(),
        download: RefCell::new(DownloadBar::new(args.quiet)),
    };
    let _ = observer.recording.set(args.rerun.start()?);
    let result = args.request.run(loader, &observer)?;
    if !args.quiet {
        if let Some(reference) = result.reference_view {
            eprintln!(
                "reference view: {} ({})",
                reference + 1,
                result.views[reference].path.display()
            );
        }
        if let Some(scale) = result.given_scale {
            eprintln!("depth brought to the poses' units (network scale / {scale:.4})");
        }
        eprintln!(
            "{} photos: {} files written to {}",
            result.views.len(),
            result.written.len(),
            args.request.out.display()
        );
    }
    viz::finish(observer.recording.into_inner().flatten())?;
    Ok(ExitCode::SUCCESS)
}
