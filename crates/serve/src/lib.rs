//! anydepth as a long-running HTTP service: the model is loaded once, photos are posted,
//! and depth maps, point clouds and meshes come back, byte for byte what the command line
//! writes for the same photo when it runs alone (a photo batched with others may differ in
//! the last bits on a GPU, whose kernels depend on the batch size).
//!
//! `anydepth serve` is the front end; [`ServeRequest::run`] is the whole service, for any
//! [`EngineLoader`]:
//!
//! ```text
//! anydepth serve --metric indoor --port 8080 --batch 8 --batch-wait-ms 5
//! curl -s localhost:8080/healthz
//! curl -s --data-binary @room.jpg 'localhost:8080/v1/depth?format=npy' -o room.npy
//! curl -s --data-binary @room.jpg 'localhost:8080/v1/depth?format=color' -o room.png
//! curl -s --data-binary @room.jpg 'localhost:8080/v1/cloud?format=ply&fov=60' -o room.ply
//! curl -s --data-binary @room.jpg 'localhost:8080/v1/mesh?format=glb&intrinsics=500,500,320,240' -o room.glb
//! curl -s localhost:8080/metrics
//! # on another address, a token is required:
//! anydepth serve --bind 0.0.0.0 --token "$TOKEN"
//! curl -s -H "Authorization: Bearer $TOKEN" --data-binary @room.jpg 'host:8080/v1/depth' -o room.npy
//! ```
//!
//! Endpoints:
//! - `GET /healthz`: `{"status":"ok","model":"...","device":"..."}`;
//! - `GET /metrics`: Prometheus text (requests by route and status, latency per route,
//!   queue depth, batch sizes, photos skipped because their client left);
//! - `POST /v1/depth?format=npy|png16|pfm|exr|color|side-by-side[&colormap=NAME]`: the
//!   file `anydepth depth --formats FORMAT` writes;
//! - `POST /v1/cloud?format=ply|glb` and `POST /v1/mesh?format=ply|glb`, with the camera as
//!   `intrinsics=fx,fy,cx,cy` or `fov=DEG` (else EXIF, else the announced guess), `scale`
//!   and `shift` for a relative model, `max_depth=M`: the file of `anydepth cloud` /
//!   `anydepth mesh` without further flags;
//! - `GET /`: a web page (photo in; depth, mesh and cloud shown and downloadable), and
//!   `GET /vendor/...`: the three.js modules it imports, embedded at build time.
//!
//! Without a token the service listens on loopback only, and it also refuses (403) a
//! request whose `Host` or `Origin` names another host: a web page in the user's browser
//! could otherwise reach it through a DNS name rebound to 127.0.0.1, or by posting across
//! origins. `curl`, scripts and the service's own page are not affected.
//!
//! Every error is answered as JSON `{"error": "..."}`: 400 for a bad query, 401 without
//! the token, 403 for a foreign `Host` or `Origin` without a token, 413 for a body over `--max-body`, 422 for a photo that does not decode
//! (corrupt, truncated, over [`anydepth_core::image::MAX_DECODE_PIXELS`]) or a scene that
//! cannot be built, 500 when the model fails on the photo, 503 with `Retry-After` when the
//! queue is full.
//!
//! # How it runs
//! A `DepthEngine` is not `Send` (LibTorch modules stay on their thread), so the thread
//! that calls [`ServeRequest::run`] loads the model and runs it; the HTTP server (axum on a
//! tokio runtime) runs on threads of its own. Photos are decoded on tokio's blocking pool,
//! queued (bounded: `--queue`), and run in batches of up to `--batch`, waiting at most
//! `--batch-wait-ms` to fill one; photos whose client left while they waited are skipped.
//! A batch the model fails on (one photo too large for the GPU's memory, say) is run again
//! photo by photo, so only a photo that fails alone is answered 500.
//! SIGTERM or Ctrl-C (or [`Stop::stop`]) stops accepting connections, lets the requests in
//! flight finish, and then `run` returns.

#![warn(missing_docs)]

mod batcher;
pub mod error;
mod metrics;
mod query;
mod routes;
mod shapes;
mod web;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anydepth_core::colormap::Colormap;
use anydepth_model::EngineLoader;
use anydepth_pipeline::model::ModelRequest;
use anydepth_pipeline::Downloads;

pub use error::{Error, Result};

/// The default port of `anydepth serve`.
pub const DEFAULT_PORT: u16 = 8080;

/// The default largest request body: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// How long requests in flight may take to finish their blocking work once the server
/// has stopped (decoding and encoding are bounded; this only guards against a stuck one).
const BLOCKING_DRAIN: Duration = Duration::from_secs(30);

/// The service as asked for: the model, where to listen, batching, limits and the token.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ServeRequest {
    /// The model that runs, loaded once at start.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub model: ModelRequest,

    /// Largest depth of a metric model, in metres [default: 20 indoor, 80 outdoor].
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub max_depth: Option<f64>,

    /// Address to listen on; any other than a loopback address needs --token.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "ADDRESS")
    )]
    pub bind: IpAddr,

    /// Port to listen on (0: any free port, printed at start).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULT_PORT))]
    pub port: u16,

    /// Most photos per model call (photos of one network input size run together).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 4, value_name = "N"))]
    pub batch: usize,

    /// Longest wait, in milliseconds, for more photos to fill a batch.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 5, value_name = "MS"))]
    pub batch_wait_ms: u64,

    /// Most photos held at once besides the batch on the model (being read, decoded or
    /// waiting); beyond, requests get 503 with Retry-After. This bounds memory: a decoded
    /// 4K photo takes about 100 MB.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 64, value_name = "N"))]
    pub queue: usize,

    /// Largest request body in bytes (413 beyond).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, value_name = "BYTES")
    )]
    pub max_body: usize,

    /// Require `Authorization: Bearer TOKEN` on every endpoint but / and /healthz
    /// (required when --bind is not a loopback address). Prefer the environment variable:
    /// other users of the machine can read a command line.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "TOKEN",
            env = "ANYDEPTH_TOKEN",
            hide_env_values = true
        )
    )]
    pub token: Option<String>,

    /// Colour map of `format=color` and `format=side-by-side` when the query names none.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub colormap: Colormap,
}

impl Default for ServeRequest {
    fn default() -> Self {
        Self {
            model: ModelRequest::default(),
            max_depth: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            batch: 4,
            batch_wait_ms: 5,
            queue: 64,
            max_body: DEFAULT_MAX_BODY_BYTES,
            token: None,
            colormap: Colormap::default(),
        }
    }
}

/// Ends a running service: [`Stop::stop`] lets the requests in flight finish, then
/// [`ServeRequest::run`] returns. Clones stop the same service.
#[derive(Clone, Debug)]
pub struct Stop {
    stopped: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A handle that has not stopped anything yet.
    pub fn new() -> Self {
        Self {
            stopped: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Stops the service (graceful: requests in flight finish).
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Whether [`Stop::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once [`Stop::stop`] was called.
    async fn wait(&self) {
        let mut stopped = self.stopped.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = stopped.wait_for(|&s| s).await;
    }
}

/// How a running service talks to its front end.
pub struct Control<'a> {
    /// Hears of weights being downloaded at start.
    pub downloads: Downloads<'a>,
    /// Hears the address the service listens on, once it does (with `--port 0`, the port
    /// the system chose).
    pub listening: &'a mut dyn FnMut(SocketAddr),
    /// Ends the service.
    pub stop: Stop,
    /// Whether SIGTERM and Ctrl-C (SIGINT) stop the service too.
    pub signals: Signals,
}

/// Whether the process's termination signals stop the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signals {
    /// SIGTERM and Ctrl-C stop it gracefully (a command line's choice).
    #[default]
    Stop,
    /// Only [`Stop::stop`] does (tests, embedding).
    Ignore,
}

impl ServeRequest {
    /// Checks the settings before anything is loaded or bound.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a size is zero, or when the address is not a loopback one and
    /// no token is given.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: &str| Err(Error::Invalid(m.to_owned()));
        if self.batch == 0 {
            return invalid("--batch must be at least 1");
        }
        if self.queue == 0 {
            return invalid("--queue must be at least 1");
        }
        if self.max_body == 0 {
            return invalid("--max-body must be at least 1 byte");
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return invalid("--token must not be empty");
        }
        if !self.bind.is_loopback() && self.token.is_none() {
            return Err(Error::Invalid(format!(
                "refusing to listen on {} without --token: any machine that reaches it could \
                 use the model; pass --token TOKEN (clients send `Authorization: Bearer TOKEN`) \
                 or bind to 127.0.0.1",
                self.bind
            )));
        }
        Ok(())
    }

    /// Runs the service until `control.stop` (or a signal) stops it: loads the model with
    /// `loader` on this thread and runs it here, serves HTTP on threads of its own.
    ///
    /// # Errors
    /// When the request is invalid ([`ServeRequest::validate`]), the model does not load,
    /// the address cannot be bound, or the server fails.
    pub fn run(&self, loader: &dyn EngineLoader, control: Control<'_>) -> Result<()> {
        self.validate()?;
        // Bound first, so a taken port fails before seconds of loading; connections that
        // come meanwhile wait in the system's backlog.
        let address = SocketAddr::new(self.bind, self.port);
        let listener = std::net::TcpListener::bind(address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Bind { address, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { address, source })?;
        let (engine, weights) = self
            .model
            .load(loader, self.max_depth, self.batch, control.downloads)
            .map_err(Error::Model)?;

        let (queue, jobs, depth) = batcher::Queue::bounded(self.queue);
        let metrics = Arc::new(metrics::Metrics::default());
        let state = Arc::new(routes::AppState {
            queue,
            slots: Arc::new(tokio::sync::Semaphore::new(
                self.queue.max(1) + self.batch.max(1),
            )),
            metrics: Arc::clone(&metrics),
            model: engine.config().describe(),
            device: engine.device_name(),
            token: self.token.clone(),
            max_body_bytes: self.max_body,
            colormap: self.colormap,
        });
        tracing::info!(
            "serving {} on {} from {} at http://{local}",
            state.model,
            state.device,
            weights.display()
        );
        let stop = control.stop.clone();
        let signals = control.signals;
        let server = std::thread::Builder::new()
            .name("anydepth-http".into())
            .spawn(move || serve_http(listener, state, stop, signals))
            .map_err(Error::Server)?;
        (control.listening)(local);

        let batching = batcher::Batching {
            max_images: self.batch,
            max_wait: Duration::from_millis(self.batch_wait_ms),
        };
        // Returns once the server has stopped and dropped every sender of the queue.
        batcher::run_model(engine.as_ref(), &jobs, &depth, batching, &metrics);
        match server.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The HTTP server's thread: a tokio runtime serving `state` until stopped.
fn serve_http(
    listener: std::net::TcpListener,
    state: Arc<routes::AppState>,
    stop: Stop,
    signals: Signals,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("anydepth-serve")
        .build()
        .map_err(Error::Server)?;
    let served = runtime.block_on(async move {
        if signals == Signals::Stop {
            watch_signals(stop.clone())?;
        }
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // The page's modules (web.rs) sit outside the token check and the metrics.
        let app = routes::router(state).merge(web::router());
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await
    });
    runtime.shutdown_timeout(BLOCKING_DRAIN);
    served.map_err(Error::Server)
}

/// Stops `stop` on SIGTERM or Ctrl-C (SIGINT). The handlers are installed before this
/// returns, so a signal that comes once the service listens is never missed.
fn watch_signals(stop: Stop) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        for (kind, name) in [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::interrupt(), "Ctrl-C"),
        ] {
            let mut received = signal(kind)?;
            let stop = stop.clone();
            tokio::spawn(async move {
                if received.recv().await.is_some() {
                    tracing::info!("{name}: finishing the requests in flight");
                    stop.stop();
                }
            });
        }
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: finishing the requests in flight");
            stop.stop();
        }
    });
    Ok(())
}
