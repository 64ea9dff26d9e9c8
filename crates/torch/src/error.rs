//! The error type of `anydepth-torch`.

use std::path::PathBuf;

/// Errors of `anydepth-torch`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint could not be read at all.
    #[error("cannot read checkpoint ({reason}): {}", path.display())]
    Checkpoint {
        /// What went wrong.
        reason: String,
        /// The checkpoint file.
        path: PathBuf,
    },

    /// A checkpoint could not be written (the previous file at `path`, if any, is intact).
    #[error("cannot write checkpoint ({reason}): {}", path.display())]
    Export {
        /// What went wrong.
        reason: String,
        /// The file that was to be written.
        path: PathBuf,
    },

    /// A checkpoint was read but is not a Depth Anything model we know.
    #[error("not a Depth Anything checkpoint ({reason}): {}", path.display())]
    UnknownModel {
        /// Why it is not recognised.
        reason: String,
        /// The checkpoint file.
        path: PathBuf,
    },

    /// A checkpoint's tensors do not match the model it was recognised as.
    #[error("checkpoint does not match {model}:{details}\n  in {}", path.display())]
    TensorMismatch {
        /// The model the checkpoint was recognised as.
        model: String,
        /// The missing, unexpected and misshapen tensors, one per line.
        details: String,
        /// The checkpoint file.
        path: PathBuf,
    },

    /// A request the model cannot serve (bad input size, unavailable device, ...).
    #[error("{0}")]
    Invalid(String),

    /// Decoding an image failed.
    #[error(transparent)]
    Image(#[from] anydepth_core::Error),

    /// LibTorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for anydepth_model::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(message) => anydepth_model::Error::Invalid(message),
            other => anydepth_model::Error::Engine(Box::new(other)),
        }
    }
}

impl From<anydepth_model::Error> for Error {
    fn from(e: anydepth_model::Error) -> Self {
        match e {
            anydepth_model::Error::Invalid(message) => Error::Invalid(message),
            other => Error::Invalid(other.to_string()),
        }
    }
}
