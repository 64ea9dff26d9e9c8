//! The DINOv2 vision transformer encoder, as in the official Depth Anything code.
//!
//! Variable paths follow the official checkpoints (`patch_embed.proj`, `blocks.N.attn.qkv`,
//! `blocks.N.ls1.gamma`, ...).

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use anydepth_model::config::{Ffn, VitConfig};

use crate::rope::RopeTables;

pub(crate) fn zeros() -> nn::Init {
    nn::Init::Const(0.0)
}

pub(crate) fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: zeros(),
            bs_init: Some(zeros()),
            bias: true,
        },
    )
}

pub(crate) fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// `x` through `layer`, cast first to the kind of its weights.
fn linear_in(x: &Tensor, layer: &nn::Linear) -> Tensor {
    x.to_kind(layer.ws.kind()).apply(layer)
}

/// Casts the linear layers and patch embedding (`qkv`, `proj`, `fc1`, `fc2`, `w12`, `w3`)
/// of the encoder whose variables start with `prefix` to `kind`: what PyTorch's autocast
/// runs in half precision. Its norms, LayerScales, tokens and position embedding stay as
/// they are, so [`Block`] keeps its residual stream in their kind.
pub(crate) fn cast_linear_layers(vs: &nn::VarStore, prefix: &str, kind: Kind) {
    tch::no_grad(|| {
        for (name, mut variable) in vs.variables() {
            let layer = name.rsplit('.').nth(1);
            if name.starts_with(prefix)
                && matches!(layer, Some("qkv" | "proj" | "fc1" | "fc2" | "w12" | "w3"))
            {
                // `set_data` swaps the storage every handle on this variable shares.
                variable.set_data(&variable.to_kind(kind));
            }
        }
    });
}

/// `x` through `norm`, cast first to the kind of its weights.
fn norm_in(x: &Tensor, norm: &nn::LayerNorm) -> Tensor {
    match &norm.ws {
        Some(weight) => x.to_kind(weight.kind()).apply(norm),
        None => x.apply(norm),
    }
}

/// Multi-head self-attention with a fused `qkv` projection; Depth Anything 3's blocks add
/// QK-norm (one LayerNorm over the head dimension, shared by the heads) and a rotary
/// position embedding.
#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    q_norm: Option<nn::LayerNorm>,
    k_norm: Option<nn::LayerNorm>,
    proj: nn::Linear,
    num_heads: i64,
}

impl Attention {
    /// With `qk_norm`, the epsilon of the query and key norms.
    fn new(p: nn::Path, cfg: &VitConfig, qk_norm: Option<f64>) -> Self {
        let d = cfg.embed_dim;
        let head_dim = d / cfg.num_heads;
        let norm = |name: &str| qk_norm.map(|eps| layer_norm(&p / name, head_dim, eps));
        Self {
            qkv: linear(&p / "qkv", d, 3 * d),
            q_norm: norm("q_norm"),
            k_norm: norm("k_norm"),
            proj: linear(&p / "proj", d, d),
            num_heads: cfg.num_heads,
        }
    }

    fn forward(&self, x: &Tensor, rope: Option<&RopeTables>) -> Tensor {
        let (b, n, c) = x.size3().unwrap_or((0, 0, 0));
        let head_dim = c / self.num_heads;
        let compute = self.qkv.ws.kind();
        let qkv = linear_in(x, &self.qkv)
            .reshape([b, n, 3, self.num_heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (mut q, mut k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        if let Some(norm) = &self.q_norm {
            q = norm_in(&q, norm);
        }
        if let Some(norm) = &self.k_norm {
            k = norm_in(&k, norm);
        }
        if let Some(rope) = rope {
            q = rope.apply(&q);
            k = rope.apply(&k);
        }
        // Fused attention (flash / memory-efficient kernels where the device has them);
        // the default scale is 1/sqrt(head_dim), as in the reference.
        let out = Tensor::scaled_dot_product_attention(
            &q.to_kind(compute),
            &k.to_kind(compute),
            &v,
            None::<Tensor>,
            0.0,
            /* is_causal= */ false,
            None,
            /* enable_gqa= */ false,
        );
        out.transpose(1, 2).reshape([b, n, c]).apply(&self.proj)
    }
}

/// The feed-forward block: GELU MLP or fused SwiGLU.
#[derive(Debug)]
enum FeedForward {
    Mlp { fc1: nn::Linear, fc2: nn::Linear },
    SwiGlu { w12: nn::Linear, w3: nn::Linear },
}

impl FeedForward {
    fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        let (d, h) = (cfg.embed_dim, cfg.hidden_dim());
        match cfg.ffn {
            Ffn::Mlp => Self::Mlp {
                fc1: linear(&p / "fc1", d, h),
                fc2: linear(&p / "fc2", h, d),
            },
            Ffn::SwiGlu => Self::SwiGlu {
                w12: linear(&p / "w12", d, 2 * h),
                w3: linear(&p / "w3", h, d),
            },
        }
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Mlp { fc1, fc2 } => linear_in(x, fc1).gelu("none").apply(fc2),
            Self::SwiGlu { w12, w3 } => {
                let x12 = linear_in(x, w12);
                let halves = x12.chunk(2, -1);
                (halves[0].silu() * &halves[1]).apply(w3)
            }
        }
    }
}

/// Pre-norm transformer block with LayerScale.
#[derive(Debug)]
pub(crate) struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    ls1: Tensor,
    norm2: nn::LayerNorm,
    mlp: FeedForward,
    ls2: Tensor,
}

impl Block {
    /// A block of `cfg`'s width, heads and layer-norm epsilon; with `qk_norm`, its
    /// attention normalises queries and keys with that epsilon.
    pub(crate) fn new(p: nn::Path, cfg: &VitConfig, qk_norm: Option<f64>) -> Self {
        let d = cfg.embed_dim;
        Self {
            norm1: layer_norm(&p / "norm1", d, cfg.layer_norm_eps),
            attn: Attention::new(&p / "attn", cfg, qk_norm),
            ls1: (&p / "ls1").var("gamma", &[d], zeros()),
            norm2: layer_norm(&p / "norm2", d, cfg.layer_norm_eps),
            mlp: FeedForward::new(&p / "mlp", cfg),
            ls2: (&p / "ls2").var("gamma", &[d], zeros()),
        }
    }

    /// The block on `x` (`(batch, tokens, width)`), its queries and keys rotated by `rope`.
    ///
    /// With its linear layers cast to half precision and the rest left in fp32, it runs as
    /// PyTorch's autocast would: norms, LayerScale and the residual stream (`x`) in fp32,
    /// the linear layers and attention in half precision.
    pub(crate) fn forward(&self, x: &Tensor, rope: Option<&RopeTables>) -> Tensor {
        let x = x + self.attn.forward(&norm_in(x, &self.norm1), rope) * &self.ls1;
        &x + self.mlp.forward(&norm_in(&x, &self.norm2)) * &self.ls2
    }
}

/// DINOv2 ViT/14 without register tokens.
#[derive(Debug)]
pub struct DinoV2 {
    cfg: VitConfig,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl DinoV2 {
    /// Builds the encoder under `p` (the official checkpoints use `pretrained`).
    pub fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        let d = cfg.embed_dim;
        let patch_embed = nn::conv2d(
            &p / "patch_embed" / "proj",
            3,
            d,
            cfg.patch_size,
            nn::ConvConfig {
                stride: cfg.patch_size,
                ws_init: zeros(),
                bs_init: zeros(),
                ..Default::default()
            },
        );
        let positions = cfg.pos_grid * cfg.pos_grid + 1;
        // Present in the checkpoints, used only for masked pre-training.
        let _mask_token = p.var("mask_token", &[1, d], zeros());
        let blocks_path = &p / "blocks";
        Self {
            cfg: *cfg,
            patch_embed,
            cls_token: p.var("cls_token", &[1, 1, d], zeros()),
            pos_embed: p.var("pos_embed", &[1, positions, d], zeros()),
            blocks: (0..cfg.depth)
                .map(|i| Block::new(&blocks_path / i, cfg, None))
                .collect(),
            norm: layer_norm(&p / "norm", d, cfg.layer_norm_eps),
        }
    }

    /// Outputs of the blocks in `layers` (0-based), normalised, class token dropped:
    /// each `(b, grid_h * grid_w, embed_dim)`.
    pub fn intermediate_layers(&self, x: &Tensor, layers: &[usize]) -> Vec<Tensor> {
        let (_b, _c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
        let (grid_h, grid_w) = (h / self.cfg.patch_size, w / self.cfg.patch_size);
        let mut x = embed_tokens(
            x,
            &self.patch_embed,
            &self.cls_token,
            &self.pos_embed,
            &self.cfg,
        );
        let last = layers.iter().copied().max().unwrap_or(0);
        let mut outputs = Vec::with_capacity(layers.len());
        for (i, block) in self.blocks.iter().enumerate().take(last + 1) {
            x = block.forward(&x, None);
            if layers.contains(&i) {
                outputs.push(norm_in(&x, &self.norm).narrow(1, 1, grid_h * grid_w));
            }
        }
        outputs
    }
}

/// A DINOv2 encoder's input tokens for images `x` `(b, 3, h, w)`: the class token, then
/// the patch embeddings, plus the position embedding for their grid, in the class token's
/// kind. That is the residual stream's: fp32 also when the patch embedding and linear
/// layers alone were cast to half precision (as autocast runs them), the patch embedding
/// then running in its weights' kind.
pub(crate) fn embed_tokens(
    x: &Tensor,
    patch_embed: &nn::Conv2D,
    cls_token: &Tensor,
    pos_embed: &Tensor,
    cfg: &VitConfig,
) -> Tensor {
    let (b, _c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    let (grid_h, grid_w) = (h / cfg.patch_size, w / cfg.patch_size);
    let kind = cls_token.kind();
    let patches = x
        .to_kind(patch_embed.ws.kind())
        .apply(patch_embed)
        .flatten(2, 3)
        .transpose(1, 2)
        .to_kind(kind);
    let cls = cls_token.expand([b, -1, -1], false);
    Tensor::cat(&[cls, patches], 1) + interpolate_pos_embed(pos_embed, cfg, grid_h, grid_w, kind)
}

/// DINOv2's position embedding (`(1, 1 + pos_grid^2, d)`, class token first) for a
/// `grid_h x grid_w` patch grid, interpolated bicubically with DINOv2's scale factors
/// `(grid + offset) / pos_grid`, in fp32 like the reference, then cast to `kind`.
fn interpolate_pos_embed(
    pos_embed: &Tensor,
    cfg: &VitConfig,
    grid_h: i64,
    grid_w: i64,
    kind: Kind,
) -> Tensor {
    let n = cfg.pos_grid;
    if grid_h == n && grid_w == n {
        return pos_embed.to_kind(kind);
    }
    let d = cfg.embed_dim;
    let pos = pos_embed.to_kind(Kind::Float);
    let cls = pos.narrow(1, 0, 1);
    let patch = pos
        .narrow(1, 1, n * n)
        .reshape([1, n, n, d])
        .permute([0, 3, 1, 2]);
    // Python computes float(grid + 0.1) / sqrt(N) and PyTorch maps source coordinates
    // with 1/scale, so pass the scales, not just the output size.
    let sqrt_n = (n as f64 * n as f64).sqrt();
    let scale_h = (grid_h as f64 + cfg.interpolate_offset) / sqrt_n;
    let scale_w = (grid_w as f64 + cfg.interpolate_offset) / sqrt_n;
    let patch = patch
        .upsample_bicubic2d(
            [grid_h, grid_w],
            /* align_corners= */ false,
            scale_h,
            scale_w,
        )
        .permute([0, 2, 3, 1])
        .reshape([1, grid_h * grid_w, d]);
    Tensor::cat(&[cls, patch], 1).to_kind(kind)
}
