//! Decoded frames and frame rates.

use anydepth_core::RgbImage;

/// One decoded frame: 8-bit RGB at the video's resolution, rotation metadata applied.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoFrame {
    /// Position in the stream's decoding order, from 0. With a live source some indices
    /// are skipped: those frames were dropped.
    pub index: u64,
    /// Presentation time in seconds from the stream's start, from the stream's own time
    /// base: a variable frame rate keeps its real times.
    pub time_secs: f64,
    /// Width in pixels, as displayed.
    pub width: u32,
    /// Height in pixels, as displayed.
    pub height: u32,
    /// `width * height` pixels in row order: r, g, b.
    pub pixels: Vec<[u8; 3]>,
}

impl VideoFrame {
    /// The frame as RGB in `[0, 1]` (each byte divided by 255), as
    /// `anydepth_core::load_image` gives photos.
    ///
    /// ```
    /// let frame = anydepth_video::VideoFrame {
    ///     index: 0,
    ///     time_secs: 0.0,
    ///     width: 1,
    ///     height: 1,
    ///     pixels: vec![[0, 51, 255]],
    /// };
    /// assert_eq!(frame.to_rgb_image().data, vec![0.0, 0.2, 1.0]);
    /// ```
    pub fn to_rgb_image(&self) -> RgbImage {
        RgbImage {
            width: self.width,
            height: self.height,
            data: self
                .pixels
                .iter()
                .flatten()
                .map(|&v| f32::from(v) / 255.0)
                .collect(),
        }
    }
}

/// Frames per second as a fraction, `num / den` (30000/1001 for NTSC's 29.97).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameRate {
    /// Frames...
    pub num: u32,
    /// ...per this many seconds.
    pub den: u32,
}

impl FrameRate {
    /// `num / den` frames per second.
    pub const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    /// Frames per second as a number.
    pub fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// The duration of one frame, in seconds.
    pub fn frame_secs(self) -> f64 {
        f64::from(self.den) / f64::from(self.num)
    }

    /// Both parts positive and within FFmpeg's `i32` fractions.
    #[cfg(feature = "ffmpeg")]
    pub(crate) fn is_valid(self) -> bool {
        self.num > 0 && self.den > 0 && self.num <= i32::MAX as u32 && self.den <= i32::MAX as u32
    }

    /// From FFmpeg's fraction; `None` when unknown (zero) or negative.
    #[cfg(feature = "ffmpeg")]
    pub(crate) fn from_rational(rational: ffmpeg_next::Rational) -> Option<Self> {
        let (num, den) = (rational.numerator(), rational.denominator());
        (num > 0 && den > 0).then(|| Self::new(num.unsigned_abs(), den.unsigned_abs()))
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{} fps", self.num)
        } else {
            write!(f, "{}/{} fps (~{:.3})", self.num, self.den, self.fps())
        }
    }
}
