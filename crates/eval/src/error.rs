//! The error type of `anydepth-eval`.

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

    /// An error of `anydepth-core` (reading an image or a depth file).
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

/// Returns [`Error::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}

pub(crate) use bail;
