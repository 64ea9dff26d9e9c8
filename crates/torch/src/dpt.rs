//! The DPT head of Depth Anything: reassemble four token maps into a feature pyramid,
//! fuse it top-down, and regress one value per pixel.
//!
//! Variable paths follow the official checkpoints (`projects.N`, `resize_layers.N`,
//! `scratch.refinenetN.resConfUnitM.convK`, `scratch.output_conv2.2`, ...).

use tch::nn::{self, Module};
use tch::Tensor;

use anydepth_model::config::{DptConfig, Head};

use crate::temporal::{TemporalModule, CACHED_PER_MODULE};

pub(crate) fn conv(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    bias: bool,
) -> nn::Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        k,
        nn::ConvConfig {
            stride,
            padding: k / 2,
            bias,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

fn conv_transpose(p: nn::Path, c: i64, k: i64) -> nn::ConvTranspose2D {
    nn::conv_transpose2d(
        p,
        c,
        c,
        k,
        nn::ConvTransposeConfig {
            stride: k,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

pub(crate) fn resize_bilinear_aligned(x: &Tensor, h: i64, w: i64) -> Tensor {
    x.upsample_bilinear2d([h, w], /* align_corners= */ true, None, None)
}

/// How one level of tokens is brought to its pyramid resolution.
#[derive(Debug)]
enum Resize {
    Up(nn::ConvTranspose2D),
    Same,
    Down(nn::Conv2D),
}

impl Module for Resize {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Up(layer) => x.apply(layer),
            Self::Same => x.shallow_clone(),
            Self::Down(layer) => x.apply(layer),
        }
    }
}

/// Pre-activation residual unit: `x + conv2(relu(conv1(relu(x))))`.
#[derive(Debug)]
struct ResidualConvUnit {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
}

impl ResidualConvUnit {
    fn new(p: nn::Path, features: i64) -> Self {
        Self {
            conv1: conv(&p / "conv1", features, features, 3, 1, true),
            conv2: conv(&p / "conv2", features, features, 3, 1, true),
        }
    }
}

impl Module for ResidualConvUnit {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.relu().apply(&self.conv1).relu().apply(&self.conv2) + x
    }
}

/// Feature fusion block: merge the lateral input (through the first residual unit, absent
/// in Depth Anything 3's coarsest block), refine, resize (bilinear, corners aligned),
/// project.
#[derive(Debug)]
pub(crate) struct FusionBlock {
    res_conf_unit1: Option<ResidualConvUnit>,
    res_conf_unit2: ResidualConvUnit,
    out_conv: nn::Conv2D,
}

impl FusionBlock {
    /// A block under `p`, with its first residual unit (`resConfUnit1`, which takes the
    /// lateral input) when `has_unit1`. V2's coarsest block has one in its checkpoints but
    /// never gets a lateral input; Depth Anything 3's has none.
    pub(crate) fn new(p: nn::Path, features: i64, has_unit1: bool) -> Self {
        Self {
            res_conf_unit1: has_unit1.then(|| ResidualConvUnit::new(&p / "resConfUnit1", features)),
            res_conf_unit2: ResidualConvUnit::new(&p / "resConfUnit2", features),
            out_conv: conv(&p / "out_conv", features, features, 1, 1, true),
        }
    }

    /// Fuses `x` with the optional `lateral` input, then resizes to `(h, w)` and projects.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        lateral: Option<&Tensor>,
        (h, w): (i64, i64),
    ) -> Tensor {
        debug_assert!(
            lateral.is_none() || self.res_conf_unit1.is_some(),
            "a lateral input to a fusion block without resConfUnit1"
        );
        let x = match (lateral, &self.res_conf_unit1) {
            (Some(lateral), Some(unit)) => x + lateral.apply(unit),
            _ => x.shallow_clone(),
        };
        resize_bilinear_aligned(&x.apply(&self.res_conf_unit2), h, w).apply(&self.out_conv)
    }
}

/// The reassembly layers of a DPT head, per level of tokens: a 1x1 projection
/// (`projects.N`), a resize to the level's pyramid resolution (`resize_layers.N`), and a
/// 3x3 convolution to the fusion width (`scratch.layerN_rn`).
#[derive(Debug)]
pub(crate) struct Reassemble {
    projects: Vec<nn::Conv2D>,
    resize_layers: Vec<Resize>,
    pub(crate) layer_rn: Vec<nn::Conv2D>,
}

impl Reassemble {
    /// The layers under the head's path `p`, from `in_channels` tokens through
    /// `out_channels` per level to `features`.
    pub(crate) fn new(
        p: &nn::Path,
        in_channels: i64,
        out_channels: [i64; 4],
        features: i64,
    ) -> Self {
        let oc = out_channels;
        let projects = p / "projects";
        let resize = p / "resize_layers";
        let scratch = p / "scratch";
        Self {
            projects: (0..4)
                .map(|i| conv(&projects / i, in_channels, oc[i], 1, 1, true))
                .collect(),
            resize_layers: vec![
                Resize::Up(conv_transpose(&resize / 0, oc[0], 4)),
                Resize::Up(conv_transpose(&resize / 1, oc[1], 2)),
                Resize::Same,
                Resize::Down(conv(&resize / 3, oc[3], oc[3], 3, 2, true)),
            ],
            layer_rn: (0..4)
                .map(|i| {
                    let name = format!("layer{}_rn", i + 1);
                    conv(&scratch / name.as_str(), oc[i], features, 3, 1, false)
                })
                .collect(),
        }
    }

    /// Each level's tokens (`(b, grid_h * grid_w, c)`, finest first) as a map through its
    /// projection, `between`, and its resize. `tokens` is taken one level at a time, so a
    /// level made for the call (normalised, say) is freed once it is projected.
    pub(crate) fn project_and_resize(
        &self,
        tokens: impl IntoIterator<Item = Tensor>,
        (grid_h, grid_w): (i64, i64),
        between: impl Fn(Tensor) -> Tensor,
    ) -> Vec<Tensor> {
        tokens
            .into_iter()
            .zip(&self.projects)
            .zip(&self.resize_layers)
            .map(|((t, project), resize)| {
                let (b, _n, c) = t.size3().unwrap_or((0, 0, 0));
                // (b, h, w, c) seen as (b, c, h, w): channels-last memory without a copy,
                // which every convolution of the head then keeps (oneDNN on the CPU and
                // cuDNN's NHWC kernels are faster on it).
                let map = t
                    .reshape([b, grid_h, grid_w, c])
                    .permute([0, 3, 1, 2])
                    .apply(project);
                between(map).apply(resize)
            })
            .collect()
    }
}

/// The DPT head; Video Depth Anything's adds four temporal motion modules.
#[derive(Debug)]
pub struct DptHead {
    reassemble: Reassemble,
    refinenets: Vec<FusionBlock>,
    output_conv1: nn::Conv2D,
    output_conv2_0: nn::Conv2D,
    output_conv2_2: nn::Conv2D,
    /// On the two deepest reassembled levels, then after the two deepest fusion blocks.
    motion_modules: Vec<TemporalModule>,
    head: Head,
    patch_size: i64,
}

/// Frames of the temporal head's last stages (the two finest fusion blocks and the
/// output convolutions) run together, as the official code micro-batches them.
const TAIL_FRAMES: i64 = 4;

impl DptHead {
    /// Builds the head under `p` (the official checkpoints use `depth_head`).
    pub fn new(p: nn::Path, cfg: &DptConfig, head: Head, patch_size: i64) -> Self {
        let f = cfg.features;
        let scratch = &p / "scratch";
        Self {
            reassemble: Reassemble::new(&p, cfg.in_channels, cfg.out_channels, f),
            refinenets: (0..4)
                .map(|i| {
                    let name = format!("refinenet{}", i + 1);
                    FusionBlock::new(&scratch / name.as_str(), f, true)
                })
                .collect(),
            output_conv1: conv(&scratch / "output_conv1", f, f / 2, 3, 1, true),
            output_conv2_0: conv(
                &scratch / "output_conv2" / 0,
                f / 2,
                cfg.head_features,
                3,
                1,
                true,
            ),
            output_conv2_2: conv(
                &scratch / "output_conv2" / 2,
                cfg.head_features,
                1,
                1,
                1,
                true,
            ),
            motion_modules: Vec::new(),
            head,
            patch_size,
        }
    }

    /// Video Depth Anything's head under `p` (`head` in its checkpoints): the relative
    /// DPT head plus motion modules with `heads` attention heads over windows of up to
    /// `max_frames`.
    pub fn temporal(
        p: nn::Path,
        cfg: &DptConfig,
        patch_size: i64,
        heads: i64,
        max_frames: i64,
    ) -> Self {
        let modules = &p / "motion_modules";
        let mut head = Self::new(p, cfg, Head::Relative, patch_size);
        let widths = [
            cfg.out_channels[2],
            cfg.out_channels[3],
            cfg.features,
            cfg.features,
        ];
        head.motion_modules = widths
            .iter()
            .enumerate()
            .map(|(i, &c)| TemporalModule::new(&modules / i, c, heads, max_frames))
            .collect();
        head
    }

    /// Regresses `(b, 14 * grid_h, 14 * grid_w)` values from four token maps of shape
    /// `(b, grid_h * grid_w, c)`.
    pub fn forward(&self, tokens: &[Tensor], grid_h: i64, grid_w: i64) -> Tensor {
        self.forward_frames(tokens, grid_h, grid_w, 1, None).0
    }

    /// [`DptHead::forward`] on `batch * frames` token maps (frames inner), with the motion
    /// modules (if any) attending across the `frames` of each batch item, or, with
    /// `cached` (what earlier calls returned, concatenated over frames), from each new
    /// frame to the cached ones. Also returns what to cache for these frames:
    /// [`CACHED_PER_MODULE`] tensors per motion module, in module order.
    pub fn forward_frames(
        &self,
        tokens: &[Tensor],
        grid_h: i64,
        grid_w: i64,
        frames: i64,
        cached: Option<&[Tensor]>,
    ) -> (Tensor, Vec<Tensor>) {
        let reassembled = self.reassemble.project_and_resize(
            tokens.iter().map(Tensor::shallow_clone),
            (grid_h, grid_w),
            |map| map,
        );
        let mut to_cache = Vec::new();
        let mut temporal = |i: usize, x: Tensor| -> Tensor {
            let Some(module) = self.motion_modules.get(i) else {
                return x;
            };
            let range = i * CACHED_PER_MODULE..(i + 1) * CACHED_PER_MODULE;
            let (y, cache) = module.forward(&x, frames, cached.and_then(|c| c.get(range)));
            to_cache.extend(cache);
            y
        };
        let mut levels = reassembled.into_iter();
        let (Some(l1), Some(l2), Some(l3), Some(l4)) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return (Tensor::new(), to_cache);
        };
        let l3 = temporal(0, l3);
        let l4 = temporal(1, l4);
        let rn: Vec<Tensor> = [l1, l2, l3, l4]
            .iter()
            .zip(&self.reassemble.layer_rn)
            .map(|(l, conv)| l.apply(conv))
            .collect();
        let size = |t: &Tensor| {
            let s = t.size();
            (s[2], s[3])
        };
        let path4 = self.refinenets[3].forward(&rn[3], None, size(&rn[2]));
        let path4 = temporal(2, path4);
        let path3 = self.refinenets[2].forward(&path4, Some(&rn[2]), size(&rn[1]));
        let path3 = temporal(3, path3);

        let batch = path3.size()[0];
        let out =
            if self.motion_modules.is_empty() || batch <= TAIL_FRAMES || batch % TAIL_FRAMES != 0 {
                self.tail(&path3, &rn[1], &rn[0], grid_h, grid_w)
            } else {
                let chunks: Vec<Tensor> = (0..batch / TAIL_FRAMES)
                    .map(|c| {
                        let part = |t: &Tensor| t.narrow(0, c * TAIL_FRAMES, TAIL_FRAMES);
                        self.tail(&part(&path3), &part(&rn[1]), &part(&rn[0]), grid_h, grid_w)
                    })
                    .collect();
                Tensor::cat(&chunks, 0)
            };
        (out, to_cache)
    }

    /// The two finest fusion blocks and the output convolutions.
    fn tail(&self, path3: &Tensor, rn2: &Tensor, rn1: &Tensor, grid_h: i64, grid_w: i64) -> Tensor {
        let (h1, w1) = {
            let s = rn1.size();
            (s[2], s[3])
        };
        let path2 = self.refinenets[1].forward(path3, Some(rn2), (h1, w1));
        let path1 = self.refinenets[0].forward(&path2, Some(rn1), (2 * h1, 2 * w1));

        let out = path1.apply(&self.output_conv1);
        let out = resize_bilinear_aligned(&out, grid_h * self.patch_size, grid_w * self.patch_size);
        let out = out
            .apply(&self.output_conv2_0)
            .relu()
            .apply(&self.output_conv2_2);
        let out = match self.head {
            // ReLU in output_conv2, then once more in the model's forward: idempotent.
            Head::Relative => out.relu(),
            Head::Metric { max_depth_m } => out.sigmoid() * max_depth_m,
        };
        out.squeeze_dim(1)
    }
}
