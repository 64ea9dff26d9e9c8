//! Depth Anything 3 on LibTorch: the network (encoder, DualDPT or DPT head, camera decoder
//! and encoder), its checkpoints in the released Hugging Face layout, and a run from
//! normalised images to per-view depth, confidence, sky and cameras.
//!
//! The network is called as the official `DepthAnything3Net.forward`. In fp32 it is that
//! forward exactly. The official `inference()` autocasts the encoder to bf16 or fp16 and
//! keeps the camera encoder, heads and camera decoder in fp32;
//! [`Precision::Fp16`](anydepth_model::Precision) and `Bf16` here do the same: the
//! encoder's patch embedding, linear layers and attention in half precision, its norms and
//! residual stream, and everything after it, in fp32. (Where autocast would also run the
//! reference-view selection's matrix product in half precision, ours stays in fp32.)
//!
//! What the official `inference()` does around the network is here too: given poses are
//! normalised before the camera encoder and their scale put back onto the depth afterwards
//! (Umeyama Sim(3) of the given camera centres onto the predicted ones; RANSAC from 10
//! views, with its own draws), the monocular models' sky gets the 99th percentile of the
//! other depths, and the metric model's output becomes metres with the focal length.

mod backbone;
mod camera;
mod checkpoint;
mod head;
pub mod preprocess;

use std::panic::{catch_unwind, AssertUnwindSafe};

use nalgebra::{Matrix3, Matrix4, Vector3};
use tch::{nn, Device, Kind, Tensor};

use anydepth_model::da3::cameras::{
    align_given_cameras, camera_from_encoding, encode_camera, normalise_given_poses,
};
use anydepth_model::da3::{
    quantile_of_sorted, Da3Camera, Da3Config, Da3Engine, Da3Model, Da3View, GivenCamera, Placement,
    RefViewStrategy, ViewsInput, ViewsOutput,
};
use anydepth_model::EstimatorOptions;

use crate::dinov2::cast_linear_layers;
use crate::error::{Error, Result};
use crate::estimator::{kind_of, prepare_device};
use backbone::Backbone;
use camera::{encodings_tensor, CameraDecoder, CameraEncoder};
pub use checkpoint::Da3Checkpoint;
use head::Head;

/// Cameras given for every view, at the network input's resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct GivenCameras {
    /// World from camera per view (OpenCV axes), any scale.
    pub world_from_camera: Vec<Matrix4<f64>>,
    /// Intrinsics per view, in pixels of the network input.
    pub intrinsics: Vec<Matrix3<f64>>,
}

/// One scene for an any-view model, or one photo for a monocular one.
#[derive(Debug)]
pub struct Da3Scene<'a> {
    /// `(views, 3, h, w)`, ImageNet-normalised, sides multiples of 14, of the kind the
    /// network's patch embedding has ([`Da3Estimator::input_kind`]).
    pub images: &'a Tensor,
    /// Known cameras (any-view models): the camera encoder conditions the network on
    /// them and the result is brought to their scale.
    pub given: Option<&'a GivenCameras>,
    /// How to choose the reference view among 3 or more views without given cameras.
    pub strategy: RefViewStrategy,
    /// The metric model: the network input's focal lengths `(fx, fy)` per view, which turn
    /// its output into metres.
    pub focal: Option<Vec<(f64, f64)>>,
}

/// What a run returns, views in input order.
#[derive(Debug)]
pub struct Da3Result {
    /// Per view: depth, confidence or sky, camera.
    pub views: Vec<Da3View>,
    /// The view chosen as reference (3 or more views, no given cameras).
    pub reference_view: Option<usize>,
    /// With given cameras: the scale that took the given cameras' units to the
    /// network's (depth was divided by it).
    pub given_scale: Option<f64>,
}

/// The Depth Anything 3 network, variables named as in the official checkpoints (without
/// their `model.` prefix).
#[derive(Debug)]
pub struct Da3Network {
    cfg: Da3Config,
    backbone: Backbone,
    head: Head,
    camera_decoder: Option<CameraDecoder>,
    camera_encoder: Option<CameraEncoder>,
}

impl Da3Network {
    /// Builds the network of `cfg` under `p` (variables zero until loaded).
    pub fn new(p: &nn::Path, cfg: &Da3Config) -> Self {
        let any_view = cfg.alternating_from.is_some();
        Self {
            cfg: *cfg,
            backbone: Backbone::new(p / "backbone" / "pretrained", cfg),
            head: Head::new(p / "head", cfg),
            camera_decoder: any_view
                .then(|| CameraDecoder::new(p / "cam_dec", cfg.head_in_channels())),
            camera_encoder: any_view.then(|| CameraEncoder::new(p / "cam_enc", cfg.vit.embed_dim)),
        }
    }

    /// The architecture.
    pub fn config(&self) -> &Da3Config {
        &self.cfg
    }

    /// The raw network: pose encodings come back as a `(views, 9)` tensor, depth and the
    /// rest at the input's resolution, nothing post-processed.
    pub fn forward(
        &self,
        images: &Tensor,
        camera_encodings: Option<&Tensor>,
        strategy: RefViewStrategy,
        rays: bool,
    ) -> Result<RawOutput> {
        let (views, channels, h, w) = images.size4().map_err(|_| {
            Error::Invalid(format!(
                "expected images of shape (views, 3, h, w), got {:?}",
                images.size()
            ))
        })?;
        let patch = self.cfg.vit.patch_size;
        if views == 0 || channels != 3 || h % patch != 0 || w % patch != 0 || h == 0 || w == 0 {
            return Err(Error::Invalid(format!(
                "expected (views >= 1, 3, h, w) with h and w multiples of {patch}, got {:?}",
                images.size()
            )));
        }
        if views > 1 && self.camera_decoder.is_none() {
            return Err(Error::Invalid(format!(
                "{} takes one photo at a time, got {views} views",
                self.cfg.model
            )));
        }
        // The camera encoder, heads and camera decoder run in fp32 whatever the precision of
        // the encoder's linear layers, as the official code's autocast leaves them; the
        // encoder's features come out of its fp32 norm.
        let camera_tokens = match (camera_encodings, &self.camera_encoder) {
            (Some(encodings), Some(encoder)) => {
                Some(encoder.forward(&encodings.to_kind(Kind::Float)))
            }
            (Some(_), None) => {
                return Err(Error::Invalid(format!(
                    "{} does not take camera poses",
                    self.cfg.model
                )))
            }
            (None, _) => None,
        };
        let encoded = self
            .backbone
            .forward(images, camera_tokens.as_ref(), strategy);
        let head = self.head.forward(&encoded.features, (h, w), rays);
        let pose_encodings = self
            .camera_decoder
            .as_ref()
            .map(|decoder| decoder.forward(&encoded.camera_feature));
        Ok(RawOutput {
            depth: head.depth,
            confidence: head.confidence,
            sky: head.sky,
            rays: head.rays.map(|r| (r.rays, r.confidence)),
            pose_encodings,
            reference_view: encoded.reference_view,
        })
    }

    /// The whole run on one scene, as the official `inference()` does around the network
    /// (see the module's documentation).
    ///
    /// # Errors
    /// When the images are malformed, cameras are given for the wrong number of views or
    /// to a monocular model, the metric model has no focal lengths, or LibTorch fails.
    pub fn infer(&self, scene: &Da3Scene<'_>) -> Result<Da3Result> {
        let (views, _c, h, w) = scene.images.size4().unwrap_or((0, 0, 0, 0));
        let (width, height) = (w as u32, h as u32);
        let encodings = match scene.given {
            Some(given) => {
                if given.world_from_camera.len() != views as usize
                    || given.intrinsics.len() != views as usize
                {
                    return Err(Error::Invalid(format!(
                        "{} views but cameras for {} (poses) and {} (intrinsics)",
                        views,
                        given.world_from_camera.len(),
                        given.intrinsics.len()
                    )));
                }
                let normalised = normalise_given_poses(&given.world_from_camera);
                let encodings: Vec<[f64; 9]> = normalised
                    .iter()
                    .zip(&given.intrinsics)
                    .map(|(pose, k)| encode_camera(pose, k, width, height))
                    .collect();
                Some(encodings_tensor(&encodings, scene.images.device()))
            }
            None => None,
        };
        let raw =
            tch::no_grad(|| self.forward(scene.images, encodings.as_ref(), scene.strategy, false))?;
        let to_vec = |t: &Tensor, i: i64| -> Result<Vec<f32>> {
            Ok(Vec::<f32>::try_from(
                t.get(i)
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu)
                    .flatten(0, -1),
            )?)
        };
        let cameras: Option<Vec<Da3Camera>> = match &raw.pose_encodings {
            Some(encodings) => {
                let flat = Vec::<f64>::try_from(
                    encodings
                        .to_kind(Kind::Double)
                        .to_device(Device::Cpu)
                        .flatten(0, -1),
                )?;
                Some(
                    flat.chunks_exact(9)
                        .map(|e| {
                            let mut encoding = [0.0; 9];
                            encoding.copy_from_slice(e);
                            camera_from_encoding(&encoding, width, height)
                        })
                        .collect(),
                )
            }
            None => None,
        };
        let mut result_views = Vec::with_capacity(views as usize);
        for i in 0..views {
            result_views.push(Da3View {
                width,
                height,
                depth: to_vec(&raw.depth, i)?,
                confidence: raw.confidence.as_ref().map(|c| to_vec(c, i)).transpose()?,
                sky: raw.sky.as_ref().map(|s| to_vec(s, i)).transpose()?,
                camera: cameras.as_ref().map(|c| c[i as usize]),
            });
        }
        for view in &mut result_views {
            if let Some(sky) = &view.sky {
                fill_sky(&mut view.depth, sky);
            }
        }
        if self.cfg.model.is_metric() {
            let Some(focal) = &scene.focal else {
                return Err(Error::Invalid(
                    "the metric model needs each photo's focal length to give metres".into(),
                ));
            };
            if focal.len() != result_views.len() {
                return Err(Error::Invalid(format!(
                    "{} views but {} focal lengths",
                    result_views.len(),
                    focal.len()
                )));
            }
            for (view, &(fx, fy)) in result_views.iter_mut().zip(focal) {
                let scale = anydepth_model::da3::metric_depth_scale(fx, fy) as f32;
                view.depth.iter_mut().for_each(|d| *d *= scale);
            }
        }
        let given_scale = match scene.given {
            Some(given) => Some(adopt_given_cameras(&mut result_views, given)?),
            None => None,
        };
        Ok(Da3Result {
            views: result_views,
            reference_view: raw.reference_view,
            given_scale,
        })
    }
}

/// The network's outputs before any post-processing.
#[derive(Debug)]
pub struct RawOutput {
    /// `(views, h, w)`.
    pub depth: Tensor,
    /// `(views, h, w)` (any-view models).
    pub confidence: Option<Tensor>,
    /// `(views, h, w)` (monocular models).
    pub sky: Option<Tensor>,
    /// Rays `(views, h', w', 6)` and their confidence `(views, h', w')`, when asked for.
    pub rays: Option<(Tensor, Tensor)>,
    /// `(views, 9)`: translation, quaternion (x y z w), fields of view (vertical,
    /// horizontal), camera to world (any-view models).
    pub pose_encodings: Option<Tensor>,
    /// The view chosen as reference, if one was chosen.
    pub reference_view: Option<usize>,
}

/// The official sky post-processing of the monocular models: when more than 10 pixels are
/// sky (sky output >= 0.3) and more than 10 are not, the sky gets the 99th percentile
/// (linear interpolation, as `torch.quantile`) of the other pixels' depth. The official
/// code estimates the percentile from 100000 random pixels when there are more; this
/// uses them all.
pub fn fill_sky(depth: &mut [f32], sky: &[f32]) {
    let mut ground: Vec<f32> = depth
        .iter()
        .zip(sky)
        .filter(|(_, &s)| s < 0.3)
        .map(|(&d, _)| d)
        .collect();
    let sky_count = depth.len() - ground.len();
    if ground.len() <= 10 || sky_count <= 10 {
        return;
    }
    ground.sort_by(f32::total_cmp);
    let percentile = quantile_of_sorted(&ground, 0.99);
    for (d, &s) in depth.iter_mut().zip(sky) {
        // Sky is "not below 0.3", NaN included, as the official `~(sky < 0.3)`.
        if s.is_nan() || s >= 0.3 {
            *d = percentile;
        }
    }
}

/// Replaces the predicted cameras with the given ones and brings depth to their scale:
/// the Sim(3) that takes the given camera centres onto the predicted ones (Umeyama, with
/// scale; RANSAC from 10 views, as the official code) has scale `s`; depth is divided by
/// it. Returns `s`.
fn adopt_given_cameras(views: &mut [Da3View], given: &GivenCameras) -> Result<f64> {
    let centre = |m: &Matrix4<f64>| Vector3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)]);
    let predicted: Vec<Vector3<f64>> = views
        .iter()
        .filter_map(|v| v.camera.as_ref())
        .map(|c| centre(&Matrix4::from_fn(|i, j| c.world_from_camera[i][j])))
        .collect();
    let given_centres: Vec<Vector3<f64>> = given.world_from_camera.iter().map(centre).collect();
    let scale = if views.len() < 2 {
        1.0
    } else {
        align_given_cameras(&given_centres, &predicted)
            .map(|sim| sim.scale)
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                Error::Invalid(
                    "the given cameras all sit at one place: their scale cannot be put on \
                     the depth (give poses of a moving camera, or none)"
                        .into(),
                )
            })?
    };
    for ((view, pose), k) in views
        .iter_mut()
        .zip(&given.world_from_camera)
        .zip(&given.intrinsics)
    {
        view.depth
            .iter_mut()
            .for_each(|d| *d = (f64::from(*d) / scale) as f32);
        view.camera = Some(Da3Camera {
            world_from_camera: std::array::from_fn(|i| std::array::from_fn(|j| pose[(i, j)])),
            k: std::array::from_fn(|i| std::array::from_fn(|j| k[(i, j)])),
        });
    }
    Ok(scale)
}

/// A Depth Anything 3 network loaded on a device, ready to run.
#[derive(Debug)]
pub struct Da3Estimator {
    _vs: nn::VarStore,
    network: Da3Network,
    device: Device,
    options: EstimatorOptions,
}

impl Da3Estimator {
    /// Loads a checkpoint (a `model.safetensors` or the folder holding it with its
    /// `config.json`; without `config.json`, `model` names the model) onto the device and
    /// precision of `options`.
    ///
    /// # Errors
    /// When the file cannot be read, names an unknown model, its tensors do not match the
    /// model exactly, the device is unavailable, or the machine lacks the memory for it.
    pub fn load(
        path: &std::path::Path,
        model: Option<Da3Model>,
        options: EstimatorOptions,
    ) -> Result<Self> {
        let device = prepare_device(&options)?;
        if options.cuda_graphs {
            tracing::warn!("--cuda-graphs applies to V1/V2 models: Depth Anything 3 runs without");
        }
        let checkpoint = Da3Checkpoint::read(path, model, device)?;
        let cfg = checkpoint.model.config();
        let mut vs = nn::VarStore::new(device);
        let network = Da3Network::new(&vs.root(), &cfg);
        checkpoint.copy_into(&vs.variables())?;
        vs.freeze();
        let encoder_kind = kind_of(options.precision);
        if encoder_kind != Kind::Float {
            // The encoder alone, as the official `inference()` autocasts it; the camera
            // encoder, heads and camera decoder stay fp32.
            cast_linear_layers(&vs, "backbone.", encoder_kind);
        }
        tracing::info!(model = %cfg.model, ?device, precision = ?options.precision, "Depth Anything 3 loaded");
        Ok(Self {
            _vs: vs,
            network,
            device,
            options,
        })
    }

    /// The network.
    pub fn network(&self) -> &Da3Network {
        &self.network
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    /// The kind of tensors the network takes (its encoder's precision).
    pub fn input_kind(&self) -> Kind {
        kind_of(self.options.precision)
    }
}

/// Views may lose at most this fraction of their width or height to the centre crop that
/// brings them to one network input size; more is refused as views of different shapes.
pub const MAX_CROP_FRACTION: f64 = 0.05;

impl Da3Estimator {
    /// Runs one scene through the network: the photos processed as the official code does,
    /// views of slightly different sizes centre-cropped to one, given cameras and focal
    /// lengths brought to the network input, then [`Da3Network::infer`].
    ///
    /// # Errors
    /// As [`anydepth_model::da3::Da3Engine::run`].
    pub fn run_views(&self, input: &ViewsInput<'_>) -> Result<ViewsOutput> {
        let views = input.photos.len();
        if views == 0 {
            return Err(Error::Invalid("no photos to run".into()));
        }
        let model = self.model();
        if !model.is_any_view() && input.cameras.is_some() {
            return Err(Error::Invalid(format!(
                "{model} takes one photo at a time and no camera poses; use an any-view \
                 model (da3-small, da3-base, da3-large, da3-giant) for poses"
            )));
        }
        if model.is_metric() && input.intrinsics.is_none_or(|k| k.len() != views) {
            return Err(Error::Invalid(format!(
                "{model} needs each photo's intrinsics to give metres"
            )));
        }
        if !model.is_any_view() && views > 1 {
            return self.run_each(input);
        }
        if let Some(cameras) = input.cameras {
            if cameras.len() != views {
                return Err(Error::Invalid(format!(
                    "{views} photos but {} cameras",
                    cameras.len()
                )));
            }
            if views < 2 {
                return Err(Error::Invalid(
                    "given poses set the depth's units through the cameras' spread, which \
                     one photo does not have: give two or more posed photos"
                        .into(),
                ));
            }
        }
        let mut processed = input
            .photos
            .iter()
            .map(|photo| preprocess::process_image(photo, input.process_res))
            .collect::<Result<Vec<_>>>()?;
        let full_sizes: Vec<(u32, u32)> = processed.iter().map(|p| (p.width, p.height)).collect();
        check_common_shape(&full_sizes, input.photos)?;
        let cuts = preprocess::crop_to_common_size(&mut processed);
        let placements: Vec<Placement> = input
            .photos
            .iter()
            .zip(&full_sizes)
            .zip(&cuts)
            .map(|((photo, &(w, h)), &(left, top))| Placement {
                scale_x: f64::from(w) / f64::from(photo.width),
                scale_y: f64::from(h) / f64::from(photo.height),
                crop_left: left,
                crop_top: top,
            })
            .collect();
        let (width, height) = (processed[0].width, processed[0].height);
        let data: Vec<f32> = processed
            .iter()
            .flat_map(|p| p.data.iter().copied())
            .collect();
        let images = Tensor::from_slice(&data)
            .reshape([views as i64, 3, i64::from(height), i64::from(width)])
            .to_device(self.device)
            .to_kind(self.input_kind());
        let given = input
            .cameras
            .map(|cameras| given_at_input(cameras, &placements));
        let focal = input.intrinsics.filter(|_| model.is_metric()).map(|ks| {
            ks.iter()
                .zip(&placements)
                .map(|(k, p)| (k.fx * p.scale_x, k.fy * p.scale_y))
                .collect()
        });
        let scene = Da3Scene {
            images: &images,
            given: given.as_ref(),
            strategy: input.strategy,
            focal,
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.network.infer(&scene)))
            .unwrap_or_else(|panic| Err(crate::estimator::inference_failed(panic)))?;
        Ok(ViewsOutput {
            views: result.views,
            placements,
            reference_view: result.reference_view,
            given_scale: result.given_scale,
        })
    }
}

impl Da3Estimator {
    /// A monocular model on several photos: one at a time.
    fn run_each(&self, input: &ViewsInput<'_>) -> Result<ViewsOutput> {
        let views = input.photos.len();
        let mut out = ViewsOutput {
            views: Vec::with_capacity(views),
            placements: Vec::with_capacity(views),
            reference_view: None,
            given_scale: None,
        };
        for i in 0..views {
            let one = ViewsInput {
                photos: &input.photos[i..=i],
                intrinsics: input.intrinsics.map(|k| &k[i..=i]),
                ..*input
            };
            let single = self.run_views(&one)?;
            out.views.extend(single.views);
            out.placements.extend(single.placements);
        }
        Ok(out)
    }
}

/// Given cameras with their intrinsics brought to each view's network input.
fn given_at_input(cameras: &[GivenCamera], placements: &[Placement]) -> GivenCameras {
    GivenCameras {
        world_from_camera: cameras
            .iter()
            .map(|c| Matrix4::from_fn(|i, j| c.world_from_camera[i][j]))
            .collect(),
        intrinsics: cameras
            .iter()
            .zip(placements)
            .map(|(c, p)| {
                let k = p.to_input(&c.intrinsics);
                Matrix3::from_fn(|i, j| k[i][j])
            })
            .collect(),
    }
}

/// Refuses views whose network inputs differ so much in shape that the centre crop to a
/// common size would cut more than [`MAX_CROP_FRACTION`] of one.
fn check_common_shape(sizes: &[(u32, u32)], photos: &[anydepth_core::RgbImage]) -> Result<()> {
    let (Some(min_w), Some(min_h)) = (
        sizes.iter().map(|s| s.0).min(),
        sizes.iter().map(|s| s.1).min(),
    ) else {
        return Ok(());
    };
    let worst = sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| {
            let cut =
                (1.0 - f64::from(min_w) / f64::from(w)).max(1.0 - f64::from(min_h) / f64::from(h));
            (cut, i)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((cut, i)) = worst.filter(|(cut, _)| *cut > MAX_CROP_FRACTION) {
        let shapes: Vec<String> = photos
            .iter()
            .map(|p| format!("{}x{}", p.width, p.height))
            .collect();
        return Err(Error::Invalid(format!(
            "the photos have different shapes ({}): one network input for all of them would \
             cut {:.0}% of photo {} (at most {:.0}% is allowed); run photos of one aspect ratio \
             together, or crop them to one first",
            shapes.join(", "),
            cut * 100.0,
            i + 1,
            MAX_CROP_FRACTION * 100.0
        )));
    }
    Ok(())
}

impl Da3Engine for Da3Estimator {
    fn model(&self) -> Da3Model {
        self.network.cfg.model
    }

    fn device_name(&self) -> String {
        format!("{:?}", self.device)
    }

    fn run(&self, input: &ViewsInput<'_>) -> anydepth_model::Result<ViewsOutput> {
        Ok(self.run_views(input)?)
    }
}
