//! The error type of `anydepth-eval`.

use std::fmt;

/// Errors of `anydepth-eval`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments or files that cannot work (sizes that disagree, a malformed dataset, ...).
    #[error("{0}")]
    Invalid(String),

    /// An evaluation found no pixel to compare (no valid ground truth in the range and
    /// crop); the message says which range and crop.
    #[error("{0}")]
    NoValidPixels(String),

    /// What was being read when `source` failed.
    #[error("{message}")]
    Context {
        /// What was being read.
        message: String,
        /// The error it met.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An error of `anydepth-core` (images, depth files).
    #[error(transparent)]
    Core(#[from] anydepth_core::Error),

    /// An error of `anydepth-geometry` (fitting the scale and shift).
    #[error(transparent)]
    Geometry(#[from] anydepth_geometry::Error),

    /// An error of `anydepth-pipeline`.
    #[error(transparent)]
    Pipeline(#[from] anydepth_pipeline::Error),

    /// An error of `anydepth-model` (running the network).
    #[error(transparent)]
    Model(#[from] anydepth_model::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being read to an error.
pub(crate) trait Context<T> {
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error::Context {
            message: f().to_string(),
            source: Box::new(e),
        })
    }
}

/// Returns [`Error::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}

pub(crate) use bail;
