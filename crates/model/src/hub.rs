//! Downloads the released Depth Anything checkpoints from the Hugging Face hub into a cache
//! shared with Python's `huggingface_hub`.
//!
//! [`released`] maps a (version, encoder, head kind) triple onto the hub file that holds the
//! official checkpoint; [`download`] (or [`Hub::download`]) returns a local path to it,
//! fetching it only when the cache does not hold it yet.
//!
//! ```no_run
//! use anydepth_model::hub::{self, HubEncoder, HubKind, HubVersion};
//!
//! let file = hub::released(HubVersion::V2, HubEncoder::Vits, HubKind::Relative)?;
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

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The revision (branch) of every released file.
pub const DEFAULT_REVISION: &str = "main";

/// Redirect hops followed before giving up (the hub needs one, renamed repos two).
const MAX_REDIRECTS: usize = 10;

/// Size of the buffer the body is streamed through.
const CHUNK_BYTES: usize = 1 << 16;

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

/// Depth Anything release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubVersion {
    /// Depth Anything (2024-01).
    V1,
    /// Depth Anything V2 (2024-06).
    V2,
}

/// ViT encoder size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubEncoder {
    /// ViT-S/14.
    Vits,
    /// ViT-B/14.
    Vitb,
    /// ViT-L/14.
    Vitl,
    /// ViT-G/14.
    Vitg,
}

impl HubEncoder {
    /// The short name used in the checkpoint file names (`vits`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HubEncoder::Vits => "vits",
            HubEncoder::Vitb => "vitb",
            HubEncoder::Vitl => "vitl",
            HubEncoder::Vitg => "vitg",
        }
    }

    /// The size word used in the V2 repo names (`Small`, ...).
    fn size_word(self) -> &'static str {
        match self {
            HubEncoder::Vits => "Small",
            HubEncoder::Vitb => "Base",
            HubEncoder::Vitl => "Large",
            HubEncoder::Vitg => "Giant",
        }
    }
}

/// What the head predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubKind {
    /// Relative inverse depth (affine-invariant disparity).
    Relative,
    /// Metric depth fine-tuned on Hypersim (indoor, up to 20 m).
    MetricIndoor,
    /// Metric depth fine-tuned on Virtual KITTI 2 (outdoor, up to 80 m).
    MetricOutdoor,
}

/// Kind of hub repository a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoType {
    /// A model repository (`{endpoint}/{repo}/...`).
    Model,
    /// A Space (`{endpoint}/spaces/{repo}/...`); the V1 `.pth` files live in one.
    Space,
}

impl RepoType {
    /// URL path prefix before the repo id.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Space => "spaces/",
        }
    }

    /// Plural used in the cache folder name, as `huggingface_hub` spells it.
    fn cache_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Space => "spaces",
        }
    }
}

/// One file on the hub, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Model repository or Space.
    pub repo_type: RepoType,
    /// Repository id, `org/name`.
    pub repo: String,
    /// Path of the file inside the repository (may contain `/`).
    pub filename: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Expected sha256 (lowercase hex); `None` takes it from the hub's `X-Linked-Etag`.
    pub sha256: Option<String>,
    /// Expected size in bytes, when known.
    pub size: Option<u64>,
}

impl HubFile {
    /// A file of a model repository at [`DEFAULT_REVISION`], with no known checksum.
    pub fn model(repo: impl Into<String>, filename: impl Into<String>) -> Self {
        HubFile {
            repo_type: RepoType::Model,
            repo: repo.into(),
            filename: filename.into(),
            revision: DEFAULT_REVISION.to_string(),
            sha256: None,
            size: None,
        }
    }

    /// The download URL on `endpoint`: `{endpoint}/{repo}/resolve/{revision}/{filename}`.
    pub fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo_type.url_prefix(),
            self.repo,
            percent_encode(&self.revision, false),
            percent_encode(&self.filename, true),
        )
    }

    /// The repository's folder in the cache: `models--{org}--{name}`.
    pub fn cache_folder(&self) -> String {
        let mut name = self.repo_type.cache_prefix().to_string();
        for part in self.repo.split('/') {
            name.push_str("--");
            name.push_str(part);
        }
        name
    }

    /// Checks that the spec cannot escape the cache and that the sha256 is well formed.
    fn validate(&self) -> Result<(), HubError> {
        let invalid = |what, value: &str| HubError::Invalid {
            what,
            value: value.to_string(),
        };
        let repo_parts: Vec<&str> = self.repo.split('/').collect();
        if repo_parts.len() > 2 || !repo_parts.iter().all(|p| is_safe_component(p)) {
            return Err(invalid("hub repository id", &self.repo));
        }
        if !self.filename.split('/').all(is_safe_component) {
            return Err(invalid("hub file name", &self.filename));
        }
        if !self.revision.split('/').all(is_safe_component) {
            return Err(invalid("hub revision", &self.revision));
        }
        if let Some(sha) = &self.sha256 {
            if !is_sha256(sha) {
                return Err(invalid("sha256", sha));
            }
        }
        Ok(())
    }
}

/// A path component that stays where it is put (no `..`, no separators, not empty).
fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0', ':'])
}

/// 64 hex digits.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hub file holding the official checkpoint for `version`, `encoder` and `kind`.
///
/// V2 files live in the `depth-anything` organisation. The V1 `.pth` files live in the
/// `LiheYoung/Depth-Anything` Space under `checkpoints/` (the `LiheYoung/depth_anything_*14`
/// model repos hold `pytorch_model.bin` for `from_pretrained` instead). The sha256 and size
/// are filled in where docs/REFERENCE.md records them; the others come from the hub.
///
/// # Errors
/// [`HubError::NotPublished`] for combinations that were never released: any Giant
/// checkpoint, and V1 metric models (those are ZoeDepth networks, not Depth Anything heads).
pub fn released(
    version: HubVersion,
    encoder: HubEncoder,
    kind: HubKind,
) -> Result<HubFile, HubError> {
    let enc = encoder.as_str();
    let not_published = |what: String, note| Err(HubError::NotPublished { what, note });
    if encoder == HubEncoder::Vitg {
        return not_published(
            format!("Depth Anything {version:?} Giant ({})", kind_words(kind)),
            "",
        );
    }
    let mut file = match (version, kind) {
        (HubVersion::V1, HubKind::Relative) => HubFile {
            repo_type: RepoType::Space,
            ..HubFile::model(
                "LiheYoung/Depth-Anything",
                format!("checkpoints/depth_anything_{enc}14.pth"),
            )
        },
        (HubVersion::V1, _) => {
            return not_published(
                format!("Depth Anything V1 {}", kind_words(kind)),
                "; V1's metric models are ZoeDepth networks, which this crate does not run",
            );
        }
        (HubVersion::V2, HubKind::Relative) => HubFile::model(
            format!("depth-anything/Depth-Anything-V2-{}", encoder.size_word()),
            format!("depth_anything_v2_{enc}.pth"),
        ),
        (HubVersion::V2, HubKind::MetricIndoor | HubKind::MetricOutdoor) => {
            let (repo_word, file_word) = if kind == HubKind::MetricIndoor {
                ("Hypersim", "hypersim")
            } else {
                ("VKITTI", "vkitti")
            };
            HubFile::model(
                format!(
                    "depth-anything/Depth-Anything-V2-Metric-{repo_word}-{}",
                    encoder.size_word()
                ),
                format!("depth_anything_v2_metric_{file_word}_{enc}.pth"),
            )
        }
    };
    if let Some((sha256, size)) = known_checksum(version, encoder, kind) {
        file.sha256 = Some(sha256.to_string());
        file.size = size;
    }
    Ok(file)
}

/// sha256 (and size) of the released files docs/REFERENCE.md records.
fn known_checksum(
    version: HubVersion,
    encoder: HubEncoder,
    kind: HubKind,
) -> Option<(&'static str, Option<u64>)> {
    match (version, encoder, kind) {
        (HubVersion::V2, HubEncoder::Vits, HubKind::Relative) => Some((
            "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378",
            Some(99_218_434),
        )),
        (HubVersion::V2, HubEncoder::Vits, HubKind::MetricOutdoor) => Some((
            "9203e538d35255c90dda4b7fedb47ff33fe725497bcca3b1e53b3a65ee63f0cb",
            None,
        )),
        (HubVersion::V1, HubEncoder::Vits, HubKind::Relative) => Some((
            "59afe57cfd9f4284deaf5b753d954723d7136ae842fba3e068ba03537ca1e60e",
            Some(99_219_880),
        )),
        _ => None,
    }
}

/// `kind` in words, for messages.
fn kind_words(kind: HubKind) -> &'static str {
    match kind {
        HubKind::Relative => "relative depth",
        HubKind::MetricIndoor => "metric indoor (Hypersim)",
        HubKind::MetricOutdoor => "metric outdoor (VKITTI)",
    }
}

/// Where and how to download: endpoint, cache root, credentials, offline mode.
///
/// [`Hub::from_env`] reads the `huggingface_hub` environment variables; tests and embedders
/// build one directly with [`Hub::new`] and adjust the fields.
#[derive(Clone)]
pub struct Hub {
    /// Base URL of the hub, without a trailing slash.
    pub endpoint: String,
    /// Root of the cache (the directory holding `models--*` folders).
    pub cache_dir: PathBuf,
    /// Bearer token sent to the endpoint (never to the hosts it redirects to).
    pub token: Option<String>,
    /// Never touch the network; only cached files are returned.
    pub offline: bool,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of the response.
    pub read_timeout: Duration,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// What the responses told about the file before its body.
#[derive(Debug, Default)]
struct Metadata {
    /// `X-Linked-Etag` of the first response carrying one (the LFS sha256).
    linked_etag: Option<String>,
    /// `ETag` of the first endpoint response carrying one.
    etag: Option<String>,
    /// `X-Repo-Commit`: the commit the revision resolved to.
    commit: Option<String>,
}

impl Metadata {
    /// Records the headers of `resp`; `ETag` counts only from the endpoint itself, since a
    /// CDN's `ETag` is not the file's sha256.
    fn absorb(&mut self, resp: &ureq::Response, from_endpoint: bool) {
        let header = |name| resp.header(name).map(normalize_etag);
        if self.linked_etag.is_none() {
            self.linked_etag = header("x-linked-etag");
        }
        if self.etag.is_none() && from_endpoint {
            self.etag = header("etag");
        }
        if self.commit.is_none() {
            self.commit = resp
                .header("x-repo-commit")
                .map(|c| c.trim().to_string())
                .filter(|c| is_safe_component(c) && !c.contains('/'));
        }
    }

    /// The sha256 the hub reports, if its etag is one.
    fn sha256(&self) -> Option<String> {
        self.linked_etag
            .as_ref()
            .or(self.etag.as_ref())
            .filter(|e| is_sha256(e))
            .map(|e| e.to_ascii_lowercase())
    }
}

/// Strips `W/` and quotes from an etag, as `huggingface_hub` does.
fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_string()
}

/// `scheme://host:port` of a URL, lowercased.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}").to_ascii_lowercase()
}

/// Resolves a `Location` header against the URL it answered.
fn join_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = base.split_once("://").map_or("https", |(s, _)| s);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", origin(base));
    }
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let dir_end = base[..path_end]
        .rfind('/')
        .filter(|&i| i >= origin(base).len())
        .map_or(path_end, |i| i + 1);
    let dir = &base[..dir_end];
    if dir.ends_with('/') {
        format!("{dir}{location}")
    } else {
        format!("{dir}/{location}")
    }
}

/// `huggingface_hub`'s reading of a boolean variable.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

impl Hub {
    /// A hub at `endpoint` caching into `cache_dir`, online, without a token.
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Hub {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
            token: None,
            offline: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// Configuration from the environment, read the way `huggingface_hub` reads it.
    ///
    /// `HF_ENDPOINT` (default [`DEFAULT_ENDPOINT`]); cache root `HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub` (`HUGGINGFACE_HUB_CACHE` is read as an old spelling of
    /// `HF_HUB_CACHE`); token `HF_TOKEN`, else the file `HF_TOKEN_PATH`
    /// (default `$HF_HOME/token`, i.e. what `huggingface-cli login` wrote); offline mode when
    /// `HF_HUB_OFFLINE` is `1`, `ON`, `YES` or `TRUE`.
    ///
    /// # Errors
    /// [`HubError::NoCacheDir`] when no variable gives a cache root (no `HOME`).
    pub fn from_env() -> Result<Self, HubError> {
        Hub::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Hub::from_env`] with the variables looked up by `var`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, HubError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let home = get("HOME")
            .or_else(|| get("USERPROFILE"))
            .map(PathBuf::from);
        let hf_home = get("HF_HOME").map(PathBuf::from).or_else(|| {
            get("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .map(|c| c.join("huggingface"))
        });
        let cache_dir = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or(HubError::NoCacheDir)?;
        let token = get("HF_TOKEN").or_else(|| {
            let path = get("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .or_else(|| hf_home.as_ref().map(|h| h.join("token")))?;
            fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let endpoint = get("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let mut hub = Hub::new(endpoint, cache_dir);
        hub.token = token;
        hub.offline = get("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v));
        Ok(hub)
    }

    /// The download URL of `file` on this hub.
    pub fn url(&self, file: &HubFile) -> String {
        file.url(&self.endpoint)
    }

    /// The cached copy of `file`, if there is one; never touches the network.
    ///
    /// With a known sha256 the blob `blobs/{sha256}` decides, and a snapshot path leading to
    /// it is returned (made if missing). Without one, `snapshots/{commit}/{filename}` for the
    /// commit in `refs/{revision}` (or the revision itself) decides, as in
    /// `huggingface_hub`'s offline mode.
    ///
    /// # Errors
    /// [`HubError::Invalid`] for a malformed spec.
    pub fn cached(&self, file: &HubFile) -> Result<Option<PathBuf>, HubError> {
        file.validate()?;
        let storage = self.cache_dir.join(file.cache_folder());
        let mut snapshot_dirs = Vec::new();
        if let Ok(commit) = fs::read_to_string(storage.join("refs").join(&file.revision)) {
            let commit = commit.trim();
            if is_safe_component(commit) && !commit.contains('/') {
                snapshot_dirs.push(commit.to_string());
            }
        }
        snapshot_dirs.push(file.revision.clone());

        let Some(sha) = &file.sha256 else {
            return Ok(snapshot_dirs
                .iter()
                .map(|dir| storage.join("snapshots").join(dir).join(&file.filename))
                .find(|p| p.is_file()));
        };
        let blob = storage.join("blobs").join(sha.to_ascii_lowercase());
        let Ok(meta) = fs::metadata(&blob) else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Ok(None);
        }
        if let Some(size) = file.size {
            if meta.len() != size {
                tracing::warn!(
                    expected = size,
                    actual = meta.len(),
                    blob = %blob.display(),
                    "cached blob has the wrong size, ignoring it"
                );
                return Ok(None);
            }
        }
        // A snapshot of the revision, or of any commit, that leads to this blob.
        let mut candidates: Vec<PathBuf> = snapshot_dirs
            .iter()
            .map(|dir| storage.join("snapshots").join(dir).join(&file.filename))
            .collect();
        if let Ok(entries) = fs::read_dir(storage.join("snapshots")) {
            let mut others: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join(&file.filename))
                .collect();
            others.sort();
            candidates.extend(others);
        }
        if let Some(found) = candidates.into_iter().find(|c| leads_to(c, &blob)) {
            tracing::debug!(path = %found.display(), "using cached file");
            return Ok(Some(found));
        }
        let snapshot = storage
            .join("snapshots")
            .join(&file.revision)
            .join(&file.filename);
        match link_snapshot(&blob, &snapshot, &file.filename) {
            Ok(()) => Ok(Some(snapshot)),
            Err(error) => {
                tracing::warn!(%error, "cannot add a snapshot link, using the blob itself");
                Ok(Some(blob))
            }
        }
    }

    /// The local path of `file`: the cached copy, or a fresh verified download.
    ///
    /// `progress(done_bytes, total_bytes)` is called as the body arrives (not at all when
    /// the file is cached); `total_bytes` is `None` when the server sent no length.
    ///
    /// # Errors
    /// Every failure mode of [`HubError`]; after any of them the cache holds no blob, no
    /// snapshot link and no temporary file for `file`.
    pub fn download(
        &self,
        file: &HubFile,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<PathBuf, HubError> {
        if let Some(path) = self.cached(file)? {
            return Ok(path);
        }
        let url = self.url(file);
        if self.offline {
            return Err(HubError::Offline { url });
        }
        let storage = self.cache_dir.join(file.cache_folder());
        let blobs = storage.join("blobs");
        fs::create_dir_all(&blobs).map_err(|source| HubError::CacheNotWritable {
            path: blobs.clone(),
            source,
        })?;

        tracing::info!(%url, "downloading");
        let (response, meta) = self.open(&url)?;
        let sha = match (&file.sha256, meta.sha256()) {
            (Some(known), Some(reported)) if !known.eq_ignore_ascii_case(&reported) => {
                return Err(HubError::ChecksumMismatch {
                    expected: known.to_ascii_lowercase(),
                    actual: format!("{reported} (reported by the hub)"),
                    url,
                });
            }
            (Some(known), _) => known.to_ascii_lowercase(),
            (None, Some(reported)) => reported,
            (None, None) => return Err(HubError::NoChecksum { url }),
        };
        let total = response
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(expected), Some(actual)) = (file.size, total) {
            if expected != actual {
                return Err(HubError::SizeMismatch {
                    expected,
                    actual,
                    url,
                });
            }
        }

        let blob = blobs.join(&sha);
        let (tmp, received) = stream_to_temp(response, &blobs, &sha, total, &url, progress)?;
        if let Some(expected) = file.size {
            if expected != received {
                return Err(HubError::SizeMismatch {
                    expected,
                    actual: received,
                    url,
                });
            }
        }
        persist_blob(tmp, &blob)?;

        let snapshot_dir = meta.commit.as_deref().unwrap_or(&file.revision);
        let snapshot = storage
            .join("snapshots")
            .join(snapshot_dir)
            .join(&file.filename);
        link_snapshot(&blob, &snapshot, &file.filename).map_err(|source| {
            HubError::CacheNotWritable {
                path: snapshot.clone(),
                source,
            }
        })?;
        if let Some(commit) = &meta.commit {
            if *commit != file.revision {
                write_ref(&storage, &file.revision, commit)?;
            }
        }
        tracing::info!(path = %snapshot.display(), bytes = received, "downloaded");
        Ok(snapshot)
    }

    /// GETs `url`, following redirects by hand so that the hub's own headers (sha256 and
    /// commit) are seen, and the token goes to the endpoint only.
    fn open(&self, url: &str) -> Result<(ureq::Response, Metadata), HubError> {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.read_timeout)
            .user_agent(concat!("anydepth/", env!("CARGO_PKG_VERSION")))
            .build();
        let endpoint_origin = origin(&self.endpoint);
        let mut meta = Metadata::default();
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let from_endpoint = origin(&current) == endpoint_origin;
            let mut request = agent.get(&current).set("Accept-Encoding", "identity");
            if let (true, Some(token)) = (from_endpoint, &self.token) {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            match request.call() {
                Ok(response) => {
                    meta.absorb(&response, from_endpoint);
                    let status = response.status();
                    if !(300..400).contains(&status) {
                        return Ok((response, meta));
                    }
                    let Some(location) = response.header("location") else {
                        return Err(HubError::Http {
                            status,
                            status_text: format!("{} without Location", response.status_text()),
                            url: url.to_string(),
                        });
                    };
                    let next = join_location(&current, location);
                    tracing::debug!(status, from = %current, to = %next, "redirect");
                    current = next;
                }
                Err(ureq::Error::Status(404, _)) => {
                    return Err(HubError::NotFound {
                        url: url.to_string(),
                    });
                }
                Err(ureq::Error::Status(status, response)) => {
                    return Err(HubError::Http {
                        status,
                        status_text: response.status_text().to_string(),
                        url: url.to_string(),
                    });
                }
                Err(ureq::Error::Transport(transport)) => {
                    return Err(transport_error(&transport, url, &current));
                }
            }
        }
        Err(HubError::Http {
            status: 310,
            status_text: format!("more than {MAX_REDIRECTS} redirects"),
            url: url.to_string(),
        })
    }
}

/// Maps a connection-level failure onto [`HubError`].
fn transport_error(transport: &ureq::Transport, url: &str, current: &str) -> HubError {
    use ureq::ErrorKind as K;
    match transport.kind() {
        K::InvalidUrl | K::UnknownScheme => HubError::Invalid {
            what: "hub URL",
            value: current.to_string(),
        },
        kind => {
            let mut reason = kind.to_string();
            if let Some(message) = transport.message() {
                reason.push_str(": ");
                reason.push_str(message);
            }
            if let Some(source) = std::error::Error::source(transport) {
                reason.push_str(": ");
                reason.push_str(&source.to_string());
            }
            HubError::Unreachable {
                reason,
                url: url.to_string(),
            }
        }
    }
}

/// Streams the body into a temporary file in `blobs`, checking length and sha256; returns
/// the file and its length.
///
/// The temporary file deletes itself when dropped, so every error path leaves nothing.
fn stream_to_temp(
    response: ureq::Response,
    blobs: &Path,
    sha: &str,
    total: Option<u64>,
    url: &str,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(tempfile::NamedTempFile, u64), HubError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{sha}."))
        .suffix(".incomplete")
        .tempfile_in(blobs)
        .map_err(|source| HubError::CacheNotWritable {
            path: blobs.to_path_buf(),
            source,
        })?;
    let write_error = |source, tmp: &tempfile::NamedTempFile| HubError::CacheNotWritable {
        path: tmp.path().to_path_buf(),
        source,
    };
    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; CHUNK_BYTES];
    let mut done: u64 = 0;
    progress(0, total);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(HubError::Truncated {
                    received: done,
                    expected: total,
                    reason: e.to_string(),
                    url: url.to_string(),
                });
            }
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if let Err(e) = tmp.write_all(chunk) {
            return Err(write_error(e, &tmp));
        }
        done += n as u64;
        progress(done, total);
    }
    if let Some(expected) = total {
        if done != expected {
            return Err(HubError::Truncated {
                received: done,
                expected: total,
                reason: "connection closed early".to_string(),
                url: url.to_string(),
            });
        }
    }
    let actual = hex(&hasher.finalize());
    if actual != sha {
        return Err(HubError::ChecksumMismatch {
            expected: sha.to_string(),
            actual,
            url: url.to_string(),
        });
    }
    if let Err(e) = tmp.as_file().sync_all() {
        return Err(write_error(e, &tmp));
    }
    Ok((tmp, done))
}

/// Lowercase hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves a verified temporary file to its blob path, readable by all like any cache file.
fn persist_blob(tmp: tempfile::NamedTempFile, blob: &Path) -> Result<(), HubError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600 files; huggingface_hub's blobs follow the umask (0644).
        let _ = tmp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o644));
    }
    tmp.persist(blob)
        .map(|_| ())
        .map_err(|e| HubError::CacheNotWritable {
            path: blob.to_path_buf(),
            source: e.error,
        })
}

/// Whether `path` exists and is (or leads to) the same file as `blob`.
fn leads_to(path: &Path, blob: &Path) -> bool {
    match (fs::canonicalize(path), fs::canonicalize(blob)) {
        (Ok(a), Ok(b)) if a == b => true,
        // Without symlinks huggingface_hub copies blobs into the snapshot.
        (Ok(_), Ok(_)) if cfg!(not(unix)) => {
            matches!((fs::metadata(path), fs::metadata(blob)), (Ok(a), Ok(b)) if a.len() == b.len())
        }
        _ => false,
    }
}

/// Makes `snapshot` a relative symlink to `blob` (a copy where symlinks are unavailable),
/// replacing whatever was there atomically.
fn link_snapshot(blob: &Path, snapshot: &Path, filename: &str) -> io::Result<()> {
    let dir = snapshot.parent().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "snapshot path has no parent")
    })?;
    fs::create_dir_all(dir)?;
    let blob_name = blob
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "blob path has no name"))?;
    // From snapshots/{commit}/{filename...} up to the repo folder, then into blobs/.
    let mut target = PathBuf::new();
    for _ in 0..filename.split('/').count() + 1 {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob_name);

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp_name = format!(
        ".{}.{}.{}.tmp",
        snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let made = make_link(&target, blob, &tmp);
    let result = made.and_then(|()| fs::rename(&tmp, snapshot));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A relative symlink at `link` pointing to `target`.
#[cfg(unix)]
fn make_link(target: &Path, _blob: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// A copy of `blob` at `link` (symlinks need privileges on Windows).
#[cfg(not(unix))]
fn make_link(_target: &Path, blob: &Path, link: &Path) -> io::Result<()> {
    fs::copy(blob, link).map(|_| ())
}

/// Writes `refs/{revision}` = `commit`, without a newline, as huggingface_hub does.
fn write_ref(storage: &Path, revision: &str, commit: &str) -> Result<(), HubError> {
    let path = storage.join("refs").join(revision);
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = File::create(&path)?;
        f.write_all(commit.as_bytes())
    };
    write().map_err(|source| HubError::CacheNotWritable {
        path: path.clone(),
        source,
    })
}

/// Downloads `file` (or finds it in the cache) with the configuration of [`Hub::from_env`].
///
/// # Errors
/// See [`Hub::from_env`] and [`Hub::download`].
pub fn download(
    file: &HubFile,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf, HubError> {
    Hub::from_env()?.download(file, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_cache_folders() {
        let v1 = released(HubVersion::V1, HubEncoder::Vitb, HubKind::Relative);
        let v1 = v1.expect("V1 vitb is released");
        assert_eq!(
            v1.url("https://huggingface.co/"),
            "https://huggingface.co/spaces/LiheYoung/Depth-Anything/resolve/main/\
             checkpoints/depth_anything_vitb14.pth"
        );
        assert_eq!(v1.cache_folder(), "spaces--LiheYoung--Depth-Anything");
        let mut f = HubFile::model("a/b", "x y.pth");
        f.revision = "refs/pr/1".into();
        assert_eq!(
            f.url("http://h"),
            "http://h/a/b/resolve/refs%2Fpr%2F1/x%20y.pth"
        );
        assert_eq!(f.cache_folder(), "models--a--b");
    }

    #[test]
    fn etags_and_locations() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(
            join_location("http://h:1/a/b/c?x=1", "/d"),
            "http://h:1/d".to_string()
        );
        assert_eq!(join_location("http://h:1/a/b", "c"), "http://h:1/a/c");
        assert_eq!(join_location("https://h/a", "//cdn/x"), "https://cdn/x");
        assert_eq!(join_location("http://h", "x"), "http://h/x");
        assert_eq!(origin("HTTP://H:1/a"), "http://h:1");
    }

    #[test]
    fn environment_like_huggingface_hub() -> Result<(), HubError> {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let hub = Hub::from_vars(vars(&[("HOME", "/h"), ("HF_TOKEN_PATH", "/nonexistent")]))?;
        assert_eq!(hub.cache_dir, Path::new("/h/.cache/huggingface/hub"));
        assert_eq!(hub.endpoint, DEFAULT_ENDPOINT);
        assert_eq!((hub.token, hub.offline), (None, false));
        let hub = Hub::from_vars(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]))?;
        assert_eq!(hub.cache_dir, Path::new("/x/huggingface/hub"));
        let hub = Hub::from_vars(vars(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")]))?;
        assert_eq!(hub.cache_dir, Path::new("/hf/hub"));
        let hub = Hub::from_vars(vars(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_ENDPOINT", "http://mirror/"),
            ("HF_TOKEN", "hf_x"),
            ("HF_HUB_OFFLINE", "yes"),
        ]))?;
        assert_eq!(hub.cache_dir, Path::new("/c"));
        assert_eq!(hub.endpoint, "http://mirror");
        assert_eq!(hub.token.as_deref(), Some("hf_x"));
        assert!(hub.offline);
        assert!(
            !format!("{hub:?}").contains("hf_x"),
            "the token is redacted"
        );
        assert!(matches!(
            Hub::from_vars(vars(&[("HF_HUB_OFFLINE", "1")])),
            Err(HubError::NoCacheDir)
        ));
        Ok(())
    }

    #[test]
    fn rejects_escaping_specs() {
        for (repo, name) in [
            ("a/../b", "f"),
            ("a/b", "../f"),
            ("a/b/c", "f"),
            ("a/b", ""),
        ] {
            let f = HubFile::model(repo, name);
            assert!(matches!(f.validate(), Err(HubError::Invalid { .. })));
        }
    }
}
