//! `anydepth cloud` and `anydepth mesh`: one view to a point cloud or a mesh.

use std::process::ExitCode;

use anydepth_core::{DepthMap, Metres};
use anydepth_geometry::filter::{remove_statistical_outliers, voxel_downsample};
use anydepth_geometry::grid_mesh::{mesh_from_depth, GridMeshOptions};
use anydepth_geometry::normals::estimate_normals;
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use anydepth_model::EngineLoader;
use anydepth_pipeline::output::FileOutput;
use anydepth_pipeline::scene::{Scene, SceneRequest};
use anyhow::{bail, Context, Result};
use clap::Args;
use nalgebra::Point3;

use crate::progress::DownloadBar;
use crate::viz::{self, RerunArgs};

/// Arguments of `anydepth cloud`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth cloud room.jpg --metric indoor -o room.ply
  anydepth cloud --depth depth/00000.png --color color/00000.jpg --depth-scale 1000 \\
      --intrinsics 525,525,319.5,239.5 --voxel-size 0.01 -o frame.ply
  anydepth cloud photo.jpg --align-depth lidar.png --align-depth-scale 256 -o scene.ply")]
pub struct CloudArgs {
    #[command(flatten)]
    pub scene: SceneRequest,

    #[command(flatten)]
    pub output: FileOutput,

    /// Average points into voxels of this size, in metres.
    #[arg(long, value_name = "M")]
    pub voxel_size: Option<f32>,

    /// Remove statistical outliers (20 neighbours, 2 standard deviations).
    #[arg(long)]
    pub remove_outliers: bool,

    /// Estimate normals (20 neighbours), oriented toward the camera.
    #[arg(long)]
    pub normals: bool,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// Arguments of `anydepth mesh`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth mesh room.jpg --metric indoor -o room.ply
  anydepth mesh --depth depth.npy --color photo.jpg --fov 60 --stride 2 -o scene.ply")]
pub struct MeshArgs {
    #[command(flatten)]
    pub scene: SceneRequest,

    #[command(flatten)]
    pub output: FileOutput,

    /// Use every N-th pixel.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub stride: usize,

    /// Cut triangles whose largest depth exceeds their smallest by more than this
    /// fraction (depth discontinuities).
    #[arg(long, value_name = "FRACTION")]
    pub max_jump: Option<f32>,

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
    args.output.check("output")?;
    if let Some(v) = args.voxel_size {
        if !(v.is_finite() && v > 0.0) {
            bail!("--voxel-size must be a positive number of metres, got {v}");
        }
    }
    let recording = args.rerun.start()?;
    let scene = load_scene(&args.scene, loader, args.quiet)?;
    let options = UnprojectOptions {
        max_depth_m: args.scene.max_depth.unwrap_or(f32::INFINITY),
        ..Default::default()
    };
    let mut cloud = unproject(
        &scene.depth,
        &scene.camera,
        &options,
        scene.color.as_deref().map(<[[u8; 3]]>::as_flattened),
    )?;
    if cloud.is_empty() {
        bail!("no valid depth within range: the cloud would be empty");
    }
    if args.remove_outliers {
        cloud = remove_statistical_outliers(&cloud, 20, 2.0)?.0;
    }
    if let Some(v) = args.voxel_size {
        cloud = voxel_downsample(&cloud, v)?;
    }
    if args.normals {
        estimate_normals(&mut cloud, 20, Point3::origin())?;
    }
    // The view and the cloud go to Rerun while the file is written.
    viz::log_beside(
        recording.as_ref(),
        |r| {
            let radius = match args.voxel_size {
                Some(v) => anydepth_viz::PointRadius::Metres(v / 2.0),
                None => anydepth_viz::PointRadius::for_depth(scene.depth.data(), scene.camera.fx),
            };
            log_view(r, &scene)?;
            Ok(r.log_cloud(anydepth_viz::paths::CLOUD, &cloud, radius)?)
        },
        || args.output.write_cloud(&cloud),
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
    let mut options = GridMeshOptions {
        stride: args.stride,
        ..Default::default()
    };
    if let Some(jump) = args.max_jump {
        options.max_relative_jump = jump;
    }
    let mut depth = scene.depth.data().to_vec();
    if let Some(max_m) = args.scene.max_depth {
        depth
            .iter_mut()
            .filter(|d| **d > max_m)
            .for_each(|d| *d = f32::NAN);
    }
    let depth = DepthMap::<Metres>::new(scene.depth.width(), scene.depth.height(), depth)?;
    let mesh = mesh_from_depth(
        &depth,
        &scene.camera,
        &options,
        scene.color.as_deref().map(<[[u8; 3]]>::as_flattened),
    )?;
    if mesh.faces.is_empty() {
        bail!("no triangles: the depth map has no valid 2x2 blocks within range");
    }
    // The view and the mesh go to Rerun while the file is written.
    viz::log_beside(
        recording.as_ref(),
        |r| {
            log_view(r, &scene)?;
            Ok(r.log_mesh(anydepth_viz::paths::MESH, &mesh)?)
        },
        || args.output.write_mesh(&mesh),
    )?
    .with_context(|| format!("cannot write {}", args.output.path.display()))?;
    if !args.quiet {
        eprintln!(
            "{} vertices, {} triangles written to {}",
            mesh.vertices.len(),
            mesh.faces.len(),
            args.output.path.display()
        );
    }
    viz::finish(recording)?;
    Ok(ExitCode::SUCCESS)
}
