//! Rerun logging for anydepth: photos, depth maps, cameras, point clouds, meshes and fused
//! models, streamed to a viewer or saved as `.rrd` recordings.
//!
//! One [`Recording`] per run, opened on a [`Sink`] (the options Rerun's examples take:
//! spawn a viewer, connect to one, serve, save to a file). Everything is logged under fixed
//! entity paths ([`paths`], documented in `docs/RERUN.md`): the camera at `world/camera`
//! with its `Pinhole` at `world/camera/image`, so the viewer draws the photo on the camera's
//! frustum and back-projects metric depth; clouds and meshes in the world frame. Sequences
//! go on the `frame` timeline (and `time` when frames have times). [`convert`] is the one
//! place anydepth's types become Rerun's; [`rrd`] reads a recording back.
//!
//! ```no_run
//! use anydepth_viz::{paths, PointRadius, Recording, Sink};
//! use anydepth_core::{DepthMap, Intrinsics};
//! use anydepth_geometry::unproject::{unproject, UnprojectOptions};
//! use nalgebra::Isometry3;
//!
//! let recording = Recording::start(&Sink::Save { path: "scene.rrd".into() }, "anydepth")?;
//! recording.log_world_axes()?;
//! let camera = Intrinsics::from_fov(4, 3, 60.0)?;
//! let depth = DepthMap::new(4, 3, vec![2.0; 12])?;
//! recording.set_frame(0);
//! recording.log_camera(&camera, &Isometry3::identity())?;
//! recording.log_depth(&depth)?;
//! let cloud = unproject(&depth, &camera, &UnprojectOptions::default(), None)?;
//! recording.log_cloud(paths::CLOUD, &cloud, PointRadius::pixel_footprint(2.0, camera.fx))?;
//! recording.flush()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Without a recording nothing here runs: callers hold an `Option<Recording>` and skip the
//! conversions entirely when it is `None`.

#![warn(missing_docs)]

pub mod convert;
pub mod error;
pub mod paths;
mod recording;
pub mod rrd;

pub use convert::PointRadius;
pub use error::{Error, Result};
pub use recording::{Recording, Sink, DEFAULT_PORT};

/// The Rerun version this crate logs with; a viewer should be the same version.
pub const RERUN_VERSION: &str = "0.36.3";
