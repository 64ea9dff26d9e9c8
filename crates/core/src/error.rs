//! The error type of `anydepth-core`.

use std::path::PathBuf;

/// Errors of `anydepth-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer's length does not match the dimensions given with it.
    #[error("{what}: expected {expected} values for {width} x {height}, got {actual}")]
    Size {
        /// What the buffer holds (a depth map, an RGB image, ...).
        what: &'static str,
        /// Width given, in pixels.
        width: u32,
        /// Height given, in pixels.
        height: u32,
        /// Number of values the dimensions call for.
        expected: usize,
        /// Number of values the buffer holds.
        actual: usize,
    },
    /// Bytes are not of the expected file format.
    #[error("invalid {what} data: {reason}")]
    Format {
        /// What the data should be (EXIF, camera intrinsics JSON, npy, ...).
        what: &'static str,
        /// Why it is not valid.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{reason}: {}", path.display())]
    Io {
        /// What failed, with the system's error.
        reason: String,
        /// The file.
        path: PathBuf,
    },
    /// An image could not be read or decoded.
    #[error("cannot read image: {reason}: {}", path.display())]
    Image {
        /// Why it could not be read or decoded.
        reason: String,
        /// The image file.
        path: PathBuf,
    },
    /// A file was read but its content is not valid `what`.
    #[error("invalid {what}: {reason}: {}", path.display())]
    FileFormat {
        /// The content expected (OpenEXR depth, camera intrinsics JSON, ...).
        what: &'static str,
        /// Why the content is not valid.
        reason: String,
        /// The file.
        path: PathBuf,
    },
    /// A line of a text file (or a place in a JSON file) is not valid `what`; `line` counts
    /// from 1.
    #[error("invalid {what}, line {line}: {reason}: {}", path.display())]
    FileLine {
        /// The file's format (a trajectory format, COLMAP `cameras.txt`, ...).
        what: &'static str,
        /// The line, counting from 1.
        line: usize,
        /// Why the line is not valid.
        reason: String,
        /// The file.
        path: PathBuf,
    },
    /// A trajectory holds fewer camera poses than there are frames to place.
    #[error("{frames} frames but only {poses} camera poses in the trajectory: {}", path.display())]
    TooFewPoses {
        /// Number of poses in the trajectory.
        poses: usize,
        /// Number of frames to place.
        frames: usize,
        /// The trajectory file.
        path: PathBuf,
    },
    /// No camera pose of a trajectory matches a frame (by timestamp or by name).
    #[error("no camera pose for frame {frame}: {reason}: {}", path.display())]
    NoPose {
        /// The frame: its file name, or its time (`at t = ... s`).
        frame: String,
        /// Why no pose matches.
        reason: String,
        /// The trajectory file.
        path: PathBuf,
    },
    /// Camera intrinsics that cannot describe a pinhole camera (non-positive or non-finite
    /// focal length, zero image size, field of view outside (0, 180) degrees, ...).
    #[error("invalid camera intrinsics: {0}")]
    Intrinsics(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
