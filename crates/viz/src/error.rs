//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong while starting a recording, logging or reading one back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--spawn` found no `rerun` executable.
    #[error(
        "no Rerun viewer found: `rerun` is not on PATH. Install the viewer of the same \
         version with `pip install rerun-sdk=={version}` or `cargo install rerun-cli --version \
         {version} --locked`, or record to a file with --save FILE.rrd",
        version = crate::RERUN_VERSION
    )]
    ViewerNotFound,

    /// A spawned viewer never started listening.
    #[error(
        "the Rerun viewer was started but does not listen on port {port} after {waited_secs} s \
         (does it have a display? --save FILE.rrd or --serve work without one)"
    )]
    ViewerDidNotStart {
        /// The port the viewer was asked to listen on.
        port: u16,
        /// How long it was waited for, in seconds.
        waited_secs: u64,
    },

    /// Nothing listens where `--connect` points.
    #[error("no Rerun viewer listens at {url}: start one there first (`rerun`), or use --spawn")]
    NotListening {
        /// The URL given to `--connect`.
        url: String,
    },

    /// A URL, address or memory limit that does not parse.
    #[error("{0}")]
    InvalidOption(String),

    /// Data that cannot be logged as it is (sizes that disagree).
    #[error("{0}")]
    Invalid(String),

    /// Starting or feeding the recording stream failed.
    #[error(transparent)]
    Stream(#[from] rerun::RecordingStreamError),

    /// Building Arrow arrays failed (a type the logged component does not expect).
    #[error("cannot build Arrow data for Rerun: {0}")]
    Arrow(#[from] rerun::external::arrow::error::ArrowError),

    /// Flushing the recording failed.
    #[error("cannot flush the recording: {0}")]
    Flush(#[from] rerun::sink::SinkFlushError),

    /// Reading a recording back failed.
    #[error("cannot read the recording {}: {message}", path.display())]
    Read {
        /// The `.rrd` file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
