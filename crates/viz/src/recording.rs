//! Where a recording goes ([`Sink`]) and what is logged to it ([`Recording`]).

use std::borrow::Cow;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anydepth_core::colormap::Colormap;
use anydepth_core::{DepthMap, Disparity, Intrinsics, Prediction, RgbImage};
use anydepth_geometry::{PointCloud, TriangleMesh};
use nalgebra::Isometry3;
use rerun::{RecordingStream, RecordingStreamBuilder};

use crate::convert::{self, PointRadius};
use crate::error::{Error, Result};
use crate::paths;

/// The port a viewer listens on unless told otherwise (Rerun's default).
pub const DEFAULT_PORT: u16 = 9876;

/// How long `--spawn` waits for a started viewer to listen.
const SPAWN_WAIT: Duration = Duration::from_secs(10);

/// Where the logged data goes: the options Rerun's own examples take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Start a viewer (`rerun` on PATH) listening on `port`, or use the one already there.
    Spawn {
        /// The port the viewer listens on.
        port: u16,
    },
    /// Stream to a viewer or server at `url` (`rerun+http://HOST:PORT/proxy`).
    Connect {
        /// The viewer's or server's URL.
        url: String,
    },
    /// Host a gRPC server in this process on `bind_ip:port` that viewers (native or web)
    /// connect to; it keeps up to `memory_limit` (`"25%"`, `"2GB"`) for late viewers.
    Serve {
        /// The IP address to listen on (`0.0.0.0` for every interface).
        bind_ip: String,
        /// The port to listen on.
        port: u16,
        /// How much data the server keeps for late viewers, as Rerun parses it (`"25%"`,
        /// `"2GB"`).
        memory_limit: String,
    },
    /// Write an `.rrd` file.
    Save {
        /// The `.rrd` file to write.
        path: PathBuf,
    },
}

/// An open Rerun recording with typed logging of anydepth's data.
///
/// Logging calls return once the data is serialised; encoding and writing (file, network)
/// happen on Rerun's own threads. Log calls fail only on data that cannot be logged (sizes
/// that disagree); an unreachable viewer is reported when the recording starts.
///
/// ```
/// use anydepth_viz::{paths, PointRadius, Recording};
/// use anydepth_geometry::PointCloud;
/// use nalgebra::Point3;
///
/// // In memory here; `Recording::start(&Sink::Save { path }, ...)` in practice.
/// let (stream, storage) = rerun::RecordingStreamBuilder::new("anydepth_doc").memory()?;
/// let recording = Recording::from_stream(stream);
/// recording.log_world_axes()?;
/// recording.set_frame(0);
/// let cloud = PointCloud { points: vec![Point3::new(0.0, 0.0, 1.0)], ..Default::default() };
/// recording.log_cloud(paths::CLOUD, &cloud, PointRadius::Metres(0.01))?;
/// recording.flush()?;
/// assert!(!storage.take().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recording {
    stream: RecordingStream,
    serving: Option<String>,
}

impl Recording {
    /// Opens a recording named `application_id` going to `sink`.
    ///
    /// # Errors
    /// [`Error::ViewerNotFound`] when spawning without `rerun` on PATH,
    /// [`Error::ViewerDidNotStart`] when a spawned viewer never listens,
    /// [`Error::NotListening`] when nothing listens at the `Connect` URL, and Rerun's own
    /// errors (a file that cannot be created, a port already taken).
    pub fn start(sink: &Sink, application_id: &'static str) -> Result<Self> {
        let builder = RecordingStreamBuilder::new(application_id);
        let mut serving = None;
        let stream = match sink {
            Sink::Spawn { port } => spawn(builder, *port)?,
            Sink::Connect { url } => {
                check_listening(url)?;
                builder.connect_grpc_opts(url.clone())?
            }
            Sink::Serve {
                bind_ip,
                port,
                memory_limit,
            } => {
                let memory_limit = rerun::MemoryLimit::parse(memory_limit).map_err(|e| {
                    Error::InvalidOption(format!("server memory limit {memory_limit:?}: {e}"))
                })?;
                let options = rerun::ServerOptions {
                    memory_limit,
                    ..Default::default()
                };
                // Rerun's server reports a taken port only in its log, from its own thread.
                std::net::TcpListener::bind((bind_ip.as_str(), *port)).map_err(|e| {
                    Error::InvalidOption(format!("cannot serve on {bind_ip}:{port}: {e}"))
                })?;
                let stream = builder.serve_grpc_opts(bind_ip, *port, options)?;
                let host = if bind_ip == "0.0.0.0" {
                    "127.0.0.1"
                } else {
                    bind_ip
                };
                serving = Some(format!("rerun+http://{host}:{port}/proxy"));
                stream
            }
            Sink::Save { path } => builder.save(path)?,
        };
        tracing::info!(?sink, "Rerun recording started");
        Ok(Self { stream, serving })
    }

    /// Wraps a stream made some other way (a memory sink in tests, several sinks).
    pub fn from_stream(stream: RecordingStream) -> Self {
        Self {
            stream,
            serving: None,
        }
    }

    /// The URL viewers connect to when this process serves the data ([`Sink::Serve`]).
    pub fn serving_url(&self) -> Option<&str> {
        self.serving.as_deref()
    }

    /// Logs the axes of the `world` space, RDF (x right, y down, z forward: the camera's
    /// axes, OpenCV's), once for the whole recording.
    pub fn log_world_axes(&self) -> Result<()> {
        Ok(self
            .stream
            .log_static(paths::WORLD, &rerun::ViewCoordinates::RDF())?)
    }

    /// Puts what follows at frame `index` of the `frame` timeline.
    pub fn set_frame(&self, index: u64) {
        self.stream.set_time_sequence(
            paths::FRAME_TIMELINE,
            i64::try_from(index).unwrap_or(i64::MAX),
        );
    }

    /// Puts what follows at step `step` of the `step` timeline (training).
    pub fn set_step(&self, step: u64) {
        self.stream.set_time_sequence(
            paths::STEP_TIMELINE,
            i64::try_from(step).unwrap_or(i64::MAX),
        );
    }

    /// Logs one value of the time series at `path` (e.g. [`paths::TRAIN_LOSS`]).
    pub fn log_scalar(&self, path: &str, value: f64) -> Result<()> {
        Ok(self.stream.log(path, &rerun::Scalars::new([value]))?)
    }

    /// Puts what follows at `seconds` on the `time` timeline: a timestamp when it reads as
    /// seconds since 1970 after 1973 (TUM files), else a duration from the start.
    pub fn set_time_secs(&self, seconds: f64) {
        if seconds > 1e8 {
            self.stream
                .set_timestamp_secs_since_epoch(paths::TIME_TIMELINE, seconds);
        } else {
            self.stream.set_duration_secs(paths::TIME_TIMELINE, seconds);
        }
    }

    /// Logs the camera: its `Pinhole` (intrinsics) and its pose `world_from_camera`.
    pub fn log_camera(
        &self,
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
    ) -> Result<()> {
        self.stream
            .log(paths::CAMERA, &convert::transform(world_from_camera))?;
        self.stream.log(paths::IMAGE, &convert::pinhole(camera))?;
        Ok(())
    }

    /// Logs a photo.
    pub fn log_image(&self, image: &RgbImage) -> Result<()> {
        self.log_rgb8(image.width, image.height, image.to_rgb8())
    }

    /// Logs 8-bit RGB pixels as the photo: a slice (copied) or a `Vec` (handed over as it is).
    ///
    /// # Errors
    /// When there are not `width * height` pixels.
    pub fn log_rgb8<'a>(
        &self,
        width: u32,
        height: u32,
        pixels: impl Into<Cow<'a, [[u8; 3]]>>,
    ) -> Result<()> {
        let image = convert::rgb_image(width, height, pixels.into())?;
        Ok(self.stream.log(paths::RGB, &image)?)
    }

    /// Logs depth (a `DepthImage`: metres, or relative depth in its own units).
    pub fn log_depth<K: anydepth_core::ValueKind>(&self, depth: &DepthMap<K>) -> Result<()> {
        Ok(self
            .stream
            .log(paths::DEPTH, &convert::depth_image(depth))?)
    }

    /// Logs relative depth, colour-mapped.
    pub fn log_disparity(&self, disparity: &DepthMap<Disparity>, colormap: Colormap) -> Result<()> {
        Ok(self.stream.log(
            paths::DISPARITY,
            &convert::disparity_image(disparity, colormap),
        )?)
    }

    /// Logs what a depth model returned: metres as depth, disparity colour-mapped, Depth
    /// Anything 3's relative depth as depth in its own units.
    pub fn log_prediction(&self, prediction: &Prediction, colormap: Colormap) -> Result<()> {
        match prediction {
            Prediction::Metric(depth) => self.log_depth(depth),
            Prediction::RelativeDepth(depth) => self.log_depth(depth),
            Prediction::Disparity(disparity) => self.log_disparity(disparity, colormap),
        }
    }

    /// Logs a point cloud (in the world frame) at `path`, e.g. [`paths::CLOUD`].
    ///
    /// # Errors
    /// When its colours and points disagree in number.
    pub fn log_cloud(&self, path: &str, cloud: &PointCloud, radius: PointRadius) -> Result<()> {
        Ok(self.stream.log(path, &convert::points3d(cloud, radius)?)?)
    }

    /// Logs a triangle mesh (in the world frame) at `path`, e.g. [`paths::MESH`].
    ///
    /// # Errors
    /// When its colours or normals and vertices disagree in number.
    pub fn log_mesh(&self, path: &str, mesh: &TriangleMesh) -> Result<()> {
        Ok(self.stream.log(path, &convert::mesh3d(mesh)?)?)
    }

    /// Logs the fused model at [`paths::MODEL`] as static data (shown at every frame).
    pub fn log_model_mesh(&self, mesh: &TriangleMesh) -> Result<()> {
        Ok(self
            .stream
            .log_static(paths::MODEL, &convert::mesh3d(mesh)?)?)
    }

    /// Logs the fused model's surface points at [`paths::MODEL`] as static data.
    pub fn log_model_cloud(&self, cloud: &PointCloud, radius: PointRadius) -> Result<()> {
        Ok(self
            .stream
            .log_static(paths::MODEL, &convert::points3d(cloud, radius)?)?)
    }

    /// Waits until everything logged so far has reached the sink (file, viewer).
    ///
    /// # Errors
    /// When the sink cannot take the data (a viewer gone away, after Rerun's own timeout).
    pub fn flush(&self) -> Result<()> {
        Ok(self.stream.flush_blocking()?)
    }
}

/// Starts (or reuses) a viewer on `port` and connects to it; fails fast without one.
fn spawn(builder: RecordingStreamBuilder, port: u16) -> Result<RecordingStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        let options = rerun::SpawnOptions {
            port,
            ..Default::default()
        };
        match rerun::spawn(&options) {
            Ok(_) => {}
            Err(
                rerun::SpawnError::ExecutableNotFoundInPath { .. }
                | rerun::SpawnError::ExecutableNotFound { .. },
            ) => return Err(Error::ViewerNotFound),
            Err(e) => return Err(rerun::RecordingStreamError::from(e).into()),
        }
        wait_listening(addr, SPAWN_WAIT).ok_or(Error::ViewerDidNotStart {
            port,
            waited_secs: SPAWN_WAIT.as_secs(),
        })?;
    }
    Ok(builder.connect_grpc_opts(format!("rerun+http://{addr}/proxy"))?)
}

/// Polls `addr` until something accepts a connection or `timeout` passes.
fn wait_listening(addr: SocketAddr, timeout: Duration) -> Option<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Checks that something accepts connections where `url` points.
fn check_listening(url: &str) -> Result<()> {
    let uri: rerun::external::re_uri::ProxyUri = url.parse().map_err(|e| {
        Error::InvalidOption(format!(
            "--connect {url:?}: {e} (expected rerun+http://HOST:PORT/proxy)"
        ))
    })?;
    // IPv6 hosts print in brackets, which address resolution does not take.
    let host = uri.origin.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.origin.port;
    let reachable = (host, port)
        .to_socket_addrs()
        .map(|addrs| {
            addrs
                .into_iter()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false);
    if reachable {
        Ok(())
    } else {
        Err(Error::NotListening {
            url: url.to_owned(),
        })
    }
}
