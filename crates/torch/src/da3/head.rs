//! Depth Anything 3's dense heads: the any-view models' DualDPT (depth and confidence;
//! rays and their confidence on an auxiliary branch) and the monocular models' DPT (depth
//! and sky).
//!
//! Both reassemble four token maps into a pyramid and fuse it top-down as Depth Anything's
//! DPT does; the differences are a LayerNorm before the projections and a sinusoidal UV
//! embedding added at three places (DualDPT), an `exp` output, and no residual unit in
//! the coarsest fusion block. Variable paths follow the official checkpoints
//! (`head.scratch.refinenet4_aux.resConfUnit2.conv1`, `head.scratch.sky_output_conv2.0`,
//! ...).

use tch::nn;
use tch::{Kind, Tensor};

use anydepth_model::da3::Da3Config;

use crate::dinov2::layer_norm;
use crate::dpt::{conv, resize_bilinear_aligned, FusionBlock, Reassemble};

/// Views the head takes at once, as the official code chunks them (memory).
const VIEWS_PER_CHUNK: i64 = 8;

/// Channels of the auxiliary (ray) branch's output: a ray (origin, direction) and its
/// confidence.
const RAY_CHANNELS: i64 = 7;

/// The four fusion blocks of one branch, coarsest last.
#[derive(Debug)]
struct Fusion {
    blocks: Vec<FusionBlock>,
}

impl Fusion {
    fn new(scratch: &nn::Path, features: i64, suffix: &str) -> Self {
        Self {
            blocks: (1..=4)
                .map(|i| {
                    let name = format!("refinenet{i}{suffix}");
                    FusionBlock::new(scratch / name.as_str(), features, i != 4)
                })
                .collect(),
        }
    }

    /// Fuses the projected levels `rn` (finest first) to twice the finest resolution.
    fn forward(&self, rn: &[Tensor]) -> Tensor {
        let size = |t: &Tensor| {
            let s = t.size();
            (s[2], s[3])
        };
        let out = self.blocks[3].forward(&rn[3], None, size(&rn[2]));
        let out = self.blocks[2].forward(&out, Some(&rn[2]), size(&rn[1]));
        let out = self.blocks[1].forward(&out, Some(&rn[1]), size(&rn[0]));
        let (h, w) = size(&rn[0]);
        self.blocks[0].forward(&out, Some(&rn[0]), (2 * h, 2 * w))
    }
}

/// The auxiliary branch of DualDPT: its own fusion blocks, then per level five plain
/// convolutions and a `conv, LayerNorm (over channels), ReLU, 1x1` output. Only the finest
/// level is used (the official code computes and drops the others), but every level's
/// variables are in the checkpoints.
#[derive(Debug)]
struct RayBranch {
    fusion: Fusion,
    output_conv1: Vec<nn::Conv2D>,
    output_conv2_0: nn::Conv2D,
    output_conv2_norm: nn::LayerNorm,
    output_conv2_5: nn::Conv2D,
}

impl RayBranch {
    const LEVELS: i64 = 4;

    fn new(scratch: &nn::Path, features: i64) -> Self {
        let half = features / 2;
        let hf = Da3Config::HEAD_FEATURES;
        let widths = [
            (features, half),
            (half, features),
            (features, half),
            (half, features),
            (features, half),
        ];
        let conv1 = scratch / "output_conv1_aux";
        let conv2 = scratch / "output_conv2_aux";
        let level_convs = |level: i64| -> (Vec<nn::Conv2D>, nn::Conv2D, nn::Conv2D) {
            let convs = widths
                .iter()
                .enumerate()
                .map(|(j, &(c_in, c_out))| conv(&conv1 / level / j, c_in, c_out, 3, 1, true))
                .collect();
            (
                convs,
                conv(&conv2 / level / 0, half, hf, 3, 1, true),
                conv(&conv2 / level / 5, hf, RAY_CHANNELS, 1, 1, true),
            )
        };
        // The coarser levels' variables are in the checkpoints but unused.
        for level in 0..Self::LEVELS - 1 {
            level_convs(level);
        }
        let (output_conv1, output_conv2_0, output_conv2_5) = level_convs(Self::LEVELS - 1);
        // One LayerNorm shared by the four levels: checkpoints store it once, as level 0's.
        let output_conv2_norm = layer_norm(&conv2 / 0 / 2, hf, Da3Config::OUTER_LAYER_NORM_EPS);
        Self {
            fusion: Fusion::new(scratch, features, "_aux"),
            output_conv1,
            output_conv2_0,
            output_conv2_norm,
            output_conv2_5,
        }
    }
}

/// The rays of a DualDPT head at 8x the patch grid: `(views, h, w, 6)` and confidence.
#[derive(Debug)]
pub(crate) struct Rays {
    pub rays: Tensor,
    pub confidence: Tensor,
}

/// What a head returns for `views` views at the input's resolution.
#[derive(Debug)]
pub(crate) struct HeadOutput {
    /// `(views, h, w)`, positive.
    pub depth: Tensor,
    /// `(views, h, w)`, >= 1 (DualDPT).
    pub confidence: Option<Tensor>,
    /// `(views, h, w)`, >= 0 (DPT).
    pub sky: Option<Tensor>,
    /// With `rays` asked for (DualDPT).
    pub rays: Option<Rays>,
}

/// DualDPT (any-view) or DPT (monocular).
#[derive(Debug)]
pub(crate) struct Head {
    norm: Option<nn::LayerNorm>,
    reassemble: Reassemble,
    fusion: Fusion,
    output_conv1: nn::Conv2D,
    output_conv2_0: nn::Conv2D,
    output_conv2_2: nn::Conv2D,
    sky_output_conv2: Option<(nn::Conv2D, nn::Conv2D)>,
    ray_branch: Option<RayBranch>,
    patch_size: i64,
}

impl Head {
    /// Builds the head of `cfg` under `p` (`head` in the checkpoints): DualDPT for
    /// any-view models, DPT with a sky output for the monocular ones.
    pub(crate) fn new(p: nn::Path, cfg: &Da3Config) -> Self {
        let dual = cfg.concatenates_tokens();
        let c_in = cfg.head_in_channels();
        let f = cfg.features;
        let hf = Da3Config::HEAD_FEATURES;
        let scratch = &p / "scratch";
        let out2 = &scratch / "output_conv2";
        Self {
            norm: dual.then(|| layer_norm(&p / "norm", c_in, Da3Config::OUTER_LAYER_NORM_EPS)),
            reassemble: Reassemble::new(&p, c_in, cfg.out_channels, f),
            fusion: Fusion::new(&scratch, f, ""),
            output_conv1: conv(&scratch / "output_conv1", f, f / 2, 3, 1, true),
            output_conv2_0: conv(&out2 / 0, f / 2, hf, 3, 1, true),
            output_conv2_2: conv(&out2 / 2, hf, if dual { 2 } else { 1 }, 1, 1, true),
            sky_output_conv2: (!dual).then(|| {
                let sky = &scratch / "sky_output_conv2";
                (
                    conv(&sky / 0, f / 2, hf, 3, 1, true),
                    conv(&sky / 2, hf, 1, 1, 1, true),
                )
            }),
            ray_branch: dual.then(|| RayBranch::new(&scratch, f)),
            patch_size: cfg.vit.patch_size,
        }
    }

    /// The head on `features` (four `(views, patches, c)` token maps) of `views` images of
    /// `h x w` pixels; the ray branch runs only with `rays`.
    pub(crate) fn forward(
        &self,
        features: &[Tensor],
        (h, w): (i64, i64),
        rays: bool,
    ) -> HeadOutput {
        let views = features.first().map_or(0, |f| f.size()[0]);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < views {
            let n = VIEWS_PER_CHUNK.min(views - start);
            let chunk: Vec<Tensor> = features.iter().map(|f| f.narrow(0, start, n)).collect();
            parts.push(self.forward_chunk(&chunk, (h, w), rays));
            start += n;
        }
        if parts.len() == 1 {
            if let Some(only) = parts.pop() {
                return only;
            }
        }
        let cat = |get: &dyn Fn(&HeadOutput) -> Option<&Tensor>| -> Option<Tensor> {
            let tensors: Option<Vec<&Tensor>> = parts.iter().map(get).collect();
            tensors.map(|t| Tensor::cat(&t, 0))
        };
        HeadOutput {
            depth: cat(&|o| Some(&o.depth)).unwrap_or_else(Tensor::new),
            confidence: cat(&|o| o.confidence.as_ref()),
            sky: cat(&|o| o.sky.as_ref()),
            rays: cat(&|o| o.rays.as_ref().map(|r| &r.rays)).and_then(|rays| {
                cat(&|o| o.rays.as_ref().map(|r| &r.confidence))
                    .map(|confidence| Rays { rays, confidence })
            }),
        }
    }

    fn forward_chunk(&self, features: &[Tensor], (h, w): (i64, i64), rays: bool) -> HeadOutput {
        let (grid_h, grid_w) = (h / self.patch_size, w / self.patch_size);
        let positional = self.norm.is_some();
        let embed = |x: Tensor| {
            if positional {
                add_uv_embed(&x, w, h)
            } else {
                x
            }
        };
        let normed = features.iter().map(|t| match &self.norm {
            Some(norm) => t.apply(norm),
            None => t.shallow_clone(),
        });
        let rn: Vec<Tensor> = self
            .reassemble
            .project_and_resize(normed, (grid_h, grid_w), embed)
            .into_iter()
            .zip(&self.reassemble.layer_rn)
            .map(|(x, rn)| x.apply(rn))
            .collect();

        let fused = self.fusion.forward(&rn).apply(&self.output_conv1);
        let fused = embed(resize_bilinear_aligned(&fused, h, w));
        let logits = fused
            .apply(&self.output_conv2_0)
            .relu()
            .apply(&self.output_conv2_2);
        let depth = logits.select(1, 0).exp();
        let confidence = positional.then(|| logits.select(1, 1).exp() + 1.0);
        let sky = self
            .sky_output_conv2
            .as_ref()
            .map(|(c0, c2)| fused.apply(c0).relu().apply(c2).relu().squeeze_dim(1));
        let rays = match (&self.ray_branch, rays) {
            (Some(branch), true) => {
                let mut aux = branch.fusion.forward(&rn);
                for c in &branch.output_conv1 {
                    aux = aux.apply(c);
                }
                let aux = embed(aux)
                    .apply(&branch.output_conv2_0)
                    .permute([0, 2, 3, 1])
                    .apply(&branch.output_conv2_norm)
                    .permute([0, 3, 1, 2])
                    .relu()
                    .apply(&branch.output_conv2_5)
                    .permute([0, 2, 3, 1]);
                Some(Rays {
                    rays: aux.narrow(-1, 0, RAY_CHANNELS - 1),
                    confidence: aux.select(-1, RAY_CHANNELS - 1).exp() + 1.0,
                })
            }
            _ => None,
        };
        HeadOutput {
            depth,
            confidence,
            sky,
            rays,
        }
    }
}

/// Adds DualDPT's UV embedding to `x` (`(b, c, ph, pw)`) of an image `image_w x image_h`:
/// a grid spanning the image's aspect ratio normalised by its diagonal, then sines and
/// cosines of u and of v at frequencies `100^(-k / (c / 4))`, times 0.1.
fn add_uv_embed(x: &Tensor, image_w: i64, image_h: i64) -> Tensor {
    let (_b, c, ph, pw) = x.size4().unwrap_or((0, 0, 0, 0));
    let device = x.device();
    let aspect = image_w as f64 / image_h as f64;
    let diagonal = (aspect * aspect + 1.0).sqrt();
    let (span_x, span_y) = (aspect / diagonal, 1.0 / diagonal);
    let along = |span: f64, n: i64| {
        let end = span * (n - 1) as f64 / n as f64;
        Tensor::linspace(-end, end, n, (x.kind(), device))
    };
    let u = along(span_x, pw).unsqueeze(0).expand([ph, pw], false);
    let v = along(span_y, ph).unsqueeze(1).expand([ph, pw], false);
    let quarter = c / 4;
    let omega = Tensor::arange(quarter, (Kind::Float, device)) / quarter as f64;
    let omega = Tensor::pow_scalar(100.0, &omega).reciprocal();
    let sincos = |pos: &Tensor| {
        let angles = pos.to_kind(Kind::Float).reshape([-1, 1]) * omega.unsqueeze(0);
        Tensor::cat(&[angles.sin(), angles.cos()], 1)
    };
    let embedding = Tensor::cat(&[sincos(&u), sincos(&v)], 1).reshape([ph, pw, c]) * 0.1;
    x + embedding.permute([2, 0, 1]).unsqueeze(0).to_kind(x.kind())
}
