//! The service end to end over real HTTP, with a fake depth engine (no libtorch): answers
//! equal to what `anydepth depth` writes, batching, the bounded queue, clients that leave,
//! limits, bad photos, the token, and graceful shutdown.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anydepth_core::colormap::Colormap;
use anydepth_core::{DepthMap, Prediction, RgbImage};
use anydepth_model::config::{Encoder, ModelConfig};
use anydepth_model::{
    DepthEngine, EngineLoader, EstimatorOptions, ForwardTimings, ModelSpec, RuntimeReport,
    StageTimings,
};
use anydepth_pipeline::depth::{DepthJob, DepthObserver};
use anydepth_pipeline::output::{encode_depth, Format};
use anydepth_pipeline::scene::{CameraRequest, DepthValues, Scene, SceneRequest};
use anydepth_pipeline::shape::{
    build_cloud, build_mesh, encode_cloud, encode_mesh, CloudSettings, MeshSettings, ShapeFormat,
};
use anydepth_serve::{Control, ServeRequest, Signals, Stop};

/// A door the fake engine waits at (when the test closes it), and a count of the calls
/// that reached it.
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<(Mutex<bool>, Condvar)>,
    entered: Arc<(Mutex<usize>, Condvar)>,
}

impl Gate {
    fn closed() -> Self {
        let gate = Self::default();
        *gate.closed.0.lock().expect("lock") = true;
        gate
    }

    fn open(&self) {
        *self.closed.0.lock().expect("lock") = false;
        self.closed.1.notify_all();
    }

    fn pass(&self) {
        {
            let mut entered = self.entered.0.lock().expect("lock");
            *entered += 1;
            self.entered.1.notify_all();
        }
        let mut closed = self.closed.0.lock().expect("lock");
        while *closed {
            closed = self.closed.1.wait(closed).expect("wait");
        }
    }

    /// Waits until `n` model calls reached the gate.
    fn wait_entered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut entered = self.entered.0.lock().expect("lock");
        while *entered < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "only {} model calls came", *entered);
            entered = self.entered.1.wait_timeout(entered, left).expect("wait").0;
        }
    }
}

/// Disparity computed from the pixels, so every photo has its own answer.
fn fake_prediction(image: &RgbImage) -> Prediction {
    let values = image
        .data
        .chunks_exact(3)
        .enumerate()
        .map(|(i, p)| 0.1 + p[0] + 2.0 * p[1] + 3.0 * p[2] + i as f32 * 1e-4)
        .collect();
    Prediction::Disparity(DepthMap::new(image.width, image.height, values).expect("sized"))
}

struct FakeEngine {
    config: ModelConfig,
    options: EstimatorOptions,
    batches: Arc<Mutex<Vec<usize>>>,
    gate: Gate,
}

impl DepthEngine for FakeEngine {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn device_name(&self) -> String {
        "Fake".into()
    }

    fn options(&self) -> &EstimatorOptions {
        &self.options
    }

    fn predict_batch(&self, images: &[RgbImage]) -> anydepth_model::Result<Vec<Prediction>> {
        self.batches.lock().expect("lock").push(images.len());
        self.gate.pass();
        Ok(images.iter().map(fake_prediction).collect())
    }

    fn predict_batch_timed(
        &self,
        images: &[RgbImage],
    ) -> anydepth_model::Result<(Vec<Prediction>, StageTimings)> {
        Ok((self.predict_batch(images)?, StageTimings::default()))
    }

    fn time_forward(
        &self,
        _batch: usize,
        _size: (u32, u32),
        _warmup: usize,
        _iters: usize,
    ) -> anydepth_model::Result<ForwardTimings> {
        Ok(ForwardTimings {
            seconds: vec![],
            memory: None,
        })
    }
}

struct FakeLoader {
    batches: Arc<Mutex<Vec<usize>>>,
    gate: Gate,
}

impl FakeLoader {
    fn engine(&self, options: EstimatorOptions) -> FakeEngine {
        FakeEngine {
            config: ModelConfig::v2(Encoder::Vits),
            options,
            batches: Arc::clone(&self.batches),
            gate: self.gate.clone(),
        }
    }
}

impl EngineLoader for FakeLoader {
    fn load(
        &self,
        _weights: &Path,
        _spec: ModelSpec,
        options: EstimatorOptions,
    ) -> anydepth_model::Result<Box<dyn DepthEngine>> {
        Ok(Box::new(self.engine(options)))
    }

    fn runtime(&self) -> anydepth_model::Result<RuntimeReport> {
        Err(anydepth_model::Error::Invalid("no runtime".into()))
    }
}

/// A running service with the fake engine.
struct Server {
    base: String,
    stop: Stop,
    thread: JoinHandle<anydepth_serve::Result<()>>,
    batches: Arc<Mutex<Vec<usize>>>,
    gate: Gate,
    _dir: tempfile::TempDir,
}

fn start(mut request: ServeRequest, gate: Gate) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("fake.pth");
    std::fs::write(&weights, b"not read").expect("writes");
    request.model.weights = Some(weights);
    request.port = 0;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let stop = Stop::new();
    let (tx, rx) = mpsc::channel();
    let thread = {
        let (batches, gate, stop) = (Arc::clone(&batches), gate.clone(), stop.clone());
        std::thread::spawn(move || {
            // Made on the thread that runs it, as `anydepth serve` does.
            let loader = FakeLoader { batches, gate };
            let mut listening = |address: SocketAddr| {
                let _ = tx.send(address);
            };
            request.run(
                &loader,
                Control {
                    downloads: &mut |_, _, _| {},
                    listening: &mut listening,
                    stop,
                    signals: Signals::Ignore,
                },
            )
        })
    };
    let Ok(address) = rx.recv_timeout(Duration::from_secs(20)) else {
        match thread.join() {
            Ok(Err(err)) => panic!("the service did not start: {}", chain(&err)),
            other => panic!("the service did not start: {other:?}"),
        }
    };
    Server {
        base: format!("http://{address}"),
        stop,
        thread,
        batches,
        gate,
        _dir: dir,
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    anydepth_pipeline::chain_text(err)
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the service and waits for it to end.
    fn finish(self) {
        self.gate.open();
        self.stop.stop();
        self.thread
            .join()
            .expect("no panic")
            .expect("the service ends cleanly");
    }
}

/// Status, headers we look at, and body of an answer.
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.content_type, "application/json",
            "status {}",
            self.status
        );
        serde_json::from_slice(&self.body).expect("JSON")
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8")
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(other) => panic!("no answer: {other}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let retry_after = response.header("retry-after").map(str::to_owned);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).expect("body");
    Answer {
        status,
        content_type,
        retry_after,
        body,
    }
}

fn get(url: &str) -> Answer {
    answer(agent(Duration::from_secs(30)).get(url).call())
}

fn post(url: &str, body: &[u8]) -> Answer {
    answer(agent(Duration::from_secs(30)).post(url).send_bytes(body))
}

fn post_with_token(url: &str, body: &[u8], token: &str) -> Answer {
    answer(
        agent(Duration::from_secs(30))
            .post(url)
            .set("Authorization", &format!("Bearer {token}"))
            .send_bytes(body),
    )
}

/// An encoded photo of `width` x `height` (a gradient, shifted by `seed`).
fn photo(width: u32, height: u32, seed: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 + seed) as u8,
            (y * 5 + seed * 3) as u8,
            ((x + y) * 3) as u8,
        ])
    });
    let mut bytes = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut bytes, format)
        .expect("encodes");
    bytes.into_inner()
}

fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    photo(width, height, seed, image::ImageFormat::Png)
}

/// A small PNG announcing `width` x `height` RGB pixels: a decompression bomb's header
/// (signature, IHDR, a little IDAT, IEND).
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    // A zlib stream of a few zero bytes: the rows a real bomb would inflate to.
    let data = [0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01];
    for (kind, body) in [
        (b"IHDR", &header[..]),
        (b"IDAT", &data[..]),
        (b"IEND", &[][..]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(body);
        png.extend_from_slice(&(body.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    }
    png
}

struct Silent;
impl DepthObserver for Silent {}

/// The file `anydepth depth --formats FORMAT` writes for `photo` with the fake engine.
fn written_by_depth_job(photo: &[u8], name: &str, format: Format) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join(name);
    std::fs::write(&input, photo).expect("writes");
    let out: PathBuf = dir.path().join("out");
    let job = DepthJob {
        inputs: vec![input],
        out_dir: out.clone(),
        model: ServeRequest::default().model,
        max_depth_m: None,
        batch: 1,
        formats: vec![format],
        colormap: Colormap::default(),
        force: false,
    };
    let plan = job.plan().expect("plan");
    let (todo, _) = job.pending(&plan);
    let loader = FakeLoader {
        batches: Arc::default(),
        gate: Gate::default(),
    };
    let engine = loader.engine(EstimatorOptions::default());
    let engine: &dyn DepthEngine = &engine;
    let report = job.run(&plan, &engine, &todo, &Silent).expect("runs");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let stem = Path::new(name).file_stem().expect("stem").to_string_lossy();
    std::fs::read(anydepth_pipeline::output::output_path(&out, &stem, format)).expect("written")
}

/// Polls `/metrics` until a line equals `line`.
fn wait_for_metric(server: &Server, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(&server.url("/metrics")).text();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line:?} in\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn answers_equal_what_the_depth_command_writes() {
    let server = start(ServeRequest::default(), Gate::default());

    let health = get(&server.url("/healthz"));
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"], ModelConfig::v2(Encoder::Vits).describe());
    assert_eq!(health["device"], "Fake");

    let page = get(&server.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text().contains("<html"));

    let jpeg = photo(64, 48, 1, image::ImageFormat::Jpeg);
    let png = png(33, 21, 2);
    for (bytes, name) in [(&jpeg, "photo.jpg"), (&png, "photo.png")] {
        for (query, format, content_type) in [
            ("", Format::Npy, "application/octet-stream"),
            ("?format=npy", Format::Npy, "application/octet-stream"),
            ("?format=png16", Format::Png16, "image/png"),
            ("?format=pfm", Format::Pfm, "application/octet-stream"),
            ("?format=exr", Format::Exr, "image/x-exr"),
            ("?format=color", Format::Color, "image/png"),
            ("?format=side-by-side", Format::SideBySide, "image/png"),
        ] {
            let got = post(&server.url(&format!("/v1/depth{query}")), bytes);
            assert_eq!(got.status, 200, "{name}{query}: {}", got.text());
            assert_eq!(got.content_type, content_type, "{name}{query}");
            let expected = written_by_depth_job(bytes, name, format);
            assert!(got.body == expected, "{name}{query}: bytes differ");
        }
    }

    // A colormap in the query is the one used.
    let got = post(&server.url("/v1/depth?format=color&colormap=turbo"), &png);
    let image = anydepth_core::decode_image_bytes(&png).expect("decodes");
    let prediction = fake_prediction(&image);
    let expected = encode_depth(
        Format::Color,
        prediction.values(),
        prediction.width(),
        prediction.height(),
        None,
        Colormap::Turbo,
    )
    .expect("encodes");
    assert!(got.body == expected, "turbo colours differ");

    let metrics = get(&server.url("/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for line in [
        "anydepth_http_requests_total{route=\"/v1/depth\",status=\"200\"} 15",
        "anydepth_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
        "anydepth_http_request_duration_seconds_count{route=\"/v1/depth\"} 15",
        "anydepth_batch_size_count 15",
        "anydepth_queue_depth 0",
        "# TYPE anydepth_batch_size histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    server.finish();
}

#[test]
fn concurrent_requests_are_batched() {
    let request = ServeRequest {
        batch: 4,
        // Long: the batch runs as soon as it is full, so this only makes the test robust.
        batch_wait_ms: 10_000,
        ..Default::default()
    };
    let server = start(request, Gate::default());
    let url = server.url("/v1/depth?format=npy");
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            // Different sizes: the engine groups them by input size itself.
            std::thread::spawn(move || {
                let bytes = png(20 + i, 16, i);
                (post(&url, &bytes), bytes)
            })
        })
        .collect();
    for client in clients {
        let (got, bytes) = client.join().expect("client");
        assert_eq!(got.status, 200);
        let image = anydepth_core::decode_image_bytes(&bytes).expect("decodes");
        assert_eq!(got.body, {
            let p = fake_prediction(&image);
            encode_depth(
                Format::Npy,
                p.values(),
                p.width(),
                p.height(),
                None,
                Colormap::default(),
            )
            .expect("encodes")
        });
    }
    assert_eq!(*server.batches.lock().expect("lock"), vec![4]);
    server.finish();
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let request = ServeRequest {
        batch: 1,
        batch_wait_ms: 0,
        queue: 1,
        ..Default::default()
    };
    let server = start(request, Gate::closed());
    let url = server.url("/v1/depth");
    let first = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, &png(8, 8, 1)))
    };
    server.gate.wait_entered(1);
    let second = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, &png(8, 8, 2)))
    };
    wait_for_metric(&server, "anydepth_queue_depth 1");

    let refused = post(&url, &png(8, 8, 3));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(refused.json()["error"]
        .as_str()
        .expect("message")
        .contains("queue is full"));

    server.gate.open();
    assert_eq!(first.join().expect("client").status, 200);
    assert_eq!(second.join().expect("client").status, 200);
    assert_eq!(*server.batches.lock().expect("lock"), vec![1, 1]);
    let text = get(&server.url("/metrics")).text();
    assert!(text.contains("anydepth_http_requests_total{route=\"/v1/depth\",status=\"503\"} 1"));
    server.finish();
}

#[test]
fn a_client_that_leaves_costs_nothing_further() {
    let request = ServeRequest {
        batch: 1,
        batch_wait_ms: 0,
        ..Default::default()
    };
    let server = start(request, Gate::closed());
    let url = server.url("/v1/depth");
    let first = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, &png(8, 8, 1)))
    };
    server.gate.wait_entered(1);
    // Queued behind the first, then gives up and closes its connection. The timeout
    // leaves time to be queued even on a loaded machine; the queue gauge says when it is.
    let impatient = {
        let url = url.clone();
        std::thread::spawn(move || {
            let answer = agent(Duration::from_secs(3))
                .post(&url)
                .send_bytes(&png(8, 8, 2));
            matches!(answer, Err(ureq::Error::Transport(_)))
        })
    };
    wait_for_metric(&server, "anydepth_queue_depth 1");
    assert!(
        impatient.join().expect("client"),
        "the impatient client got an answer"
    );
    // The server notices the closed connection when its runtime next polls the socket;
    // nothing observable marks that moment, so give it a moment before the model frees up.
    std::thread::sleep(Duration::from_millis(300));
    server.gate.open();
    assert_eq!(first.join().expect("client").status, 200);
    wait_for_metric(&server, "anydepth_skipped_total 1");
    assert_eq!(*server.batches.lock().expect("lock"), vec![1]);
    server.finish();
}

#[test]
fn bad_requests_get_json_errors_and_the_service_stays_up() {
    let request = ServeRequest {
        max_body: 4096,
        ..Default::default()
    };
    let server = start(request, Gate::default());
    let depth = server.url("/v1/depth");

    let big = post(&depth, &vec![0u8; 8000]);
    assert_eq!(big.status, 413);
    assert!(big.json()["error"]
        .as_str()
        .expect("message")
        .contains("4096"));

    let jpeg = photo(64, 48, 1, image::ImageFormat::Jpeg);
    for (what, body) in [
        ("garbage", b"this is not a photo".to_vec()),
        ("a truncated JPEG", jpeg[..jpeg.len() / 2].to_vec()),
        ("a decompression bomb", png_header(100_000, 100_000)),
    ] {
        let got = post(&depth, &body);
        assert!(
            got.status == 400 || got.status == 422,
            "{what}: {}",
            got.status
        );
        let message = got.json()["error"].as_str().expect("message").to_owned();
        assert!(!message.is_empty(), "{what}");
        if what == "a decompression bomb" {
            assert!(message.contains("more than"), "{message}");
        }
    }

    let empty = post(&depth, b"");
    assert_eq!(empty.status, 400);
    empty.json();
    let unknown = post(&server.url("/v1/depth?format=jpeg"), &png(8, 8, 1));
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["error"]
        .as_str()
        .expect("message")
        .contains("unknown format"));
    let nowhere = get(&server.url("/v2/nothing"));
    assert_eq!(nowhere.status, 404);
    nowhere.json();
    let wrong_method = get(&depth);
    assert_eq!(wrong_method.status, 405);
    wrong_method.json();

    // Still serving, and none of these reached the model.
    assert_eq!(get(&server.url("/healthz")).status, 200);
    assert_eq!(post(&depth, &png(8, 8, 1)).status, 200);
    assert_eq!(*server.batches.lock().expect("lock"), vec![1]);
    server.finish();
}

#[test]
fn the_token_is_required_except_for_health_and_the_page() {
    let request = ServeRequest {
        token: Some("s3cret".into()),
        ..Default::default()
    };
    let server = start(request, Gate::default());
    assert_eq!(get(&server.url("/healthz")).status, 200);
    assert_eq!(get(&server.url("/")).status, 200);
    let denied = get(&server.url("/metrics"));
    assert_eq!(denied.status, 401);
    denied.json();
    let depth = server.url("/v1/depth");
    assert_eq!(post(&depth, &png(8, 8, 1)).status, 401);
    assert_eq!(post_with_token(&depth, &png(8, 8, 1), "wrong").status, 401);
    assert_eq!(post_with_token(&depth, &png(8, 8, 1), "s3cret").status, 200);
    assert_eq!(*server.batches.lock().expect("lock"), vec![1]);
    server.finish();
}

/// The status of a raw HTTP/1.1 GET of `path` with `headers` (each ending in CRLF): raw,
/// because HTTP clients set `Host` themselves.
fn raw_status(server: &Server, path: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[test]
fn without_a_token_only_local_hosts_and_pages_are_served() {
    let server = start(ServeRequest::default(), Gate::default());
    let own = server.base.trim_start_matches("http://").to_owned();
    for (headers, status) in [
        (format!("Host: {own}\r\n"), 200),
        ("Host: localhost:9\r\n".to_owned(), 200),
        // A DNS name rebound to 127.0.0.1 by a web page.
        ("Host: attacker.example:8080\r\n".to_owned(), 403),
        // A page elsewhere posting across origins, or a sandboxed one.
        (
            format!("Host: {own}\r\nOrigin: http://attacker.example\r\n"),
            403,
        ),
        (format!("Host: {own}\r\nOrigin: null\r\n"), 403),
        // The service's own page.
        (format!("Host: {own}\r\nOrigin: http://{own}\r\n"), 200),
    ] {
        assert_eq!(
            raw_status(&server, "/metrics", &headers),
            status,
            "{headers}"
        );
    }
    // Local clients are served as before.
    assert_eq!(post(&server.url("/v1/depth"), &png(8, 8, 1)).status, 200);
    server.finish();
}

#[test]
fn other_addresses_need_a_token() {
    let open = ServeRequest {
        bind: "0.0.0.0".parse().expect("address"),
        ..Default::default()
    };
    let err = open.validate().expect_err("refused");
    assert!(err.to_string().contains("--token"), "{err}");
    let with_token = ServeRequest {
        token: Some("t".into()),
        ..open.clone()
    };
    with_token.validate().expect("allowed with a token");
    let ipv6_loopback = ServeRequest {
        bind: "::1".parse().expect("address"),
        ..Default::default()
    };
    ipv6_loopback.validate().expect("loopback needs none");
    for bad in [
        ServeRequest {
            batch: 0,
            ..Default::default()
        },
        ServeRequest {
            queue: 0,
            ..Default::default()
        },
    ] {
        bad.validate().expect_err("zero refused");
    }
}

#[test]
fn stopping_lets_the_request_in_flight_finish() {
    let server = start(ServeRequest::default(), Gate::closed());
    let url = server.url("/v1/depth");
    let in_flight = std::thread::spawn(move || post(&url, &png(8, 8, 1)));
    server.gate.wait_entered(1);
    server.stop.stop();
    // Stopped: new connections are no longer taken once the server has seen the stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent(Duration::from_millis(200))
        .get(&server.url("/healthz"))
        .call()
        .is_ok()
    {
        assert!(Instant::now() < deadline, "still accepting after stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !server.thread.is_finished(),
        "ended before the request finished"
    );
    server.gate.open();
    let answer = in_flight.join().expect("client");
    assert_eq!(answer.status, 200);
    server
        .thread
        .join()
        .expect("no panic")
        .expect("the service ends cleanly");
}

/// What `anydepth cloud PHOTO` / `anydepth mesh PHOTO` write for `photo` with the fake
/// engine and the camera and scale of `scene` (the CLI's path: a file and `Scene::load`).
fn written_by_shape_command(photo: &[u8], scene: &SceneRequest, mesh: bool, glb: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("photo.jpg");
    std::fs::write(&input, photo).expect("writes");
    let weights = dir.path().join("fake.pth");
    std::fs::write(&weights, b"not read").expect("writes");
    let mut request = scene.clone();
    request.photo = Some(input);
    request.model = ServeRequest::default().model;
    request.model.weights = Some(weights);
    let loader = FakeLoader {
        batches: Arc::default(),
        gate: Gate::default(),
    };
    let scene = Scene::load(&request, &loader, &|_| {}, &mut |_, _, _| {}).expect("scene");
    let format = if glb {
        ShapeFormat::Glb
    } else {
        ShapeFormat::Ply
    };
    if mesh {
        let mesh =
            build_mesh(&scene, request.max_depth, &MeshSettings::default(), format).expect("mesh");
        encode_mesh(&mesh, format, &[]).expect("encodes")
    } else {
        let cloud =
            build_cloud(&scene, request.max_depth, &CloudSettings::default()).expect("cloud");
        encode_cloud(&cloud, format, &[]).expect("encodes")
    }
}

#[test]
fn clouds_and_meshes_equal_what_the_commands_write() {
    let server = start(ServeRequest::default(), Gate::default());
    let jpeg = photo(40, 30, 4, image::ImageFormat::Jpeg);
    let scale = DepthValues {
        scale: Some(0.5),
        shift: Some(0.2),
        ..DepthValues::default()
    };
    let cases = [
        (
            "scale=0.5&shift=0.2&intrinsics=50,50,20,15",
            SceneRequest {
                values: scale.clone(),
                camera: CameraRequest {
                    intrinsics: Some(vec![50.0, 50.0, 20.0, 15.0]),
                    fov: None,
                },
                ..SceneRequest::default()
            },
        ),
        (
            "scale=0.5&shift=0.2&fov=70&max_depth=0.6",
            SceneRequest {
                values: scale.clone(),
                camera: CameraRequest {
                    intrinsics: None,
                    fov: Some(70.0),
                },
                max_depth: Some(0.6),
                ..SceneRequest::default()
            },
        ),
        (
            "scale=0.5&shift=0.2",
            SceneRequest {
                values: scale.clone(),
                ..SceneRequest::default()
            },
        ),
    ];
    for (camera, scene) in &cases {
        for (path, mesh) in [("/v1/cloud", false), ("/v1/mesh", true)] {
            for (format, glb, content_type) in [
                ("ply", false, "application/octet-stream"),
                ("glb", true, "model/gltf-binary"),
            ] {
                let url = server.url(&format!("{path}?format={format}&{camera}"));
                let got = post(&url, &jpeg);
                assert_eq!(got.status, 200, "{url}: {}", got.text());
                assert_eq!(got.content_type, content_type, "{url}");
                let expected = written_by_shape_command(&jpeg, scene, mesh, glb);
                assert!(got.body == expected, "{url}: bytes differ");
            }
        }
    }
    // Without a camera, the guess is announced.
    let guessed = agent(Duration::from_secs(30))
        .post(&server.url("/v1/cloud?scale=0.5&shift=0.2"))
        .send_bytes(&jpeg)
        .expect("answers");
    let note = guessed.header("x-anydepth-note").expect("a note");
    assert!(note.contains("no camera given"), "{note}");

    // A relative model without scale and shift cannot give metres.
    let relative = post(&server.url("/v1/cloud"), &jpeg);
    assert_eq!(relative.status, 422);
    assert!(relative.json()["error"]
        .as_str()
        .expect("message")
        .contains("--scale"));
    let bad = post(&server.url("/v1/mesh?format=obj"), &jpeg);
    assert_eq!(bad.status, 400);
    bad.json();
    server.finish();
}
