//! Model configurations as data, with presets for every released Depth Anything model.

use std::fmt;

/// DINOv2 encoder size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Encoder {
    /// ViT-S/14, 24.8 M parameters with the DPT head.
    Vits,
    /// ViT-B/14, 97.5 M.
    Vitb,
    /// ViT-L/14, 335 M.
    Vitl,
    /// ViT-g/14 (SwiGLU MLP), 1.3 B.
    Vitg,
}

impl Encoder {
    /// Every encoder size, smallest first.
    pub const ALL: [Encoder; 4] = [Encoder::Vits, Encoder::Vitb, Encoder::Vitl, Encoder::Vitg];

    /// The name used by the official code and file names: `vits`, `vitb`, `vitl`, `vitg`.
    pub fn name(self) -> &'static str {
        match self {
            Encoder::Vits => "vits",
            Encoder::Vitb => "vitb",
            Encoder::Vitl => "vitl",
            Encoder::Vitg => "vitg",
        }
    }

    /// The encoder whose embedding width is `dim`.
    pub fn from_embed_dim(dim: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.vit().embed_dim == dim)
    }

    /// The ViT preset of this size.
    pub fn vit(self) -> VitConfig {
        match self {
            Encoder::Vits => VitConfig::vit_small(),
            Encoder::Vitb => VitConfig::vit_base(),
            Encoder::Vitl => VitConfig::vit_large(),
            Encoder::Vitg => VitConfig::vit_giant2(),
        }
    }

    /// The DPT head preset that goes with this encoder.
    pub fn dpt(self) -> DptConfig {
        let (features, out_channels) = match self {
            Encoder::Vits => (64, [48, 96, 192, 384]),
            Encoder::Vitb => (128, [96, 192, 384, 768]),
            Encoder::Vitl => (256, [256, 512, 1024, 1024]),
            Encoder::Vitg => (384, [1536, 1536, 1536, 1536]),
        };
        DptConfig {
            in_channels: self.vit().embed_dim,
            features,
            out_channels,
            head_features: 32,
        }
    }
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Depth Anything release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Version {
    /// Depth Anything V1 (January 2024).
    V1,
    /// Depth Anything V2 (June 2024).
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// A metric model: the kind of scene its head was fine-tuned on, which sets its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Metric {
    /// Trained on Hypersim, depth up to 20 m.
    Indoor,
    /// Trained on Virtual KITTI, depth up to 80 m.
    Outdoor,
}

impl Metric {
    /// The largest depth the head predicts, in metres.
    pub fn max_depth_m(self) -> f64 {
        match self {
            Metric::Indoor => 20.0,
            Metric::Outdoor => 80.0,
        }
    }

    /// The head of this model, up to `max_depth_m` (its trained range when `None`).
    pub fn head(self, max_depth_m: Option<f64>) -> Head {
        Head::Metric {
            max_depth_m: max_depth_m.unwrap_or(self.max_depth_m()),
        }
    }
}

/// What the network's last layer produces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// ReLU: affine-invariant disparity.
    Relative,
    /// Sigmoid times `max_depth_m`: depth in metres.
    Metric {
        /// The largest depth the head predicts, in metres.
        max_depth_m: f64,
    },
}

impl Head {
    /// Metric head of the indoor models (trained on Hypersim, 20 m).
    pub const INDOOR: Head = Head::Metric { max_depth_m: 20.0 };
    /// Metric head of the outdoor models (trained on Virtual KITTI, 80 m).
    pub const OUTDOOR: Head = Head::Metric { max_depth_m: 80.0 };
}

/// Feed-forward block of the ViT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// Linear, exact GELU, linear (`fc1`, `fc2`).
    Mlp,
    /// Fused SwiGLU (`w12`, `w3`), used by ViT-g.
    SwiGlu,
}

/// DINOv2 vision transformer hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitConfig {
    /// Width of the tokens (384, 768, 1024 or 1536).
    pub embed_dim: i64,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: i64,
    /// Hidden width of the feed-forward block as a multiple of `embed_dim` (before the
    /// SwiGLU rounding).
    pub mlp_ratio: i64,
    /// The kind of feed-forward block.
    pub ffn: Ffn,
    /// Side of the square patches, in pixels (14).
    pub patch_size: i64,
    /// Side of the square grid the position embedding was trained on (518 / 14).
    pub pos_grid: i64,
    /// Added to the target grid size when interpolating the position embedding, as DINOv2
    /// does (`interpolate_offset`).
    pub interpolate_offset: f64,
    /// Epsilon of the layer norms.
    pub layer_norm_eps: f64,
}

impl VitConfig {
    pub(crate) fn preset(embed_dim: i64, depth: usize, num_heads: i64, ffn: Ffn) -> Self {
        Self {
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4,
            ffn,
            patch_size: 14,
            pos_grid: 37,
            interpolate_offset: 0.1,
            layer_norm_eps: 1e-6,
        }
    }

    /// ViT-S/14: width 384, 12 blocks, 6 heads.
    pub fn vit_small() -> Self {
        Self::preset(384, 12, 6, Ffn::Mlp)
    }

    /// ViT-B/14: width 768, 12 blocks, 12 heads.
    pub fn vit_base() -> Self {
        Self::preset(768, 12, 12, Ffn::Mlp)
    }

    /// ViT-L/14: width 1024, 24 blocks, 16 heads.
    pub fn vit_large() -> Self {
        Self::preset(1024, 24, 16, Ffn::Mlp)
    }

    /// ViT-g/14 as DINOv2 trains it: width 1536, 40 blocks, 24 heads, SwiGLU.
    pub fn vit_giant2() -> Self {
        Self::preset(1536, 40, 24, Ffn::SwiGlu)
    }

    /// Hidden width of the feed-forward block.
    pub fn hidden_dim(&self) -> i64 {
        let hidden = self.embed_dim * self.mlp_ratio;
        match self.ffn {
            Ffn::Mlp => hidden,
            // SwiGLUFFNFused: (int(hidden * 2 / 3) + 7) // 8 * 8
            Ffn::SwiGlu => (hidden * 2 / 3 + 7) / 8 * 8,
        }
    }
}

/// DPT head hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DptConfig {
    /// Width of the encoder tokens.
    pub in_channels: i64,
    /// Width of the fusion blocks.
    pub features: i64,
    /// Width of each of the four reassembled levels.
    pub out_channels: [i64; 4],
    /// Width before the last 1x1 convolution.
    pub head_features: i64,
}

/// A whole Depth Anything network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// The encoder size.
    pub encoder: Encoder,
    /// The release.
    pub version: Version,
    /// What the last layer produces: disparity, or depth in metres.
    pub head: Head,
    /// The encoder's hyper-parameters.
    pub vit: VitConfig,
    /// The DPT head's hyper-parameters.
    pub dpt: DptConfig,
    /// The encoder blocks whose (normalised) outputs feed the DPT head, 0-based.
    pub intermediate_layers: [usize; 4],
}

impl ModelConfig {
    /// The released configuration of `version` with `encoder` and `head`.
    pub fn new(version: Version, encoder: Encoder, head: Head) -> Self {
        let vit = encoder.vit();
        let intermediate_layers = match (version, encoder) {
            (Version::V2, Encoder::Vits | Encoder::Vitb) => [2, 5, 8, 11],
            (Version::V2, Encoder::Vitl) => [4, 11, 17, 23],
            (Version::V2, Encoder::Vitg) => [9, 19, 29, 39],
            // V1 takes the last four blocks.
            (Version::V1, _) => {
                let d = vit.depth;
                [d - 4, d - 3, d - 2, d - 1]
            }
        };
        Self {
            encoder,
            version,
            head,
            vit,
            dpt: encoder.dpt(),
            intermediate_layers,
        }
    }

    /// Depth Anything V2, relative depth (disparity).
    pub fn v2(encoder: Encoder) -> Self {
        Self::new(Version::V2, encoder, Head::Relative)
    }

    /// Depth Anything V2 metric, indoor (Hypersim, 20 m).
    pub fn v2_metric_indoor(encoder: Encoder) -> Self {
        Self::new(Version::V2, encoder, Head::INDOOR)
    }

    /// Depth Anything V2 metric, outdoor (Virtual KITTI, 80 m).
    pub fn v2_metric_outdoor(encoder: Encoder) -> Self {
        Self::new(Version::V2, encoder, Head::OUTDOOR)
    }

    /// Depth Anything V1, relative depth (disparity).
    pub fn v1(encoder: Encoder) -> Self {
        Self::new(Version::V1, encoder, Head::Relative)
    }

    /// A short description such as `Depth Anything V2 vits relative`.
    pub fn describe(&self) -> String {
        let head = match self.head {
            Head::Relative => "relative".to_string(),
            Head::Metric { max_depth_m } => format!("metric (max {max_depth_m} m)"),
        };
        format!(
            "Depth Anything {} {} {}",
            self.version.to_string().to_uppercase(),
            self.encoder,
            head
        )
    }
}

/// Video Depth Anything: V2's encoder and DPT head with temporal motion modules, run on
/// windows of frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoConfig {
    /// The image network it extends (V2's encoder and head; a ReLU output).
    pub base: ModelConfig,
    /// Whether its output is depth in metres (the metric releases) rather than relative
    /// disparity. Relative windows are aligned to each other by scale and shift; metric
    /// ones are not.
    pub metric: bool,
    /// Frames per window, which is also the length of the temporal position encoding (32).
    pub window: i64,
    /// Attention heads of each temporal attention (8).
    pub temporal_heads: i64,
}

impl VideoConfig {
    /// The released configuration with `encoder` (ViT-S, B or L).
    pub fn new(encoder: Encoder, metric: bool) -> Self {
        Self {
            base: ModelConfig::new(Version::V2, encoder, Head::Relative),
            metric,
            window: 32,
            temporal_heads: 8,
        }
    }

    /// The encoder size.
    pub fn encoder(&self) -> Encoder {
        self.base.encoder
    }

    /// A short description such as `Video Depth Anything vits relative`.
    pub fn describe(&self) -> String {
        let kind = if self.metric { "metric" } else { "relative" };
        format!("Video Depth Anything {} {kind}", self.base.encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_released_models() {
        let g = ModelConfig::v2(Encoder::Vitg);
        assert_eq!(g.vit.hidden_dim(), 4096);
        assert_eq!(g.intermediate_layers, [9, 19, 29, 39]);
        assert_eq!(
            ModelConfig::v1(Encoder::Vitl).intermediate_layers,
            [20, 21, 22, 23]
        );
        assert_eq!(
            ModelConfig::v1(Encoder::Vits).intermediate_layers,
            [8, 9, 10, 11]
        );
        assert_eq!(Encoder::from_embed_dim(768), Some(Encoder::Vitb));
        assert_eq!(Encoder::Vitb.dpt().out_channels, [96, 192, 384, 768]);
    }
}
