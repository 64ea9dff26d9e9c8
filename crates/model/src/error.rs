//! The error type of `anydepth-model`.

/// Errors of `anydepth-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request the model cannot serve (bad input size, unavailable device, ...).
    #[error("{0}")]
    Invalid(String),

    /// Downloading weights failed.
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),

    /// The engine that runs the network failed (reading the checkpoint, LibTorch, ...).
    #[error(transparent)]
    Engine(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
