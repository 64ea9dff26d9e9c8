//! Training Depth Anything models on LibTorch's autograd: the losses of the official
//! recipes, AdamW with a resumable state, the data pipeline and the fine-tuning loop.
//!
//! The loop runs a [`anydepth_model::train::TrainPlan`]; front ends reach it through
//! [`anydepth_model::EngineLoader::train`] ([`crate::TorchLoader`] implements it).

pub mod adamw;
pub mod data;
pub mod distill;
pub mod log;
pub mod loss;
pub mod trainer;

pub use distill::distill;
pub use trainer::{supervised_loss, train, write_weights, Trainable};
