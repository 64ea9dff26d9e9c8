//! Depth Anything 3 as data: the released models, their architecture, and what a run of
//! one returns (depth, confidence, cameras). No libtorch.
//!
//! Depth Anything 3 comes in two kinds:
//! - **any-view** models (`da3-small`, `da3-base`, `da3-large`, `da3-giant`): from one or
//!   more photos of a scene, depth (not disparity) and a confidence per pixel, and every
//!   photo's camera (pose and intrinsics). Depth and camera positions share one scale,
//!   which is arbitrary unless poses are given;
//! - **monocular** models (`da3mono-large`, `da3metric-large`): one photo, depth plus a
//!   sky mask; the metric model's depth becomes metres with the focal length:
//!   `metres = output * ((fx + fy) / 2) / 300` ([`metric_depth_scale`]).
//!
//! ```
//! use anydepth_model::da3::Da3Model;
//!
//! let model = Da3Model::from_model_name("da3-small").expect("a released model");
//! let config = model.config();
//! assert!(model.is_any_view());
//! assert_eq!(config.out_layers, [5, 7, 9, 11]);
//! assert_eq!(config.head_in_channels(), 768);
//! ```

use std::fmt;

pub mod cameras;

use crate::config::{Ffn, VitConfig};

/// A released Depth Anything 3 model, named as `config.json`'s `model_name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Da3Model {
    /// ViT-S, any view, 34 M parameters (weights Apache-2.0).
    #[cfg_attr(feature = "clap", value(name = "da3-small"))]
    Small,
    /// ViT-B, any view, 135 M (Apache-2.0).
    #[cfg_attr(feature = "clap", value(name = "da3-base"))]
    Base,
    /// ViT-L, any view, 411 M (CC BY-NC 4.0).
    #[cfg_attr(feature = "clap", value(name = "da3-large"))]
    Large,
    /// ViT-g, any view, 1.1 B (CC BY-NC 4.0); its Gaussian-splat head is not
    /// used.
    #[cfg_attr(feature = "clap", value(name = "da3-giant"))]
    Giant,
    /// ViT-L, one photo, relative depth and sky (Apache-2.0).
    #[cfg_attr(feature = "clap", value(name = "da3mono-large"))]
    MonoLarge,
    /// ViT-L, one photo, metric depth given the focal length, and sky
    /// (Apache-2.0).
    #[cfg_attr(feature = "clap", value(name = "da3metric-large"))]
    MetricLarge,
}

impl Da3Model {
    /// Every released model.
    pub const ALL: [Da3Model; 6] = [
        Da3Model::Small,
        Da3Model::Base,
        Da3Model::Large,
        Da3Model::Giant,
        Da3Model::MonoLarge,
        Da3Model::MetricLarge,
    ];

    /// The `model_name` of the official configuration (`config.json`).
    pub fn model_name(self) -> &'static str {
        match self {
            Da3Model::Small => "da3-small",
            Da3Model::Base => "da3-base",
            Da3Model::Large => "da3-large",
            Da3Model::Giant => "da3-giant",
            Da3Model::MonoLarge => "da3mono-large",
            Da3Model::MetricLarge => "da3metric-large",
        }
    }

    /// The model of a `model_name` (`None` for names that are not a released model).
    pub fn from_model_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.model_name() == name)
    }

    /// The Hugging Face repository of the released weights (`model.safetensors` and
    /// `config.json`).
    pub fn hub_repo(self) -> &'static str {
        match self {
            Da3Model::Small => "depth-anything/DA3-SMALL",
            Da3Model::Base => "depth-anything/DA3-BASE",
            Da3Model::Large => "depth-anything/DA3-LARGE",
            Da3Model::Giant => "depth-anything/DA3-GIANT",
            Da3Model::MonoLarge => "depth-anything/DA3MONO-LARGE",
            Da3Model::MetricLarge => "depth-anything/DA3METRIC-LARGE",
        }
    }

    /// Whether it takes any number of views and predicts cameras (`false`: one photo at a
    /// time, depth and sky).
    pub fn is_any_view(self) -> bool {
        !matches!(self, Da3Model::MonoLarge | Da3Model::MetricLarge)
    }

    /// Whether its depth is in metres once scaled by the focal length.
    pub fn is_metric(self) -> bool {
        self == Da3Model::MetricLarge
    }

    /// The architecture of this model.
    pub fn config(self) -> Da3Config {
        let any_view = |vit: VitConfig, out_layers, alt_start, features, out_channels| Da3Config {
            model: self,
            vit,
            out_layers,
            alternating_from: Some(alt_start),
            features,
            out_channels,
        };
        match self {
            Da3Model::Small => any_view(
                vit(384, 12, 6, Ffn::Mlp),
                [5, 7, 9, 11],
                4,
                64,
                [48, 96, 192, 384],
            ),
            Da3Model::Base => any_view(
                vit(768, 12, 12, Ffn::Mlp),
                [5, 7, 9, 11],
                4,
                128,
                [96, 192, 384, 768],
            ),
            Da3Model::Large => any_view(
                vit(1024, 24, 16, Ffn::Mlp),
                [11, 15, 19, 23],
                8,
                256,
                [256, 512, 1024, 1024],
            ),
            Da3Model::Giant => any_view(
                vit(1536, 40, 24, Ffn::SwiGlu),
                [19, 27, 33, 39],
                13,
                256,
                [256, 512, 1024, 1024],
            ),
            Da3Model::MonoLarge | Da3Model::MetricLarge => Da3Config {
                model: self,
                vit: vit(1024, 24, 16, Ffn::Mlp),
                out_layers: [4, 11, 17, 23],
                alternating_from: None,
                features: 256,
                out_channels: [256, 512, 1024, 1024],
            },
        }
    }

    /// Parameters of the network we build (the official count, without Giant's
    /// Gaussian-splat head), for the memory check before loading.
    pub fn approximate_parameters(self) -> u64 {
        match self {
            Da3Model::Small => 34_300_000,
            Da3Model::Base => 135_400_000,
            Da3Model::Large => 410_900_000,
            Da3Model::Giant => 1_150_000_000,
            Da3Model::MonoLarge | Da3Model::MetricLarge => 334_200_000,
        }
    }
}

impl fmt::Display for Da3Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.model_name())
    }
}

/// DINOv2's ViT presets (blocks' layer norms at eps 1e-6, as Depth Anything 3's).
fn vit(embed_dim: i64, depth: usize, num_heads: i64, ffn: Ffn) -> VitConfig {
    VitConfig::preset(embed_dim, depth, num_heads, ffn)
}

/// The architecture of a Depth Anything 3 network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Da3Config {
    /// The released model this describes.
    pub model: Da3Model,
    /// The DINOv2 encoder (blocks' layer norms at eps 1e-6).
    pub vit: VitConfig,
    /// Blocks whose outputs feed the head (0-based).
    pub out_layers: [usize; 4],
    /// Any-view models: the first block with QK-norm and 2D RoPE, where camera tokens
    /// enter; from it on, odd blocks attend across all views. `None` for the monocular
    /// models (a plain ViT).
    pub alternating_from: Option<usize>,
    /// Width of the head's fusion blocks.
    pub features: i64,
    /// Widths of the head's four reassembled levels.
    pub out_channels: [i64; 4],
}

impl Da3Config {
    /// Epsilon of the encoder's final norm and of every other layer norm outside the
    /// blocks (PyTorch's default).
    pub const OUTER_LAYER_NORM_EPS: f64 = 1e-5;
    /// Base of the rotary position embedding's frequencies.
    pub const ROPE_FREQUENCY: f64 = 100.0;
    /// Blocks of the camera encoder's trunk.
    pub const CAMERA_ENCODER_DEPTH: usize = 4;
    /// Attention heads of the camera encoder's blocks, for every model size.
    pub const CAMERA_ENCODER_HEADS: i64 = 16;
    /// Width of the head's last hidden layer.
    pub const HEAD_FEATURES: i64 = 32;

    /// Whether tokens are the concatenation of the latest per-view block's output and the
    /// current one (any-view models) rather than the current one alone.
    pub fn concatenates_tokens(&self) -> bool {
        self.alternating_from.is_some()
    }

    /// Width of the tokens the head reads.
    pub fn head_in_channels(&self) -> i64 {
        if self.concatenates_tokens() {
            2 * self.vit.embed_dim
        } else {
            self.vit.embed_dim
        }
    }

    /// Whether block `i` attends across all views (any-view models, odd blocks from
    /// [`Da3Config::alternating_from`] on).
    pub fn is_cross_view(&self, block: usize) -> bool {
        self.alternating_from
            .is_some_and(|start| block >= start && block % 2 == 1)
    }
}

/// The Depth Anything 3 model a checkpoint holds, from the `config.json` in the folder
/// `weights` (or beside the file `weights`); `None` when there is none or it names no
/// Depth Anything 3 model. Reads no tensors.
pub fn checkpoint_model(weights: &std::path::Path) -> Option<Da3Model> {
    let config = if weights.is_dir() {
        weights.join("config.json")
    } else {
        weights.parent()?.join("config.json")
    };
    let text = std::fs::read_to_string(config).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Da3Model::from_model_name(json.get("model_name")?.as_str()?)
}

/// How an any-view model picks the reference view (whose camera is the world frame's
/// orientation) among three or more views without given poses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RefViewStrategy {
    /// The view whose class token is most "in the middle" of the others' by similarity,
    /// norm and variance (the official default).
    #[default]
    SaddleBalanced,
    /// The first view.
    First,
    /// The middle view (`views / 2`).
    Middle,
    /// The view with the widest range of similarities to the others.
    SaddleSimRange,
}

impl RefViewStrategy {
    /// The official name (`saddle_balanced`, `first`, `middle`, `saddle_sim_range`).
    pub fn name(self) -> &'static str {
        match self {
            RefViewStrategy::SaddleBalanced => "saddle_balanced",
            RefViewStrategy::First => "first",
            RefViewStrategy::Middle => "middle",
            RefViewStrategy::SaddleSimRange => "saddle_sim_range",
        }
    }
}

/// Views from this many on get a reference view chosen by the strategy (fewer: the first).
pub const REF_VIEW_SELECTION_MIN_VIEWS: usize = 3;

/// The official default of the processing resolution: the long side of the network input.
pub const DEFAULT_PROCESS_RES: u32 = 504;

/// The range of `--process-res` the commands accept.
pub const PROCESS_RES_RANGE: std::ops::RangeInclusive<u32> = 14..=4096;

/// Checks a processing resolution against [`PROCESS_RES_RANGE`].
///
/// # Errors
/// A message naming the flag and the range.
pub fn check_process_res(process_res: u32) -> crate::Result<()> {
    if PROCESS_RES_RANGE.contains(&process_res) {
        return Ok(());
    }
    Err(crate::Error::Invalid(format!(
        "--process-res must be between {} and {}, got {process_res}",
        PROCESS_RES_RANGE.start(),
        PROCESS_RES_RANGE.end()
    )))
}

/// The `q` quantile (0..=1) of sorted values, interpolated linearly between neighbours as
/// `numpy.percentile` and `torch.quantile` do; `NaN` for no values.
pub fn quantile_of_sorted(sorted: &[f32], q: f64) -> f32 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f32::NAN;
    };
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let weight = (position - below as f64) as f32;
    sorted[below] + (sorted[above] - sorted[below]) * weight
}

/// The official GLB export's confidence threshold over the confidences of every view:
/// the 40th percentile, but at least 1.05 and at most the 90th percentile.
pub fn default_confidence_threshold(confidences: &[f32]) -> Option<f32> {
    let mut sorted: Vec<f32> = confidences
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f32::total_cmp);
    let lower = quantile_of_sorted(&sorted, 0.4);
    let upper = quantile_of_sorted(&sorted, 0.9);
    Some(lower.max(1.05).min(upper))
}

/// Checks a confidence threshold (confidence starts at 1).
///
/// # Errors
/// When it is not a number of at least 1.
pub fn check_conf_threshold(threshold: f32) -> crate::Result<()> {
    if threshold.is_nan() || threshold < 1.0 {
        return Err(crate::Error::Invalid(format!(
            "--conf-threshold must be at least 1 (confidence starts at 1), got {threshold}"
        )));
    }
    Ok(())
}

/// The factor that turns the metric model's output into metres: the mean focal length
/// in pixels of the network input, over 300.
pub fn metric_depth_scale(fx: f64, fy: f64) -> f64 {
    (fx + fy) / 2.0 / 300.0
}

/// A camera as Depth Anything 3 predicts it, at the network input's resolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Da3Camera {
    /// World from camera, row-major 4x4, OpenCV camera axes (x right, y down, z forward).
    pub world_from_camera: [[f64; 4]; 4],
    /// Intrinsics, row-major 3x3 (`fx, 0, cx; 0, fy, cy; 0, 0, 1`), in pixels of the
    /// network input.
    pub k: [[f64; 3]; 3],
}

/// What one view gets from a Depth Anything 3 run, at the network input's resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Da3View {
    /// Width of the network input.
    pub width: u32,
    /// Height of the network input.
    pub height: u32,
    /// Depth along the optical axis (positive; larger is farther), row-major: relative for
    /// the any-view and mono models (in the cameras' scale for any-view ones), metres for
    /// the metric model once scaled.
    pub depth: Vec<f32>,
    /// Confidence (>= 1, larger is surer) of any-view models.
    pub confidence: Option<Vec<f32>>,
    /// The sky head's output (>= 0; the official code calls a pixel sky at 0.5 or more,
    /// and not sky under 0.3) of the monocular models.
    pub sky: Option<Vec<f32>>,
    /// The camera of any-view models (with given poses: the given one).
    pub camera: Option<Da3Camera>,
}

/// How a network input sits in its photo: the photo was scaled by `scale_x`, `scale_y`
/// (processed size over photo size, before any crop), then `crop_left`, `crop_top`
/// pixels were cut (views of slightly different sizes are centre-cropped to the
/// smallest).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Width of the network input over the photo's.
    pub scale_x: f64,
    /// Height of the network input (before cropping) over the photo's.
    pub scale_y: f64,
    /// Columns cut from the left of the scaled photo.
    pub crop_left: u32,
    /// Rows cut from the top of the scaled photo.
    pub crop_top: u32,
}

impl Placement {
    /// Intrinsics of the photo (OpenCV convention: pixel centres at integer coordinates)
    /// as a matrix for the network input, in the official code's convention (the image's
    /// corner at 0, its centre at `width / 2`).
    pub fn to_input(&self, k: &anydepth_core::camera::Intrinsics) -> [[f64; 3]; 3] {
        [
            [
                k.fx * self.scale_x,
                0.0,
                (k.cx + 0.5) * self.scale_x - f64::from(self.crop_left),
            ],
            [
                0.0,
                k.fy * self.scale_y,
                (k.cy + 0.5) * self.scale_y - f64::from(self.crop_top),
            ],
            [0.0, 0.0, 1.0],
        ]
    }

    /// A network input's intrinsics (official convention) for the photo, in the OpenCV
    /// convention.
    pub fn to_photo(&self, k: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        [
            [
                k[0][0] / self.scale_x,
                0.0,
                (k[0][2] + f64::from(self.crop_left)) / self.scale_x - 0.5,
            ],
            [
                0.0,
                k[1][1] / self.scale_y,
                (k[1][2] + f64::from(self.crop_top)) / self.scale_y - 0.5,
            ],
            [0.0, 0.0, 1.0],
        ]
    }
}

/// A camera given for a photo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GivenCamera {
    /// World from camera, row-major 4x4, OpenCV axes, any scale.
    pub world_from_camera: [[f64; 4]; 4],
    /// Intrinsics at the photo's resolution.
    pub intrinsics: anydepth_core::camera::Intrinsics,
}

/// One scene for a Depth Anything 3 engine.
#[derive(Clone, Copy, Debug)]
pub struct ViewsInput<'a> {
    /// The photos, each at its own resolution.
    pub photos: &'a [anydepth_core::RgbImage],
    /// The long side of the network input (the official default is 504).
    pub process_res: u32,
    /// How the reference view is chosen among 3 or more views without given cameras.
    pub strategy: RefViewStrategy,
    /// Known cameras, one per photo (any-view models).
    pub cameras: Option<&'a [GivenCamera]>,
    /// The metric model: each photo's intrinsics, whose focal lengths turn its output
    /// into metres.
    pub intrinsics: Option<&'a [anydepth_core::camera::Intrinsics]>,
}

/// What a Depth Anything 3 engine returns for a scene, views in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewsOutput {
    /// Per view, at the network input's resolution.
    pub views: Vec<Da3View>,
    /// Per view, where its network input sits in the photo.
    pub placements: Vec<Placement>,
    /// The view chosen as reference (3 or more views, no given cameras).
    pub reference_view: Option<usize>,
    /// With given cameras: the scale that took their units to the network's (depth was
    /// divided by it, so depth is in the given cameras' units).
    pub given_scale: Option<f64>,
}

/// A loaded Depth Anything 3 network.
pub trait Da3Engine {
    /// The model that runs.
    fn model(&self) -> Da3Model;

    /// The device it runs on, as LibTorch names it.
    fn device_name(&self) -> String;

    /// Runs one scene (any-view models) or one photo (monocular models).
    ///
    /// # Errors
    /// When the input is malformed or contradictory (cameras for a monocular model, views
    /// too different in shape to share a network input, no intrinsics for the metric
    /// model), or inference fails.
    fn run(&self, input: &ViewsInput<'_>) -> crate::Result<ViewsOutput>;
}

impl fmt::Debug for dyn Da3Engine + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Da3Engine")
            .field("model", &self.model())
            .field("device", &self.device_name())
            .finish()
    }
}
