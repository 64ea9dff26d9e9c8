//! Depth Anything 3's DINOv2 encoder: from the configured block on, QK-norm, 2D rotary
//! position embedding (`crate::rope`), camera tokens, and attention that alternates
//! between each view alone and all views together.
//!
//! Variable paths follow the official checkpoints (`backbone.pretrained.blocks.N.attn.q_norm`,
//! `backbone.pretrained.camera_token`, ...).

use tch::nn;
use tch::{Device, Kind, Tensor};

use anydepth_model::da3::{Da3Config, RefViewStrategy, REF_VIEW_SELECTION_MIN_VIEWS};

use crate::dinov2::{embed_tokens, layer_norm, zeros, Block};
use crate::rope::RopeTables;

/// What the encoder hands the heads for one scene of `views` views.
#[derive(Debug)]
pub(crate) struct BackboneOutput {
    /// Per output layer, `(views, patches, head_in_channels)`, views in input order.
    pub features: Vec<Tensor>,
    /// Token 0 of the last output layer, un-normalised: `(views, head_in_channels)`.
    pub camera_feature: Tensor,
    /// The reference view, when one was chosen (3 or more views, no given poses).
    pub reference_view: Option<usize>,
}

/// The encoder.
#[derive(Debug)]
pub(crate) struct Backbone {
    cfg: Da3Config,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    camera_token: Option<Tensor>,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl Backbone {
    /// Builds the encoder under `p` (`backbone.pretrained` in the checkpoints).
    pub(crate) fn new(p: nn::Path, cfg: &Da3Config) -> Self {
        let vit = &cfg.vit;
        let d = vit.embed_dim;
        let patch_embed = nn::conv2d(
            &p / "patch_embed" / "proj",
            3,
            d,
            vit.patch_size,
            nn::ConvConfig {
                stride: vit.patch_size,
                ws_init: zeros(),
                bs_init: zeros(),
                ..Default::default()
            },
        );
        let blocks_path = &p / "blocks";
        let qk_norm_from = cfg.alternating_from.unwrap_or(usize::MAX);
        Self {
            cfg: *cfg,
            patch_embed,
            cls_token: p.var("cls_token", &[1, 1, d], zeros()),
            pos_embed: p.var(
                "pos_embed",
                &[1, vit.pos_grid * vit.pos_grid + 1, d],
                zeros(),
            ),
            camera_token: cfg
                .alternating_from
                .map(|_| p.var("camera_token", &[1, 2, d], zeros())),
            blocks: (0..vit.depth)
                .map(|i| {
                    let qk_norm = (i >= qk_norm_from).then_some(Da3Config::OUTER_LAYER_NORM_EPS);
                    Block::new(&blocks_path / i, vit, qk_norm)
                })
                .collect(),
            norm: layer_norm(&p / "norm", d, Da3Config::OUTER_LAYER_NORM_EPS),
        }
    }

    /// Runs the encoder on one scene: `images` `(views, 3, h, w)` (normalised, sides
    /// multiples of 14). `camera_tokens` `(views, embed_dim)` are the camera encoder's
    /// tokens for given poses; without them, any-view models use their learned camera
    /// tokens and choose a reference view by `strategy` among 3 or more views.
    pub(crate) fn forward(
        &self,
        images: &Tensor,
        camera_tokens: Option<&Tensor>,
        strategy: RefViewStrategy,
    ) -> BackboneOutput {
        let (views, _c, h, w) = images.size4().unwrap_or((0, 0, 0, 0));
        let patch = self.cfg.vit.patch_size;
        let (grid_h, grid_w) = (h / patch, w / patch);
        let tokens_per_view = grid_h * grid_w + 1;
        let d = self.cfg.vit.embed_dim;
        // The residual stream's kind: fp32, also when the patch embedding and linear layers
        // were cast to half precision (as autocast runs them).
        let kind = self.cls_token.kind();
        let device = images.device();

        let mut x = embed_tokens(
            images,
            &self.patch_embed,
            &self.cls_token,
            &self.pos_embed,
            &self.cfg.vit,
        );

        let head_dim = d / self.cfg.vit.num_heads;
        let (local_rope, global_rope) = match self.cfg.alternating_from {
            Some(_) => {
                let (rows, cols) = view_positions(grid_h, grid_w, device);
                let local =
                    RopeTables::new(&rows, &cols, head_dim, Da3Config::ROPE_FREQUENCY, kind);
                // Across views every patch sits at (1, 1) and token 0 at (0, 0).
                let flat = Tensor::cat(
                    &[
                        Tensor::zeros([1], (Kind::Int64, device)),
                        Tensor::ones([tokens_per_view - 1], (Kind::Int64, device)),
                    ],
                    0,
                )
                .repeat([views]);
                let global =
                    RopeTables::new(&flat, &flat, head_dim, Da3Config::ROPE_FREQUENCY, kind);
                (Some(local), Some(global))
            }
            None => (None, None),
        };

        let mut order: Option<(usize, Tensor)> = None;
        let mut local_x = x.shallow_clone();
        let mut features = Vec::with_capacity(4);
        let mut camera_feature = Tensor::new();
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(start) = self.cfg.alternating_from {
                if i + 1 == start
                    && camera_tokens.is_none()
                    && views as usize >= REF_VIEW_SELECTION_MIN_VIEWS
                {
                    let reference = select_reference_view(&x.select(1, 0), strategy);
                    let forward = reorder_indices(views, reference, device);
                    x = x.index_select(0, &forward);
                    local_x = local_x.index_select(0, &forward);
                    order = Some((reference, forward));
                }
                if i == start {
                    let tokens = match camera_tokens {
                        Some(given) => given.to_kind(kind),
                        None => self.learned_camera_tokens(views),
                    };
                    x = Tensor::cat(
                        &[tokens.unsqueeze(1), x.narrow(1, 1, tokens_per_view - 1)],
                        1,
                    );
                }
            }
            let rope_here = self.cfg.alternating_from.is_some_and(|start| i >= start);
            if self.cfg.is_cross_view(i) {
                let joined = x.reshape([1, views * tokens_per_view, d]);
                x = block
                    .forward(&joined, global_rope.as_ref().filter(|_| rope_here))
                    .reshape([views, tokens_per_view, d]);
            } else {
                x = block.forward(&x, local_rope.as_ref().filter(|_| rope_here));
                local_x = x.shallow_clone();
            }
            if self.cfg.out_layers.contains(&i) {
                let out = if self.cfg.concatenates_tokens() {
                    Tensor::cat(&[&local_x, &x.apply(&self.norm)], -1)
                } else {
                    x.apply(&self.norm)
                };
                let raw_token = if self.cfg.concatenates_tokens() {
                    Tensor::cat(&[local_x.select(1, 0), x.select(1, 0)], -1)
                } else {
                    x.select(1, 0)
                };
                let (out, raw_token) = match &order {
                    Some((_, forward)) => {
                        let back = forward.argsort(0, false);
                        (out.index_select(0, &back), raw_token.index_select(0, &back))
                    }
                    None => (out, raw_token),
                };
                features.push(out.narrow(1, 1, tokens_per_view - 1));
                camera_feature = raw_token;
            }
        }
        BackboneOutput {
            features,
            camera_feature,
            reference_view: order.map(|(reference, _)| reference),
        }
    }

    /// The learned camera tokens: the reference one for view 0, the other for the rest.
    fn learned_camera_tokens(&self, views: i64) -> Tensor {
        let Some(tokens) = &self.camera_token else {
            return Tensor::new();
        };
        let reference = tokens.select(1, 0);
        let others = tokens.select(1, 1).expand([views - 1, -1], false);
        Tensor::cat(&[reference, others], 0)
    }
}

/// Rotary positions within one view: `(0, 0)` for token 0, `(row + 1, col + 1)` for patches.
fn view_positions(grid_h: i64, grid_w: i64, device: Device) -> (Tensor, Tensor) {
    let zero = Tensor::zeros([1], (Kind::Int64, device));
    let rows = Tensor::arange(grid_h, (Kind::Int64, device))
        .repeat_interleave_self_int(grid_w, 0, None)
        + 1;
    let cols = Tensor::arange(grid_w, (Kind::Int64, device)).repeat([grid_h]) + 1;
    (
        Tensor::cat(&[&zero, &rows], 0),
        Tensor::cat(&[&zero, &cols], 0),
    )
}

/// The order that puts view `reference` first and keeps the others in order.
fn reorder_indices(views: i64, reference: usize, device: Device) -> Tensor {
    let reference = reference as i64;
    let order: Vec<i64> = std::iter::once(reference)
        .chain((0..views).filter(|&v| v != reference))
        .collect();
    Tensor::from_slice(&order).to_device(device)
}

/// The official reference-view choice from each view's class token (`(views, d)`).
pub(crate) fn select_reference_view(class_tokens: &Tensor, strategy: RefViewStrategy) -> usize {
    let views = class_tokens.size()[0];
    if views <= 1 {
        return 0;
    }
    let pick = |t: Tensor| usize::try_from(t.int64_value(&[])).unwrap_or(0);
    match strategy {
        RefViewStrategy::First => 0,
        RefViewStrategy::Middle => (views / 2) as usize,
        RefViewStrategy::SaddleBalanced | RefViewStrategy::SaddleSimRange => {
            let norm = class_tokens.norm_scalaropt_dim(2, [-1], true);
            let unit = class_tokens / &norm;
            let eye = Tensor::eye(views, (unit.kind(), unit.device()));
            let sim = unit.matmul(&unit.transpose(0, 1)) - eye;
            if strategy == RefViewStrategy::SaddleSimRange {
                let range = sim.amax([-1], false) - sim.amin([-1], false);
                return pick(range.argmax(0, false));
            }
            let sim_score =
                sim.sum_dim_intlist(Some([-1i64].as_slice()), false, None) / (views - 1) as f64;
            let feat_norm = norm.squeeze_dim(-1);
            let feat_var = unit.var_dim(Some([-1i64].as_slice()), true, false);
            let normalise = |m: &Tensor| {
                let min = m.amin([0], true);
                let max = m.amax([0], true);
                (m - &min) / (max - min + 1e-8)
            };
            let score = (normalise(&sim_score) - 0.5).abs()
                + (normalise(&feat_norm) - 0.5).abs()
                + (normalise(&feat_var) - 0.5).abs();
            pick(score.argmin(0, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_puts_the_reference_first_and_argsort_restores() {
        let forward = reorder_indices(5, 2, Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(&forward).ok(),
            Some(vec![2, 0, 1, 3, 4])
        );
        let back = forward.argsort(0, false);
        assert_eq!(Vec::<i64>::try_from(&back).ok(), Some(vec![1, 2, 0, 3, 4]));
    }

    #[test]
    fn view_positions_start_at_one_after_token_zero() {
        let (rows, cols) = view_positions(2, 3, Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(&rows).ok(),
            Some(vec![0, 1, 1, 1, 2, 2, 2])
        );
        assert_eq!(
            Vec::<i64>::try_from(&cols).ok(),
            Some(vec![0, 1, 2, 3, 1, 2, 3])
        );
    }
}
