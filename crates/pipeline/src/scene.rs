//! One view in metres: metric depth, its colours and its camera, from a photo (the depth
//! engine runs) or from a depth file, with disparity turned into metres where needed.

use std::path::{Path, PathBuf};

use anydepth_core::camera::Intrinsics;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, load_rgb8, ByScale, DepthMap, Disparity, Metres, Prediction};
use anydepth_geometry::align::{self, Affine, PixelDepth, Sampling};
use anydepth_model::da3::{checkpoint_model, DEFAULT_PROCESS_RES};
use anydepth_model::EngineLoader;

use crate::depth::{Da3Photos, PhotoDepth};
use crate::error::{bail, Context, Result};
use crate::model::{Da3ModelRequest, ModelRequest};
use crate::{Downloads, Notes};

/// The camera of a view, as asked for: intrinsics, or a field of view; else the photo's
/// EXIF, else a guess.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CameraRequest {
    /// Camera as fx,fy,cx,cy in pixels (pixel centres at integer coordinates).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "FX,FY,CX,CY",
            value_delimiter = ',',
            conflicts_with = "fov"
        )
    )]
    pub intrinsics: Option<Vec<f64>>,

    /// Camera from a horizontal field of view in degrees (across the longer side).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DEG"))]
    pub fov: Option<f64>,
}

/// How the values of depth files become metres: their units, whether they are disparity,
/// and for disparity the sky cut and an explicit scale and shift.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DepthValues {
    /// Units per metre of --depth [default: 1000 for images, 1 for .npy/.pfm/.exr].
    #[cfg_attr(feature = "clap", arg(long, value_name = "S"))]
    pub depth_scale: Option<f64>,

    /// --depth holds disparity (inverse depth up to scale and shift), not metres.
    #[cfg_attr(feature = "clap", arg(long))]
    pub disparity: bool,

    /// Disparity to metres: 1/depth = scale * disparity + shift (with `fuse`, of the first
    /// view; later views are fitted to the model).
    #[cfg_attr(
        feature = "clap",
        arg(long, requires = "shift", allow_negative_numbers = true)
    )]
    pub scale: Option<f64>,

    /// Shift of the disparity-to-metres conversion (see --scale), in 1/metres.
    #[cfg_attr(
        feature = "clap",
        arg(long, requires = "scale", allow_negative_numbers = true)
    )]
    pub shift: Option<f64>,

    /// With disparity: drop pixels whose disparity is below this fraction of the largest
    /// (sky and other "infinitely far" regions).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = DEFAULT_SKY_FRACTION, value_name = "FRACTION")
    )]
    pub sky_fraction: f32,
}

impl Default for DepthValues {
    fn default() -> Self {
        Self {
            depth_scale: None,
            disparity: false,
            scale: None,
            shift: None,
            sky_fraction: DEFAULT_SKY_FRACTION,
        }
    }
}

/// Where depth, colour and the camera of one view come from.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct SceneRequest {
    /// A photo: its depth comes from the depth engine (use --metric, or align it).
    #[cfg_attr(feature = "clap", arg(value_name = "PHOTO", conflicts_with = "depth"))]
    pub photo: Option<PathBuf>,

    /// An existing depth file instead of a photo: 16-bit PNG or PGM (see --depth-scale),
    /// .npy, .pfm or .exr (metres, or disparity with --disparity; in an EXR the Z, depth,
    /// Y or R channel).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub depth: Option<PathBuf>,

    /// Colours for --depth (same size).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub color: Option<PathBuf>,

    /// How the values of the depth file become metres.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub values: DepthValues,

    /// The camera of the view.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub camera: CameraRequest,

    /// Metric depth to fit disparity to: a depth image, .npy, .pfm or .exr (dense or
    /// sparse, 0 = none) or a CSV of `u,v,metres` lines; one point fits the scale only.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "FILE", conflicts_with = "scale")
    )]
    pub align_depth: Option<PathBuf>,

    /// Units per metre of --align-depth [default: 1000 for images, 1 otherwise].
    #[cfg_attr(feature = "clap", arg(long, value_name = "S"))]
    pub align_depth_scale: Option<f64>,

    /// Drop points farther than this, in metres.
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub max_depth: Option<f32>,

    /// The depth model that runs for a photo.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub model: ModelRequest,
}

/// The share of the largest disparity below which pixels count as sky.
pub const DEFAULT_SKY_FRACTION: f32 = 0.01;

/// A view ready for geometry.
pub struct Scene {
    /// Depth per pixel, in metres.
    pub depth: DepthMap<Metres>,
    /// RGB8 per pixel, same size as `depth`.
    pub color: Option<Vec<[u8; 3]>>,
    /// The camera, the same size as `depth`: as asked for, else from the photo's EXIF,
    /// else a guess.
    pub camera: Intrinsics,
}

/// Units per metre of a depth file when none is given: 1000 for images (millimetres),
/// 1 for `.npy`, `.pfm`, `.exr` and `.csv` (metres).
pub fn default_scale(path: &Path) -> f64 {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "npy" || e == "pfm" || e == "exr" || e == "csv" => 1.0,
        _ => 1000.0,
    }
}

impl Scene {
    /// Builds the view `request` describes; the depth engine (from `loader`) runs only
    /// for a photo. `notes` hears what the user should know (a guessed camera);
    /// `downloads` hears of weights being downloaded.
    ///
    /// # Errors
    /// When the request is contradictory or invalid, a file cannot be read, or the depth
    /// holds nothing valid.
    pub fn load(
        request: &SceneRequest,
        loader: &dyn EngineLoader,
        notes: Notes,
        downloads: Downloads,
    ) -> Result<Scene> {
        load(request, loader, notes, downloads)
    }

    /// The view of a photo given as `photo_bytes` (its file's bytes, for EXIF) whose depth
    /// engine `prediction` and 8-bit `color` are already made: what [`Scene::load`] does
    /// after the network, for front ends that batch requests themselves (the service).
    /// `request.photo` and `request.depth` are ignored.
    ///
    /// # Errors
    /// As [`Scene::load`], and when `color` is not one pixel per depth value.
    pub fn from_prediction(
        request: &SceneRequest,
        prediction: Prediction,
        color: Vec<[u8; 3]>,
        photo_bytes: &[u8],
        notes: Notes,
    ) -> Result<Scene> {
        check_max_depth(request)?;
        if color.len() != prediction.width() as usize * prediction.height() as usize {
            bail!(
                "{} colours for a {} x {} depth map",
                color.len(),
                prediction.width(),
                prediction.height()
            );
        }
        scene_from_values(
            request,
            prediction,
            Some(color),
            PhotoSource::Bytes(photo_bytes),
            notes,
        )
    }
}

/// Where a view's EXIF camera can come from.
#[derive(Clone, Copy)]
enum PhotoSource<'a> {
    /// No photo (a depth file without colours).
    Absent,
    /// A file on disk.
    File(&'a Path),
    /// A file's bytes.
    Bytes(&'a [u8]),
}

fn check_max_depth(args: &SceneRequest) -> Result<()> {
    if let Some(m) = args.max_depth {
        if !(m.is_finite() && m > 0.0) {
            bail!("--max-depth must be a positive number of metres, got {m}");
        }
    }
    Ok(())
}

fn load(
    args: &SceneRequest,
    loader: &dyn EngineLoader,
    notes: Notes,
    downloads: Downloads,
) -> Result<Scene> {
    check_max_depth(args)?;
    let (values, color, color_path) = match (&args.photo, &args.depth) {
        (Some(photo), None) => {
            if args.color.is_some() {
                bail!("--color goes with --depth; a photo gives its own colours");
            }
            let image = load_image(photo)?;
            let prediction = match args.model.weights.as_deref().and_then(checkpoint_model) {
                // Depth Anything 3: metres from the metric model (with this photo's
                // camera), relative depth from the others.
                Some(model) => {
                    let engine = Da3ModelRequest::from_weights(&args.model, model)
                        .load(loader, downloads)?;
                    let photos = Da3Photos {
                        engine: engine.as_ref(),
                        process_res: DEFAULT_PROCESS_RES,
                        camera: args.camera.clone(),
                        notes,
                    };
                    let mut predictions =
                        photos.predict_photos(&[photo], std::slice::from_ref(&image))?;
                    predictions.pop().context("no prediction returned")?
                }
                None => {
                    let (estimator, _) = args.model.load(loader, None, 1, downloads)?;
                    estimator.predict(&image)?
                }
            };
            (prediction, Some(image.to_rgb8()), Some(photo.clone()))
        }
        (None, Some(depth)) => {
            let scale = args
                .values
                .depth_scale
                .unwrap_or_else(|| default_scale(depth));
            let prediction = if args.values.disparity {
                Prediction::Disparity(read_depth_values(depth, scale)?)
            } else {
                Prediction::Metric(read_depth_values(depth, scale)?)
            };
            let (w, h) = (prediction.width(), prediction.height());
            let color = match &args.color {
                Some(path) => {
                    let (cw, ch, pixels) = load_rgb8(path)?;
                    if (cw, ch) != (w, h) {
                        bail!(
                            "colour image is {cw} x {ch} but the depth map is {w} x {h}: {}",
                            path.display()
                        );
                    }
                    Some(pixels)
                }
                None => None,
            };
            (prediction, color, args.color.clone())
        }
        (None, None) => bail!("give a photo, or an existing depth map with --depth FILE"),
        (Some(_), Some(_)) => bail!("give either a photo or --depth, not both"),
    };
    let photo = match &color_path {
        Some(path) => PhotoSource::File(path),
        None => PhotoSource::Absent,
    };
    scene_from_values(args, values, color, photo, notes)
}

/// Depth in metres (disparity masked and fitted as asked), checked, and the camera.
fn scene_from_values(
    args: &SceneRequest,
    values: Prediction,
    color: Option<Vec<[u8; 3]>>,
    photo: PhotoSource<'_>,
    notes: Notes,
) -> Result<Scene> {
    // Depth Anything 3's relative depth goes the way of disparity, as its reciprocal.
    let depth = match values.by_scale() {
        ByScale::Metric(depth) => {
            if args.align_depth.is_some() || args.values.scale.is_some() {
                bail!(
                    "the depth is already in metres: --align-depth and --scale apply to disparity"
                );
            }
            depth
        }
        ByScale::Relative(disparity) => {
            if !(0.0..1.0).contains(&args.values.sky_fraction) {
                bail!(
                    "--sky-fraction must be in [0, 1), got {}",
                    args.values.sky_fraction
                );
            }
            let disparity = mask_sky(disparity, args.values.sky_fraction)?;
            let affine = fit_affine(args, &disparity)?;
            tracing::info!(
                scale = affine.scale,
                shift = affine.shift,
                "disparity to metres"
            );
            affine.apply_map(&disparity)?
        }
    };
    if depth.finite_range().is_none_or(|(_, hi)| hi <= 0.0) {
        bail!("the depth map holds no valid (positive) depth");
    }
    let (width, height) = (depth.width(), depth.height());
    let camera = camera(&args.camera, photo, width, height, notes)?;
    Ok(Scene {
        depth,
        color,
        camera,
    })
}

impl CameraRequest {
    /// The camera of a `width` x `height` view: the intrinsics, else the field of view,
    /// else the EXIF of `photo`, else [`Intrinsics::default_guess`] (told to `notes`).
    ///
    /// # Errors
    /// When the intrinsics are not four numbers or any value is invalid, or the EXIF
    /// cannot be read.
    pub fn resolve(
        &self,
        photo: Option<&Path>,
        width: u32,
        height: u32,
        notes: Notes,
    ) -> Result<Intrinsics> {
        let photo = photo.map_or(PhotoSource::Absent, PhotoSource::File);
        camera(self, photo, width, height, notes)
    }
}

fn camera(
    request: &CameraRequest,
    photo: PhotoSource<'_>,
    width: u32,
    height: u32,
    notes: Notes,
) -> Result<Intrinsics> {
    let (intrinsics, fov) = (request.intrinsics.as_deref(), request.fov);
    if let Some(k) = intrinsics {
        let [fx, fy, cx, cy] = k[..] else {
            bail!(
                "--intrinsics takes four numbers fx,fy,cx,cy, got {}",
                k.len()
            );
        };
        return Ok(Intrinsics::new(fx, fy, cx, cy, width, height)?);
    }
    if let Some(fov) = fov {
        return Ok(Intrinsics::from_fov(width, height, fov)?);
    }
    let from_exif = match photo {
        PhotoSource::Absent => None,
        PhotoSource::File(path) => Intrinsics::from_exif_file(path, width, height)
            .with_context(|| format!("cannot read the camera from EXIF: {}", path.display()))?,
        PhotoSource::Bytes(bytes) => Intrinsics::from_exif(bytes, width, height)
            .context("cannot read the camera from the photo's EXIF")?,
    };
    if let Some(camera) = from_exif {
        return Ok(camera);
    }
    let camera = Intrinsics::default_guess(width, height)?;
    notes(&format!(
        "no camera given: assuming a {:.0} degree field of view (fx = {:.1} px); \
         pass --intrinsics or --fov for true scale",
        camera.fov_x_deg(),
        camera.fx
    ));
    Ok(camera)
}

/// Marks disparity below `fraction` of the largest finite value as invalid (NaN).
pub fn mask_sky(disparity: DepthMap<Disparity>, fraction: f32) -> Result<DepthMap<Disparity>> {
    let Some((_, max)) = disparity.finite_range() else {
        return Ok(disparity);
    };
    let threshold = max * fraction;
    let (w, h) = (disparity.width(), disparity.height());
    let values = disparity
        .into_data()
        .into_iter()
        .map(|d| if d < threshold { f32::NAN } else { d })
        .collect();
    Ok(DepthMap::new(w, h, values)?)
}

/// Scale and shift for disparity from --scale/--shift or --align-depth.
fn fit_affine(args: &SceneRequest, disparity: &DepthMap<Disparity>) -> Result<Affine> {
    if let (Some(scale), Some(shift)) = (args.values.scale, args.values.shift) {
        return Ok(Affine { scale, shift });
    }
    let Some(path) = &args.align_depth else {
        bail!(
            "relative depth has no scale (disparity, or Depth Anything 3's depth up to scale, \
             fitted as its reciprocal): pass --metric indoor|outdoor or Depth Anything 3 \
             Metric-L weights (a metric model), --align-depth FILE (metric depth to fit to) \
             or --scale S --shift T (1/metres = S * disparity + T)"
        );
    };
    let scale = args
        .align_depth_scale
        .unwrap_or_else(|| default_scale(path));
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let samples = if is_csv {
        let points = read_points_csv(path, scale)?;
        align::samples_from_points(disparity, &points, Sampling::Nearest)?
    } else {
        let depth: DepthMap<Metres> = read_depth_values(path, scale)?;
        let (w, h) = (depth.width(), depth.height());
        if (w, h) != (disparity.width(), disparity.height()) {
            bail!(
                "--align-depth is {w} x {h} but the depth map is {} x {}: {}",
                disparity.width(),
                disparity.height(),
                path.display()
            );
        }
        align::samples_from_dense(disparity, &depth)?
    };
    Ok(align::fit_samples(&samples)?)
}

/// `u,v,metres` per line (`#` comments and a header line allowed); metres divided by
/// `units_per_metre`.
fn read_points_csv(path: &Path, units_per_metre: f64) -> Result<Vec<PixelDepth>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Option<Vec<f64>> = fields.iter().map(|f| f.parse().ok()).collect();
        match parsed {
            Some(v) if v.len() == 3 => points.push(PixelDepth {
                u: v[0],
                v: v[1],
                depth_m: v[2] / units_per_metre,
            }),
            _ if i == 0 => continue, // header
            _ => bail!("line {}: expected u,v,metres: {}", i + 1, path.display()),
        }
    }
    if points.is_empty() {
        bail!("no u,v,metres points in {}", path.display());
    }
    Ok(points)
}
