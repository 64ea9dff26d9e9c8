//! Downloads the released Depth Anything checkpoints from the Hugging Face hub into a cache
//! shared with Python's `huggingface_hub`.
//!
//! [`released`] maps a (version, encoder, head kind) triple onto the hub file that holds the
//! official checkpoint; [`download`] (or [`Hub::download`]) returns a local path to it,
//! fetching it only when the cache does not hold it yet.
//!
//! ```no_run
//! use anydepth_model::config::{Encoder, Version};
//! use anydepth_model::hub;
//!
//! let file = hub::released(Version::V2, Encoder::Vits, None)?;
//! let path = hub::download(&file, &mut |done_bytes, total_bytes| {
//!     tracing::debug!(done_bytes, ?total_bytes, "downloading");
//! })?;
//! println!("checkpoint at {}", path.display());
//! # Ok::<(), hub::HubError>(())
//! ```
//!
//! # The cache
//! The layout is `huggingface_hub`'s, so a file fetched by either side is reused by the other:
//! `{cache}/models--{org}--{name}/blobs/{sha256}` holds the bytes,
//! `snapshots/{commit}/{filename}` is a relative symlink to the blob and `refs/{revision}`
//! holds the commit the revision resolved to. The cache root is `HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
//! A cached file is returned without any network access, so `HF_HUB_OFFLINE=1` works once a
//! file is cached.
//!
//! # Integrity
//! Every download is checked against a sha256: the one in the table of released files when
//! known, else the one the hub reports for LFS files (`X-Linked-Etag`, or `ETag`). A file
//! with neither is not downloaded. The bytes go to a temporary file in the `blobs`
//! directory, which is renamed to its final name only after the size and checksum matched,
//! so an interrupted or corrupt download never leaves a file where the cache looks.

mod client;
mod releases;

pub use client::{download, Hub};

pub use releases::{released, released_da3, released_video, HubFile, RepoType};
use std::io;
use std::path::PathBuf;

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The revision (branch) of every released file.
pub const DEFAULT_REVISION: &str = "main";

/// Redirect hops followed before giving up (the hub needs one, renamed repos two).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Size of the buffer the body is streamed through.
pub(crate) const CHUNK_BYTES: usize = 1 << 16;

/// Errors of the hub download. Each message ends with the URL or path it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The requested checkpoint was never released (e.g. V2 Giant).
    #[error("{what} has not been released on the Hugging Face hub{note}")]
    NotPublished {
        /// The checkpoint asked for, in words.
        what: String,
        /// Why, when there is more to say (starts with `; `), else empty.
        note: &'static str,
    },

    /// A file spec, endpoint or environment variable is malformed.
    #[error("invalid {what}: {value:?}")]
    Invalid {
        /// Which value is wrong.
        what: &'static str,
        /// The value as given.
        value: String,
    },

    /// The hub answered 404.
    #[error("file not found on the hub: {url}")]
    NotFound {
        /// The `resolve` URL asked for.
        url: String,
    },

    /// The hub answered with an error status other than 404.
    #[error("the hub answered HTTP {status} {status_text}{}: {url}", auth_hint(*.status))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase the server gave.
        status_text: String,
        /// The `resolve` URL asked for.
        url: String,
    },

    /// No connection to the hub (connection refused, DNS failure, timeout, ...).
    #[error(
        "the Hugging Face hub is unreachable ({reason}); download the file by hand and pass \
         `--weights FILE`: {url}"
    )]
    Unreachable {
        /// What went wrong, from the HTTP client.
        reason: String,
        /// The `resolve` URL to download by hand.
        url: String,
    },

    /// Offline mode (`HF_HUB_OFFLINE`) is on and the file is not in the cache.
    #[error(
        "offline mode (HF_HUB_OFFLINE) is on and the file is not cached; download it by hand \
         and pass `--weights FILE`: {url}"
    )]
    Offline {
        /// The `resolve` URL to download by hand.
        url: String,
    },

    /// The connection ended before the whole body arrived.
    #[error("download truncated after {received} of {} bytes ({reason}): {url}",
        .expected.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string()))]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes announced by `Content-Length`, when it was sent.
        expected: Option<u64>,
        /// Why the transfer stopped.
        reason: String,
        /// The `resolve` URL asked for.
        url: String,
    },

    /// The file's size differs from the size in the table of released files.
    #[error("size mismatch: expected {expected} bytes, the hub has {actual}: {url}")]
    SizeMismatch {
        /// Size from the table of released files.
        expected: u64,
        /// Size announced or received.
        actual: u64,
        /// The `resolve` URL asked for.
        url: String,
    },

    /// The bytes (or the sha256 the hub reports) do not match the expected sha256.
    #[error("checksum mismatch: expected sha256 {expected}, got {actual}: {url}")]
    ChecksumMismatch {
        /// The sha256 the file must have.
        expected: String,
        /// The sha256 of what was received (or reported by the hub).
        actual: String,
        /// The `resolve` URL asked for.
        url: String,
    },

    /// Neither the table nor the hub gives a sha256, so the file cannot be verified.
    #[error(
        "no sha256 known for the file and the hub sent none (no X-Linked-Etag or ETag \
         holding one); refusing an unverified download: {url}"
    )]
    NoChecksum {
        /// The `resolve` URL asked for.
        url: String,
    },

    /// No cache directory could be determined from the environment.
    #[error("cannot find a cache directory: set HF_HUB_CACHE, HF_HOME or HOME")]
    NoCacheDir,

    /// The cache directory (or a file in it) cannot be created or written.
    #[error("cannot write to the cache directory ({source}): {}", .path.display())]
    CacheNotWritable {
        /// The path that could not be written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Extra advice appended to 401/403 answers.
fn auth_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (gated or private file? set HF_TOKEN)",
        _ => "",
    }
}
