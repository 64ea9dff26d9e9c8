//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong while opening, decoding or writing a video.
///
/// Inputs are named by the string they were opened with (a path, a URL, `-`), last in
/// every message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be opened or its streams cannot be read (missing file, not a
    /// container FFmpeg knows, unreachable URL, device busy, ...).
    #[error("cannot open video: {reason}: {input}")]
    Open {
        /// FFmpeg's reason.
        reason: String,
        /// The input as given.
        input: String,
    },

    /// The input has streams, but none of them is video.
    #[error("no video stream: {input}")]
    NoVideoStream {
        /// The input as given.
        input: String,
    },

    /// The video stream's codec has no decoder in this FFmpeg, or the decoder refused it.
    #[error("cannot decode {codec} video ({reason}): {input}")]
    Unsupported {
        /// The codec's name.
        codec: String,
        /// FFmpeg's reason.
        reason: String,
        /// The input as given.
        input: String,
    },

    /// The stream ended without a single decodable frame.
    #[error("the video has no frames: {input}")]
    NoFrames {
        /// The input as given.
        input: String,
    },

    /// Reading or decoding failed at frame `frame_index` (counting from 0): every frame
    /// before it was delivered, none after.
    #[error(
        "the video is damaged at frame {frame_index} ({reason}); the {frame_index} frames \
         before it were read: {input}"
    )]
    Damaged {
        /// The first frame that could not be delivered; also the number delivered.
        frame_index: u64,
        /// What FFmpeg reported.
        reason: String,
        /// The input as given.
        input: String,
    },

    /// The container announces more frames than its data holds (a file cut short): the
    /// `frame_index` frames that were there were delivered.
    #[error(
        "the video is truncated: the container announces {announced} frames but the data \
         ends after {frame_index}: {input}"
    )]
    Truncated {
        /// The first missing frame; also the number delivered.
        frame_index: u64,
        /// The number of frames the container's header announces.
        announced: u64,
        /// The input as given.
        input: String,
    },

    /// An option or argument that cannot be used (zero frame rate, empty queue, a
    /// timestamp that does not increase, pixels that do not match the size, ...).
    #[error("{0}")]
    Invalid(String),

    /// The requested encoder is not in this FFmpeg.
    #[error("no {0} encoder in this FFmpeg build")]
    NoEncoder(&'static str),

    /// This build has no FFmpeg (the `ffmpeg` feature was off), so it cannot read or write
    /// videos.
    #[error(
        "this build of anydepth has no FFmpeg, so it cannot {0}; build it with the default \
         features (the `ffmpeg` feature) for videos"
    )]
    NoFfmpeg(String),

    /// Writing a video file failed; the temporary file is removed.
    #[error("cannot write video: {reason}: {}", path.display())]
    Write {
        /// What failed, with FFmpeg's or the system's reason.
        reason: String,
        /// The destination file.
        path: PathBuf,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
