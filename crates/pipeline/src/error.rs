//! The error type of `anydepth-pipeline`: a refusal of the request, an error of a library
//! below, or either with what the pipeline was doing around it.

use std::fmt;

/// Errors of `anydepth-pipeline`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be served as given; the message says why and what to pass.
    #[error("{0}")]
    Invalid(String),

    /// What the pipeline was doing when `source` failed.
    #[error("{message}")]
    Context {
        /// What the pipeline was doing.
        message: String,
        /// The error it met.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// What an observer of the job (a logger, a viewer) met; the job stops.
    #[error(transparent)]
    Observer(crate::BoxError),

    /// An error of `anydepth-core` (images, depth files, cameras, poses).
    #[error(transparent)]
    Core(#[from] anydepth_core::Error),

    /// An error of `anydepth-geometry` (unprojection, fusion, meshes, clouds).
    #[error(transparent)]
    Geometry(#[from] anydepth_geometry::Error),

    /// An error of `anydepth-model` (downloading weights, loading or running the network).
    #[error(transparent)]
    Model(#[from] anydepth_model::Error),

    /// An error of `anydepth-video` (decoding or encoding a video).
    #[error(transparent)]
    Video(#[from] anydepth_video::Error),

    /// An I/O error of the standard library (`std::io::Error`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what the pipeline was doing to an error, as `anyhow::Context` does.
pub trait Context<T> {
    /// Wraps the error with `message`.
    ///
    /// # Errors
    /// The wrapped error.
    fn context(self, message: impl fmt::Display) -> Result<T>;

    /// Wraps the error with the message `f` makes (only on error).
    ///
    /// # Errors
    /// The wrapped error.
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            message: message.to_string(),
            source: Box::new(e),
        })
    }

    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error::Context {
            message: f().to_string(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(message.to_string()))
    }

    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(f().to_string()))
    }
}

/// The error and its causes, joined by `": "` (as `anyhow` prints `{:#}`).
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Returns [`Error::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}

/// Returns [`Error::Invalid`] with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::error::bail!($($arg)*);
        }
    };
}

pub(crate) use {bail, ensure};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_chain_read_as_anyhow_prints_them() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Err::<(), _>(io)
            .context("cannot read depth.png")
            .expect_err("an error");
        assert_eq!(err.to_string(), "cannot read depth.png");
        assert_eq!(chain_text(&err), "cannot read depth.png: no such file");
        let missing = None::<u8>.context("nothing there").expect_err("an error");
        assert_eq!(chain_text(&missing), "nothing there");
    }
}
