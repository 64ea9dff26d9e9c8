//! The Rerun options of the commands that log (`depth`, `cloud`, `mesh`, `fuse`, `views`,
//! `train`, `distill`), and the glue from a command's results to
//! [`anydepth_viz`]. Without any of the options nothing is logged and nothing is converted.

use std::path::{Path, PathBuf};

use anydepth_core::camera::Intrinsics;
use anydepth_pipeline::scene::CameraRequest;
use anydepth_viz::{Recording, Sink};
use anyhow::{Context, Result};
use clap::Args;

/// Where to stream what a command computes, as Rerun's own examples take it.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Rerun (viewer)")]
pub struct RerunArgs {
    /// Stream to a Rerun viewer: the one listening on --port, or a new `rerun` started
    /// from PATH (pip install rerun-sdk==0.36.3).
    #[arg(long, conflicts_with_all = ["connect", "serve", "save"])]
    pub spawn: bool,

    /// Stream to a Rerun viewer or server at URL [default: rerun+http://127.0.0.1:9876/proxy].
    #[arg(
        long,
        value_name = "URL",
        num_args = 0..=1,
        default_missing_value = "rerun+http://127.0.0.1:9876/proxy",
        conflicts_with_all = ["serve", "save"]
    )]
    pub connect: Option<String>,

    /// Serve the recording from this process on --bind:--port for native or web viewers
    /// (`rerun --connect rerun+http://HOST:PORT/proxy`); after the work, keeps serving
    /// until Ctrl-C.
    #[arg(long, conflicts_with = "save")]
    pub serve: bool,

    /// Save the recording to a file (open it with `rerun FILE.rrd`).
    #[arg(long, value_name = "FILE.rrd")]
    pub save: Option<PathBuf>,

    /// Port of --spawn and --serve.
    #[arg(long, default_value_t = anydepth_viz::DEFAULT_PORT, value_name = "PORT")]
    pub port: u16,

    /// Address --serve listens on (0.0.0.0: every interface).
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind: String,

    /// With --serve: memory kept for viewers that connect late (e.g. 25%, 2GB).
    #[arg(long, default_value = "25%", value_name = "LIMIT")]
    pub server_memory_limit: String,
}

impl RerunArgs {
    /// The sink the options ask for; `None` without any of them.
    pub fn sink(&self) -> Option<Sink> {
        if self.spawn {
            Some(Sink::Spawn { port: self.port })
        } else if let Some(url) = &self.connect {
            Some(Sink::Connect { url: url.clone() })
        } else if self.serve {
            Some(Sink::Serve {
                bind_ip: self.bind.clone(),
                port: self.port,
                memory_limit: self.server_memory_limit.clone(),
            })
        } else {
            self.save.clone().map(|path| Sink::Save { path })
        }
    }

    /// Opens the recording the options ask for (before any work, so a missing viewer fails
    /// fast), with the world's axes logged; `None` without any option.
    pub fn start(&self) -> Result<Option<Recording>> {
        let Some(sink) = self.sink() else {
            return Ok(None);
        };
        let recording =
            Recording::start(&sink, "anydepth").context("cannot start the Rerun recording")?;
        recording.log_world_axes()?;
        Ok(Some(recording))
    }
}

/// Runs `work` on this thread while `log` sends data to `recording` from a second one, so
/// that converting the data for Rerun, and Rerun's encoding on its own threads, happen
/// while `work` (writing the outputs) runs. Without a recording only `work` runs.
///
/// Rerun's time is per thread: `log` sets the frame it logs at itself. Returns what `work`
/// returned, or the error `log` met.
pub fn log_beside<T>(
    recording: Option<&Recording>,
    log: impl FnOnce(&Recording) -> Result<()> + Send,
    work: impl FnOnce() -> T,
) -> Result<T> {
    let log = recording.map(|r| move || log(r).map_err(anydepth_pipeline::BoxError::from));
    Ok(anydepth_pipeline::run_beside(log, work)?)
}

/// Flushes the recording; when serving, keeps the process (and the server) alive until
/// Ctrl-C so viewers can still connect.
pub fn finish(recording: Option<Recording>) -> Result<()> {
    let Some(recording) = recording else {
        return Ok(());
    };
    recording
        .flush()
        .context("cannot send the recording to Rerun")?;
    if let Some(url) = recording.serving_url() {
        eprintln!(
            "serving the recording at {url} (connect with `rerun --connect {url}`, or a web \
             viewer of Rerun {}); press Ctrl-C to stop",
            anydepth_viz::RERUN_VERSION
        );
        loop {
            std::thread::park();
        }
    }
    tracing::info!("recording sent to Rerun");
    Ok(())
}

/// The camera of a photo for display: the scene's resolver with nothing given (EXIF, else
/// the default guess), without its message (only the viewer uses it), and the guess too
/// where the EXIF cannot be read.
pub fn photo_camera(photo: &Path, width: u32, height: u32) -> Result<Intrinsics> {
    let from_photo = CameraRequest::default().resolve(Some(photo), width, height, &|_| {});
    match from_photo {
        Ok(camera) => Ok(camera),
        Err(_) => Ok(Intrinsics::default_guess(width, height)?),
    }
}
