//! The error type of `anydepth-serve`.

/// Errors of `anydepth-serve`: why the service could not start or stopped abnormally
/// (errors of single requests are answered to their clients, never returned here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be served as given; the message says why and what to pass.
    #[error("{0}")]
    Invalid(String),

    /// The model could not be loaded (or its weights found).
    #[error("cannot load the model")]
    Model(#[source] anydepth_pipeline::Error),

    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },

    /// The HTTP server failed (its runtime could not start, or it stopped with an error).
    #[error("the HTTP server failed")]
    Server(#[source] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
