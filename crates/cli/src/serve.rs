//! `anydepth serve`: the model loaded once, photos posted over HTTP (see
//! [`anydepth_serve`]).

use std::process::ExitCode;

use anydepth_model::EngineLoader;
use anydepth_serve::{Control, ServeRequest, Signals, Stop};
use anyhow::Result;
use clap::Args;

use crate::colormap::ColormapArg;
use crate::progress::DownloadBar;

/// Arguments of `anydepth serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth serve --metric indoor --port 8080
  curl --data-binary @room.jpg 'localhost:8080/v1/depth?format=npy' -o room.npy
  curl --data-binary @room.jpg 'localhost:8080/v1/cloud?format=ply&fov=60' -o room.ply
  anydepth serve --bind 0.0.0.0 --token \"$TOKEN\" --batch 8 --batch-wait-ms 5
Endpoints: GET / (web page), GET /healthz, GET /metrics (Prometheus),
  POST /v1/depth?format=npy|png16|pfm|exr|color|side-by-side,
  POST /v1/cloud?format=ply|glb and /v1/mesh?format=ply|glb
  (camera: intrinsics=FX,FY,CX,CY or fov=DEG; scale=S&shift=T for a relative model).
SIGTERM or Ctrl-C lets the requests in flight finish, then exits 0.")]
pub struct ServeArgs {
    #[command(flatten)]
    pub request: ServeRequest,

    /// Colour map of format=color and format=side-by-side when the query names none.
    #[arg(long, value_enum, default_value_t = ColormapArg::default())]
    pub colormap: ColormapArg,

    /// No download progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `anydepth serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let request = ServeRequest {
        colormap: args.colormap.0,
        ..args.request
    };
    let mut download = DownloadBar::new(args.quiet);
    request.run(
        loader,
        Control {
            downloads: &mut |file, done, total| download.update(file, done, total),
            listening: &mut |address| {
                eprintln!("anydepth serve: listening on http://{address} (Ctrl-C to stop)");
            },
            stop: Stop::new(),
            signals: Signals::Stop,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
