//! The error type of `anydepth-geometry`.

use std::path::PathBuf;

/// Errors of `anydepth-geometry`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments that cannot work (sizes that disagree, non-positive voxel size, ...).
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{reason}: {}", path.display())]
    File { reason: String, path: PathBuf },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
