//! Depth Anything V1/V2 monocular depth on LibTorch.
//!
//! The network is a port of the official code (DINOv2 ViT encoder + DPT head) that loads
//! the official `.pth` checkpoints and Hugging Face safetensors, with preprocessing that
//! reproduces the official `image2tensor` exactly.

pub mod config;
pub mod dinov2;
pub mod dpt;
pub mod error;
pub mod estimator;
pub mod hub;
pub mod network;
pub mod preprocess;
pub mod pth;
pub mod weights;

pub use config::{Encoder, Head, ModelConfig, Version};
pub use error::{Error, Result};
pub use estimator::{DepthEstimator, DeviceChoice, EstimatorOptions, ModelSpec, Precision};
pub use network::DepthAnything;
pub use weights::Checkpoint;
