//! The video API of a build without FFmpeg (the `ffmpeg` feature off): the same types, and
//! every attempt to open or write a video fails with [`Error::NoFfmpeg`].

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::queue::FrameQueue;
use crate::source::{Mode, OpenOptions, VideoInfo};
use crate::writer_options::WriterOptions;

/// Never made: there is nothing to decode with.
pub(crate) struct Decoder(Infallible);

impl Decoder {
    pub(crate) fn run(self, _queue: &FrameQueue) {
        match self.0 {}
    }
}

/// Fails: no FFmpeg to open `input` with.
pub(crate) fn open(
    input: &Path,
    _url: &str,
    _mode: Mode,
    _options: &OpenOptions,
    _stop: &Arc<AtomicBool>,
) -> Result<(VideoInfo, Decoder)> {
    Err(Error::NoFfmpeg(format!("read {}", input.display())))
}

/// Writes RGB8 frames into a video file, in a build with FFmpeg; in this one,
/// [`create`](Self::create) fails with [`Error::NoFfmpeg`] and no writer exists.
pub struct VideoWriter(Infallible);

impl VideoWriter {
    /// Fails: this build has no FFmpeg to encode with.
    ///
    /// # Errors
    /// Always [`Error::NoFfmpeg`].
    pub fn create(
        path: &Path,
        _width: u32,
        _height: u32,
        _options: &WriterOptions,
    ) -> Result<Self> {
        Err(Error::NoFfmpeg(format!("write {}", path.display())))
    }

    /// Never called: no writer exists.
    ///
    /// # Errors
    /// None.
    pub fn write(&mut self, _pixels: &[[u8; 3]]) -> Result<()> {
        match self.0 {}
    }

    /// Never called: no writer exists.
    ///
    /// # Errors
    /// None.
    pub fn write_at(&mut self, _pixels: &[[u8; 3]], _time_secs: f64) -> Result<()> {
        match self.0 {}
    }

    /// Never called: no writer exists.
    ///
    /// # Errors
    /// None.
    pub fn finish(self) -> Result<()> {
        match self.0 {}
    }

    /// Never called: no writer exists.
    pub fn frames_written(&self) -> u64 {
        match self.0 {}
    }

    /// Never called: no writer exists.
    pub fn encoded_size(&self) -> (u32, u32) {
        match self.0 {}
    }

    /// Never called: no writer exists.
    pub fn encoder_name(&self) -> &'static str {
        match self.0 {}
    }
}

impl std::fmt::Debug for VideoWriter {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameRate, VideoSource};

    #[test]
    fn videos_cannot_be_opened_or_written() {
        let read = VideoSource::open("clip.mp4", &OpenOptions::default());
        assert!(matches!(read, Err(Error::NoFfmpeg(_))), "{read:?}");
        let options = WriterOptions::new(FrameRate::new(30, 1));
        let write = VideoWriter::create(Path::new("out.mp4"), 4, 4, &options);
        assert!(matches!(write, Err(Error::NoFfmpeg(_))), "{write:?}");
    }
}
