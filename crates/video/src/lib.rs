//! Video input and output for anydepth through FFmpeg's libraries (libavformat,
//! libavcodec, libswscale, libavdevice): the only crate that links FFmpeg, and only with
//! its `ffmpeg` feature (on by default; see [`HAS_FFMPEG`]).
//!
//! **Reading.** [`VideoSource::open`] takes a file (MP4, MOV, MKV, WebM, AVI: anything
//! FFmpeg demuxes and decodes), `-` for stdin, a FIFO, a stream URL (`rtsp://...`) or a
//! camera (`/dev/video0`, through v4l2). [`VideoSource::info`] tells the size (rotation
//! applied), frame rate, frame count and duration before any frame is decoded. Iterating
//! yields [`VideoFrame`]s: 8-bit RGB at the video's resolution, the presentation time in
//! seconds from the stream's time base (variable frame rates keep their real times), and
//! the frame's index. Phone videos' rotation metadata (display matrix or `rotate` tag) is
//! applied as EXIF orientation is for photos.
//!
//! Frames are decoded on a thread of their own, at most [`OpenOptions::queue_frames`]
//! ahead of the consumer, so memory stays bounded whatever the length. A recorded file
//! ([`Mode::File`]) delivers every frame; a damaged or cut file delivers the frames before
//! the damage, then [`Error::Damaged`] or [`Error::Truncated`] naming the frame index. A
//! live source ([`Mode::Live`]) drops the oldest queued frame when the consumer falls
//! behind, so latency stays bounded ([`VideoSource::dropped_frames`] counts them), and its
//! end simply ends the iteration.
//!
//! **Writing.** [`VideoWriter`] encodes RGB8 frames to H.264 in MP4 (libx264; MPEG-4 Part 2
//! when FFmpeg lacks it), at a constant rate or at given timestamps, through a temporary
//! file renamed into place by [`VideoWriter::finish`]; [`VideoFrame::to_rgb_image`] gives
//! the `anydepth_core::RgbImage` the depth models take.
//!
//! ```no_run
//! use anydepth_video::{OpenOptions, VideoSource, VideoWriter, WriterOptions, FrameRate};
//! use std::path::Path;
//!
//! let source = VideoSource::open("clip.mp4", &OpenOptions::default())?;
//! let info = source.info().clone();
//! let rate = info.frame_rate.unwrap_or(FrameRate::new(30, 1));
//! let mut writer =
//!     VideoWriter::create(Path::new("out.mp4"), info.width, info.height, &WriterOptions::new(rate))?;
//! for frame in source {
//!     let frame = match frame {
//!         Ok(frame) => frame,
//!         // Damage after good frames: keep the video of those, then report it.
//!         Err(error) => {
//!             writer.finish()?;
//!             return Err(error);
//!         }
//!     };
//!     let image = frame.to_rgb_image(); // RGB in [0, 1] for the depth model
//!     # let _ = image;
//!     writer.write_at(&frame.pixels, frame.time_secs)?;
//! }
//! writer.finish()?;
//! # Ok::<(), anydepth_video::Error>(())
//! ```
//!
//! RGB comes from swscale's default YUV conversion (BT.601 coefficients), as OpenCV's
//! and decord's readers do. FFmpeg's own log is silent but for fatal errors unless
//! [`FFMPEG_LOG_ENV`] says otherwise.

#![warn(missing_docs)]

#[cfg(feature = "ffmpeg")]
mod decode;
#[cfg(feature = "ffmpeg")]
mod encode;
pub mod error;
mod frame;
#[cfg(feature = "ffmpeg")]
mod orientation;
mod queue;
mod source;
#[cfg(not(feature = "ffmpeg"))]
mod without_ffmpeg;
mod writer_options;

#[cfg(not(feature = "ffmpeg"))]
use without_ffmpeg as decode;

pub use anydepth_core::image::Orientation;
#[cfg(feature = "ffmpeg")]
pub use encode::VideoWriter;
pub use error::{Error, Result};
pub use frame::{FrameRate, VideoFrame};
pub use source::{DropCounter, Mode, OpenOptions, Pacing, VideoInfo, VideoSource};
#[cfg(not(feature = "ffmpeg"))]
pub use without_ffmpeg::VideoWriter;
pub use writer_options::{Codec, WriterOptions};

/// Whether this build reads and writes videos: the `ffmpeg` feature (on by default) links
/// FFmpeg's libraries. Without it, opening or writing a video fails with
/// [`Error::NoFfmpeg`], and nothing else changes.
pub const HAS_FFMPEG: bool = cfg!(feature = "ffmpeg");

/// The FFmpeg libraries this process runs with (`libavformat 59.27.100, libavcodec
/// 59.37.100`), or `None` in a build without FFmpeg.
pub fn ffmpeg_libraries() -> Option<String> {
    #[cfg(feature = "ffmpeg")]
    {
        let dotted = |v: u32| format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff);
        Some(format!(
            "libavformat {}, libavcodec {}",
            dotted(ffmpeg_next::format::version()),
            dotted(ffmpeg_next::codec::version())
        ))
    }
    #[cfg(not(feature = "ffmpeg"))]
    None
}

/// The environment variable that sets FFmpeg's own log level.
pub const FFMPEG_LOG_ENV: &str = "ANYDEPTH_FFMPEG_LOG";

/// Initialises FFmpeg once per process: devices registered, its log level set from
/// [`FFMPEG_LOG_ENV`] (`quiet`, `panic`, `fatal`, `error`, `warning`, `info`, `verbose`,
/// `debug`, `trace`), `fatal` by default: damaged streams make FFmpeg print a line per
/// broken packet, and what went wrong reaches the caller as an [`Error`] anyway.
#[cfg(feature = "ffmpeg")]
fn init() {
    use ffmpeg_next::log::Level;
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Err(error) = ffmpeg_next::init() {
            tracing::warn!(%error, "FFmpeg initialisation failed");
        }
        let level = match std::env::var(FFMPEG_LOG_ENV).as_deref() {
            Ok("quiet") => Level::Quiet,
            Ok("panic") => Level::Panic,
            Ok("error") => Level::Error,
            Ok("warning") => Level::Warning,
            Ok("info") => Level::Info,
            Ok("verbose") => Level::Verbose,
            Ok("debug") => Level::Debug,
            Ok("trace") => Level::Trace,
            _ => Level::Fatal,
        };
        ffmpeg_next::log::set_level(level);
    });
}
