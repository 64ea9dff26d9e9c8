//! Depth Anything models as data: configurations of every released model, the released
//! checkpoints and their download, and the [`engine::DepthEngine`] interface the networks
//! (in `anydepth-torch`, on LibTorch) implement.
//!
//! Nothing here links libtorch, so front ends can choose a model, resolve and download its
//! weights, and validate a request before any network is loaded.
//!
//! ```
//! use anydepth_model::config::{Encoder, ModelConfig};
//!
//! let config = ModelConfig::v2_metric_indoor(Encoder::Vits);
//! assert_eq!(config.describe(), "Depth Anything V2 vits metric (max 20 m)");
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod da3;
pub mod engine;
pub mod error;
pub mod hub;
pub mod runtime;
pub mod train;

pub use config::{Encoder, Head, ModelConfig, Version, VideoConfig};
pub use engine::{
    ClipDepth, ClipEngine, ClipMode, DepthEngine, DeviceChoice, DeviceMemory, EngineLoader,
    EstimatorOptions, ForwardTimings, ModelSpec, PhotoStager, Precision, Preprocessing,
    StageTimings, StagedPhotos, Tf32, VideoEngine,
};
pub use error::{Error, Result};
pub use runtime::RuntimeReport;
