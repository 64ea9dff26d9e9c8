//! The error type of `anydepth-geometry`.

use std::path::PathBuf;

/// Errors of `anydepth-geometry`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments that cannot work (sizes that disagree, invalid camera intrinsics,
    /// non-positive voxel size, ...).
    #[error("{0}")]
    Invalid(String),
    /// An iterative fit ended somewhere it must not be trusted: ICP that lost its
    /// correspondences, got worse, or moved farther than allowed (see
    /// [`crate::icp::icp_point_to_plane`]). The message gives the numbers.
    #[error("{0}")]
    Diverged(String),
    /// A file could not be read or written.
    #[error("{reason}: {}", path.display())]
    File {
        /// What went wrong.
        reason: String,
        /// The file.
        path: PathBuf,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
