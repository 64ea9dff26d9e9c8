//! `anydepth cloud` and `anydepth mesh`: one view to a point cloud or a mesh.

use std::process::ExitCode;

use anydepth_model::EngineLoader;
use anydepth_pipeline::output::FileOutput;
use anydepth_pipeline::scene::{Scene, SceneRequest};
use anydepth_pipeline::shape::{build_cloud, build_mesh, CloudSettings, MeshSettings, ViewCamera};
use anyhow::{Context, Result};
use clap::Args;
use nalgebra::Isometry3;

use crate::progress::DownloadBar;
use crate::viz::{self, RerunArgs};

/// Arguments of `anydepth cloud`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth cloud room.jpg --metric indoor -o room.ply
  anydepth cloud room.jpg --metric indoor --cameras -o room.glb
  anydepth cloud --depth depth/00000.png --color color/00000.jpg --depth-scale 1000 \\
      --intrinsics 525,525,319.5,239.5 --voxel-size 0.01 -o frame.ply
  anydepth cloud photo.jpg --align-depth lidar.png --align-depth-scale 256 -o scene.ply")]
pub struct CloudArgs {
    #[command(flatten)]
    pub scene: SceneRequest,

    #[command(flatten)]
    pub output: FileOutput,

    #[command(flatten)]
    pub settings: CloudSettings,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// Arguments of `anydepth mesh`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth mesh room.jpg --metric indoor -o room.ply
  anydepth mesh room.jpg --metric indoor -o room.glb      # textured with the photo
  anydepth mesh --depth depth.npy --color photo.jpg --fov 60 --stride 2 -o scene.ply")]
pub struct MeshArgs {
    #[command(flatten)]
    pub scene: SceneRequest,

    #[command(flatten)]
    pub output: FileOutput,

    #[command(flatten)]
    pub settings: MeshSettings,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// Loads the view, telling the user of a guessed camera and of a download unless quiet.
fn load_scene(request: &SceneRequest, loader: &dyn EngineLoader, quiet: bool) -> Result<Scene> {
    let mut download = DownloadBar::new(quiet);
    let notes = |message: &str| {
        if !quiet {
            eprintln!("{message}");
        }
    };
    Ok(Scene::load(
        request,
        loader,
        &notes,
        &mut |file, done, total| download.update(file, done, total),
    )?)
}

/// Runs `anydepth cloud`.
pub fn run_cloud(args: CloudArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    args.output.check_cloud("output")?;
    let recording = args.rerun.start()?;
    let scene = load_scene(&args.scene, loader, args.quiet)?;
    let cloud = build_cloud(&scene, args.scene.max_depth, &args.settings)?;
    // The view and the cloud go to Rerun while the file is written.
    viz::log_beside(
        recording.as_ref(),
        |r| {
            let radius = match args.settings.voxel_size {
                Some(v) => anydepth_viz::PointRadius::Metres(v / 2.0),
                None => anydepth_viz::PointRadius::for_depth(scene.depth.data(), scene.camera.fx),
            };
            log_view(r, &scene)?;
            Ok(r.log_cloud(anydepth_viz::paths::CLOUD, &cloud, radius)?)
        },
        || args.output.write_cloud(&cloud, &view_camera(&scene)),
    )?
    .with_context(|| format!("cannot write {}", args.output.path.display()))?;
    if !args.quiet {
        eprintln!(
            "{} points written to {}",
            cloud.len(),
            args.output.path.display()
        );
    }
    viz::finish(recording)?;
    Ok(ExitCode::SUCCESS)
}

/// The one view's camera, at the origin of the cloud or mesh made from it.
fn view_camera(scene: &Scene) -> [ViewCamera; 1] {
    [ViewCamera {
        intrinsics: scene.camera,
        world_from_camera: Isometry3::identity(),
    }]
}

/// Logs the view a cloud or mesh came from: camera at the origin (world = camera), photo
/// or colour image, metric depth.
fn log_view(recording: &anydepth_viz::Recording, scene: &Scene) -> Result<()> {
    recording.set_frame(0);
    recording.log_camera(&scene.camera, &nalgebra::Isometry3::identity())?;
    if let Some(color) = &scene.color {
        recording.log_rgb8(scene.depth.width(), scene.depth.height(), color.as_slice())?;
    }
    recording.log_depth(&scene.depth)?;
    Ok(())
}

/// Runs `anydepth mesh`.
pub fn run_mesh(args: MeshArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    args.output.check("output")?;
    let recording = args.rerun.start()?;
    let scene = load_scene(&args.scene, loader, args.quiet)?;
    let format = args.output.format()?;
    let mesh = build_mesh(&scene, args.scene.max_depth, &args.settings, format)?;
    // The view and the mesh go to Rerun while the file is written.
    viz::log_beside(
        recording.as_ref(),
        |r| {
            log_view(r, &scene)?;
            Ok(r.log_mesh(anydepth_viz::paths::MESH, &mesh.mesh)?)
        },
        || args.output.write_mesh(&mesh, &view_camera(&scene)),
    )?
    .with_context(|| format!("cannot write {}", args.output.path.display()))?;
    if !args.quiet {
        eprintln!(
            "{} vertices, {} triangles written to {}",
            mesh.mesh.vertices.len(),
            mesh.mesh.faces.len(),
            args.output.path.display()
        );
    }
    viz::finish(recording)?;
    Ok(ExitCode::SUCCESS)
}
