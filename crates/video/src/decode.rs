//! Reading through FFmpeg: opening and probing an input ([`open`]: a file, a stream, a
//! libavdevice device), then the decoding thread: demux, decode, convert to RGB8, orient,
//! queue.
//!
//! With a file, every delivered frame precedes any damage in presentation order, so the
//! frame indices stay those of the video. A file is cut short (truncated) when it holds
//! fewer packets than its container announces (MP4, MOV, AVI keep a count) and the data
//! read reaches the end of the file; containers without a count (Matroska, WebM, MPEG-TS)
//! cut short just end. The decoder holds frames back for reordering
//! (B-frames); when the packets stop early (damage, or fewer than the container
//! announces), only the held frames shown no later than the last packet read's decoding
//! time are delivered: a missing packet is decoded at or after that time and shown no
//! earlier than it is decoded, so those frames come before every missing one. The decoder
//! runs without frame threads, which would hold back more frames and report errors
//! packets late; slice threads are used where the stream has slices.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anydepth_core::image::Orientation;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec::packet::side_data::Type as SideDataType;
use ffmpeg_next::software::scaling;

use crate::error::{Error, Result};
use crate::frame::{FrameRate, VideoFrame};
use crate::orientation;
use crate::queue::FrameQueue;
use crate::source::{Mode, OpenOptions, Pacing, VideoInfo};

/// Opens and probes `input` (FFmpeg's `url` for it) and readies its decoder: what the
/// container says about the video, and the decoder to run on a thread of its own.
pub(crate) fn open(
    input: &Path,
    url: &str,
    mode: Mode,
    options: &OpenOptions,
    stop: &Arc<AtomicBool>,
) -> Result<(VideoInfo, Decoder)> {
    crate::init();
    let name = input.display().to_string();
    let context = open_input(input, url, options, stop)?;
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
    Ok((info, decode))
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
/// report errors late (see the module's notes), and add latency to live sources.
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

/// Everything the decoding thread owns.
pub(crate) struct Decoder {
    pub(crate) input: ffmpeg::format::context::Input,
    pub(crate) decoder: ffmpeg::decoder::Video,
    pub(crate) stream_index: usize,
    pub(crate) time_base: ffmpeg::Rational,
    /// The stream's start time, subtracted from every timestamp; `None`: the first
    /// frame's timestamp is used.
    pub(crate) start_ticks: Option<i64>,
    /// The packet count the container announces (files only), to recognise truncation.
    pub(crate) announced_frames: Option<u64>,
    /// The interval given to a frame without a timestamp.
    pub(crate) fallback_frame_secs: f64,
    pub(crate) orientation: Orientation,
    pub(crate) mode: Mode,
    pub(crate) pacing: Pacing,
    /// The input as given, for messages.
    pub(crate) name: String,
}

/// Whether the consumer is still there.
enum Flow {
    Continue,
    /// The consumer has gone.
    Stop,
}

/// The outcome of taking the decoder's frames.
enum Step {
    Continue,
    /// The consumer has gone.
    Stop,
    /// The decoder failed on the last packet sent, for this reason.
    Failed(String),
    /// The decoder returned a picture it marks as corrupt.
    Corrupt,
}

/// How the packets of a file ended.
enum Ending {
    /// At the end of the stream.
    Complete,
    /// After fewer packets than the container announces.
    Cut { announced: u64 },
    /// Reading or decoding a packet failed, for this reason.
    Damaged(String),
    /// A decoded picture is marked corrupt: nothing after it is delivered.
    Corrupt,
}

/// State of the loop that is not configuration.
struct Progress {
    /// Index of the next frame decoded (delivered or, live, possibly dropped).
    next_index: u64,
    last_time_secs: Option<f64>,
    /// Wall clock and frame time of the first frame, for [`Pacing::RealTime`].
    clock: Option<(Instant, f64)>,
    /// RGB conversion for the current input format and size; not `Send`, so made here.
    scaler: Option<scaling::Context>,
    rgb: ffmpeg::frame::Video,
    /// While the decoder is drained after damage: the latest presentation time (stream
    /// ticks) that may still be delivered.
    limit_ticks: Option<i64>,
}

const CORRUPT: &str = "the decoder marks the picture corrupt";

impl Decoder {
    /// Decodes until the end, an error or the consumer's departure; the queue is finished
    /// in every case.
    pub(crate) fn run(mut self, queue: &FrameQueue) {
        let mut progress = Progress {
            next_index: 0,
            last_time_secs: None,
            clock: None,
            scaler: None,
            rgb: ffmpeg::frame::Video::empty(),
            limit_ticks: None,
        };
        let failure = match self.decode_all(queue, &mut progress) {
            Ok(Flow::Stop) => None,
            Ok(Flow::Continue) if progress.next_index == 0 => Some(Error::NoFrames {
                input: self.name.clone(),
            }),
            Ok(Flow::Continue) => None,
            Err(error) => Some(error),
        };
        if let Some(error) = failure {
            tracing::debug!(%error, "video decoding ended");
            queue.push(Err(error));
        }
        queue.finish();
    }

    fn decode_all(&mut self, queue: &FrameQueue, progress: &mut Progress) -> Result<Flow, Error> {
        let mut packet = ffmpeg::Packet::empty();
        // Packets of the video stream read, and the decoding time of the last one.
        let mut packets: u64 = 0;
        let mut last_dts: Option<i64> = None;
        // Where the data of the packets read so far (any stream) ends in the file.
        let mut data_end: i64 = 0;
        let ending = loop {
            if queue.is_closed() {
                return Ok(Flow::Stop);
            }
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break Ending::Complete,
                Err(error) => match self.mode {
                    Mode::File => break Ending::Damaged(format!("cannot read: {error}")),
                    Mode::Live => {
                        tracing::warn!(%error, input = %self.name, "the live stream ended");
                        break Ending::Complete;
                    }
                },
            }
            let position = packet.position() as i64;
            if position >= 0 {
                data_end = data_end.max(position + packet.size() as i64);
            }
            if packet.stream() != self.stream_index {
                continue;
            }
            packets += 1;
            last_dts = packet.dts();
            if let Err(error) = self.decoder.send_packet(&packet) {
                match self.mode {
                    Mode::File => break Ending::Damaged(format!("cannot decode: {error}")),
                    Mode::Live => {
                        tracing::debug!(%error, "skipped an undecodable packet");
                        continue;
                    }
                }
            }
            match self.receive(queue, progress)? {
                Step::Continue => {}
                Step::Stop => return Ok(Flow::Stop),
                Step::Failed(reason) => break Ending::Damaged(reason),
                Step::Corrupt => break Ending::Corrupt,
            }
        };
        // Fewer packets than announced is a cut when the data read reaches the end of the
        // file: an edit list that trims the end also leaves packets unread, with their
        // data still in the file.
        let data_ran_out = self.input.io_size().is_none_or(|size| data_end >= size);
        let short_of = self
            .announced_frames
            .filter(|&announced| packets < announced && data_ran_out);
        let ending = match (ending, short_of) {
            (Ending::Complete, Some(announced)) => Ending::Cut { announced },
            // A damaged last packet: the file was cut inside it.
            (Ending::Damaged(_), Some(announced)) if self.at_end(&mut packet) => {
                Ending::Cut { announced }
            }
            (ending, _) => ending,
        };
        match ending {
            Ending::Complete => self.drain(queue, progress),
            Ending::Corrupt => Err(self.damaged(progress, CORRUPT.into())),
            Ending::Cut { .. } | Ending::Damaged(_) => {
                progress.limit_ticks = Some(last_dts.unwrap_or(i64::MIN));
                if let Flow::Stop = self.drain(queue, progress)? {
                    return Ok(Flow::Stop);
                }
                Err(match ending {
                    Ending::Cut { announced } => Error::Truncated {
                        frame_index: progress.next_index,
                        announced,
                        input: self.name.clone(),
                    },
                    Ending::Damaged(reason) => self.damaged(progress, reason),
                    Ending::Complete | Ending::Corrupt => self.damaged(progress, CORRUPT.into()),
                })
            }
        }
    }

    /// Delivers the frames the decoder still holds (all at the end of the stream; within
    /// `progress.limit_ticks` after damage, where a further failure just ends them).
    fn drain(&mut self, queue: &FrameQueue, progress: &mut Progress) -> Result<Flow, Error> {
        let step = match self.decoder.send_eof() {
            Ok(()) => self.receive(queue, progress)?,
            Err(error) => Step::Failed(format!("cannot decode: {error}")),
        };
        let whole_file = self.mode == Mode::File && progress.limit_ticks.is_none();
        match step {
            Step::Stop => Ok(Flow::Stop),
            Step::Failed(reason) if whole_file => Err(self.damaged(progress, reason)),
            Step::Corrupt if whole_file => Err(self.damaged(progress, CORRUPT.into())),
            Step::Continue | Step::Failed(_) | Step::Corrupt => Ok(Flow::Continue),
        }
    }

    /// Whether the container has no video packet left.
    fn at_end(&mut self, packet: &mut ffmpeg::Packet) -> bool {
        loop {
            match packet.read(&mut self.input) {
                Err(ffmpeg::Error::Eof) => return true,
                Ok(()) if packet.stream() != self.stream_index => {}
                Ok(()) | Err(_) => return false,
            }
        }
    }

    /// Takes every frame the decoder has ready and queues it.
    fn receive(&mut self, queue: &FrameQueue, progress: &mut Progress) -> Result<Step, Error> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(Step::Continue),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(Step::Continue)
                }
                Err(error) => match self.mode {
                    Mode::File => return Ok(Step::Failed(format!("cannot decode: {error}"))),
                    Mode::Live => {
                        tracing::debug!(%error, "skipped an undecodable frame");
                        return Ok(Step::Continue);
                    }
                },
            }
            if self.mode == Mode::File && (decoded.is_corrupt() || decoded.has_decode_errors()) {
                return Ok(Step::Corrupt);
            }
            if let Some(limit) = progress.limit_ticks {
                let ticks = decoded.timestamp().or_else(|| decoded.pts());
                if ticks.is_none_or(|ticks| ticks > limit) {
                    return Ok(Step::Continue);
                }
            }
            let frame = self.convert(&decoded, progress)?;
            self.wait_until_due(queue, frame.time_secs, progress);
            if !queue.push(Ok(frame)) {
                return Ok(Step::Stop);
            }
        }
    }

    /// The decoded picture as an oriented RGB8 frame with its index and time.
    fn convert(
        &mut self,
        decoded: &ffmpeg::frame::Video,
        progress: &mut Progress,
    ) -> Result<VideoFrame, Error> {
        let (width, height) = (decoded.width(), decoded.height());
        let matches = |scaler: &scaling::Context| {
            let input = scaler.input();
            (input.format, input.width, input.height) == (decoded.format(), width, height)
        };
        if !progress.scaler.as_ref().is_some_and(matches) {
            let scaler = scaling::Context::get(
                decoded.format(),
                width,
                height,
                ffmpeg::format::Pixel::RGB24,
                width,
                height,
                scaling::Flags::BILINEAR,
            )
            .map_err(|error| self.damaged(progress, format!("cannot convert to RGB: {error}")))?;
            progress.scaler = Some(scaler);
            progress.rgb = ffmpeg::frame::Video::empty();
        }
        if let Some(scaler) = progress.scaler.as_mut() {
            scaler
                .run(decoded, &mut progress.rgb)
                .map_err(|error| Error::Damaged {
                    frame_index: progress.next_index,
                    reason: format!("cannot convert to RGB: {error}"),
                    input: self.name.clone(),
                })?;
        }
        let (w, h) = (width as usize, height as usize);
        let stride = progress.rgb.stride(0);
        let data = progress.rgb.data(0);
        let mut pixels: Vec<[u8; 3]> = Vec::with_capacity(w * h);
        for y in 0..h {
            let row = &data[y * stride..y * stride + w * 3];
            pixels.extend_from_slice(bytemuck::cast_slice(row));
        }
        let (width, height, pixels) = orientation::apply(self.orientation, width, height, pixels);

        let time_secs = match decoded.timestamp().or_else(|| decoded.pts()) {
            Some(ticks) => {
                let start = *self.start_ticks.get_or_insert(ticks);
                (ticks - start) as f64 * f64::from(self.time_base)
            }
            None => progress
                .last_time_secs
                .map_or(0.0, |last| last + self.fallback_frame_secs),
        };
        progress.last_time_secs = Some(time_secs);
        let index = progress.next_index;
        progress.next_index += 1;
        Ok(VideoFrame {
            index,
            time_secs,
            width,
            height,
            pixels,
        })
    }

    /// With [`Pacing::RealTime`], sleeps until the frame's time has come on the wall clock.
    fn wait_until_due(&self, queue: &FrameQueue, time_secs: f64, progress: &mut Progress) {
        if self.pacing != Pacing::RealTime {
            return;
        }
        let (started, first_secs) = *progress
            .clock
            .get_or_insert_with(|| (Instant::now(), time_secs));
        let due = started + Duration::from_secs_f64((time_secs - first_secs).max(0.0));
        // In short naps, so that a departed consumer is noticed.
        while !queue.is_closed() {
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }

    /// The error for a failure at frame `progress.next_index`.
    fn damaged(&self, progress: &Progress, reason: String) -> Error {
        Error::Damaged {
            frame_index: progress.next_index,
            reason,
            input: self.name.clone(),
        }
    }
}
