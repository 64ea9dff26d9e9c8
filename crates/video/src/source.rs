//! Opening a video (file, camera, stream or pipe) and reading its frames, decoded ahead on
//! a thread of their own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anydepth_core::image::Orientation;

use crate::error::{Error, Result};
use crate::frame::{FrameRate, VideoFrame};
use crate::queue::{FrameQueue, WhenFull};

/// How frames reach a consumer that is slower than the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A recorded video: every frame is delivered (the decoder waits while the queue is
    /// full); damage and truncation are errors.
    File,
    /// A source that produces frames at its own pace (camera, network stream, pipe): when
    /// the queue is full the oldest queued frame is dropped (counted in
    /// [`VideoSource::dropped_frames`]), so latency stays bounded; undecodable packets are
    /// skipped and the end of the stream, or a read error, ends the frames cleanly.
    Live,
}

impl Mode {
    /// The mode an input calls for: [`Mode::Live`] for `-` (stdin), `pipe:`, stream URLs
    /// (`rtsp`, `rtsps`, `rtmp`, `rtmps`, `rtp`, `srt`, `udp`, `tcp`), character devices
    /// (`/dev/video0`) and FIFOs; [`Mode::File`] for everything else, `http(s)://`
    /// downloads included.
    pub fn detect(input: &Path) -> Self {
        let text = input.to_string_lossy();
        if text == "-" || text.starts_with("pipe:") {
            return Self::Live;
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let live = ["rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp"];
            return if live.contains(&scheme.to_ascii_lowercase().as_str()) {
                Self::Live
            } else {
                Self::File
            };
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(metadata) = std::fs::metadata(input) {
                let kind = metadata.file_type();
                if kind.is_fifo() || kind.is_char_device() {
                    return Self::Live;
                }
            }
        }
        Self::File
    }
}

/// Whether the decoding thread waits between frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pacing {
    /// Frames are decoded as fast as the consumer (or, live, the source) allows.
    #[default]
    Unpaced,
    /// Frames are released at their timestamps, as the source would play: a file replayed
    /// as if it were a camera (what `ffmpeg -re` does).
    RealTime,
}

/// How to open a video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// [`Mode::File`] or [`Mode::Live`]; `None` picks with [`Mode::detect`].
    pub mode: Option<Mode>,
    /// Frames decoded ahead of the consumer (at least 1): the memory bound, and with a live
    /// source the latency bound (this many frame intervals).
    pub queue_frames: usize,
    /// Whether frames are released at their timestamps.
    pub pacing: Pacing,
    /// An input device of libavdevice to open the input with (`v4l2`, `x11grab`,
    /// `lavfi`, ...). `None` probes the input; character devices under `/dev` are opened
    /// with `v4l2`.
    pub device: Option<String>,
    /// Options for FFmpeg's demuxer or device, as `ffmpeg -key value` would pass them
    /// before `-i` (`rtsp_transport tcp`, `video_size 1280x720`, `framerate 30`,
    /// `timeout 5000000`, ...).
    pub ffmpeg_options: Vec<(String, String)>,
}

impl Default for OpenOptions {
    /// The mode detected from the input, 4 frames ahead, unpaced, probed.
    fn default() -> Self {
        Self {
            mode: None,
            queue_frames: 4,
            pacing: Pacing::Unpaced,
            device: None,
            ffmpeg_options: Vec::new(),
        }
    }
}

impl OpenOptions {
    /// A recorded video, whatever the input looks like: every frame, errors on damage.
    pub fn file() -> Self {
        Self {
            mode: Some(Mode::File),
            ..Self::default()
        }
    }

    /// A live source, whatever the input looks like: the newest 2 frames are kept.
    pub fn live() -> Self {
        Self {
            mode: Some(Mode::Live),
            queue_frames: 2,
            ..Self::default()
        }
    }
}

/// What the container says about a video stream, before any frame is decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Width of the frames in pixels, rotation applied.
    pub width: u32,
    /// Height of the frames in pixels, rotation applied.
    pub height: u32,
    /// The rotation (or mirroring) from the container's metadata, applied to every frame.
    pub orientation: Orientation,
    /// Average frame rate (frames over duration), else (devices, streams) FFmpeg's guess of
    /// the base rate; `None` when neither is known.
    pub frame_rate: Option<FrameRate>,
    /// Whether frame intervals vary: FFmpeg's guess of the base rate (the rate that
    /// represents every timestamp) differs from the average by more than 0.5 %. A header
    /// heuristic; the frames' own timestamps are exact either way.
    pub variable_frame_rate: bool,
    /// Number of frames: the container's count of stored frames when it keeps one (MP4,
    /// MOV, AVI; an edit list may show fewer), else the duration times the average rate,
    /// rounded; `None` when neither is known, and for live sources.
    pub frame_count: Option<u64>,
    /// Duration of the video stream (else the container's) in seconds, when known.
    pub duration_secs: Option<f64>,
    /// The codec's short name (`h264`, `hevc`, `vp9`, ...).
    pub codec: String,
    /// How frames are delivered.
    pub mode: Mode,
}

impl VideoInfo {
    /// Rotation clockwise in degrees (0, 90, 180 or 270) when the orientation is a pure
    /// rotation; `None` when it mirrors.
    pub fn rotation_deg(&self) -> Option<u32> {
        match self.orientation {
            Orientation::Normal => Some(0),
            Orientation::Rotate90 => Some(90),
            Orientation::Rotate180 => Some(180),
            Orientation::Rotate270 => Some(270),
            _ => None,
        }
    }
}

/// An open video whose frames are decoded ahead on a thread of their own, at most
/// [`OpenOptions::queue_frames`] ahead.
///
/// Iterating yields the frames in order, 8-bit RGB with rotation applied. With
/// [`Mode::File`], damage ends the frames with [`Error::Damaged`] or
/// [`Error::Truncated`] after every good frame before it, and a video without frames
/// yields [`Error::NoFrames`]. With [`Mode::Live`], the end of the stream simply ends the
/// iteration. Dropping the source stops the decoder.
pub struct VideoSource {
    info: VideoInfo,
    queue: Arc<FrameQueue>,
    stop: Arc<AtomicBool>,
}

impl VideoSource {
    /// Opens `input` (a file, `-` for stdin, a URL, a device such as `/dev/video0`) and
    /// starts decoding.
    ///
    /// # Errors
    /// [`Error::Open`] when FFmpeg cannot open or probe it, [`Error::NoVideoStream`],
    /// [`Error::Unsupported`] for a codec without a decoder, [`Error::Invalid`] for
    /// options that cannot be used.
    pub fn open(input: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let input = input.as_ref();
        let url = check_input(input, options)?;
        let mode = options.mode.unwrap_or_else(|| Mode::detect(input));
        let stop = Arc::new(AtomicBool::new(false));
        let (info, decode) = crate::decode::open(input, url, mode, options, &stop)?;
        let when_full = if mode == Mode::File {
            WhenFull::Wait
        } else {
            WhenFull::DropOldest
        };
        let queue = Arc::new(FrameQueue::new(options.queue_frames, when_full));
        let thread_queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("anydepth-video-decode".into())
            .spawn(move || decode.run(&thread_queue))
            .map_err(|e| Error::Open {
                reason: format!("cannot start the decoding thread ({e})"),
                input: input.display().to_string(),
            })?;
        Ok(Self { info, queue, stop })
    }

    /// What the container says about the video.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Frames dropped so far because the consumer was slower than a live source (always 0
    /// with [`Mode::File`]).
    pub fn dropped_frames(&self) -> u64 {
        self.queue.dropped()
    }

    /// A handle that reads [`dropped_frames`](Self::dropped_frames) from anywhere, also
    /// after the source was moved into another thread or dropped.
    pub fn drop_counter(&self) -> DropCounter {
        DropCounter(Arc::clone(&self.queue))
    }

    /// Whether the decoder has finished: every frame it will deliver is decoded (those
    /// still queued are yet to be taken).
    pub fn is_decoding_finished(&self) -> bool {
        self.queue.is_finished()
    }
}

impl Iterator for VideoSource {
    type Item = Result<VideoFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.queue.pop()
    }
}

impl Drop for VideoSource {
    /// Stops the decoder: queued frames are freed, a waiting or stalled decoder returns.
    /// The thread is not joined (a device read can block until its next frame); it ends
    /// on its own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queue.close();
    }
}

impl std::fmt::Debug for VideoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSource")
            .field("info", &self.info)
            .field("dropped_frames", &self.dropped_frames())
            .finish_non_exhaustive()
    }
}

/// Reads the number of frames a [`VideoSource`] dropped; cheap to clone and `Send`.
#[derive(Clone)]
pub struct DropCounter(Arc<FrameQueue>);

impl DropCounter {
    /// Frames dropped so far.
    pub fn get(&self) -> u64 {
        self.0.dropped()
    }
}

impl std::fmt::Debug for DropCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DropCounter").field(&self.get()).finish()
    }
}

/// The input as FFmpeg takes it (`-` becomes `pipe:0`), after checking what FFmpeg's
/// bindings would otherwise panic on.
fn check_input<'a>(input: &'a Path, options: &OpenOptions) -> Result<&'a str> {
    if options.queue_frames == 0 {
        return Err(Error::Invalid(
            "the frame queue must hold at least one frame".into(),
        ));
    }
    let text = input.to_str().ok_or_else(|| Error::Open {
        reason: "the path is not valid UTF-8".into(),
        input: input.display().to_string(),
    })?;
    let no_nul = |s: &str| !s.contains('\0');
    let options_ok = options
        .ffmpeg_options
        .iter()
        .all(|(k, v)| no_nul(k) && no_nul(v));
    if !no_nul(text) || !options_ok {
        return Err(Error::Invalid(format!(
            "a NUL character in the input or its options: {}",
            input.display()
        )));
    }
    Ok(if text == "-" { "pipe:0" } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_inputs_are_detected() {
        for input in [
            "-",
            "pipe:0",
            "rtsp://camera/stream",
            "RTMP://host/live",
            "srt://h:1",
        ] {
            assert_eq!(Mode::detect(Path::new(input)), Mode::Live, "{input}");
        }
        for input in ["clip.mp4", "https://host/clip.mp4", "/no/such/file.mkv"] {
            assert_eq!(Mode::detect(Path::new(input)), Mode::File, "{input}");
        }
        #[cfg(unix)]
        assert_eq!(Mode::detect(Path::new("/dev/null")), Mode::Live);
    }

    #[test]
    fn options_that_cannot_be_used_are_refused_before_opening() {
        let options = OpenOptions {
            queue_frames: 0,
            ..OpenOptions::default()
        };
        assert!(matches!(
            VideoSource::open("clip.mp4", &options),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            VideoSource::open("clip\0.mp4", &OpenOptions::default()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    #[cfg(feature = "ffmpeg")]
    fn missing_files_and_unknown_devices_are_errors() {
        let missing = VideoSource::open("/no/such/clip.mp4", &OpenOptions::default());
        assert!(
            matches!(&missing, Err(Error::Open { input, .. }) if input == "/no/such/clip.mp4"),
            "{missing:?}"
        );
        let options = OpenOptions {
            device: Some("no-such-device".into()),
            ..OpenOptions::default()
        };
        assert!(matches!(
            VideoSource::open("clip.mp4", &options),
            Err(Error::Invalid(_))
        ));
    }
}
