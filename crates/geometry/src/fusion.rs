//! Many views into one model: each view's depth put in metres, its pose given, refined or
//! tracked, then integrated into a [`TsdfVolume`].
//!
//! A view is a depth map (metres, or relative disparity) with its camera, optional colours
//! and optional pose. [`Fusion::add_view`] takes views one at a time:
//!
//! 1. **Depth to metres.** Metric depth (a sensor, a metric model) is used as it is, or,
//!    with [`FusionOptions::align_metric`], fitted to the model like disparity (metric
//!    models get each view's scale a little wrong). Disparity needs its own
//!    `1 / depth = scale * disparity + shift` per view ([`ViewScale`]): given, fitted to sparse
//!    metric points the view sees (a COLMAP model's `points3D`, LiDAR), or fitted to the
//!    model fused so far: the model's depth is rendered from the view's camera and the fit
//!    is [`align::fit_robust`] over the pixels both see. The first view of a sequence cannot
//!    be fitted to an empty model; it needs a known or sparse scale (or metric depth).
//! 2. **Pose.** A given `world_from_camera` is used as it is or, with
//!    [`FusionOptions::refine_poses`], refined by point-to-plane ICP of the view's points
//!    against the model's surface (the correction found for one view seeds the next, so
//!    drift in the given poses is followed). A refinement that diverges is refused and the
//!    given pose kept ([`ViewReport::icp_refused`]). Without a pose, the view is tracked
//!    (frame-to-model ICP from the previous view's pose; the first view defines the
//!    world frame) and a divergence is an error.
//! 3. **Integration** into the TSDF volume.
//!
//! ```
//! use anydepth_core::{DepthMap, Intrinsics, Prediction};
//! use anydepth_geometry::fusion::{Fusion, FusionOptions, View};
//! use nalgebra::Isometry3;
//!
//! // A wall 1 m in front of a 64 x 48 camera, seen twice from the same place.
//! let camera = Intrinsics::new(50.0, 50.0, 31.5, 23.5, 64, 48).expect("valid camera");
//! let mut fusion = Fusion::new(FusionOptions::default()).expect("valid options");
//! for _ in 0..2 {
//!     let depth = DepthMap::new(64, 48, vec![1.0; 64 * 48]).expect("64 x 48");
//!     let view = View {
//!         depth: Prediction::Metric(depth),
//!         colors: None,
//!         camera,
//!         world_from_camera: Some(Isometry3::identity()),
//!         scale: None,
//!     };
//!     fusion.add_view(view).expect("fused");
//! }
//! let mesh = fusion.volume().extract_mesh().expect("mesh");
//! assert!(mesh.vertices.iter().all(|v| (v.z - 1.0).abs() < 0.01));
//! ```

use anydepth_core::{ByScale, DepthMap, Disparity, Intrinsics, Metres, Prediction};
use nalgebra::Isometry3;

use crate::align::{self, Affine, PixelDepth, Sampling};
use crate::icp::{icp_point_to_plane, IcpOptions, IcpResult, IcpTarget};
use crate::render::render_depth;
use crate::tsdf::{TsdfOptions, TsdfVolume};
use crate::unproject::{check_camera, unproject, UnprojectOptions};
use crate::{Error, PointCloud, Result, TriangleMesh};

/// How a view of disparity gets to metres.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewScale {
    /// Known: `1 / depth = scale * disparity + shift`.
    Known(Affine),
    /// Fitted to metric depth known at a few pixels ([`align::fit_samples`]: robust, or the
    /// scale only from one point).
    Sparse(Vec<PixelDepth>),
    /// Fitted to the model fused so far, rendered from the view's camera.
    FromModel,
}

/// Parameters of a [`Fusion`].
#[derive(Clone, Debug)]
pub struct FusionOptions {
    /// The TSDF volume the views are integrated into.
    pub tsdf: TsdfOptions,
    /// Refine given poses by ICP against the model.
    pub refine_poses: bool,
    /// ICP settings for refining and tracking poses.
    pub icp: IcpOptions,
    /// The view's points for ICP: every `icp_stride`-th pixel of every `icp_stride`-th row.
    pub icp_stride: usize,
    /// Fit every metric view after the first to the model (scale and shift in inverse
    /// depth), for metric models whose scale varies from view to view. A metric view with
    /// its own [`View::scale`] is fitted as that says, whatever this is.
    pub align_metric: bool,
    /// The fewest pixels a view must share with the model to fit its scale.
    pub min_overlap_pixels: usize,
}

impl Default for FusionOptions {
    /// [`TsdfOptions::default`], no refinement, [`IcpOptions::default`] with two coarse
    /// stages (pairs up to 20 cm, then 10 cm, then 5 cm apart), ICP on every 4th pixel,
    /// metric depth as it is, 500 pixels of overlap.
    fn default() -> Self {
        Self {
            tsdf: TsdfOptions::default(),
            refine_poses: false,
            icp: IcpOptions {
                coarse_to_fine: vec![4.0, 2.0],
                ..IcpOptions::default()
            },
            icp_stride: 4,
            align_metric: false,
            min_overlap_pixels: 500,
        }
    }
}

/// One view: depth, colours, camera and (optionally) pose.
#[derive(Clone, Debug)]
pub struct View {
    /// Metric depth or disparity; zero or non-finite where unknown.
    pub depth: Prediction,
    /// 8-bit RGB per pixel, same size as `depth`.
    pub colors: Option<Vec<[u8; 3]>>,
    /// The camera, the same size as `depth`.
    pub camera: Intrinsics,
    /// `p_in_world = world_from_camera * p_in_camera` (OpenCV axes); `None` to track the
    /// view against the model.
    pub world_from_camera: Option<Isometry3<f64>>,
    /// How the depth gets to metres. For disparity `None` means [`ViewScale::FromModel`];
    /// for metric depth `None` means as it is (unless [`FusionOptions::align_metric`]), and
    /// a scale fits its inverse depth like disparity (the first view's
    /// [`ViewScale::FromModel`] is kept as it is).
    pub scale: Option<ViewScale>,
}

/// What [`Fusion::add_view`] did with a view.
#[derive(Clone, Debug)]
pub struct ViewReport {
    /// The pose the view was integrated with.
    pub world_from_camera: Isometry3<f64>,
    /// The map from the view's disparity (or inverse metric depth) to inverse metres, when
    /// one was applied.
    pub affine: Option<Affine>,
    /// How many samples the scale was fitted to (0 when none was fitted).
    pub scale_samples: usize,
    /// The ICP run, when the pose was refined or tracked.
    pub icp: Option<IcpResult>,
    /// Why a refinement was refused (the given pose was kept).
    pub icp_refused: Option<String>,
}

/// The model a view is aligned to: the fused surface as a mesh and as an ICP target.
struct Model {
    mesh: TriangleMesh,
    target: Option<IcpTarget>,
}

/// Views fused one at a time into a TSDF volume (see the [module docs](self)).
pub struct Fusion {
    options: FusionOptions,
    volume: TsdfVolume,
    size: Option<(u32, u32)>,
    views: usize,
    /// The pose of the last view integrated.
    last_pose: Option<Isometry3<f64>>,
    /// Refined pose times the given pose's inverse, for the last refined view.
    correction: Isometry3<f64>,
    /// The model as of the last view; `None` when views were integrated since.
    model: Option<Model>,
}

impl Fusion {
    /// An empty model.
    ///
    /// # Errors
    /// [`Error::Invalid`] for invalid TSDF options or an ICP stride of 0.
    pub fn new(options: FusionOptions) -> Result<Self> {
        if options.icp_stride == 0 {
            return Err(Error::Invalid("the ICP stride must be at least 1".into()));
        }
        let volume = TsdfVolume::new(options.tsdf.clone())?;
        Ok(Self {
            options,
            volume,
            size: None,
            views: 0,
            last_pose: None,
            correction: Isometry3::identity(),
            model: None,
        })
    }

    /// The volume fused so far.
    pub fn volume(&self) -> &TsdfVolume {
        &self.volume
    }

    /// The volume, for extraction.
    pub fn into_volume(self) -> TsdfVolume {
        self.volume
    }

    /// How many views were integrated.
    pub fn view_count(&self) -> usize {
        self.views
    }

    /// Puts the view's depth in metres, settles its pose and integrates it.
    ///
    /// # Errors
    /// - [`Error::Invalid`] for a view whose size differs from the first view's, colours or
    ///   a camera of another size, an invalid camera, a view of disparity without a pose,
    ///   the first view of disparity with [`ViewScale::FromModel`], or too little overlap
    ///   with the model to fit a scale;
    /// - [`Error::Diverged`] when tracking a view without a pose fails;
    /// - errors of the scale fit, ICP and integration.
    pub fn add_view(&mut self, view: View) -> Result<ViewReport> {
        let (w, h) = (view.depth.width(), view.depth.height());
        match self.size {
            Some((fw, fh)) if (fw, fh) != (w, h) => {
                return Err(Error::Invalid(format!(
                    "the view is {w} x {h} but the first view was {fw} x {fh}; all views of a \
                     sequence must have one size"
                )));
            }
            _ => {}
        }
        let pixels = w as usize * h as usize;
        if let Some(colors) = &view.colors {
            if colors.len() != pixels {
                return Err(Error::Invalid(format!(
                    "the colours have {} pixels but the depth is {w} x {h}",
                    colors.len()
                )));
            }
        }
        check_camera(&view.camera, w, h)?;
        let mut report = ViewReport {
            world_from_camera: Isometry3::identity(),
            affine: None,
            scale_samples: 0,
            icp: None,
            icp_refused: None,
        };

        // Disparity needs its pose before it has metres; metric depth can be tracked first.
        let (depth, pose) = match view.depth.by_scale() {
            ByScale::Relative(disparity) => {
                let Some(given) = view.world_from_camera else {
                    return Err(Error::Invalid(
                        "a view of relative depth (disparity) needs a pose: tracking needs \
                         metric depth"
                            .into(),
                    ));
                };
                let start = self.correction * given;
                let scale = view.scale.unwrap_or(ViewScale::FromModel);
                let metres =
                    self.in_metres(&disparity, scale, &view.camera, &start, &mut report)?;
                let pose = self.settle_pose(&metres, &view.camera, Some(given), &mut report)?;
                (metres, pose)
            }
            ByScale::Metric(depth) => {
                let pose =
                    self.settle_pose(&depth, &view.camera, view.world_from_camera, &mut report)?;
                let scale = match view.scale {
                    None if self.options.align_metric => Some(ViewScale::FromModel),
                    scale => scale,
                };
                let depth = match scale {
                    None => depth,
                    // The first view sets the scale the others are fitted to.
                    Some(ViewScale::FromModel) if self.views == 0 => depth,
                    Some(scale) => {
                        let inverse = inverse_depth(&depth)?;
                        self.in_metres(&inverse, scale, &view.camera, &pose, &mut report)?
                    }
                };
                (depth, pose)
            }
        };

        self.volume
            .integrate(&depth, view.colors.as_deref(), &view.camera, &pose)?;
        self.size = Some((w, h));
        self.views += 1;
        self.last_pose = Some(pose);
        self.model = None;
        report.world_from_camera = pose;
        Ok(report)
    }

    /// The model as of now, extracted when views were integrated since the last call.
    fn model(&mut self) -> Result<&mut Model> {
        let model = match self.model.take() {
            Some(model) => model,
            None => Model {
                mesh: self.volume.extract_mesh()?,
                target: None,
            },
        };
        Ok(self.model.insert(model))
    }

    /// Disparity to metres with the view's scale.
    fn in_metres(
        &mut self,
        disparity: &DepthMap<Disparity>,
        scale: ViewScale,
        camera: &Intrinsics,
        pose: &Isometry3<f64>,
        report: &mut ViewReport,
    ) -> Result<DepthMap<Metres>> {
        let affine = match scale {
            ViewScale::Known(affine) => affine,
            ViewScale::Sparse(points) => {
                let samples = align::samples_from_points(disparity, &points, Sampling::Nearest)?;
                report.scale_samples = samples.len();
                align::fit_samples(&samples)?
            }
            ViewScale::FromModel => {
                if self.views == 0 {
                    return Err(Error::Invalid(
                        "the first view of relative depth has nothing to be fitted to: give its \
                         scale and shift, sparse metric points, or use metric depth"
                            .into(),
                    ));
                }
                let mesh = &self.model()?.mesh;
                // The camera is the size of the disparity (checked in `add_view`).
                let rendered = render_depth(mesh, camera, pose)?;
                let samples = align::samples_from_dense(disparity, &rendered)?;
                report.scale_samples = samples.len();
                if samples.len() < self.options.min_overlap_pixels {
                    return Err(Error::Invalid(format!(
                        "the view shares {} pixels with the model fused so far, fewer than the \
                         {} needed to fit its scale: views must overlap",
                        samples.len(),
                        self.options.min_overlap_pixels
                    )));
                }
                align::fit_robust(&samples.disparity, &samples.depth_m)?
            }
        };
        report.affine = Some(affine);
        affine.apply_map(disparity)
    }

    /// The pose to integrate with: given, refined, or tracked.
    fn settle_pose(
        &mut self,
        depth: &DepthMap<Metres>,
        camera: &Intrinsics,
        given: Option<Isometry3<f64>>,
        report: &mut ViewReport,
    ) -> Result<Isometry3<f64>> {
        let initial = match (given, self.last_pose) {
            // The first view defines the world when there are no poses.
            (None, None) => return Ok(Isometry3::identity()),
            (Some(given), _) if !self.options.refine_poses || self.views == 0 => return Ok(given),
            (Some(given), _) => self.correction * given,
            (None, Some(last)) => last,
        };
        let source = self.icp_source(depth, camera)?;
        let options = self.options.icp.clone();
        let model = self.model()?;
        if model.target.is_none() {
            let cloud = PointCloud {
                points: model.mesh.vertices.clone(),
                colors: None,
                normals: model.mesh.normals.clone(),
            };
            model.target = Some(IcpTarget::new(cloud)?);
        }
        let Some(target) = &model.target else {
            return Err(Error::Invalid("no ICP target".into()));
        };
        match (
            icp_point_to_plane(&source, target, &initial, &options),
            given,
        ) {
            (Ok(result), given) => {
                let pose = result.target_from_source;
                if let Some(given) = given {
                    self.correction = pose * given.inverse();
                }
                report.icp = Some(result);
                Ok(pose)
            }
            (Err(Error::Diverged(reason)), Some(_)) => {
                tracing::warn!("pose refinement refused, keeping the given pose: {reason}");
                report.icp_refused = Some(reason);
                Ok(initial)
            }
            (Err(Error::Diverged(reason)), None) => Err(Error::Diverged(format!(
                "cannot track the view against the model (give poses, or views that overlap \
                 more): {reason}"
            ))),
            (Err(e), _) => Err(e),
        }
    }

    /// The view's points in camera coordinates for ICP.
    fn icp_source(&self, depth: &DepthMap<Metres>, camera: &Intrinsics) -> Result<PointCloud> {
        let options = UnprojectOptions {
            max_depth_m: self.options.tsdf.max_depth_m,
            stride: self.options.icp_stride,
            ..Default::default()
        };
        unproject(depth, camera, &options, None)
    }
}

/// Metric depth as inverse depth, typed as disparity so it can be fitted like disparity
/// (`NaN` where depth is not positive and finite).
fn inverse_depth(depth: &DepthMap<Metres>) -> Result<DepthMap<Disparity>> {
    let data = depth
        .data()
        .iter()
        .map(|&d| {
            if d.is_finite() && d > 0.0 {
                1.0 / d
            } else {
                f32::NAN
            }
        })
        .collect();
    DepthMap::new(depth.width(), depth.height(), data).map_err(|e| Error::Invalid(e.to_string()))
}
