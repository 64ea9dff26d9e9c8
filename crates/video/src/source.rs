//! Opening a video (file, camera, stream or pipe) and reading its frames, decoded ahead on
//! a thread of their own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anydepth_core::image::Orientation;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec::packet::side_data::Type as SideDataType;

use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::frame::{FrameRate, VideoFrame};
use crate::orientation;
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
        crate::init();
        let input = input.as_ref();
        let name = input.display().to_string();
        let url = check_input(input, options)?;
        let mode = options.mode.unwrap_or_else(|| Mode::detect(input));
        let stop = Arc::new(AtomicBool::new(false));
        let context = open_input(input, url, options, &stop)?;
        let stream = context
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| Error::NoVideoStream {
                input: name.clone(),
            })?;
        let stream_index = stream.index();
        let facts = StreamFacts::of(&context, &stream);
        let codec = stream.parameters().id().name().to_owned();
        let decoder = open_decoder(&stream).map_err(|e| Error::Unsupported {
            codec: codec.clone(),
            reason: e.to_string(),
            input: name.clone(),
        })?;
        let (stored_width, stored_height) = (decoder.width(), decoder.height());
        let (width, height) = if orientation::swaps_axes(facts.orientation) {
            (stored_height, stored_width)
        } else {
            (stored_width, stored_height)
        };
        let info = VideoInfo {
            width,
            height,
            orientation: facts.orientation,
            frame_rate: facts.frame_rate,
            variable_frame_rate: facts.variable_frame_rate,
            frame_count: match (mode, facts.announced_frames) {
                (Mode::Live, _) => None,
                (Mode::File, Some(n)) => Some(n),
                (Mode::File, None) => facts
                    .duration_secs
                    .zip(facts.frame_rate)
                    .map(|(d, rate)| (d * rate.fps()).round() as u64),
            },
            duration_secs: facts.duration_secs,
            codec,
            mode,
        };
        tracing::debug!(input = %name, ?info, "opened video");

        let file = mode == Mode::File;
        let decode = Decoder {
            input: context,
            decoder,
            stream_index,
            time_base: facts.time_base,
            start_ticks: facts.start_ticks.filter(|_| file),
            announced_frames: facts.announced_frames.filter(|_| file),
            fallback_frame_secs: facts.frame_rate.map_or(1.0 / 30.0, FrameRate::frame_secs),
            orientation: facts.orientation,
            mode,
            pacing: options.pacing,
            name,
        };
        let when_full = if file {
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

/// Opens and probes the input: through a libavdevice device when one is named (or the
/// input is a character device, with `v4l2`), else by probing.
fn open_input(
    input: &Path,
    url: &str,
    options: &OpenOptions,
    stop: &Arc<AtomicBool>,
) -> Result<ffmpeg::format::context::Input> {
    let open_error = |reason: String| Error::Open {
        reason,
        input: input.display().to_string(),
    };
    let device = match &options.device {
        Some(device) => Some(device.as_str()),
        None if is_char_device(input) => Some("v4l2"),
        None => None,
    };
    let dictionary: ffmpeg::Dictionary = options.ffmpeg_options.iter().collect();
    let Some(device) = device else {
        // Polled by FFmpeg during blocking network reads: the decoder stops when the
        // source is dropped even if the stream has stalled.
        let stop = Arc::clone(stop);
        return ffmpeg::format::input_with_interrupt_and_dictionary(
            &url,
            move || stop.load(Ordering::Relaxed),
            dictionary,
        )
        .map_err(|e| open_error(e.to_string()));
    };
    let format = find_input_device(device).ok_or_else(|| {
        Error::Invalid(format!("no input device `{device}` in this FFmpeg build"))
    })?;
    match ffmpeg::format::open_with(&url, &format, dictionary) {
        Ok(ffmpeg::format::context::Context::Input(context)) => Ok(context),
        Ok(ffmpeg::format::context::Context::Output(_)) => {
            Err(open_error("opened as an output".into()))
        }
        Err(e) => Err(open_error(e.to_string())),
    }
}

/// A decoder for the stream, with slice threads only: frame threads hold frames back and
/// report errors late (see the `decode` module), and add latency to live sources.
fn open_decoder(
    stream: &ffmpeg::format::stream::Stream<'_>,
) -> Result<ffmpeg::decoder::Video, ffmpeg::Error> {
    let mut context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?;
    context.set_threading(ffmpeg::codec::threading::Config::kind(
        ffmpeg::codec::threading::Type::Slice,
    ));
    context.decoder().video()
}

/// What the container says about the video stream.
struct StreamFacts {
    orientation: Orientation,
    time_base: ffmpeg::Rational,
    start_ticks: Option<i64>,
    announced_frames: Option<u64>,
    frame_rate: Option<FrameRate>,
    variable_frame_rate: bool,
    duration_secs: Option<f64>,
}

impl StreamFacts {
    fn of(
        context: &ffmpeg::format::context::Input,
        stream: &ffmpeg::format::stream::Stream<'_>,
    ) -> Self {
        let time_base = stream.time_base();
        let average_rate = FrameRate::from_rational(stream.avg_frame_rate());
        let base_rate = FrameRate::from_rational(stream.rate());
        let duration_secs = if stream.duration() > 0 {
            Some(stream.duration() as f64 * f64::from(time_base))
        } else {
            (context.duration() > 0)
                .then(|| context.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
        };
        Self {
            orientation: stream_orientation(stream),
            time_base,
            start_ticks: (stream.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE)
                .then(|| stream.start_time()),
            announced_frames: u64::try_from(stream.frames()).ok().filter(|&n| n > 0),
            frame_rate: average_rate.or(base_rate),
            variable_frame_rate: match (average_rate, base_rate) {
                (Some(avg), Some(base)) => (avg.fps() / base.fps() - 1.0).abs() > 0.005,
                _ => false,
            },
            duration_secs,
        }
    }
}

/// The orientation from the stream's display matrix, else its `rotate` tag.
fn stream_orientation(stream: &ffmpeg::format::stream::Stream<'_>) -> Orientation {
    let from_matrix = stream
        .side_data()
        .find(|side_data| side_data.kind() == SideDataType::DisplayMatrix)
        .map(|side_data| orientation::from_display_matrix(side_data.data()));
    let from_tag = stream
        .metadata()
        .get("rotate")
        .map(orientation::from_rotate_tag);
    match from_matrix.or(from_tag) {
        Some(Some(orientation)) => orientation,
        Some(None) => {
            tracing::warn!("the video's rotation is not a multiple of 90 degrees; ignored");
            Orientation::Normal
        }
        None => Orientation::Normal,
    }
}

/// Whether `path` is a character device (a camera under `/dev`).
fn is_char_device(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// The libavdevice input format called `name` (any of its comma-separated names).
fn find_input_device(name: &str) -> Option<ffmpeg::Format> {
    ffmpeg::device::input::video().find(|format| {
        let format_name = match format {
            ffmpeg::Format::Input(input) => input.name(),
            ffmpeg::Format::Output(output) => output.name(),
        };
        format_name.split(',').any(|n| n == name)
    })
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
    fn missing_files_and_bad_options_are_errors() {
        let missing = VideoSource::open("/no/such/clip.mp4", &OpenOptions::default());
        assert!(
            matches!(&missing, Err(Error::Open { input, .. }) if input == "/no/such/clip.mp4"),
            "{missing:?}"
        );
        let options = OpenOptions {
            queue_frames: 0,
            ..OpenOptions::default()
        };
        assert!(matches!(
            VideoSource::open("clip.mp4", &options),
            Err(Error::Invalid(_))
        ));
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
