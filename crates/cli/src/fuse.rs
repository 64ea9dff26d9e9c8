//! `anydepth fuse`: many views (RGB-D frames, or photos through the depth engine) into one
//! mesh or point cloud.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anydepth_core::camera::Intrinsics;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::fs::write_atomically;
use anydepth_core::pose::{
    read_colmap_observations, read_trajectory, Observation, PoseEntry, PoseFormat, PoseKey,
};
use anydepth_core::{load_image, DepthMap, Prediction};
use anydepth_geometry::align::{Affine, PixelDepth};
use anydepth_geometry::fusion::{Fusion, FusionOptions, View, ViewReport, ViewScale};
use anydepth_geometry::io::obj;
use anydepth_geometry::io::ply::{self, PlyEncoding};
use anydepth_geometry::tsdf::TsdfOptions;
use anydepth_geometry::unproject::PinholeIntrinsics;
use anydepth_model::{DepthEstimator, Head};
use anyhow::{bail, Context, Result};
use clap::Args;
use nalgebra::Isometry3;

use crate::depth::ModelArgs;
use crate::inputs;
use crate::scene;
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
    /// Photos (files, folders or globs), in name order: the depth engine gives each its
    /// depth.
    #[arg(value_name = "PHOTO", conflicts_with = "depth")]
    pub photos: Vec<PathBuf>,

    /// Depth maps (globs or files), in name order: 16-bit PNG or PGM (see --depth-scale),
    /// .npy, .pfm or .exr.
    #[arg(long, value_name = "GLOB", num_args = 1..)]
    pub depth: Vec<PathBuf>,

    /// Colour images for --depth (globs or files), one per depth map, same size.
    #[arg(long, value_name = "GLOB", num_args = 1.., requires = "depth")]
    pub color: Vec<PathBuf>,

    /// Units per metre of --depth [default: 1000 for images, 1 for .npy/.pfm/.exr].
    #[arg(long, value_name = "S")]
    pub depth_scale: Option<f64>,

    /// --depth holds disparity (inverse depth up to scale and shift), not metres.
    #[arg(long)]
    pub disparity: bool,

    /// Camera as fx,fy,cx,cy in pixels (pixel centres at integer coordinates); overrides
    /// the intrinsics of a COLMAP or NeRF pose file.
    #[arg(
        long,
        value_name = "FX,FY,CX,CY",
        value_delimiter = ',',
        conflicts_with = "fov"
    )]
    pub intrinsics: Option<Vec<f64>>,

    /// Camera from a horizontal field of view in degrees (across the longer side).
    #[arg(long, value_name = "DEG")]
    pub fov: Option<f64>,

    /// Camera poses: TUM, `tx ty tz qx qy qz qw` per line, Open3D .log, a COLMAP text model
    /// (folder, images.txt or cameras.txt) or NeRF transforms.json. Matched to frames by
    /// name (COLMAP, NeRF), by time (TUM: file names are times) or by order. Without
    /// poses, frames are tracked against the model (metric depth only).
    #[arg(long, value_name = "FILE")]
    pub poses: Option<PathBuf>,

    /// Format of --poses [default: recognised from the content]: tum, plain, log, colmap,
    /// nerf.
    #[arg(long, value_name = "FORMAT", requires = "poses")]
    pub pose_format: Option<PoseFormat>,

    /// Voxel edge in metres.
    #[arg(long, default_value_t = 0.01, value_name = "M")]
    pub voxel_size: f32,

    /// Truncation distance in metres [default: 4 voxels].
    #[arg(long, value_name = "M")]
    pub trunc: Option<f32>,

    /// Ignore depth beyond this, in metres.
    #[arg(long, default_value_t = 3.0, value_name = "M")]
    pub max_depth: f32,

    /// Leave out voxels observed with less total weight (about: fewer frames) than this.
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    pub min_weight: f32,

    /// Refine the given poses by point-to-plane ICP against the model fused so far;
    /// refinements that diverge are refused and the given pose kept.
    #[arg(long, requires = "poses")]
    pub refine_poses: bool,

    /// Fit each metric depth file after the first to the model fused so far (scale and
    /// shift in inverse depth). Photos through a metric model are always fitted (to a COLMAP
    /// model's sparse points when there are some, else to the model fused so far).
    #[arg(long)]
    pub align_views: bool,

    /// For relative depth: the first view's 1/depth = scale * disparity + shift (later views
    /// are fitted to the model). Not needed with a COLMAP model that has points3D.txt.
    #[arg(long, requires = "shift", allow_negative_numbers = true)]
    pub scale: Option<f64>,

    #[arg(long, requires = "scale", allow_negative_numbers = true)]
    pub shift: Option<f64>,

    /// With disparity: drop pixels whose disparity is below this fraction of the largest
    /// (sky and other "infinitely far" regions).
    #[arg(long, default_value_t = 0.01, value_name = "FRACTION")]
    pub sky_fraction: f32,

    /// Write the fused point cloud (PLY) instead of the mesh.
    #[arg(long)]
    pub cloud: bool,

    /// Also write the pose each frame was fused with, `tx ty tz qx qy qz qw` per line
    /// (world_from_camera, readable by --poses).
    #[arg(long, value_name = "FILE")]
    pub save_poses: Option<PathBuf>,

    /// Output file: .ply (binary unless --ascii) or, for a mesh, .obj.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Write ASCII PLY instead of binary.
    #[arg(long)]
    pub ascii: bool,

    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,

    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub rerun: RerunArgs,
}

/// One frame's files.
struct Frame {
    /// The photo, or the depth map.
    depth: PathBuf,
    /// The photo, or the colour image beside a depth map.
    color: Option<PathBuf>,
}

/// What every frame is read and fused with.
struct FrameContext<'a> {
    args: &'a FuseArgs,
    estimator: Option<&'a DepthEstimator>,
    poses: Option<&'a PoseSource>,
    recording: Option<&'a anydepth_viz::Recording>,
}

/// Where poses and per-view scale come from.
struct PoseSource {
    /// Per frame, its pose.
    entries: Vec<PoseEntry>,
    /// COLMAP's sparse points by image name, when the model has points3D.txt.
    observations: Option<HashMap<String, Vec<Observation>>>,
}

fn check_output(path: &Path, force: bool, flag: &str) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "refusing to overwrite an existing {flag} (pass --force to replace it): {}",
            path.display()
        );
    }
    Ok(())
}

/// Runs `anydepth fuse`.
pub fn run(args: FuseArgs) -> Result<ExitCode> {
    check_output(&args.output, args.force, "output")?;
    if let Some(path) = &args.save_poses {
        check_output(path, args.force, "--save-poses file")?;
    }
    let is_obj = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("obj"));
    if is_obj && args.cloud {
        bail!("--cloud writes PLY: give an output ending in .ply");
    }
    if !(0.0..1.0).contains(&args.sky_fraction) {
        bail!(
            "--sky-fraction must be in [0, 1), got {}",
            args.sky_fraction
        );
    }
    let options = FusionOptions {
        tsdf: TsdfOptions {
            voxel_size_m: args.voxel_size,
            trunc_m: args.trunc.unwrap_or(4.0 * args.voxel_size),
            max_depth_m: args.max_depth,
            min_weight: args.min_weight,
        },
        refine_poses: args.refine_poses,
        align_metric: args.align_views,
        ..Default::default()
    };
    let mut fusion = Fusion::new(options).context("invalid fusion parameters")?;

    let frames = frames(&args)?;
    let poses = match &args.poses {
        Some(path) => Some(pose_source(path, args.pose_format, &frames)?),
        None => None,
    };
    // Before the model loads, so that a missing viewer fails fast.
    let recording = args.rerun.start()?;
    let estimator = if args.photos.is_empty() {
        None
    } else {
        Some(args.model.load(None, 1, args.quiet)?.0)
    };
    let relative = match &estimator {
        Some(estimator) => estimator.config().head == Head::Relative,
        None => args.disparity,
    };
    if relative {
        if poses.is_none() {
            bail!(
                "relative depth (disparity) cannot be tracked without poses: pass --poses, or \
                 use metric depth (a metric model for photos)"
            );
        }
        let has_points = poses.as_ref().is_some_and(|p| p.observations.is_some());
        if !has_points && args.scale.is_none() {
            bail!(
                "relative depth (disparity) needs a scale for its first view: pass --metric \
                 (a metric model), a COLMAP model with points3D.txt as --poses, or --scale S \
                 --shift T for the first view (later views are fitted to the model)"
            );
        }
    } else if args.scale.is_some() {
        bail!("the depth is already in metres: --scale and --shift apply to disparity");
    }
    let bar = crate::output::progress_bar(frames.len(), args.quiet);
    let context = FrameContext {
        args: &args,
        estimator: estimator.as_ref(),
        poses: poses.as_ref(),
        recording: recording.as_ref(),
    };
    let mut cameras: Option<Intrinsics> = None;
    let mut reports = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        bar.set_message(frame.depth.display().to_string());
        let report = fuse_frame(&context, &mut fusion, &mut cameras, i, frame)
            .with_context(|| format!("frame {} ({})", i + 1, frame.depth.display()))?;
        reports.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let volume = fusion.into_volume();
    let what = if args.cloud {
        let cloud = volume.extract_point_cloud()?;
        if cloud.is_empty() {
            bail!(
                "the fused model is empty: no surface was seen by enough frames within --max-depth"
            );
        }
        ply::write_point_cloud(&args.output, &cloud, encoding(args.ascii))
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        if let Some(recording) = &recording {
            let radius = anydepth_viz::PointRadius::Metres(args.voxel_size / 2.0);
            recording.log_model_cloud(&cloud, radius)?;
        }
        format!("{} points", cloud.len())
    } else {
        let mesh = volume.extract_mesh()?;
        if mesh.faces.is_empty() {
            bail!(
                "the fused model is empty: no surface was seen by enough frames within --max-depth"
            );
        }
        if is_obj {
            obj::write_obj(&args.output, &mesh)
        } else {
            ply::write_mesh(&args.output, &mesh, encoding(args.ascii))
        }
        .with_context(|| format!("cannot write {}", args.output.display()))?;
        if let Some(recording) = &recording {
            recording.log_model_mesh(&mesh)?;
        }
        format!(
            "{} vertices, {} triangles",
            mesh.vertices.len(),
            mesh.faces.len()
        )
    };
    if let Some(path) = &args.save_poses {
        save_poses(path, args.force, &reports)?;
    }
    if !args.quiet {
        summarise(&reports);
        eprintln!(
            "{} frames fused ({} blocks, {:.1} MB): {what} written to {}",
            frames.len(),
            volume.block_count(),
            volume.memory_bytes() as f64 / 1e6,
            args.output.display()
        );
    }
    viz::finish(recording)?;
    Ok(ExitCode::SUCCESS)
}

fn encoding(ascii: bool) -> PlyEncoding {
    if ascii {
        PlyEncoding::Ascii
    } else {
        PlyEncoding::BinaryLittleEndian
    }
}

/// The frames the arguments name, depth and colour paired in name order.
fn frames(args: &FuseArgs) -> Result<Vec<Frame>> {
    if !args.photos.is_empty() {
        if args.depth_scale.is_some() || args.disparity {
            bail!("--depth-scale and --disparity go with --depth, not with photos");
        }
        let photos = inputs::expand(&args.photos)?.files;
        return Ok(photos
            .into_iter()
            .map(|p| Frame {
                depth: p.clone(),
                color: Some(p),
            })
            .collect());
    }
    if args.depth.is_empty() {
        bail!("give photos, or depth maps with --depth GLOB (and colours with --color GLOB)");
    }
    if args.model.metric.is_some() || args.model.weights.is_some() {
        bail!("--metric and --weights go with photos; --depth maps are used as they are");
    }
    let depth = expand_any(&args.depth)?;
    let color = if args.color.is_empty() {
        Vec::new()
    } else {
        inputs::expand(&args.color)?.files
    };
    if !color.is_empty() && color.len() != depth.len() {
        bail!(
            "{} colour images for {} depth maps: --color and --depth must name as many files",
            color.len(),
            depth.len()
        );
    }
    let mut color = color.into_iter();
    Ok(depth
        .into_iter()
        .map(|depth| Frame {
            depth,
            color: color.next(),
        })
        .collect())
}

/// Files, folders (every file in them) and globs, in name order per argument.
fn expand_any(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(arg)
                .with_context(|| format!("cannot list folder {}", arg.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else if arg.exists() {
            files.push(arg.clone());
        } else {
            files.extend(inputs::expand(std::slice::from_ref(arg))?.files);
        }
    }
    Ok(files)
}

/// Reads the poses and matches them to the frames.
fn pose_source(path: &Path, format: Option<PoseFormat>, frames: &[Frame]) -> Result<PoseSource> {
    let trajectory = read_trajectory(path, format)?;
    let by_order = trajectory
        .poses
        .iter()
        .all(|entry| matches!(entry.key, PoseKey::Index(_)));
    let chosen: Vec<&PoseEntry> = if by_order {
        trajectory.poses_for_frames(frames.len())?
    } else {
        // Names are the photos' (COLMAP, NeRF); TUM times are the depth files' too.
        let names: Vec<&Path> = frames
            .iter()
            .map(|f| f.color.as_deref().unwrap_or(&f.depth))
            .collect();
        trajectory.poses_for_files(&names)?
    };
    let entries = chosen.into_iter().cloned().collect();
    let observations = if trajectory.format == PoseFormat::Colmap
        && trajectory.path.with_file_name("points3D.txt").is_file()
    {
        Some(read_colmap_observations(&trajectory.path)?)
    } else {
        None
    };
    Ok(PoseSource {
        entries,
        observations,
    })
}

/// Reads (or estimates) one frame's depth and colours and fuses it.
fn fuse_frame(
    context: &FrameContext,
    fusion: &mut Fusion,
    camera: &mut Option<Intrinsics>,
    index: usize,
    frame: &Frame,
) -> Result<ViewReport> {
    let FrameContext {
        args,
        estimator,
        poses,
        recording,
    } = *context;
    let (prediction, colors) = match estimator {
        Some(estimator) => {
            let image = load_image(&frame.depth)?;
            let prediction = estimator.predict(&image)?;
            (prediction, Some(image.to_rgb8()))
        }
        None => {
            let scale = args
                .depth_scale
                .unwrap_or_else(|| scene::default_scale(&frame.depth));
            let (w, h, values) = read_depth_values(&frame.depth, scale)?;
            let prediction = if args.disparity {
                Prediction::Disparity(DepthMap::new(w, h, values)?)
            } else {
                Prediction::Metric(DepthMap::new(w, h, values)?)
            };
            let colors = match &frame.color {
                Some(path) => {
                    let image = load_image(path)?;
                    if (image.width, image.height) != (w, h) {
                        bail!(
                            "colour image {} is {} x {} but its depth map is {w} x {h}",
                            path.display(),
                            image.width,
                            image.height
                        );
                    }
                    Some(image.to_rgb8())
                }
                None => None,
            };
            (prediction, colors)
        }
    };
    let prediction = match prediction {
        Prediction::Disparity(d) => Prediction::Disparity(scene::mask_sky(d, args.sky_fraction)?),
        metric => metric,
    };
    let (w, h) = (prediction.width(), prediction.height());
    let entry = poses.map(|p| &p.entries[index]);

    // Camera: the arguments, else the pose file's, else EXIF or a guess (kept for all frames).
    let intrinsics = match (entry.and_then(|e| e.intrinsics), &args.intrinsics, args.fov) {
        (Some(k), None, None) if (k.width, k.height) == (w, h) => k,
        (Some(k), None, None) => k.scaled(w, h)?,
        _ => match camera {
            Some(k) if (k.width, k.height) == (w, h) => *k,
            _ => {
                let k = scene::camera(
                    args.intrinsics.as_deref(),
                    args.fov,
                    frame.color.as_deref(),
                    w,
                    h,
                    args.quiet,
                )?;
                *camera = Some(k);
                k
            }
        },
    };

    let world_from_camera = entry.map(|e| e.world_from_camera);
    let sparse = poses.and_then(|p| {
        let entry = entry?;
        let PoseKey::Name(name) = &entry.key else {
            return None;
        };
        let seen = p.observations.as_ref()?.get(name)?;
        Some(pixel_depths(seen, &entry.world_from_camera)).filter(|points| !points.is_empty())
    });
    let scale = match (&prediction, sparse) {
        // Sensor depth is trusted (unless --align-views).
        (Prediction::Metric(_), _) if estimator.is_none() => None,
        // A metric model's scale wanders from photo to photo: fit it like disparity.
        (_, Some(points)) => Some(ViewScale::Sparse(points)),
        (Prediction::Metric(_), None) => Some(ViewScale::FromModel),
        (Prediction::Disparity(_), None) => match (index, args.scale, args.shift) {
            (0, Some(scale), Some(shift)) => Some(ViewScale::Known(Affine { scale, shift })),
            _ => Some(ViewScale::FromModel),
        },
    };
    if let Some(recording) = recording {
        recording.set_frame(index as u64);
        if let Some(PoseKey::Timestamp(t)) = entry.map(|e| &e.key) {
            recording.set_time_secs(*t);
        }
        if let Some(colors) = &colors {
            recording.log_rgb8(w, h, colors)?;
        }
        recording.log_prediction(&prediction, Default::default())?;
    }
    let view = View {
        depth: prediction,
        colors,
        camera: PinholeIntrinsics::from(&intrinsics),
        world_from_camera,
        scale,
    };
    let report = fusion.add_view(view)?;
    if let Some(recording) = recording {
        recording.log_camera(&intrinsics, &report.world_from_camera)?;
    }
    Ok(report)
}

/// Sparse points as depth in the camera at `world_from_camera` (those in front of it).
fn pixel_depths(seen: &[Observation], world_from_camera: &Isometry3<f64>) -> Vec<PixelDepth> {
    let camera_from_world = world_from_camera.inverse();
    seen.iter()
        .filter_map(|o| {
            let z = (camera_from_world * o.world).z;
            (z > 0.0).then_some(PixelDepth {
                u: o.u,
                v: o.v,
                depth_m: z,
            })
        })
        .collect()
}

/// Writes `tx ty tz qx qy qz qw` per frame.
fn save_poses(path: &Path, force: bool, reports: &[ViewReport]) -> Result<()> {
    write_atomically(path, force, |out| {
        writeln!(
            out,
            "# tx ty tz qx qy qz qw (world_from_camera, OpenCV axes)"
        )?;
        for report in reports {
            let t = report.world_from_camera.translation.vector;
            let q = report.world_from_camera.rotation.quaternion();
            writeln!(
                out,
                "{} {} {} {} {} {} {}",
                t.x, t.y, t.z, q.i, q.j, q.k, q.w
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

/// One line on pose refinement and scale fitting, when they ran.
fn summarise(reports: &[ViewReport]) {
    let runs: Vec<_> = reports.iter().filter_map(|r| r.icp.as_ref()).collect();
    let refused = reports.iter().filter(|r| r.icp_refused.is_some()).count();
    if !runs.is_empty() || refused > 0 {
        let mean = |f: &dyn Fn(&anydepth_geometry::icp::IcpResult) -> f64| {
            runs.iter().map(|r| f(r)).sum::<f64>() / runs.len().max(1) as f64
        };
        eprintln!(
            "ICP: {} frames aligned, point-to-plane RMS {:.1} mm -> {:.1} mm on average; {refused} refused",
            runs.len(),
            1e3 * mean(&|r| r.initial_rmse_m),
            1e3 * mean(&|r| r.rmse_m),
        );
    }
    let fitted = reports.iter().filter(|r| r.scale_samples > 0).count();
    if fitted > 0 {
        eprintln!("scale and shift fitted for {fitted} frames");
    }
}
