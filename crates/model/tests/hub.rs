//! Tests of the hub download against a tiny HTTP/1.1 server on 127.0.0.1.
//!
//! Each test starts its own server (a thread serving a fixed list of replies, one per
//! connection, then closing its port) and uses its own temporary cache, so tests run in
//! parallel without touching the process environment.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use anydepth_model::config::{Encoder, Metric, Version};
use anydepth_model::hub::{released, released_video, Hub, HubError, HubFile, RepoType};
use sha2::{Digest, Sha256};

/// One canned HTTP response.
struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `Content-Length` to announce; `None` announces the true length.
    content_length: Option<usize>,
}

impl Reply {
    fn ok(body: &[u8]) -> Self {
        Reply {
            status: "200 OK",
            headers: Vec::new(),
            body: body.to_vec(),
            content_length: None,
        }
    }

    fn status(status: &'static str) -> Self {
        Reply {
            status,
            ..Reply::ok(b"error page")
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A server answering one connection per reply, in order, then closing its port.
struct Server {
    endpoint: String,
    /// The request heads it received, once joined.
    thread: JoinHandle<Vec<String>>,
}

impl Server {
    fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let thread = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else {
                    break;
                };
                match serve_one(stream, &reply) {
                    Ok(head) => requests.push(head),
                    Err(e) => requests.push(format!("server error: {e}")),
                }
            }
            requests // the listener drops here: the port is closed
        });
        Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            thread,
        }
    }

    /// Waits until every reply was served and the port is closed.
    fn finish(self) -> Vec<String> {
        self.thread.join().expect("server thread")
    }
}

fn serve_one(mut stream: TcpStream, reply: &Reply) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = reply.content_length.unwrap_or(reply.body.len());
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Length: {length}\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()?;
    // A client that has read the whole reply may close first; then shutting down fails with
    // "not connected", and the request still counts.
    match stream.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() != std::io::ErrorKind::NotConnected => return Err(e),
        _ => {}
    }
    Ok(head)
}

/// Deterministic pseudo-random bytes (an LCG), enough to span several read chunks.
fn payload(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn spec(sha256: Option<String>) -> HubFile {
    HubFile {
        sha256,
        ..HubFile::model("depth-anything/Test-Model", "weights.pth")
    }
}

fn hub(endpoint: &str, cache: &Path) -> Hub {
    let mut hub = Hub::new(endpoint, cache);
    hub.connect_timeout = Duration::from_secs(5);
    hub.read_timeout = Duration::from_secs(5);
    hub
}

/// Every regular file or symlink under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// After a failure: no blob, no snapshot, no temporary file, no ref.
fn assert_cache_clean(cache: &Path) {
    let left = files_under(cache);
    assert!(left.is_empty(), "files left in the cache: {left:?}");
}

fn no_progress() -> impl FnMut(u64, Option<u64>) {
    |_, _| {}
}

#[test]
fn success_lands_in_cache_and_is_reused_offline() -> anyhow::Result<()> {
    let body = payload(200_000);
    let sha = sha256_hex(&body);
    let server = Server::start(vec![Reply::ok(&body).header("X-Repo-Commit", COMMIT)]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let file = spec(Some(sha.clone()));

    let mut calls: Vec<(u64, Option<u64>)> = Vec::new();
    let path = hub.download(&file, &mut |done, total| calls.push((done, total)))?;

    let repo = cache.path().join("models--depth-anything--Test-Model");
    assert_eq!(
        path,
        repo.join("snapshots").join(COMMIT).join("weights.pth")
    );
    assert_eq!(std::fs::read(&path)?, body);
    let blob = repo.join("blobs").join(&sha);
    assert_eq!(sha256_hex(&std::fs::read(&blob)?), sha);
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(&path)?,
        Path::new("../../blobs").join(&sha),
        "snapshot must be a relative symlink to the blob, as huggingface_hub makes it"
    );
    assert_eq!(std::fs::read_to_string(repo.join("refs/main"))?, COMMIT);
    assert_eq!(calls.last(), Some(&(200_000, Some(200_000))));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(
        files_under(cache.path()),
        vec![
            blob.clone(),
            repo.join("refs/main"),
            repo.join("snapshots").join(COMMIT).join("weights.pth")
        ],
        "no temporary files may remain"
    );

    // The request went to the resolve URL.
    let requests = server.finish();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /depth-anything/Test-Model/resolve/main/weights.pth "),
        "{}",
        requests[0]
    );

    // The server is gone: only the cache can answer, online or offline.
    let mut called = false;
    let again = hub.download(&file, &mut |_, _| called = true)?;
    assert_eq!(again, path);
    assert!(!called, "a cached file reports no progress");
    let mut offline = hub.clone();
    offline.offline = true;
    assert_eq!(offline.download(&file, &mut no_progress())?, path);
    // Without a known sha256 the ref and snapshot find it too.
    assert_eq!(offline.download(&spec(None), &mut no_progress())?, path);
    Ok(())
}

#[test]
fn not_found_names_the_url() -> anyhow::Result<()> {
    let server = Server::start(vec![Reply::status("404 Not Found")]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let err = hub
        .download(&spec(Some("0".repeat(64))), &mut no_progress())
        .expect_err("404 must fail");
    let url = format!(
        "{}/depth-anything/Test-Model/resolve/main/weights.pth",
        server.endpoint
    );
    assert!(matches!(err, HubError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("file not found on the hub: {url}"));
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn other_http_status_is_reported() -> anyhow::Result<()> {
    let server = Server::start(vec![Reply::status("503 Service Unavailable")]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let err = hub
        .download(&spec(Some("0".repeat(64))), &mut no_progress())
        .expect_err("503 must fail");
    let msg = err.to_string();
    assert!(matches!(err, HubError::Http { status: 503, .. }), "{err:?}");
    assert!(
        msg.contains("503") && msg.contains("/resolve/main/weights.pth"),
        "{msg}"
    );
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn truncated_body_leaves_nothing() -> anyhow::Result<()> {
    let body = payload(100_000);
    let mut reply = Reply::ok(&body[..60_000]);
    reply.content_length = Some(body.len());
    let server = Server::start(vec![reply]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let err = hub
        .download(&spec(Some(sha256_hex(&body))), &mut no_progress())
        .expect_err("a short body must fail");
    match &err {
        HubError::Truncated {
            received, expected, ..
        } => {
            assert_eq!(*received, 60_000);
            assert_eq!(*expected, Some(100_000));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(
        err.to_string().contains("/resolve/main/weights.pth"),
        "{err}"
    );
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn wrong_checksum_leaves_nothing() -> anyhow::Result<()> {
    let body = payload(70_000);
    let server = Server::start(vec![Reply::ok(&body).header("X-Repo-Commit", COMMIT)]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let expected = sha256_hex(b"something else");
    let err = hub
        .download(&spec(Some(expected.clone())), &mut no_progress())
        .expect_err("wrong content must fail");
    let msg = err.to_string();
    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err:?}");
    assert!(msg.contains(&expected), "{msg}");
    assert!(msg.contains(&sha256_hex(&body)), "{msg}");
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn sha256_from_linked_etag_across_a_redirect() -> anyhow::Result<()> {
    // As on huggingface.co: the hub answers 302 with the LFS sha256 in X-Linked-Etag and the
    // commit; the CDN's own ETag is something else and must be ignored.
    let body = payload(150_000);
    let sha = sha256_hex(&body);
    let server = Server::start(vec![
        Reply::status("302 Found")
            .header("Location", "/cdn/blob?signature=x")
            .header("X-Linked-Etag", &format!("\"{sha}\""))
            .header("X-Repo-Commit", COMMIT)
            .header("ETag", "\"0123abcd\""),
        Reply::ok(&body).header("ETag", "\"cdn-md5-not-a-sha\""),
    ]);
    let cache = tempfile::tempdir()?;
    let mut hub = hub(&server.endpoint, cache.path());
    hub.token = Some("hf_secret".into());
    let path = hub.download(&spec(None), &mut no_progress())?;
    let repo = cache.path().join("models--depth-anything--Test-Model");
    assert_eq!(
        path,
        repo.join("snapshots").join(COMMIT).join("weights.pth")
    );
    assert_eq!(std::fs::read(repo.join("blobs").join(&sha))?, body);
    let requests = server.finish();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].starts_with("GET /cdn/blob?signature=x "),
        "{}",
        requests[1]
    );
    let has_token = |r: &String| {
        r.to_ascii_lowercase()
            .contains("authorization: bearer hf_secret")
    };
    assert!(
        has_token(&requests[0]),
        "token goes to the endpoint: {requests:?}"
    );
    // Same origin here, so the token is sent on the redirect too.
    assert!(has_token(&requests[1]));
    Ok(())
}

#[test]
fn sha256_from_weak_etag() -> anyhow::Result<()> {
    let body = payload(10_000);
    let sha = sha256_hex(&body);
    let server = Server::start(vec![
        Reply::ok(&body).header("ETag", &format!("W/\"{sha}\""))
    ]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let path = hub.download(&spec(None), &mut no_progress())?;
    // No commit header: the snapshot is named after the revision.
    let repo = cache.path().join("models--depth-anything--Test-Model");
    assert_eq!(path, repo.join("snapshots/main/weights.pth"));
    assert_eq!(std::fs::read(&path)?, body);
    assert!(repo.join("blobs").join(&sha).is_file());
    assert!(!repo.join("refs").exists());
    server.finish();
    Ok(())
}

#[test]
fn etag_that_does_not_match_the_body_leaves_nothing() -> anyhow::Result<()> {
    let body = payload(10_000);
    let lie = sha256_hex(b"other");
    let server = Server::start(vec![Reply::ok(&body).header("X-Linked-Etag", &lie)]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let err = hub
        .download(&spec(None), &mut no_progress())
        .expect_err("body differs from the etag");
    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err:?}");
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn table_sha_disagreeing_with_etag_fails_before_the_body() -> anyhow::Result<()> {
    let body = payload(10_000);
    let server = Server::start(vec![
        Reply::ok(&body).header("X-Linked-Etag", &sha256_hex(&body))
    ]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let mut called = false;
    let err = hub
        .download(&spec(Some("a".repeat(64))), &mut |_, _| called = true)
        .expect_err("the table and the hub disagree");
    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err:?}");
    assert!(!called, "nothing is downloaded");
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn no_checksum_anywhere_is_refused() -> anyhow::Result<()> {
    let body = payload(1_000);
    let server = Server::start(vec![Reply::ok(&body).header("ETag", "\"not-a-sha\"")]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let err = hub
        .download(&spec(None), &mut no_progress())
        .expect_err("unverifiable download");
    assert!(matches!(err, HubError::NoChecksum { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/resolve/main/weights.pth"),
        "{err}"
    );
    server.finish();
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn unreachable_endpoint_suggests_weights_flag() -> anyhow::Result<()> {
    // A socket bound but not listening refuses connections, and holds its port for the whole
    // test. (A listener closed at once would free the port for another test's server, which
    // would then answer this request instead of its own.)
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let port = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow::anyhow!("not an IP socket"))?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let cache = tempfile::tempdir()?;
    let hub = hub(&endpoint, cache.path());
    let err = hub
        .download(&spec(Some("0".repeat(64))), &mut no_progress())
        .expect_err("nothing listens");
    let msg = err.to_string();
    assert!(matches!(err, HubError::Unreachable { .. }), "{err:?}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("--weights"), "{msg}");
    assert!(
        msg.ends_with(&format!(
            "{endpoint}/depth-anything/Test-Model/resolve/main/weights.pth"
        )),
        "{msg}"
    );
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn offline_without_cache_suggests_weights_flag() -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    let mut hub = hub("http://127.0.0.1:9", cache.path());
    hub.offline = true;
    let err = hub
        .download(&spec(None), &mut no_progress())
        .expect_err("not cached");
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    assert!(err.to_string().contains("--weights"), "{err}");
    assert_cache_clean(cache.path());
    Ok(())
}

#[test]
fn cache_dir_not_writable() -> anyhow::Result<()> {
    // A regular file where the cache directory should be: fails even for root.
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    std::fs::write(&cache, b"not a directory")?;
    let hub = hub("http://127.0.0.1:9", &cache);
    let err = hub
        .download(&spec(Some("0".repeat(64))), &mut no_progress())
        .expect_err("cache cannot be created");
    assert!(matches!(err, HubError::CacheNotWritable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&cache.display().to_string()),
        "{err}"
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn reuses_a_cache_written_by_huggingface_hub() -> anyhow::Result<()> {
    // The layout Python's hf_hub_download leaves: blob, ref, relative snapshot symlink.
    let body = payload(5_000);
    let sha = sha256_hex(&body);
    let cache = tempfile::tempdir()?;
    let repo = cache.path().join("models--depth-anything--Test-Model");
    std::fs::create_dir_all(repo.join("blobs"))?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::create_dir_all(repo.join("snapshots").join(COMMIT))?;
    std::fs::write(repo.join("blobs").join(&sha), &body)?;
    std::fs::write(repo.join("refs/main"), COMMIT)?;
    let snapshot = repo.join("snapshots").join(COMMIT).join("weights.pth");
    std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha), &snapshot)?;

    let mut hub = hub("http://127.0.0.1:9", cache.path());
    hub.offline = true;
    assert_eq!(hub.download(&spec(None), &mut no_progress())?, snapshot);
    assert_eq!(
        hub.download(&spec(Some(sha.clone())), &mut no_progress())?,
        snapshot
    );
    // A blob with no snapshot for this revision still counts when its sha256 is known.
    std::fs::remove_file(repo.join("refs/main"))?;
    let mut other = spec(Some(sha));
    other.revision = "v1.0".into();
    assert_eq!(hub.download(&other, &mut no_progress())?, snapshot);
    Ok(())
}

#[test]
fn released_table() -> anyhow::Result<()> {
    let small = released(Version::V2, Encoder::Vits, None)?;
    assert_eq!(small.repo_type, RepoType::Model);
    assert_eq!(small.repo, "depth-anything/Depth-Anything-V2-Small");
    assert_eq!(small.filename, "depth_anything_v2_vits.pth");
    assert_eq!(
        small.sha256.as_deref(),
        Some("715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378")
    );
    assert_eq!(small.size, Some(99_218_434));
    assert_eq!(
        small.url("https://huggingface.co"),
        "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/main/\
         depth_anything_v2_vits.pth"
    );

    let large = released(Version::V2, Encoder::Vitl, None)?;
    assert_eq!(large.repo, "depth-anything/Depth-Anything-V2-Large");
    assert_eq!(large.filename, "depth_anything_v2_vitl.pth");
    assert_eq!(large.sha256, None);

    let indoor = released(Version::V2, Encoder::Vitb, Some(Metric::Indoor))?;
    assert_eq!(
        indoor.repo,
        "depth-anything/Depth-Anything-V2-Metric-Hypersim-Base"
    );
    assert_eq!(
        indoor.filename,
        "depth_anything_v2_metric_hypersim_vitb.pth"
    );
    let outdoor = released(Version::V2, Encoder::Vits, Some(Metric::Outdoor))?;
    assert_eq!(
        outdoor.repo,
        "depth-anything/Depth-Anything-V2-Metric-VKITTI-Small"
    );
    assert_eq!(outdoor.filename, "depth_anything_v2_metric_vkitti_vits.pth");
    assert_eq!(
        outdoor.sha256.as_deref(),
        Some("9203e538d35255c90dda4b7fedb47ff33fe725497bcca3b1e53b3a65ee63f0cb")
    );

    let v1 = released(Version::V1, Encoder::Vits, None)?;
    assert_eq!(v1.repo_type, RepoType::Space);
    assert_eq!(v1.repo, "LiheYoung/Depth-Anything");
    assert_eq!(v1.filename, "checkpoints/depth_anything_vits14.pth");
    assert_eq!(v1.size, Some(99_219_880));

    for (version, kind) in [
        (Version::V2, None),
        (Version::V2, Some(Metric::Indoor)),
        (Version::V1, None),
    ] {
        let err = released(version, Encoder::Vitg, kind).expect_err("no Giant");
        assert!(matches!(err, HubError::NotPublished { .. }), "{err:?}");
        assert!(err.to_string().contains("Giant"), "{err}");
    }
    let err = released(Version::V1, Encoder::Vitl, Some(Metric::Outdoor))
        .expect_err("V1 metric is ZoeDepth");
    assert!(matches!(err, HubError::NotPublished { .. }), "{err:?}");
    Ok(())
}

#[test]
fn released_video_table() -> anyhow::Result<()> {
    let small = released_video(Encoder::Vits, false)?;
    assert_eq!(small.repo, "depth-anything/Video-Depth-Anything-Small");
    assert_eq!(small.filename, "video_depth_anything_vits.pth");
    let metric = released_video(Encoder::Vitl, true)?;
    assert_eq!(
        metric.repo,
        "depth-anything/Metric-Video-Depth-Anything-Large"
    );
    assert_eq!(metric.filename, "metric_video_depth_anything_vitl.pth");
    assert_eq!(
        metric.url("https://huggingface.co"),
        "https://huggingface.co/depth-anything/Metric-Video-Depth-Anything-Large/resolve/main/\
         metric_video_depth_anything_vitl.pth"
    );
    let err = released_video(Encoder::Vitg, false).expect_err("no Giant");
    assert!(err.to_string().contains("Giant"), "{err}");
    Ok(())
}

#[test]
fn nested_file_names_link_with_the_right_depth() -> anyhow::Result<()> {
    let body = payload(3_000);
    let sha = sha256_hex(&body);
    let server = Server::start(vec![Reply::ok(&body).header("X-Repo-Commit", COMMIT)]);
    let cache = tempfile::tempdir()?;
    let hub = hub(&server.endpoint, cache.path());
    let file = HubFile {
        repo_type: RepoType::Space,
        sha256: Some(sha),
        ..HubFile::model("LiheYoung/Depth-Anything", "checkpoints/x.pth")
    };
    let path = hub.download(&file, &mut no_progress())?;
    let requests = server.finish();
    assert!(
        requests[0]
            .starts_with("GET /spaces/LiheYoung/Depth-Anything/resolve/main/checkpoints/x.pth "),
        "{}",
        requests[0]
    );
    assert_eq!(
        path,
        cache
            .path()
            .join("spaces--LiheYoung--Depth-Anything/snapshots")
            .join(COMMIT)
            .join("checkpoints/x.pth")
    );
    assert_eq!(std::fs::read(&path)?, body);
    Ok(())
}
