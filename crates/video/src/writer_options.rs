//! How [`VideoWriter`] encodes: the codec and its settings.

use crate::frame::FrameRate;
#[cfg(doc)]
use crate::VideoWriter;

/// The video codec to encode with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Codec {
    /// H.264 through libx264 when this FFmpeg has it, else MPEG-4 Part 2.
    #[default]
    Auto,
    /// H.264 through libx264 (High profile, `crf` and `preset` apply).
    H264,
    /// MPEG-4 Part 2 (FFmpeg's own encoder, at quantiser 2): larger files, always there.
    Mpeg4,
}

/// How to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// The nominal frame rate: [`VideoWriter::write`] places frames one interval apart,
    /// and it is written as the stream's rate.
    pub frame_rate: FrameRate,
    /// The codec.
    pub codec: Codec,
    /// H.264 constant rate factor: 0 is lossless, 18 visually lossless, 23 x264's default.
    pub crf: u8,
    /// x264 speed preset (`ultrafast` ... `medium` ... `veryslow`).
    pub preset: String,
    /// Whether an existing file at the destination is replaced; when not, it is an error
    /// at [`VideoWriter::create`] (and the file is never touched).
    pub overwrite: bool,
}

impl WriterOptions {
    /// H.264 (else MPEG-4) at `frame_rate`, crf 18, preset `medium`; an existing file is
    /// not replaced.
    pub fn new(frame_rate: FrameRate) -> Self {
        Self {
            frame_rate,
            codec: Codec::Auto,
            crf: 18,
            preset: "medium".into(),
            overwrite: false,
        }
    }
}
