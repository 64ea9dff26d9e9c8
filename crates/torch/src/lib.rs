//! Depth Anything V1/V2 and Video Depth Anything on LibTorch: the crate that links libtorch.
//!
//! The network is a port of the official code (DINOv2 ViT encoder + DPT head) that loads
//! the official `.pth` checkpoints and Hugging Face safetensors, with preprocessing that
//! reproduces the official `image2tensor` exactly. [`DepthEstimator`] implements
//! [`anydepth_model::DepthEngine`] and [`TorchLoader`] loads it through
//! [`anydepth_model::EngineLoader`], which is all the rest of the project sees.

#![warn(missing_docs)]

pub mod copy_stream;
pub mod cuda;
pub mod cuda_graph;
pub mod cuda_memory;
pub mod cuda_shim;
pub mod da3;
pub mod dinov2;
pub mod dpt;
pub mod error;
pub mod estimator;
pub mod export;
mod file_read;
pub mod network;
pub mod preprocess;
pub mod pth;
mod rope;
pub mod safetensors_file;
pub mod temporal;
pub mod train;
pub mod video;
pub mod weights;

pub use anydepth_model::{
    DeviceChoice, Encoder, EstimatorOptions, Head, ModelConfig, ModelSpec, Precision,
    Preprocessing, Version, VideoConfig,
};
pub use error::{Error, Result};
pub use estimator::{DepthEstimator, TorchLoader};
pub use network::DepthAnything;
pub use video::VideoDepthModel;
pub use weights::Checkpoint;
