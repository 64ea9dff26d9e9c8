//! Views jobs: a handful of photos of one scene through Depth Anything 3, to per-photo depth
//! and confidence, every photo's camera, and the scene's points (PLY, GLB, a COLMAP model).
//!
//! Files written into the output folder, each atomically:
//! - `<stem>.depth.npy` (and `<stem>.conf.npy` for any-view models): float32 at the photo's
//!   own resolution, resized from the network's with bilinear interpolation at half-pixel
//!   centres (as `F.interpolate(..., mode="bilinear", align_corners=False)`); pixels outside
//!   the network input (views centre-cropped to a common size) are NaN;
//! - `cameras.json` (any-view models): per photo its name, size, `world_from_camera` (4x4,
//!   OpenCV axes) and `K` at its resolution (read back by every command that takes
//!   `--poses`);
//! - with `--formats`: `points.ply`, `scene.glb` (points and camera frustums), and
//!   `colmap/{cameras,images,points3D}.txt`, all from the pixels whose confidence reaches
//!   the threshold.

use std::path::{Path, PathBuf};

use anydepth_core::camera::Intrinsics;
use anydepth_core::pose::{
    read_trajectory, write_cameras_json, write_colmap_text, CameraFrame, ColmapImage, ColmapPoint,
    PoseFormat, PoseKey,
};
use anydepth_core::{load_image, RgbImage};
use anydepth_geometry::PointCloud;
use anydepth_model::da3::{
    check_conf_threshold, check_process_res, default_confidence_threshold, Da3Engine, Da3Model,
    Da3View, GivenCamera, Placement, RefViewStrategy, ViewsInput, ViewsOutput,
};
use anydepth_model::EngineLoader;
use nalgebra::{Isometry3, Matrix4, Point3};

use crate::error::{bail, Context, Result};
use crate::model::Da3ModelRequest;
use crate::output::FileOutput;
use crate::scene::CameraRequest;
use crate::shape::ViewCamera;
use crate::sources;
use crate::Notes;

/// What `--formats` can add to the depth, confidence and cameras.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ViewsFormat {
    /// `scene.glb`: the points, coloured, and every camera's frustum.
    Glb,
    /// `colmap/`: `cameras.txt`, `images.txt` and `points3D.txt`.
    Colmap,
    /// `points.ply`: the points, coloured (binary PLY).
    Ply,
}

/// What a views job is asked to do.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ViewsRequest {
    /// Photos of one scene (files, folders or globs), in name order.
    #[cfg_attr(feature = "clap", arg(value_name = "PHOTO", required = true))]
    pub photos: Vec<PathBuf>,

    /// The Depth Anything 3 model and where it runs.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub model: Da3ModelRequest,

    /// Output folder (created if needed).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub out: PathBuf,

    /// Known camera poses of the photos (any trajectory format `fuse` reads, cameras.json
    /// included), matched by name or order: the network is conditioned on them and depth
    /// comes out in their units. Intrinsics come from the file (COLMAP, NeRF, cameras.json)
    /// or from --intrinsics / --fov.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub poses: Option<PathBuf>,

    /// Format of --poses [default: recognised from the content].
    #[cfg_attr(feature = "clap", arg(long, value_name = "FORMAT", requires = "poses"))]
    pub pose_format: Option<PoseFormat>,

    /// The photos' camera: with --poses, and for the metric model (its depth in metres
    /// needs the focal length); else EXIF or the 60-degree guess.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub camera: CameraRequest,

    /// Long side of the network input in pixels (rounded to a multiple of 14).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = anydepth_model::da3::DEFAULT_PROCESS_RES, value_name = "N")
    )]
    pub process_res: u32,

    /// How to choose the reference view (whose camera orients the world) among 3 or more
    /// photos without --poses.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_enum, default_value = "saddle-balanced")
    )]
    pub ref_view: RefViewStrategy,

    /// Points (--formats) keep pixels with at least this confidence (>= 1) [default: the
    /// 40th percentile over all views, at least 1.05 and at most the 90th percentile, as
    /// the official GLB export].
    #[cfg_attr(feature = "clap", arg(long, value_name = "C"))]
    pub conf_threshold: Option<f32>,

    /// Also write: glb, colmap, ply (comma-separated).
    #[cfg_attr(
        feature = "clap",
        arg(long, value_enum, value_delimiter = ',', value_name = "FORMATS")
    )]
    pub formats: Vec<ViewsFormat>,

    /// Replace existing outputs.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
}

/// Hears of a views job's progress; every method has a default that does nothing.
pub trait ViewsObserver {
    /// What the user should know (a guessed camera).
    fn note(&self, _message: &str) {}

    /// A stage begins (`"loading the model"`, `"running 3 views"`, `"writing"`).
    fn stage(&self, _what: &str) {}

    /// Bytes of weights downloaded so far, of `total`.
    fn download(&self, _file: &str, _done: u64, _total: Option<u64>) {}

    /// The result, before files are written.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn result(&self, _views: &ViewsResult) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }
}

/// One photo's result at its own resolution.
#[derive(Clone, Debug)]
pub struct PhotoView {
    /// The photo's path.
    pub path: PathBuf,
    /// The photo (for colours).
    pub image: RgbImage,
    /// Depth, row-major at the photo's resolution; NaN outside the network input.
    pub depth: Vec<f32>,
    /// Confidence (any-view models), likewise.
    pub confidence: Option<Vec<f32>>,
    /// The camera at the photo's resolution (any-view models).
    pub camera: Option<ViewCamera>,
    /// The network's view, at its input resolution.
    pub network: Da3View,
    /// Where the network input sits in the photo.
    pub placement: Placement,
}

/// What a views job computed.
#[derive(Clone, Debug)]
pub struct ViewsResult {
    /// Per photo, in order.
    pub views: Vec<PhotoView>,
    /// The reference view chosen (3 or more photos, no poses).
    pub reference_view: Option<usize>,
    /// With --poses: the scale from the poses' units to the network's.
    pub given_scale: Option<f64>,
    /// The confidence threshold the points used.
    pub conf_threshold: Option<f32>,
    /// The files written.
    pub written: Vec<PathBuf>,
}

impl ViewsRequest {
    /// Runs the job: reads the photos (and poses), runs the network from `loader`, writes
    /// every output.
    ///
    /// # Errors
    /// When the request is invalid, an output exists without --force, a file cannot be
    /// read or written, the photos cannot share a network input, or inference fails.
    pub fn run(
        &self,
        loader: &dyn EngineLoader,
        observer: &dyn ViewsObserver,
    ) -> Result<ViewsResult> {
        let photos = sources::expand_images(&self.photos)?.files;
        self.check_options()?;
        let any_view = self
            .model
            .expected_model()
            .is_none_or(Da3Model::is_any_view);
        if !any_view && !self.formats.is_empty() {
            bail!(
                "--formats writes points at the cameras, which monocular models do not give: \
                 use an any-view model (da3-small, da3-base, da3-large, da3-giant)"
            );
        }
        let planned = self.planned_outputs(&photos, any_view);
        for path in &planned {
            if path.exists() && !self.force {
                bail!(
                    "refusing to overwrite an existing output (pass --force to replace it): {}",
                    path.display()
                );
            }
        }
        let images = photos
            .iter()
            .map(|p| load_image(p).with_context(|| format!("cannot read {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let given = match &self.poses {
            Some(path) => {
                let notes = |message: &str| observer.note(message);
                Some(given_cameras(
                    path,
                    self.pose_format,
                    &self.camera,
                    &photos,
                    &images,
                    &notes,
                )?)
            }
            None => None,
        };

        observer.stage("loading the model");
        let engine = self.model.load(loader, &mut |file, done, total| {
            observer.download(file, done, total)
        })?;
        let model = engine.model();
        if given.is_some() && !model.is_any_view() {
            bail!(
                "{model} takes no camera poses: use an any-view model (da3-small, da3-base, \
                 da3-large, da3-giant) with --poses"
            );
        }
        let intrinsics = if model.is_metric() {
            Some(self.photo_intrinsics(&photos, &images, observer)?)
        } else {
            None
        };
        observer.stage(&format!(
            "running {} {} through {model}",
            images.len(),
            if images.len() == 1 { "photo" } else { "photos" }
        ));
        let output = engine.run(&ViewsInput {
            photos: &images,
            process_res: self.process_res,
            strategy: self.ref_view,
            cameras: given.as_deref(),
            intrinsics: intrinsics.as_deref(),
        })?;
        let mut result = to_photos(photos, images, output)?;
        result.conf_threshold = confidence_threshold(&result, self.conf_threshold);
        observer.result(&result).map_err(crate::Error::Observer)?;
        observer.stage("writing");
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        result.written = self.write(&result, engine.as_ref())?;
        Ok(result)
    }

    fn check_options(&self) -> Result<()> {
        check_process_res(self.process_res)?;
        if let Some(c) = self.conf_threshold {
            check_conf_threshold(c)?;
        }
        if self.out.is_file() {
            bail!(
                "--out must be a folder, but {} is a file",
                self.out.display()
            );
        }
        Ok(())
    }

    /// Every file the job may write (checked before anything runs).
    fn planned_outputs(&self, photos: &[PathBuf], any_view: bool) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for photo in photos {
            let stem = sources::stem(photo);
            paths.push(self.out.join(format!("{stem}.depth.npy")));
            if any_view {
                paths.push(self.out.join(format!("{stem}.conf.npy")));
            }
        }
        if any_view {
            paths.push(self.out.join("cameras.json"));
        }
        for format in &self.formats {
            match format {
                ViewsFormat::Glb => paths.push(self.out.join("scene.glb")),
                ViewsFormat::Ply => paths.push(self.out.join("points.ply")),
                ViewsFormat::Colmap => {
                    for file in ["cameras.txt", "images.txt", "points3D.txt"] {
                        paths.push(self.out.join("colmap").join(file));
                    }
                }
            }
        }
        paths
    }

    /// Each photo's intrinsics (the metric model): --intrinsics, --fov, EXIF or the guess.
    fn photo_intrinsics(
        &self,
        photos: &[PathBuf],
        images: &[RgbImage],
        observer: &dyn ViewsObserver,
    ) -> Result<Vec<Intrinsics>> {
        let notes = |message: &str| observer.note(message);
        photos
            .iter()
            .zip(images)
            .map(|(photo, image)| {
                self.camera
                    .resolve(Some(photo), image.width, image.height, &notes)
            })
            .collect()
    }

    fn write(&self, result: &ViewsResult, engine: &dyn Da3Engine) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for view in &result.views {
            let stem = sources::stem(&view.path);
            let (w, h) = (view.image.width as usize, view.image.height as usize);
            let depth = self.out.join(format!("{stem}.depth.npy"));
            write_npy(&depth, self.force, &view.depth, w, h)?;
            written.push(depth);
            if let Some(confidence) = &view.confidence {
                let path = self.out.join(format!("{stem}.conf.npy"));
                write_npy(&path, self.force, confidence, w, h)?;
                written.push(path);
            }
        }
        if engine.model().is_any_view() {
            let frames: Vec<CameraFrame> = result
                .views
                .iter()
                .filter_map(|v| {
                    let camera = v.camera.as_ref()?;
                    let k = &camera.intrinsics;
                    Some(CameraFrame {
                        name: file_name(&v.path),
                        width: k.width,
                        height: k.height,
                        world_from_camera: matrix_rows(&camera.world_from_camera.to_homogeneous()),
                        k: [[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]],
                    })
                })
                .collect();
            let path = self.out.join("cameras.json");
            write_cameras_json(&path, self.force, &frames)?;
            written.push(path);
        }
        if self.formats.is_empty() {
            return Ok(written);
        }
        let points = scene_points(result);
        let cloud = points.cloud();
        let cameras: Vec<ViewCamera> = result
            .views
            .iter()
            .filter_map(|v| v.camera.clone())
            .collect();
        for format in &self.formats {
            match format {
                ViewsFormat::Ply | ViewsFormat::Glb => {
                    let name = if *format == ViewsFormat::Ply {
                        "points.ply"
                    } else {
                        "scene.glb"
                    };
                    let output = FileOutput {
                        path: self.out.join(name),
                        ascii: false,
                        cameras: *format == ViewsFormat::Glb,
                        force: self.force,
                    };
                    output.write_cloud(&cloud, &cameras)?;
                    written.push(output.path);
                }
                ViewsFormat::Colmap => {
                    let dir = self.out.join("colmap");
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    let images: Vec<ColmapImage> = result
                        .views
                        .iter()
                        .filter_map(|v| {
                            let camera = v.camera.as_ref()?;
                            Some(ColmapImage {
                                name: file_name(&v.path),
                                intrinsics: camera.intrinsics,
                                world_from_camera: camera.world_from_camera,
                            })
                        })
                        .collect();
                    if images.len() != result.views.len() {
                        bail!("a COLMAP model needs cameras: use an any-view model");
                    }
                    write_colmap_text(&dir, self.force, &images, &points.colmap)?;
                    for file in ["cameras.txt", "images.txt", "points3D.txt"] {
                        written.push(dir.join(file));
                    }
                }
            }
        }
        Ok(written)
    }
}

/// The poses of `path` matched to the photos (by name, else in order; at least one per
/// photo), with their intrinsics: the file's, unless `camera` gives them.
pub(crate) fn given_cameras(
    path: &Path,
    format: Option<PoseFormat>,
    camera: &CameraRequest,
    photos: &[PathBuf],
    images: &[RgbImage],
    notes: Notes,
) -> Result<Vec<GivenCamera>> {
    let trajectory = read_trajectory(path, format)?;
    let by_order = trajectory
        .poses
        .iter()
        .all(|entry| matches!(entry.key, PoseKey::Index(_)));
    if trajectory.poses.len() < photos.len() {
        bail!(
            "{} holds {} poses for {} photos: give a pose for every photo",
            path.display(),
            trajectory.poses.len(),
            photos.len()
        );
    }
    let entries = if by_order {
        trajectory.poses_for_frames(photos.len())?
    } else {
        trajectory.poses_for_files(photos)?
    };
    entries
        .iter()
        .zip(photos.iter().zip(images))
        .map(|(entry, (photo, image))| {
            let intrinsics = match entry.intrinsics {
                Some(k) if camera.intrinsics.is_none() && camera.fov.is_none() => {
                    k.scaled(image.width, image.height)?
                }
                _ => {
                    if camera.intrinsics.is_none() && camera.fov.is_none() {
                        bail!(
                            "{} gives no intrinsics: pass --intrinsics FX,FY,CX,CY or \
                             --fov DEG with --poses",
                            path.display()
                        );
                    }
                    camera.resolve(Some(photo), image.width, image.height, notes)?
                }
            };
            Ok(GivenCamera {
                world_from_camera: matrix_rows(&entry.world_from_camera.to_homogeneous()),
                intrinsics,
            })
        })
        .collect()
}

/// A 4x4 matrix as rows.
fn matrix_rows(m: &Matrix4<f64>) -> [[f64; 4]; 4] {
    std::array::from_fn(|i| std::array::from_fn(|j| m[(i, j)]))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The confidence threshold of the points: `explicit`, else the official GLB export's
/// default over every view's confidence (none without confidence).
pub(crate) fn confidence_threshold(result: &ViewsResult, explicit: Option<f32>) -> Option<f32> {
    if explicit.is_some() {
        return explicit;
    }
    let all: Vec<f32> = result
        .views
        .iter()
        .filter_map(|v| v.network.confidence.as_deref())
        .flatten()
        .copied()
        .collect();
    default_confidence_threshold(&all)
}

fn write_npy(path: &Path, force: bool, values: &[f32], width: usize, height: usize) -> Result<()> {
    let bytes = anydepth_core::npy::encode_f32(values, &[height, width]);
    anydepth_core::fs::write_atomically(path, force, |out| out.write_all(&bytes))?;
    Ok(())
}

/// The engine's views brought to each photo's resolution.
///
/// # Errors
/// When a predicted camera is not finite, or the engine's maps do not have their sizes.
pub(crate) fn to_photos(
    photos: Vec<PathBuf>,
    images: Vec<RgbImage>,
    output: ViewsOutput,
) -> Result<ViewsResult> {
    let views = photos
        .into_iter()
        .zip(images)
        .zip(output.views.into_iter().zip(output.placements))
        .map(|((path, image), (network, placement))| {
            let resize = |values: &[f32]| {
                resize_to_photo(
                    values,
                    network.width,
                    network.height,
                    &placement,
                    image.width,
                    image.height,
                )
            };
            let depth = resize(&network.depth)?;
            let confidence = network.confidence.as_deref().map(resize).transpose()?;
            let camera = match &network.camera {
                Some(c) => Some(
                    photo_camera(c, &placement, image.width, image.height)
                        .with_context(|| format!("the camera of {}", path.display()))?,
                ),
                None => None,
            };
            Ok(PhotoView {
                path,
                image,
                depth,
                confidence,
                camera,
                network,
                placement,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ViewsResult {
        views,
        reference_view: output.reference_view,
        given_scale: output.given_scale,
        conf_threshold: None,
        written: Vec::new(),
    })
}

/// A network camera at the photo's resolution: the intrinsics through the placement, the
/// pose's rotation made exactly orthonormal (a predicted quaternion's matrix is, to
/// rounding).
fn photo_camera(
    camera: &anydepth_model::da3::Da3Camera,
    placement: &Placement,
    width: u32,
    height: u32,
) -> Result<ViewCamera> {
    let k = placement.to_photo(&camera.k);
    let intrinsics = Intrinsics::new(k[0][0], k[1][1], k[0][2], k[1][2], width, height)?;
    let m = Matrix4::from_fn(|i, j| camera.world_from_camera[i][j]);
    if !m.iter().all(|v| v.is_finite()) {
        bail!("the network predicted a camera pose that is not finite");
    }
    let rotation = nalgebra::UnitQuaternion::from_matrix_eps(
        &m.fixed_view::<3, 3>(0, 0).into_owned(),
        1e-12,
        100,
        nalgebra::UnitQuaternion::identity(),
    );
    let translation = nalgebra::Translation3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)]);
    Ok(ViewCamera {
        intrinsics,
        world_from_camera: Isometry3::from_parts(translation, rotation),
    })
}

/// Bilinear resampling of a network map (`net_w x net_h`) onto the photo's pixels, at
/// half-pixel centres as `F.interpolate(..., align_corners=False)`, through the placement
/// (the network input is the photo scaled then centre-cropped); photo pixels outside the
/// network input are NaN.
///
/// # Errors
/// When `values` does not hold `net_w * net_h` values or a size is zero.
pub fn resize_to_photo(
    values: &[f32],
    net_w: u32,
    net_h: u32,
    placement: &Placement,
    photo_w: u32,
    photo_h: u32,
) -> Result<Vec<f32>> {
    if net_w == 0 || net_h == 0 || values.len() != net_w as usize * net_h as usize {
        bail!(
            "a {net_w}x{net_h} map needs {} values, got {}",
            net_w as usize * net_h as usize,
            values.len()
        );
    }
    let axis =
        |photo_len: u32, scale: f64, crop: u32, net_len: u32| -> Vec<Option<(usize, usize, f32)>> {
            (0..photo_len)
                .map(|p| {
                    let src = (f64::from(p) + 0.5) * scale - 0.5 - f64::from(crop);
                    // Outside the input by more than half a pixel: no value.
                    if src < -0.5 || src > f64::from(net_len) - 0.5 {
                        return None;
                    }
                    let src = src.max(0.0);
                    let i0 = (src.floor() as usize).min(net_len as usize - 1);
                    let i1 = (i0 + 1).min(net_len as usize - 1);
                    Some((i0, i1, (src - i0 as f64) as f32))
                })
                .collect()
        };
    let xs = axis(photo_w, placement.scale_x, placement.crop_left, net_w);
    let ys = axis(photo_h, placement.scale_y, placement.crop_top, net_h);
    let w = net_w as usize;
    let mut out = Vec::with_capacity(photo_w as usize * photo_h as usize);
    for y in &ys {
        for x in &xs {
            let value = match (y, x) {
                (Some((y0, y1, fy)), Some((x0, x1, fx))) => {
                    let at = |yy: usize, xx: usize| values[yy * w + xx];
                    let top = at(*y0, *x0) * (1.0 - fx) + at(*y0, *x1) * fx;
                    let bottom = at(*y1, *x0) * (1.0 - fx) + at(*y1, *x1) * fx;
                    top * (1.0 - fy) + bottom * fy
                }
                _ => f32::NAN,
            };
            out.push(value);
        }
    }
    Ok(out)
}

/// The scene's points: confident pixels of every view, in the world.
struct ScenePoints {
    points: Vec<Point3<f32>>,
    colors: Vec<[u8; 3]>,
    colmap: Vec<ColmapPoint>,
}

impl ScenePoints {
    fn cloud(&self) -> PointCloud {
        PointCloud {
            points: self.points.clone(),
            colors: Some(self.colors.clone()),
            normals: None,
        }
    }
}

/// Unprojects every network pixel whose confidence reaches the threshold with its
/// camera, coloured from the photo (any-view models: monocular ones give no cameras).
fn scene_points(result: &ViewsResult) -> ScenePoints {
    let mut points = ScenePoints {
        points: Vec::new(),
        colors: Vec::new(),
        colmap: Vec::new(),
    };
    for index in 0..result.views.len() {
        add_view_points(result, index, &mut points);
    }
    points
}

/// The points of view `index` alone, as the scene's points hold them (what the Rerun
/// recording shows per view).
pub fn view_points(result: &ViewsResult, index: usize) -> PointCloud {
    let mut points = ScenePoints {
        points: Vec::new(),
        colors: Vec::new(),
        colmap: Vec::new(),
    };
    add_view_points(result, index, &mut points);
    PointCloud {
        points: points.points,
        colors: Some(points.colors),
        normals: None,
    }
}

fn add_view_points(result: &ViewsResult, index: usize, points: &mut ScenePoints) {
    let Some(view) = result.views.get(index) else {
        return;
    };
    let (Some(camera), Some(net_camera)) = (&view.camera, &view.network.camera) else {
        return;
    };
    let net = &view.network;
    // The network's intrinsics in the OpenCV convention at its own resolution.
    let k = &net_camera.k;
    let (fx, fy, cx, cy) = (k[0][0], k[1][1], k[0][2] - 0.5, k[1][2] - 0.5);
    let pose = camera.world_from_camera;
    let image = &view.image;
    for y in 0..net.height as usize {
        for x in 0..net.width as usize {
            let i = y * net.width as usize + x;
            let keep = match (&net.confidence, result.conf_threshold) {
                (Some(conf), Some(threshold)) => conf[i] >= threshold,
                _ => true,
            };
            let z = f64::from(net.depth[i]);
            if !keep || !z.is_finite() || z <= 0.0 {
                continue;
            }
            let in_camera = Point3::new((x as f64 - cx) / fx * z, (y as f64 - cy) / fy * z, z);
            let world = pose * in_camera;
            let px = (x as f64 + f64::from(view.placement.crop_left) + 0.5)
                / view.placement.scale_x
                - 0.5;
            let py = (y as f64 + f64::from(view.placement.crop_top) + 0.5) / view.placement.scale_y
                - 0.5;
            let (u, v) = (
                (px.round().max(0.0) as u32).min(image.width - 1),
                (py.round().max(0.0) as u32).min(image.height - 1),
            );
            let o = (v as usize * image.width as usize + u as usize) * 3;
            let color =
                [0, 1, 2].map(|c| (image.data[o + c] * 255.0).round().clamp(0.0, 255.0) as u8);
            points.points.push(world.cast::<f32>());
            points.colors.push(color);
            points.colmap.push(ColmapPoint {
                position: world,
                color,
                image: index,
                pixel: (px, py),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_matches_half_pixel_bilinear() {
        // 2x1 -> 4x1: F.interpolate gives [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
        let placement = Placement {
            scale_x: 0.5,
            scale_y: 1.0,
            crop_left: 0,
            crop_top: 0,
        };
        let out = resize_to_photo(&[0.0, 4.0], 2, 1, &placement, 4, 1).expect("2 values");
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn cropped_borders_are_nan() {
        // The photo (6 wide) scaled by 1 then cropped by 1 on each side to 4.
        let placement = Placement {
            scale_x: 1.0,
            scale_y: 1.0,
            crop_left: 1,
            crop_top: 0,
        };
        let out = resize_to_photo(&[1.0, 2.0, 3.0, 4.0], 4, 1, &placement, 6, 1).expect("4 values");
        assert!(out[0].is_nan() && out[5].is_nan());
        assert_eq!(&out[1..5], &[1.0, 2.0, 3.0, 4.0]);
    }
}
