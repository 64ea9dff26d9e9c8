//! The HTTP client: downloads into the `huggingface_hub` cache layout, with redirects,
//! checksums, offline mode and snapshot links.

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::releases::{is_safe_component, is_sha256};
use super::{HubError, HubFile, CHUNK_BYTES, DEFAULT_ENDPOINT, MAX_REDIRECTS};

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
    use super::super::releases::*;
    use super::*;
    use crate::config::{Encoder, Version};

    #[test]
    fn urls_and_cache_folders() {
        let v1 = released(Version::V1, Encoder::Vitb, None);
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
