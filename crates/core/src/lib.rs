//! Shared types of anydepth: decoded photos and typed depth maps.
//!
//! Depth maps carry what their values mean in their type, so affine-invariant disparity
//! (what relative Depth Anything models predict) can never be used as metric depth without
//! an explicit conversion.
//!
//! ```
//! use anydepth_core::{DepthMap, Disparity};
//!
//! let disparity = DepthMap::<Disparity>::new(2, 1, vec![0.5, 1.0]).expect("2 x 1 values");
//! assert_eq!(disparity.get(1, 0), 1.0);
//! ```

#![warn(missing_docs)]

pub mod camera;
pub mod colormap;
mod colormap_data;
pub mod depth;
pub mod depth_io;
pub mod error;
pub mod fs;
pub mod image;
pub mod npy;
pub mod openexr;
pub mod pose;

pub use camera::Intrinsics;
pub use depth::{ByScale, DepthMap, Disparity, Metres, Prediction, RelativeDepth, ValueKind};
pub use error::{Error, Result};
pub use image::{decode_image_bytes, image_size, load_image, load_rgb8, RgbImage};
