//! Fuse jobs: many views (RGB-D frames, or photos through the depth engine) into one mesh
//! or point cloud, with poses from a trajectory file or tracked against the model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anydepth_core::camera::Intrinsics;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{
    read_colmap_observations, read_trajectory, write_plain_trajectory, Observation, PoseEntry,
    PoseFormat, PoseKey,
};
use anydepth_core::{load_image, load_rgb8, Prediction};
use anydepth_geometry::align::{Affine, PixelDepth};
use anydepth_geometry::fusion::{Fusion, FusionOptions, View, ViewReport, ViewScale};
use anydepth_geometry::icp::IcpResult;
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
use anydepth_geometry::{PointCloud, TriangleMesh};
use anydepth_model::{DepthEngine, EngineLoader, Head};
use nalgebra::Isometry3;

use crate::error::{bail, Context, Result};
use crate::model::ModelRequest;
use crate::output::FileOutput;
use crate::scene::{self, CameraRequest, DepthValues};
use crate::shape::{TexturedMesh, ViewCamera};
use crate::sources;
use crate::{Downloads, Notes};

mod da3;

/// What a fuse job is asked to do.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FuseRequest {
    /// Photos (files, folders or globs), in name order: the depth engine gives each its
    /// depth.
    #[cfg_attr(feature = "clap", arg(value_name = "PHOTO", conflicts_with = "depth"))]
    pub photos: Vec<PathBuf>,

    /// Depth maps (globs or files), in name order: 16-bit PNG or PGM (see --depth-scale),
    /// .npy, .pfm or .exr.
    #[cfg_attr(feature = "clap", arg(long, value_name = "GLOB", num_args = 1..))]
    pub depth: Vec<PathBuf>,

    /// Colour images for --depth (globs or files), one per depth map, same size.
    #[cfg_attr(feature = "clap", arg(long, value_name = "GLOB", num_args = 1.., requires = "depth"))]
    pub color: Vec<PathBuf>,

    /// How the values of the depth maps become metres.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub values: DepthValues,

    /// The camera of every frame (else the pose file's, else EXIF or a guess).
    #[cfg_attr(feature = "clap", command(flatten))]
    pub camera: CameraRequest,

    /// Camera poses: TUM, `tx ty tz qx qy qz qw` per line, Open3D .log, a COLMAP text model
    /// (folder, images.txt or cameras.txt) or NeRF transforms.json. Matched to frames by
    /// name (COLMAP, NeRF), by time (TUM: file names are times) or by order. Without
    /// poses, frames are tracked against the model (metric depth only).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub poses: Option<PathBuf>,

    /// Format of --poses [default: recognised from the content]: tum, plain, log, colmap,
    /// nerf, cameras (anydepth's cameras.json).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FORMAT", requires = "poses"))]
    pub pose_format: Option<PoseFormat>,

    /// Voxel edge in metres [default: 0.01; with Depth Anything 3 and no poses, whose
    /// depth has no units, 1/250 of the median depth].
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub voxel_size: Option<f32>,

    /// Truncation distance in metres [default: 4 voxels].
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub trunc: Option<f32>,

    /// Ignore depth beyond this, in metres [default: 3; with Depth Anything 3 and no
    /// poses, 4 times the median depth].
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub max_depth: Option<f32>,

    /// Depth Anything 3 weights (--weights): the long side of the network input.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = anydepth_model::da3::DEFAULT_PROCESS_RES, value_name = "N")
    )]
    pub process_res: u32,

    /// Depth Anything 3 weights: fuse only pixels with at least this confidence (>= 1)
    /// [default: the 40th percentile over all views, at least 1.05 and at most the 90th
    /// percentile].
    #[cfg_attr(feature = "clap", arg(long, value_name = "C"))]
    pub conf_threshold: Option<f32>,

    /// Leave out voxels observed with less total weight (about: fewer frames) than this.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1.0, value_name = "W"))]
    pub min_weight: f32,

    /// Refine the given poses by point-to-plane ICP against the model fused so far;
    /// refinements that diverge are refused and the given pose kept.
    #[cfg_attr(feature = "clap", arg(long, requires = "poses"))]
    pub refine_poses: bool,

    /// Fit each metric depth file after the first to the model fused so far (scale and
    /// shift in inverse depth). Photos through a metric model are always fitted (to a COLMAP
    /// model's sparse points when there are some, else to the model fused so far).
    #[cfg_attr(feature = "clap", arg(long))]
    pub align_views: bool,

    /// Write the fused point cloud (PLY) instead of the mesh.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cloud: bool,

    /// Also write the pose each frame was fused with, `tx ty tz qx qy qz qw` per line
    /// (world_from_camera, readable by --poses).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub save_poses: Option<PathBuf>,

    /// The mesh or cloud file written.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub output: FileOutput,

    /// The depth model that runs for photos.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub model: ModelRequest,
}

/// The voxel edge without Depth Anything 3, in metres.
const DEFAULT_VOXEL_SIZE_M: f32 = 0.01;
/// The depth limit without Depth Anything 3, in metres.
const DEFAULT_MAX_DEPTH_M: f32 = 3.0;

/// One frame's files.
struct Frame {
    /// The photo, or the depth map.
    depth: PathBuf,
    /// The photo, or the colour image beside a depth map.
    color: Option<PathBuf>,
}

/// What every frame is read and fused with.
struct FrameContext<'a> {
    args: &'a FuseRequest,
    estimator: Option<&'a dyn DepthEngine>,
    poses: Option<&'a PoseSource>,
    observer: &'a dyn FuseObserver,
}

/// Where poses and per-view scale come from.
struct PoseSource {
    /// Per frame, its pose.
    entries: Vec<PoseEntry>,
    /// COLMAP's sparse points by image name, when the model has points3D.txt.
    observations: Option<HashMap<String, Vec<Observation>>>,
}

/// The fused model, as written.
#[derive(Clone, Debug)]
pub enum FusedModel {
    /// A triangle mesh (the default).
    Mesh(TriangleMesh),
    /// A point cloud (`--cloud`).
    Cloud(PointCloud),
}

/// What a fuse job did.
#[derive(Debug)]
pub struct FuseOutcome {
    /// The fused mesh or cloud, as written.
    pub model: FusedModel,
    /// Per frame, how it was fused (its pose, ICP, scale fitting).
    pub reports: Vec<ViewReport>,
    /// Allocated TSDF blocks.
    pub block_count: usize,
    /// Memory of those blocks' voxels, in bytes.
    pub memory_bytes: usize,
    /// The voxel edge used (metres, or the depth's units).
    pub voxel_size: f32,
}

impl FuseOutcome {
    /// One line on pose refinement and one on scale fitting, when they ran.
    pub fn summary_lines(&self) -> Vec<String> {
        summarise(&self.reports)
    }
}

/// Hears of a fuse job's progress; every method has a default that does nothing.
pub trait FuseObserver {
    /// Called once the frames and poses are read, before any model is loaded.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn start(&self) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }

    /// The number of frames about to be fused.
    fn frames(&self, _count: usize) {}

    /// The frame about to be read.
    fn item(&self, _name: &str) {}

    /// One frame is fused.
    fn advance(&self) {}

    /// What the user should know (a guessed camera).
    fn note(&self, _message: &str) {}

    /// Bytes of weights downloaded so far, of `total`.
    fn download(&self, _file: &str, _done: u64, _total: Option<u64>) {}

    /// The `index`-th frame's colours and depth, before it is fused; `time_s` where the
    /// poses are timed.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn view(
        &self,
        _index: usize,
        _time_s: Option<f64>,
        _colors: Option<&[[u8; 3]]>,
        _prediction: &Prediction,
    ) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }

    /// The camera a frame was fused with, at its pose.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn camera(
        &self,
        _camera: &Intrinsics,
        _world_from_camera: &Isometry3<f64>,
    ) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }
}

impl FuseRequest {
    /// Reads the frames and poses, fuses every frame (running the depth engine from
    /// `loader` on photos), writes the model (and the poses, when asked) and returns it.
    ///
    /// # Errors
    /// When the request is invalid or contradictory, a file cannot be read, a frame
    /// cannot be fused, the model is empty, or a file cannot be written.
    pub fn run(
        &self,
        loader: &dyn EngineLoader,
        observer: &dyn FuseObserver,
    ) -> Result<FuseOutcome> {
        let args = self;
        if let Some(model) = self.da3_weights() {
            return self.run_da3(model, loader, observer);
        }
        args.check_outputs()?;
        let voxel_size = self.voxel_size.unwrap_or(DEFAULT_VOXEL_SIZE_M);
        let mut fusion = args.fusion(voxel_size, self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH_M))?;
        let frames = frames(args)?;
        let poses = match &args.poses {
            Some(path) => Some(pose_source(path, args.pose_format, &frames)?),
            None => None,
        };
        // Before the model loads, so that a missing viewer fails fast.
        observer.start().map_err(crate::Error::Observer)?;
        let estimator = if args.photos.is_empty() {
            None
        } else {
            let downloads: Downloads =
                &mut |file, done, total| observer.download(file, done, total);
            Some(args.model.load(loader, None, 1, downloads)?.0)
        };
        let relative = match &estimator {
            Some(estimator) => estimator.config().head == Head::Relative,
            None => args.values.disparity,
        };
        args.check_scale_source(relative, poses.as_ref())?;
        observer.frames(frames.len());
        let context = FrameContext {
            args,
            estimator: estimator.as_deref(),
            poses: poses.as_ref(),
            observer,
        };
        let mut cameras: Option<Intrinsics> = None;
        let mut reports = Vec::with_capacity(frames.len());
        let mut views = Vec::with_capacity(frames.len());
        for (i, frame) in frames.iter().enumerate() {
            observer.item(&frame.depth.display().to_string());
            let (report, intrinsics) = fuse_frame(&context, &mut fusion, &mut cameras, i, frame)
                .with_context(|| format!("frame {} ({})", i + 1, frame.depth.display()))?;
            views.push(ViewCamera {
                intrinsics,
                world_from_camera: report.world_from_camera,
            });
            reports.push(report);
            observer.advance();
        }

        args.finish(fusion, reports, &views, voxel_size)
    }

    /// Writes the fused model (with the views' `cameras` when asked) and the poses of
    /// `reports` (with `--save-poses`); the outcome.
    fn finish(
        &self,
        fusion: Fusion,
        reports: Vec<ViewReport>,
        cameras: &[ViewCamera],
        voxel_size: f32,
    ) -> Result<FuseOutcome> {
        let volume = fusion.into_volume();
        let model = self.write_model(&volume, cameras)?;
        if let Some(path) = &self.save_poses {
            let poses: Vec<Isometry3<f64>> = reports.iter().map(|r| r.world_from_camera).collect();
            write_plain_trajectory(path, self.output.force, &poses)?;
        }
        Ok(FuseOutcome {
            model,
            reports,
            block_count: volume.block_count(),
            memory_bytes: volume.memory_bytes(),
            voxel_size,
        })
    }

    /// Checks the outputs and the options (before anything is read).
    fn check_outputs(&self) -> Result<()> {
        if self.cloud {
            self.output.check_cloud("output")?;
        } else {
            self.output.check("output")?;
        }
        if let Some(path) = &self.save_poses {
            check_output(path, self.output.force, "--save-poses file")?;
        }
        if !(0.0..1.0).contains(&self.values.sky_fraction) {
            bail!(
                "--sky-fraction must be in [0, 1), got {}",
                self.values.sky_fraction
            );
        }
        Ok(())
    }

    /// The fusion with voxels of `voxel_size` and depth up to `max_depth`.
    fn fusion(&self, voxel_size: f32, max_depth: f32) -> Result<Fusion> {
        let options = FusionOptions {
            tsdf: TsdfOptions {
                voxel_size_m: voxel_size,
                trunc_m: self.trunc.unwrap_or(4.0 * voxel_size),
                max_depth_m: max_depth,
                min_weight: self.min_weight,
            },
            refine_poses: self.refine_poses,
            align_metric: self.align_views,
            ..Default::default()
        };
        Fusion::new(options).context("invalid fusion parameters")
    }

    /// Refuses relative depth without a way to its scale (poses and a first scale, or
    /// COLMAP points), and a scale for depth that is metric already.
    fn check_scale_source(&self, relative: bool, poses: Option<&PoseSource>) -> Result<()> {
        if !relative {
            if self.values.scale.is_some() {
                bail!("the depth is already in metres: --scale and --shift apply to disparity");
            }
            return Ok(());
        }
        let Some(poses) = poses else {
            bail!(
                "relative depth (disparity) cannot be tracked without poses: pass --poses, or \
                 use metric depth (a metric model for photos)"
            );
        };
        if poses.observations.is_none() && self.values.scale.is_none() {
            bail!(
                "relative depth (disparity) needs a scale for its first view: pass --metric \
                 (a metric model), a COLMAP model with points3D.txt as --poses, or --scale S \
                 --shift T for the first view (later views are fitted to the model)"
            );
        }
        Ok(())
    }

    /// Extracts the mesh (or the cloud) and writes it, with the views' `cameras` when asked.
    fn write_model(&self, volume: &TsdfVolume, cameras: &[ViewCamera]) -> Result<FusedModel> {
        let path = &self.output.path;
        let empty =
            "the fused model is empty: no surface was seen by enough frames within --max-depth";
        if self.cloud {
            let cloud = volume.extract_point_cloud()?;
            if cloud.is_empty() {
                bail!("{empty}");
            }
            self.output
                .write_cloud(&cloud, cameras)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(FusedModel::Cloud(cloud))
        } else {
            let mesh = volume.extract_mesh()?;
            if mesh.faces.is_empty() {
                bail!("{empty}");
            }
            let mesh = TexturedMesh {
                mesh,
                texture: None,
            };
            self.output
                .write_mesh(&mesh, cameras)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(FusedModel::Mesh(mesh.mesh))
        }
    }
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

/// The frames the arguments name, depth and colour paired in name order.
fn frames(args: &FuseRequest) -> Result<Vec<Frame>> {
    if !args.photos.is_empty() {
        if args.values.depth_scale.is_some() || args.values.disparity {
            bail!("--depth-scale and --disparity go with --depth, not with photos");
        }
        let photos = sources::expand_images(&args.photos)?.files;
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
    let depth = sources::expand_files(&args.depth)?;
    let color = if args.color.is_empty() {
        Vec::new()
    } else {
        sources::expand_images(&args.color)?.files
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

/// One frame's depth (estimated from the photo, or read; the sky masked in disparity) and
/// its colours.
fn read_view(
    args: &FuseRequest,
    estimator: Option<&dyn DepthEngine>,
    frame: &Frame,
) -> Result<(Prediction, Option<Vec<[u8; 3]>>)> {
    let (prediction, colors) = match estimator {
        Some(estimator) => {
            let image = load_image(&frame.depth)?;
            let prediction = estimator.predict(&image)?;
            (prediction, Some(image.to_rgb8()))
        }
        None => {
            let scale = args
                .values
                .depth_scale
                .unwrap_or_else(|| scene::default_scale(&frame.depth));
            let prediction = if args.values.disparity {
                Prediction::Disparity(read_depth_values(&frame.depth, scale)?)
            } else {
                Prediction::Metric(read_depth_values(&frame.depth, scale)?)
            };
            let (w, h) = (prediction.width(), prediction.height());
            let colors = match &frame.color {
                Some(path) => {
                    let (cw, ch, pixels) = load_rgb8(path)?;
                    if (cw, ch) != (w, h) {
                        bail!(
                            "colour image {} is {cw} x {ch} but its depth map is {w} x {h}",
                            path.display()
                        );
                    }
                    Some(pixels)
                }
                None => None,
            };
            (prediction, colors)
        }
    };
    let prediction = match prediction {
        Prediction::Disparity(d) => {
            Prediction::Disparity(scene::mask_sky(d, args.values.sky_fraction)?)
        }
        metric => metric,
    };
    Ok((prediction, colors))
}

/// Reads (or estimates) one frame's depth and colours and fuses it.
fn fuse_frame(
    context: &FrameContext,
    fusion: &mut Fusion,
    camera: &mut Option<Intrinsics>,
    index: usize,
    frame: &Frame,
) -> Result<(ViewReport, Intrinsics)> {
    let FrameContext {
        args,
        estimator,
        poses,
        observer,
    } = *context;
    let (prediction, colors) = read_view(args, estimator, frame)?;
    let (w, h) = (prediction.width(), prediction.height());
    let entry = poses.map(|p| &p.entries[index]);

    // Camera: the arguments, else the pose file's, else EXIF or a guess (kept for all frames).
    let intrinsics = match (
        entry.and_then(|e| e.intrinsics),
        &args.camera.intrinsics,
        args.camera.fov,
    ) {
        (Some(k), None, None) if (k.width, k.height) == (w, h) => k,
        (Some(k), None, None) => k.scaled(w, h)?,
        _ => match camera {
            Some(k) if (k.width, k.height) == (w, h) => *k,
            _ => {
                let notes: Notes = &|message| observer.note(message);
                let k = args.camera.resolve(frame.color.as_deref(), w, h, notes)?;
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
        (Prediction::Disparity(_) | Prediction::RelativeDepth(_), None) => {
            match (index, args.values.scale, args.values.shift) {
                (0, Some(scale), Some(shift)) => Some(ViewScale::Known(Affine { scale, shift })),
                _ => Some(ViewScale::FromModel),
            }
        }
    };
    let time_s = match entry.map(|e| &e.key) {
        Some(PoseKey::Timestamp(t)) => Some(*t),
        _ => None,
    };
    observer
        .view(index, time_s, colors.as_deref(), &prediction)
        .map_err(crate::Error::Observer)?;
    let view = View {
        depth: prediction,
        colors,
        camera: intrinsics,
        world_from_camera,
        scale,
    };
    let report = fusion.add_view(view)?;
    observer
        .camera(&intrinsics, &report.world_from_camera)
        .map_err(crate::Error::Observer)?;
    Ok((report, intrinsics))
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

/// One line on pose refinement and one on scale fitting, when they ran.
fn summarise(reports: &[ViewReport]) -> Vec<String> {
    let mut lines = Vec::new();
    let runs: Vec<&IcpResult> = reports.iter().filter_map(|r| r.icp.as_ref()).collect();
    let refused = reports.iter().filter(|r| r.icp_refused.is_some()).count();
    if !runs.is_empty() || refused > 0 {
        let mean = |f: &dyn Fn(&IcpResult) -> f64| {
            runs.iter().map(|r| f(r)).sum::<f64>() / runs.len().max(1) as f64
        };
        lines.push(format!(
            "ICP: {} frames aligned, point-to-plane RMS {:.1} mm -> {:.1} mm on average; {refused} refused",
            runs.len(),
            1e3 * mean(&|r| r.initial_rmse_m),
            1e3 * mean(&|r| r.rmse_m),
        ));
    }
    let fitted = reports.iter().filter(|r| r.scale_samples > 0).count();
    if fitted > 0 {
        lines.push(format!("scale and shift fitted for {fitted} frames"));
    }
    lines
}
