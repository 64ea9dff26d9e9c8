//! Geometry of anydepth: from depth maps and cameras to point clouds and meshes.
//!
//! No libtorch here: everything works on depth from a model or from a sensor.
//! Points are `nalgebra::Point3<f32>` in camera or world coordinates (metres, x right,
//! y down, z forward for camera coordinates); meshes are vertices plus `[u32; 3]` faces.
//!
//! Depth comes in as [`anydepth_core::DepthMap`]`<`[`anydepth_core::Metres`]`>` and cameras
//! as [`anydepth_core::Intrinsics`], which carries its image size: the two must be the same
//! size, and the camera must pass [`anydepth_core::Intrinsics::validate`].

#![warn(missing_docs)]

pub mod align;
pub mod cloud;
pub mod error;
pub mod filter;
pub mod fusion;
pub mod grid_mesh;
pub mod icp;
pub mod io;
pub mod marching_cubes;
pub mod mesh;
mod neighbors;
pub mod normals;
pub mod render;
pub mod stabilize;
pub mod tsdf;
pub mod unproject;

pub use cloud::PointCloud;
pub use error::{Error, Result};
pub use mesh::TriangleMesh;
