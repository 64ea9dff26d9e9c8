//! Reading and writing point clouds and meshes: PLY (binary or ASCII) and OBJ.
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

pub mod obj;
pub mod ply;

use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// Writes `path` atomically: `write` fills a buffered temporary file in the same
/// directory, which then replaces `path`. On Unix the file gets mode 0644.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> io::Result<()>,
) -> Result<()> {
    let file_error = |reason: String| Error::File {
        reason,
        path: path.to_path_buf(),
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| file_error(format!("cannot create a temporary file beside it ({e})")))?;
    // Temporary files are created private (0600); give the result the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| file_error(format!("cannot set the permissions of the file ({e})")))?;
    }
    {
        let mut out = BufWriter::new(temp.as_file_mut());
        write(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| file_error(format!("cannot write ({e})")))?;
    }
    temp.persist(path)
        .map_err(|e| file_error(format!("cannot move the written file into place ({e})")))?;
    Ok(())
}
