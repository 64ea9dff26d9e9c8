//! Writing RGB8 frames to an H.264 MP4 (or another container FFmpeg knows by the file's
//! extension), atomically.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use tempfile::TempPath;

use crate::error::{Error, Result};
use crate::frame::FrameRate;
use crate::writer_options::{Codec, WriterOptions};

/// The containers the writer produces (by extension).
const CONTAINERS: [&str; 3] = ["mp4", "mov", "mkv"];

/// Timestamps of written H.264 frames are counted in ticks of at least 90 kHz (MPEG's
/// clock) that divide the frame interval exactly: `num * ceil(90000 / num)` ticks per
/// second.
const MIN_TICKS_PER_SEC: u32 = 90_000;

/// The MPEG-4 Part 2 bitstream counts time in at most 65535 ticks per second.
const MAX_MPEG4_TICKS_PER_SEC: u32 = 65_535;

/// Ticks per second of the encoder's clock: a multiple of `rate.num`, so that a frame
/// interval is a whole number of ticks; `None` when no such clock fits the encoder.
fn clock_rate(rate: FrameRate, encoder_name: &str) -> Option<u32> {
    let multiple = if encoder_name == "mpeg4" {
        MAX_MPEG4_TICKS_PER_SEC / rate.num
    } else {
        MIN_TICKS_PER_SEC.div_ceil(rate.num)
    };
    let ticks = rate.num.checked_mul(multiple)?;
    (multiple > 0 && ticks <= i32::MAX as u32).then_some(ticks)
}

/// Writes RGB8 frames into a video file: YUV 4:2:0 (`yuv420p`), H.264 in MP4 by default.
///
/// Frames go to a temporary file beside the destination (`.anydepth-*.tmp.EXT`), renamed
/// over the destination by [`finish`](Self::finish); dropping the writer without
/// finishing removes it, so a destination never holds half a video. MP4 and MOV files get
/// their index first (`+faststart`: playable while downloading).
///
/// YUV 4:2:0 needs even dimensions: an odd width or height is padded with a copy of the
/// last column or row ([`encoded_size`](Self::encoded_size)); a reader then sees frames one
/// pixel wider or taller. Colours are converted with BT.601 coefficients in limited range,
/// and the stream is tagged so; that is what FFmpeg's RGB conversion assumes when it reads
/// the file back.
pub struct VideoWriter {
    output: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    /// The reused YUV frame handed to the encoder.
    yuv: ffmpeg::frame::Video,
    width: u32,
    height: u32,
    /// Encoder ticks per second (its time base is the inverse).
    ticks_per_sec: i64,
    ticks_per_frame: i64,
    /// The muxer's time base for the stream, chosen when the header is written.
    stream_time_base: ffmpeg::Rational,
    last_pts: Option<i64>,
    frames: u64,
    encoder_name: &'static str,
    path: PathBuf,
    overwrite: bool,
    /// Removed when dropped, unless [`finish`](Self::finish) renamed it into place.
    temp: TempPath,
}

impl VideoWriter {
    /// Starts a video of `width` x `height` frames at `path`; the container follows the
    /// extension: `.mp4` (also when there is none), `.mov` or `.mkv`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a zero size or frame rate, or another extension;
    /// [`Error::NoEncoder`] when [`Codec::H264`] is asked for and libx264 is missing;
    /// [`Error::Write`] when the file exists without [`WriterOptions::overwrite`], or the
    /// temporary file, the encoder or the container cannot be set up.
    pub fn create(path: &Path, width: u32, height: u32, options: &WriterOptions) -> Result<Self> {
        crate::init();
        let rate = options.frame_rate;
        if width == 0 || height == 0 || !rate.is_valid() {
            return Err(Error::Invalid(format!(
                "cannot write a {width} x {height} video at {}/{} fps: {}",
                rate.num,
                rate.den,
                path.display()
            )));
        }
        let fail = |reason: String| Error::Write {
            reason,
            path: path.to_path_buf(),
        };
        let extension = path
            .extension()
            .map_or_else(|| "mp4".to_owned(), |e| e.to_string_lossy().to_lowercase());
        if !CONTAINERS.contains(&extension.as_str()) {
            return Err(Error::Invalid(format!(
                "videos are written as .mp4, .mov or .mkv, not .{extension}: {}",
                path.display()
            )));
        }
        if !options.overwrite && path.exists() {
            return Err(fail(
                "the file exists (and replacing it was not asked for)".into(),
            ));
        }
        let (codec, encoder_name) = find_encoder(options.codec)?;
        let ticks_per_sec = clock_rate(rate, encoder_name).ok_or_else(|| {
            Error::Invalid(format!(
                "{encoder_name} cannot encode {}/{} fps: {}",
                rate.num,
                rate.den,
                path.display()
            ))
        })?;
        let temp = temp_path_beside(path, &extension)
            .map_err(|e| fail(format!("cannot create a temporary file beside it ({e})")))?;
        let temp_str = temp
            .to_str()
            .ok_or_else(|| fail("the path is not valid UTF-8".into()))?
            .to_owned();
        let mut output = ffmpeg::format::output(&temp_str).map_err(|e| fail(e.to_string()))?;

        let ticks_per_frame = i64::from(rate.den) * i64::from(ticks_per_sec / rate.num);
        let time_base = ffmpeg::Rational::new(1, ticks_per_sec as i32);
        let frame_rate = ffmpeg::Rational::new(rate.num as i32, rate.den as i32);
        let (encoded_width, encoded_height) =
            (width.next_multiple_of(2), height.next_multiple_of(2));

        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let encoder = open_encoder(
            (codec, encoder_name),
            (encoded_width, encoded_height),
            (time_base, frame_rate),
            options,
            global_header,
        )
        .map_err(|e| fail(format!("cannot open {encoder_name} ({e})")))?;

        let mut stream = output
            .add_stream(codec)
            .map_err(|e| fail(format!("cannot add a video stream ({e})")))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        stream.set_avg_frame_rate(frame_rate);
        stream.set_rate(frame_rate);
        let mut header_options = ffmpeg::Dictionary::new();
        if matches!(output.format().name(), "mp4" | "mov") {
            header_options.set("movflags", "+faststart");
        }
        output
            .write_header_with(header_options)
            .map_err(|e| fail(format!("cannot write the header ({e})")))?;
        let stream_time_base = output
            .stream(0)
            .map(|stream| stream.time_base())
            .ok_or_else(|| fail("the video stream is missing".into()))?;

        Ok(Self {
            output,
            encoder,
            yuv: ffmpeg::frame::Video::new(
                ffmpeg::format::Pixel::YUV420P,
                encoded_width,
                encoded_height,
            ),
            width,
            height,
            ticks_per_sec: i64::from(ticks_per_sec),
            ticks_per_frame,
            stream_time_base,
            last_pts: None,
            frames: 0,
            encoder_name,
            path: path.to_path_buf(),
            overwrite: options.overwrite,
            temp,
        })
    }

    /// Adds a frame one frame interval after the previous one (the first at 0 s).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `pixels` is not `width * height` long, [`Error::Write`]
    /// when encoding or writing fails.
    pub fn write(&mut self, pixels: &[[u8; 3]]) -> Result<()> {
        let pts = self.last_pts.map_or(0, |last| last + self.ticks_per_frame);
        self.write_pts(pixels, pts)
    }

    /// Adds a frame shown at `time_secs` (variable frame rate: pass a source's timestamps
    /// through). Times are rounded to the encoder's clock: 1/90000 s or finer with H.264;
    /// with MPEG-4, the finest multiple of the frame rate up to 65535 ticks per second.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `time_secs` is negative, not finite or not after the
    /// previous frame's, or `pixels` is not `width * height` long; [`Error::Write`] when
    /// encoding or writing fails.
    pub fn write_at(&mut self, pixels: &[[u8; 3]], time_secs: f64) -> Result<()> {
        let pts = (time_secs * self.ticks_per_sec as f64).round();
        if !pts.is_finite() || pts < 0.0 || pts >= i64::MAX as f64 {
            return Err(self.invalid(format!("invalid frame time {time_secs} s")));
        }
        let pts = pts as i64;
        if self.last_pts.is_some_and(|last| pts <= last) {
            return Err(self.invalid(format!(
                "frame time {time_secs} s is not after the previous frame's"
            )));
        }
        self.write_pts(pixels, pts)
    }

    fn write_pts(&mut self, pixels: &[[u8; 3]], pts: i64) -> Result<()> {
        let expected = self.width as usize * self.height as usize;
        if pixels.len() != expected {
            return Err(self.invalid(format!(
                "a {} x {} frame needs {expected} pixels, got {}",
                self.width,
                self.height,
                pixels.len()
            )));
        }
        fill_yuv420(&mut self.yuv, self.width, self.height, pixels);
        self.yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| self.write_error("cannot encode", &e))?;
        self.last_pts = Some(pts);
        self.frames += 1;
        self.write_packets()
    }

    /// Moves every packet the encoder has ready into the file.
    fn write_packets(&mut self) -> Result<()> {
        let time_base = ffmpeg::Rational::new(1, self.ticks_per_sec as i32);
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    return Ok(())
                }
                Err(e) => return Err(self.write_error("cannot encode", &e)),
            }
            packet.set_stream(0);
            if packet.duration() == 0 {
                packet.set_duration(self.ticks_per_frame);
            }
            packet.rescale_ts(time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| self.write_error("cannot write", &e))?;
        }
    }

    /// Flushes the encoder, completes the file and renames it into place (an existing file
    /// is replaced only with [`WriterOptions::overwrite`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] when no frame was written (the temporary file is removed);
    /// [`Error::Write`] when encoding, writing or the rename fails.
    pub fn finish(mut self) -> Result<()> {
        if self.frames == 0 {
            return Err(self.invalid("no frames were written".into()));
        }
        self.encoder
            .send_eof()
            .map_err(|e| self.write_error("cannot encode", &e))?;
        self.write_packets()?;
        self.output
            .write_trailer()
            .map_err(|e| self.write_error("cannot complete the file", &e))?;
        let Self {
            output,
            temp,
            path,
            overwrite,
            ..
        } = self;
        // Closes FFmpeg's handle on the file.
        drop(output);
        let fail = |reason: String| Error::Write {
            reason,
            path: path.clone(),
        };
        std::fs::File::open(&temp)
            .and_then(|file| file.sync_all())
            .map_err(|e| fail(format!("cannot sync ({e})")))?;
        let persisted = if overwrite {
            temp.persist(&path)
        } else {
            temp.persist_noclobber(&path)
        };
        persisted.map_err(|e| {
            fail(format!(
                "cannot move the written file into place ({})",
                e.error
            ))
        })?;
        tracing::debug!(path = %path.display(), "video written");
        Ok(())
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// The size frames are encoded at: the frame size rounded up to even numbers.
    pub fn encoded_size(&self) -> (u32, u32) {
        (self.yuv.width(), self.yuv.height())
    }

    /// The FFmpeg encoder in use (`libx264` or `mpeg4`).
    pub fn encoder_name(&self) -> &'static str {
        self.encoder_name
    }

    fn invalid(&self, what: String) -> Error {
        Error::Invalid(format!("{what}: {}", self.path.display()))
    }

    fn write_error(&self, what: &str, error: &ffmpeg::Error) -> Error {
        Error::Write {
            reason: format!("{what} frame {} ({error})", self.frames),
            path: self.path.clone(),
        }
    }
}

impl std::fmt::Debug for VideoWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoWriter")
            .field("path", &self.path)
            .field("size", &(self.width, self.height))
            .field("encoder", &self.encoder_name)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// An opened encoder for YUV 4:2:0 frames of `size` on the clock `time_base`, tagged
/// BT.601 limited range.
fn open_encoder(
    (codec, encoder_name): (ffmpeg::Codec, &str),
    (width, height): (u32, u32),
    (time_base, frame_rate): (ffmpeg::Rational, ffmpeg::Rational),
    options: &WriterOptions,
    global_header: bool,
) -> Result<ffmpeg::encoder::Video, ffmpeg::Error> {
    let mut encoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(ffmpeg::format::Pixel::YUV420P);
    encoder.set_time_base(time_base);
    encoder.set_frame_rate(Some(frame_rate));
    encoder.set_colorspace(ffmpeg::color::Space::SMPTE170M);
    encoder.set_color_range(ffmpeg::color::Range::MPEG);
    let mut flags = ffmpeg::codec::Flags::empty();
    if global_header {
        flags |= ffmpeg::codec::Flags::GLOBAL_HEADER;
    }
    let mut encoder_options = ffmpeg::Dictionary::new();
    if encoder_name == "libx264" {
        encoder_options.set("crf", &options.crf.to_string());
        encoder_options.set("preset", &options.preset);
    } else {
        flags |= ffmpeg::codec::Flags::QSCALE;
        // The quantiser as FFmpeg's `-q:v 2` sets it (lambda units).
        encoder.set_global_quality(2 * ffmpeg::ffi::FF_QP2LAMBDA);
    }
    encoder.set_flags(flags);
    encoder.open_with(encoder_options)
}

/// The encoder for `codec` and its name.
fn find_encoder(codec: Codec) -> Result<(ffmpeg::Codec, &'static str)> {
    let x264 = || ffmpeg::encoder::find_by_name("libx264").map(|c| (c, "libx264"));
    let mpeg4 = || ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4).map(|c| (c, "mpeg4"));
    match codec {
        Codec::Auto => x264()
            .or_else(mpeg4)
            .ok_or(Error::NoEncoder("H.264 or MPEG-4")),
        Codec::H264 => x264().ok_or(Error::NoEncoder("libx264 (H.264)")),
        Codec::Mpeg4 => mpeg4().ok_or(Error::NoEncoder("MPEG-4")),
    }
}

/// A new empty file `.anydepth-XXXXXX.tmp.EXT` in `path`'s folder (EXT = `extension`, so
/// that FFmpeg picks the destination's container).
fn temp_path_beside(path: &Path, extension: &str) -> std::io::Result<TempPath> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let suffix = format!(".tmp.{extension}");
    let mut builder = tempfile::Builder::new();
    builder.prefix(".anydepth-").suffix(&suffix);
    // Temporary files are created 0600; ask for 0666 so the umask applies as usual.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    Ok(builder.tempfile_in(dir)?.into_temp_path())
}

/// Fills a YUV 4:2:0 frame (even size, at least `width` x `height`) from RGB8 pixels:
/// BT.601 limited range; the last column and row repeat into the padding; chroma is the
/// mean of each 2 x 2 block.
fn fill_yuv420(frame: &mut ffmpeg::frame::Video, width: u32, height: u32, pixels: &[[u8; 3]]) {
    let (w, h) = (width as usize, height as usize);
    let (enc_w, enc_h) = (frame.width() as usize, frame.height() as usize);
    let pixel = |x: usize, y: usize| pixels[y.min(h - 1) * w + x.min(w - 1)];
    let stride = frame.stride(0);
    let luma = frame.data_mut(0);
    for y in 0..enc_h {
        let row = &mut luma[y * stride..y * stride + enc_w];
        for (x, out) in row.iter_mut().enumerate() {
            let [r, g, b] = pixel(x, y).map(i32::from);
            *out = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
        }
    }
    // Cb and Cr, one plane after the other (a frame lends one plane at a time).
    let (chroma_w, chroma_h) = (enc_w / 2, enc_h / 2);
    let mut cb = Vec::with_capacity(chroma_w * chroma_h);
    let mut cr = Vec::with_capacity(chroma_w * chroma_h);
    for cy in 0..chroma_h {
        for cx in 0..chroma_w {
            let mut sum = [0i32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = pixel(2 * cx + dx, 2 * cy + dy);
                for (total, value) in sum.iter_mut().zip(p) {
                    *total += i32::from(value);
                }
            }
            let [r, g, b] = sum;
            // The 2 x 2 sum is four times the mean: shift by 2 more.
            cb.push((((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128).clamp(0, 255) as u8);
            cr.push((((112 * r - 94 * g - 18 * b + 512) >> 10) + 128).clamp(0, 255) as u8);
        }
    }
    for (plane, values) in [(1, cb), (2, cr)] {
        let stride = frame.stride(plane);
        let data = frame.data_mut(plane);
        for (y, row) in values.chunks_exact(chroma_w).enumerate() {
            data[y * stride..y * stride + chroma_w].copy_from_slice(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_divide_common_frame_intervals() {
        let rates = [
            (24, 1),
            (25, 1),
            (30000, 1001),
            (24000, 1001),
            (60, 1),
            (120, 1),
        ];
        for (num, den) in rates {
            let rate = FrameRate::new(num, den);
            for encoder in ["libx264", "mpeg4"] {
                let ticks_per_sec = clock_rate(rate, encoder).expect("a clock");
                if encoder == "mpeg4" {
                    assert!(ticks_per_sec <= MAX_MPEG4_TICKS_PER_SEC);
                } else {
                    assert!(ticks_per_sec >= MIN_TICKS_PER_SEC);
                }
                // den / num seconds is a whole number of ticks.
                let ticks_times_den = u64::from(ticks_per_sec) * u64::from(den);
                assert_eq!(ticks_times_den % u64::from(num), 0, "{num}/{den} {encoder}");
            }
        }
        assert_eq!(clock_rate(FrameRate::new(100_000, 1), "mpeg4"), None);
    }

    #[test]
    fn yuv_of_grey_white_and_an_odd_size() {
        crate::init();
        // 3 x 1: white, black, mid grey; padded to 4 x 2.
        let pixels = [[255, 255, 255], [0, 0, 0], [128, 128, 128]];
        let mut frame = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, 4, 2);
        fill_yuv420(&mut frame, 3, 1, &pixels);
        let stride = frame.stride(0);
        let luma = frame.data(0);
        assert_eq!(&luma[..4], &[235, 16, 126, 126]);
        assert_eq!(&luma[stride..stride + 4], &[235, 16, 126, 126]);
        // Greys have neutral chroma.
        assert_eq!(&frame.data(1)[..2], &[128, 128]);
        assert_eq!(&frame.data(2)[..2], &[128, 128]);
    }
}
