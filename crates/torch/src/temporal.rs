//! Video Depth Anything's temporal motion modules: attention across the frames of a
//! window at every pixel of a feature map, inserted into the DPT head.
//!
//! Variable paths follow the official checkpoints
//! (`temporal_transformer.{norm,proj_in,proj_out}`,
//! `temporal_transformer.transformer_blocks.0.attention_blocks.N.{to_q,to_k,to_v,to_out.0}`,
//! `...attention_blocks.N.pos_encoder.pe`, `...norms.N`, `...ff.net.{0.proj,2}`, `...ff_norm`).
//!
//! In streaming mode each attention also takes the *cached* inputs of earlier frames:
//! queries come from the new frame only, keys and values from the cached frames followed
//! by the new one. Every attention returns its own input for the new frames (normalised,
//! before the position encoding), which is what a later call caches.

use tch::nn::{self, Module};
use tch::Tensor;

fn zeros() -> nn::Init {
    nn::Init::Const(0.0)
}

fn linear(p: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: zeros(),
            bs_init: bias.then(zeros),
            bias,
        },
    )
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig::default())
}

/// Most sequences (one per pixel and batch item) one attention call takes. CUDA's fused
/// attention kernels put the sequences on a grid axis of at most 65535 blocks and fail
/// beyond it ("invalid configuration argument"). The finest map with a motion module, at
/// twice the patch grid, passes that from an input size of about 1344 on 16:9 video. The
/// official code splits its xFormers calls at the same count.
const MAX_SEQUENCES: i64 = 65535;

/// Scaled dot-product attention of `q` on `k` and `v` (`(sequences, heads, length,
/// head_dim)`), in calls of at most `max_sequences` sequences. The default scale is
/// 1/sqrt(head_dim), as in the reference.
fn attention_in_parts(q: &Tensor, k: &Tensor, v: &Tensor, max_sequences: i64) -> Tensor {
    let attend = |q: &Tensor, k: &Tensor, v: &Tensor| {
        Tensor::scaled_dot_product_attention(
            q,
            k,
            v,
            None::<Tensor>,
            0.0,
            /* is_causal= */ false,
            None,
            /* enable_gqa= */ false,
        )
    };
    let max_sequences = max_sequences.max(1);
    let sequences = q.size().first().copied().unwrap_or(0);
    if sequences <= max_sequences {
        return attend(q, k, v);
    }
    let parts: Vec<Tensor> = (0..sequences)
        .step_by(usize::try_from(max_sequences).unwrap_or(1))
        .map(|start| {
            let n = max_sequences.min(sequences - start);
            attend(
                &q.narrow(0, start, n),
                &k.narrow(0, start, n),
                &v.narrow(0, start, n),
            )
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Attention across frames, with a sinusoidal position encoding over the frame index
/// (`pos_encoder.pe`, read from the checkpoint).
#[derive(Debug)]
struct TemporalAttention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    position: Tensor,
    heads: i64,
}

impl TemporalAttention {
    fn new(p: nn::Path, dim: i64, heads: i64, max_frames: i64) -> Self {
        Self {
            to_q: linear(&p / "to_q", dim, dim, false),
            to_k: linear(&p / "to_k", dim, dim, false),
            to_v: linear(&p / "to_v", dim, dim, false),
            to_out: linear(&p / "to_out" / 0, dim, dim, true),
            position: (&p / "pos_encoder").var("pe", &[1, max_frames, dim], zeros()),
            heads,
        }
    }

    /// `x`: `(batch * frames, pixels, dim)`, frames inner. With `cached`
    /// (`(batch * pixels, cached_frames, dim)`), `x` holds one new frame per batch item.
    /// Returns the output in `x`'s layout and `x` as `(batch * pixels, frames, dim)`.
    fn forward(&self, x: &Tensor, frames: i64, cached: Option<&Tensor>) -> (Tensor, Tensor) {
        let (bf, pixels, dim) = x.size3().unwrap_or((0, 0, 0));
        let frames = if cached.is_some() { 1 } else { frames };
        let batch = bf / frames.max(1);
        // (b f) d c -> (b d) f c
        let input = x
            .reshape([batch, frames, pixels, dim])
            .permute([0, 2, 1, 3])
            .reshape([batch * pixels, frames, dim]);
        let (sequence, queries_from) = match cached {
            Some(cached) => (
                Tensor::cat(&[cached, &input], 1),
                cached.size().get(1).copied().unwrap_or(0),
            ),
            None => (input.shallow_clone(), 0),
        };
        let length = sequence.size().get(1).copied().unwrap_or(0);
        let sequence = &sequence + self.position.narrow(1, 0, length).to_kind(sequence.kind());
        let q = sequence
            .narrow(1, queries_from, length - queries_from)
            .apply(&self.to_q);
        let k = sequence.apply(&self.to_k);
        let v = sequence.apply(&self.to_v);
        let head_dim = dim / self.heads;
        let split = |t: &Tensor| {
            let n = t.size().get(1).copied().unwrap_or(0);
            t.reshape([batch * pixels, n, self.heads, head_dim])
                .transpose(1, 2)
        };
        let out = attention_in_parts(&split(&q), &split(&k), &split(&v), MAX_SEQUENCES);
        let queries = length - queries_from;
        let out = out
            .transpose(1, 2)
            .reshape([batch * pixels, queries, dim])
            .apply(&self.to_out)
            // (b d) f c -> (b f) d c
            .reshape([batch, pixels, queries, dim])
            .permute([0, 2, 1, 3])
            .reshape([batch * queries, pixels, dim]);
        (out, input)
    }
}

/// GEGLU feed-forward: `proj` to twice the hidden width, value times GELU(gate), `out`.
#[derive(Debug)]
struct FeedForward {
    proj: nn::Linear,
    out: nn::Linear,
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.apply(&self.proj);
        let halves = h.chunk(2, -1);
        (&halves[0] * halves[1].gelu("none")).apply(&self.out)
    }
}

/// One transformer block: two temporal attentions, then the feed-forward, each
/// pre-normalised with a residual.
#[derive(Debug)]
struct TemporalBlock {
    attentions: Vec<TemporalAttention>,
    norms: Vec<nn::LayerNorm>,
    ff: FeedForward,
    ff_norm: nn::LayerNorm,
}

impl TemporalBlock {
    fn new(p: nn::Path, dim: i64, heads: i64, max_frames: i64) -> Self {
        let attentions = &p / "attention_blocks";
        let norms = &p / "norms";
        let ff = &p / "ff" / "net";
        Self {
            attentions: (0..2)
                .map(|i| TemporalAttention::new(&attentions / i, dim, heads, max_frames))
                .collect(),
            norms: (0..2).map(|i| layer_norm(&norms / i, dim)).collect(),
            ff: FeedForward {
                proj: linear(&ff / 0 / "proj", dim, 8 * dim, true),
                out: linear(&ff / 2, 4 * dim, dim, true),
            },
            ff_norm: layer_norm(&p / "ff_norm", dim),
        }
    }
}

/// One motion module (`head.motion_modules.N`): group norm, projection in, a temporal
/// transformer block, projection out, residual.
#[derive(Debug)]
pub struct TemporalModule {
    norm: nn::GroupNorm,
    proj_in: nn::Linear,
    block: TemporalBlock,
    proj_out: nn::Linear,
}

/// Each motion module caches one tensor per attention.
pub const CACHED_PER_MODULE: usize = 2;

impl TemporalModule {
    /// Builds the module under `p` for `channels`-wide feature maps.
    pub fn new(p: nn::Path, channels: i64, heads: i64, max_frames: i64) -> Self {
        let p = &p / "temporal_transformer";
        Self {
            norm: nn::group_norm(
                &p / "norm",
                32,
                channels,
                nn::GroupNormConfig {
                    eps: 1e-6,
                    ..Default::default()
                },
            ),
            proj_in: linear(&p / "proj_in", channels, channels, true),
            block: TemporalBlock::new(&p / "transformer_blocks" / 0, channels, heads, max_frames),
            proj_out: linear(&p / "proj_out", channels, channels, true),
        }
    }

    /// Runs on `x` of shape `(batch * frames, channels, h, w)` (frames inner).
    ///
    /// Without `cached`, attends across the `frames` of each batch item. With `cached`
    /// ([`CACHED_PER_MODULE`] tensors from earlier calls, concatenated over frames), `x`
    /// holds one new frame per batch item, which attends to the cached frames and itself.
    /// Returns the output (same shape as `x`) and the tensors to cache for `x`'s frames.
    pub fn forward(
        &self,
        x: &Tensor,
        frames: i64,
        cached: Option<&[Tensor]>,
    ) -> (Tensor, Vec<Tensor>) {
        let (bf, channels, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
        let mut hidden = x
            .apply(&self.norm)
            .permute([0, 2, 3, 1])
            .reshape([bf, h * w, channels])
            .apply(&self.proj_in);
        let mut to_cache = Vec::with_capacity(CACHED_PER_MODULE);
        for (i, (attention, norm)) in self
            .block
            .attentions
            .iter()
            .zip(&self.block.norms)
            .enumerate()
        {
            let (out, input) =
                attention.forward(&hidden.apply(norm), frames, cached.and_then(|c| c.get(i)));
            hidden = out + hidden;
            to_cache.push(input);
        }
        let hidden = hidden.apply(&self.block.ff_norm).apply(&self.block.ff) + hidden;
        let out = hidden
            .apply(&self.proj_out)
            .reshape([bf, h, w, channels])
            .permute([0, 3, 1, 2]);
        (out + x, to_cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn attention_in_parts_equals_one_call() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let (q, k, v) = (
            Tensor::randn([10, 2, 3, 4], opts),
            Tensor::randn([10, 2, 5, 4], opts),
            Tensor::randn([10, 2, 5, 4], opts),
        );
        let whole = attention_in_parts(&q, &k, &v, 10);
        for max in [1, 3, 4, 9] {
            let parts = attention_in_parts(&q, &k, &v, max);
            assert_eq!(parts.size(), whole.size());
            let diff = (&parts - &whole).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "parts of {max}: {diff}");
        }
    }
}
