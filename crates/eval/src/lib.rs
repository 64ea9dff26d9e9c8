//! Depth evaluation as the Depth Anything papers do it: the metrics and protocol
//! ([`protocol`]), the datasets on disk ([`datasets`]: NYU, KITTI, DA-2K, lists), scoring a
//! whole dataset from a model or from predictions on disk ([`job`]), the temporal alignment
//! error of a video with poses ([`temporal`]), and the report ([`report`]) that `anydepth
//! eval --json` writes.
//!
//! ```
//! use anydepth_core::{DepthMap, Metres, Prediction};
//! use anydepth_eval::protocol::{evaluate, Alignment, Crop, Protocol};
//!
//! let gt = DepthMap::<Metres>::new(2, 1, vec![1.0, 2.0]).expect("2 x 1");
//! let prediction = Prediction::Metric(DepthMap::new(2, 1, vec![1.0, 2.2]).expect("2 x 1"));
//! // NYU's depth range, every pixel, metric depth taken as it is.
//! let protocol = Protocol { crop: Crop::None, alignment: Alignment::None, ..Protocol::NYU };
//! let result = evaluate(&prediction, &gt, &protocol).expect("valid pixels");
//! assert!((result.metrics.absrel - 0.05).abs() < 1e-6);
//! ```

#![warn(missing_docs)]

pub mod datasets;
pub mod error;
pub mod job;
pub mod protocol;
pub mod report;
pub mod temporal;

pub use error::{Error, Result};
