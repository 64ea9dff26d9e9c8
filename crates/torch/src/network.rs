//! The whole Depth Anything network: DINOv2 encoder and DPT head.

use tch::{nn, Tensor};

use crate::dinov2::DinoV2;
use crate::dpt::DptHead;
use crate::error::{Error, Result};
use anydepth_model::config::ModelConfig;

/// Depth Anything V1/V2 with its variables in a [`nn::VarStore`] named like the official
/// checkpoints (`pretrained.*`, `depth_head.*`).
#[derive(Debug)]
pub struct DepthAnything {
    cfg: ModelConfig,
    encoder: DinoV2,
    head: DptHead,
}

impl DepthAnything {
    /// Builds the network (zero weights) with its variables under `p`.
    pub fn new(p: &nn::Path, cfg: ModelConfig) -> Self {
        Self {
            encoder: DinoV2::new(p / "pretrained", &cfg.vit),
            head: DptHead::new(p / "depth_head", &cfg.dpt, cfg.head, cfg.vit.patch_size),
            cfg,
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Runs the network on a normalised `(b, 3, h, w)` batch whose sides are multiples of
    /// the patch size (14); returns `(b, h, w)` disparity or metres.
    ///
    /// # Errors
    /// When the input's shape is not of that form.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_tokens(x)?.0)
    }

    /// [`DepthAnything::forward`], also returning the encoder's last output tokens
    /// (normalised, class token dropped: `(b, grid_h * grid_w, embed_dim)`), which
    /// feature alignment compares.
    ///
    /// # Errors
    /// As [`DepthAnything::forward`].
    pub fn forward_with_tokens(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (h, w) = self.check_input(x)?;
        let patch = self.cfg.vit.patch_size;
        let tokens = self
            .encoder
            .intermediate_layers(x, &self.cfg.intermediate_layers);
        let depth = self.head.forward(&tokens, h / patch, w / patch);
        let last = tokens
            .last()
            .map(Tensor::shallow_clone)
            .ok_or_else(|| Error::Invalid("the encoder returned no layer".into()))?;
        Ok((depth, last))
    }

    /// The encoder's last output tokens alone, as [`DepthAnything::forward_with_tokens`]
    /// returns them (the head does not run).
    ///
    /// # Errors
    /// As [`DepthAnything::forward`].
    pub fn tokens(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let last = self
            .cfg
            .intermediate_layers
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        self.encoder
            .intermediate_layers(x, &[last])
            .pop()
            .ok_or_else(|| Error::Invalid("the encoder returned no layer".into()))
    }

    /// `(h, w)` of a valid input.
    fn check_input(&self, x: &Tensor) -> Result<(i64, i64)> {
        let patch = self.cfg.vit.patch_size;
        let (b, c, h, w) = x.size4().map_err(|_| {
            Error::Invalid(format!(
                "expected a (b, 3, h, w) tensor, got {:?}",
                x.size()
            ))
        })?;
        if b < 1 || c != 3 || h < patch || w < patch || h % patch != 0 || w % patch != 0 {
            return Err(Error::Invalid(format!(
                "input of shape {:?}: need (b >= 1, 3, h, w) with h and w positive multiples of {patch}",
                x.size()
            )));
        }
        Ok((h, w))
    }
}
