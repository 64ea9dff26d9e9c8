//! The error type of `anydepth-core`.

use std::path::PathBuf;

/// Errors of `anydepth-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer's length does not match the dimensions given with it.
    #[error("{what}: expected {expected} values for {width} x {height}, got {actual}")]
    Size {
        what: &'static str,
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    /// Bytes are not of the expected file format.
    #[error("invalid {what} data: {reason}")]
    Format { what: &'static str, reason: String },
    /// A file could not be read.
    #[error("{reason}: {}", path.display())]
    Io { reason: String, path: PathBuf },
    /// An image could not be read or decoded.
    #[error("cannot read image: {reason}: {}", path.display())]
    Image { reason: String, path: PathBuf },
    /// A file was read but its content is not valid `what`.
    #[error("invalid {what}: {reason}: {}", path.display())]
    FileFormat {
        what: &'static str,
        reason: String,
        path: PathBuf,
    },
    /// A line of a text file (or a place in a JSON file) is not valid `what`; `line` counts
    /// from 1.
    #[error("invalid {what}, line {line}: {reason}: {}", path.display())]
    FileLine {
        what: &'static str,
        line: usize,
        reason: String,
        path: PathBuf,
    },
    /// A trajectory holds fewer camera poses than there are frames to place.
    #[error("{frames} frames but only {poses} camera poses in the trajectory: {}", path.display())]
    TooFewPoses {
        poses: usize,
        frames: usize,
        path: PathBuf,
    },
    /// No camera pose of a trajectory matches a frame (by timestamp or by name).
    #[error("no camera pose for frame {frame}: {reason}: {}", path.display())]
    NoPose {
        frame: String,
        reason: String,
        path: PathBuf,
    },
    /// Camera intrinsics that cannot describe a pinhole camera (non-positive or non-finite
    /// focal length, zero image size, field of view outside (0, 180) degrees, ...).
    #[error("invalid camera intrinsics: {0}")]
    Intrinsics(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
