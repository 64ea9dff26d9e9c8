//! Depth Anything 3's camera decoder (a view's camera token to its pose encoding) and
//! camera encoder (given cameras to the tokens that replace the learned camera tokens).
//!
//! Variable paths follow the official checkpoints (`cam_dec.backbone.0`, `cam_dec.fc_fov.0`,
//! `cam_enc.pose_branch.fc1`, `cam_enc.trunk.N.attn.qkv`, ...).

use tch::nn;
use tch::{Device, Kind, Tensor};

use anydepth_model::config::{Ffn, VitConfig};
use anydepth_model::da3::Da3Config;

use crate::dinov2::{layer_norm, linear, Block};

/// Numbers in a pose encoding: translation (3), quaternion (4), fields of view (2).
pub(crate) const POSE_ENCODING: i64 = 9;

/// The camera decoder: an MLP on the camera token, then translation, quaternion and
/// (ReLU'd) fields of view.
#[derive(Debug)]
pub(crate) struct CameraDecoder {
    backbone0: nn::Linear,
    backbone2: nn::Linear,
    fc_t: nn::Linear,
    fc_qvec: nn::Linear,
    fc_fov: nn::Linear,
}

impl CameraDecoder {
    pub(crate) fn new(p: nn::Path, dim: i64) -> Self {
        Self {
            backbone0: linear(&p / "backbone" / 0, dim, dim),
            backbone2: linear(&p / "backbone" / 2, dim, dim),
            fc_t: linear(&p / "fc_t", dim, 3),
            fc_qvec: linear(&p / "fc_qvec", dim, 4),
            fc_fov: linear(&p / "fc_fov" / 0, dim, 2),
        }
    }

    /// Pose encodings `(views, 9)` from camera tokens `(views, dim)`.
    pub(crate) fn forward(&self, tokens: &Tensor) -> Tensor {
        let x = tokens
            .apply(&self.backbone0)
            .relu()
            .apply(&self.backbone2)
            .relu();
        Tensor::cat(
            &[
                x.apply(&self.fc_t),
                x.apply(&self.fc_qvec),
                x.apply(&self.fc_fov).relu(),
            ],
            -1,
        )
    }
}

/// The camera encoder: an MLP from the pose encoding to a token, a LayerNorm, four
/// transformer blocks across the views, a LayerNorm.
#[derive(Debug)]
pub(crate) struct CameraEncoder {
    fc1: nn::Linear,
    fc2: nn::Linear,
    token_norm: nn::LayerNorm,
    trunk: Vec<Block>,
    trunk_norm: nn::LayerNorm,
}

impl CameraEncoder {
    pub(crate) fn new(p: nn::Path, dim: i64) -> Self {
        let eps = Da3Config::OUTER_LAYER_NORM_EPS;
        let vit = VitConfig {
            embed_dim: dim,
            depth: Da3Config::CAMERA_ENCODER_DEPTH,
            num_heads: Da3Config::CAMERA_ENCODER_HEADS,
            mlp_ratio: 4,
            ffn: Ffn::Mlp,
            patch_size: 14,
            pos_grid: 37,
            interpolate_offset: 0.1,
            layer_norm_eps: eps,
        };
        let trunk = &p / "trunk";
        Self {
            fc1: linear(&p / "pose_branch" / "fc1", POSE_ENCODING, dim / 2),
            fc2: linear(&p / "pose_branch" / "fc2", dim / 2, dim),
            token_norm: layer_norm(&p / "token_norm", dim, eps),
            trunk: (0..Da3Config::CAMERA_ENCODER_DEPTH)
                .map(|i| Block::new(&trunk / i, &vit, None))
                .collect(),
            trunk_norm: layer_norm(&p / "trunk_norm", dim, eps),
        }
    }

    /// Camera tokens `(views, dim)` from pose encodings `(views, 9)` of one scene.
    pub(crate) fn forward(&self, encodings: &Tensor) -> Tensor {
        let mut x = encodings
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2)
            .apply(&self.token_norm)
            .unsqueeze(0);
        for block in &self.trunk {
            x = block.forward(&x, None);
        }
        x.apply(&self.trunk_norm).squeeze_dim(0)
    }
}

/// Pose encodings as a `(views, 9)` float tensor on `device`.
pub(crate) fn encodings_tensor(encodings: &[[f64; 9]], device: Device) -> Tensor {
    let flat: Vec<f32> = encodings.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat)
        .reshape([encodings.len() as i64, POSE_ENCODING])
        .to_kind(Kind::Float)
        .to_device(device)
}
