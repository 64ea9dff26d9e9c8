//! Reading and writing point clouds and meshes: PLY (binary or ASCII) and OBJ; writing
//! glTF binary (`.glb`).
//!
//! Files are written atomically: to a temporary file in the destination's directory,
//! then renamed over the destination, so a crash never leaves half a file behind.
//! Malformed input gives [`crate::Error::File`] naming the path, never a panic.
//!
//! ```
//! use anydepth_geometry::io::ply::{read_point_cloud, write_point_cloud, PlyEncoding};
//! use anydepth_geometry::PointCloud;
//! use nalgebra::Point3;
//!
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let path = dir.path().join("cloud.ply");
//! let cloud = PointCloud {
//!     points: vec![Point3::new(0.0, 0.5, 2.0)],
//!     colors: Some(vec![[10, 20, 30]]),
//!     normals: None,
//! };
//! write_point_cloud(&path, &cloud, PlyEncoding::default()).expect("written");
//! assert_eq!(read_point_cloud(&path).expect("read"), cloud);
//! ```

pub mod gltf;
pub mod obj;
pub mod ply;

use std::io::{self, Write};
use std::path::Path;

use crate::{Error, Result};

/// [`anydepth_core::fs::write_atomically`], replacing `path`, with the error as ours.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    anydepth_core::fs::write_atomically(path, /* overwrite= */ true, write).map_err(|e| {
        Error::File {
            reason: e.to_string(),
            path: path.to_path_buf(),
        }
    })
}
