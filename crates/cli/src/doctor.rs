//! `anydepth doctor`: what this machine offers anydepth: LibTorch, CUDA and the GPUs, the
//! weights cache, FFmpeg, and the Rerun viewer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anydepth_model::hub::Hub;
use anydepth_model::{EngineLoader, RuntimeReport};
use anydepth_pipeline::chain_text;
use anyhow::Result;
use clap::Args;
use serde::Serialize;

/// Arguments of `anydepth doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth doctor
  anydepth doctor --json > doctor.json")]
pub struct DoctorArgs {
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Everything `doctor` reports.
#[derive(Debug, Serialize)]
struct Report {
    anydepth: &'static str,
    /// The engine's runtime, unless it could not be inspected.
    runtime: Option<RuntimeReport>,
    /// Why the runtime could not be inspected (e.g. `anydepth-torch` does not start).
    runtime_problem: Option<String>,
    weights: WeightsReport,
    /// The FFmpeg libraries videos are read and written with; `None` in a build without
    /// FFmpeg (`--no-default-features`).
    ffmpeg: Option<String>,
    /// The `rerun` viewer on `PATH` (what `--spawn` starts), if any.
    rerun: Option<PathBuf>,
}

/// Where checkpoints from the hub go.
#[derive(Debug, Serialize)]
struct WeightsReport {
    /// The cache root.
    cache: Option<PathBuf>,
    /// Why there is no cache root, when there is none.
    cache_problem: Option<String>,
    /// `HF_HUB_OFFLINE`: only cached checkpoints are used.
    offline: bool,
    endpoint: Option<String>,
}

/// Runs `anydepth doctor`. Exits 0 whatever the machine offers (no GPU is a finding, not
/// an error), 1 when the depth runtime itself cannot be inspected (reported with the rest).
pub fn run(args: DoctorArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    let runtime = loader.runtime();
    let hub = Hub::from_env();
    let report = Report {
        anydepth: env!("CARGO_PKG_VERSION"),
        weights: WeightsReport {
            cache: hub.as_ref().ok().map(|hub| hub.cache_dir.clone()),
            cache_problem: hub.as_ref().err().map(ToString::to_string),
            offline: hub.as_ref().is_ok_and(|hub| hub.offline),
            endpoint: hub.as_ref().ok().map(|hub| hub.endpoint.clone()),
        },
        ffmpeg: anydepth_video::ffmpeg_libraries(),
        rerun: find_on_path("rerun"),
        runtime_problem: runtime.as_ref().err().map(|e| chain_text(e)),
        runtime: runtime.ok(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(if report.runtime.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report as aligned `name: value` lines.
fn text(report: &Report) -> String {
    let mut lines: Vec<(&str, String)> = vec![("anydepth", report.anydepth.to_string())];
    match (&report.runtime, &report.runtime_problem) {
        (Some(runtime), _) => lines.extend(runtime_lines(runtime)),
        (None, problem) => lines.push((
            "LibTorch",
            format!(
                "cannot inspect the depth runtime: {}",
                problem.as_deref().unwrap_or("unknown error")
            ),
        )),
    }
    let weights = &report.weights;
    lines.push((
        "weights cache",
        match (&weights.cache, &weights.cache_problem) {
            (Some(dir), _) => format!(
                "{}{}",
                dir.display(),
                if weights.offline {
                    " (offline: HF_HUB_OFFLINE is set, only cached weights are used)"
                } else {
                    " (online: missing weights are downloaded)"
                }
            ),
            (None, why) => why.clone().unwrap_or_else(|| "unknown".into()),
        },
    ));
    lines.push((
        "video",
        report.ffmpeg.as_ref().map_or_else(
            || "built without FFmpeg (--no-default-features): video commands are off".into(),
            |libraries| format!("FFmpeg: {libraries}"),
        ),
    ));
    lines.push((
        "rerun viewer",
        report.rerun.as_deref().map_or_else(
            || "not found on PATH (needed only for --spawn)".into(),
            |path| path.display().to_string(),
        ),
    ));
    // The longest name and its colon.
    let width = lines
        .iter()
        .map(|(name, _)| name.len() + 1)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(name, value)| format!("{:<width$}  {value}\n", format!("{name}:")))
        .collect()
}

/// The lines of the runtime: LibTorch, CUDA, GPUs and the device `auto` picks.
fn runtime_lines(runtime: &RuntimeReport) -> Vec<(&'static str, String)> {
    let cuda = &runtime.cuda;
    let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let mut lines: Vec<(&'static str, String)> = vec![
        (
            "LibTorch",
            format!(
                "{} ({})",
                or_none(&runtime.library_version),
                runtime
                    .library_dir
                    .as_deref()
                    .map_or_else(|| "folder unknown".into(), |dir| dir.display().to_string())
            ),
        ),
        (
            "CUDA",
            match (cuda.compiled, cuda.available, &cuda.problem) {
                (_, true, _) => "compiled in, available".into(),
                (true, false, Some(why)) => format!("compiled in, not available: {why}"),
                (true, false, None) => "compiled in, not available".into(),
                (false, _, _) => "not compiled in (a CPU-only LibTorch)".into(),
            },
        ),
        ("CUDA driver", or_none(&cuda.driver_version)),
        ("CUDA runtime", or_none(&cuda.runtime_version)),
        (
            "cuDNN",
            match (&cuda.cudnn_version, cuda.cudnn_available) {
                (Some(version), true) => format!("{version}, available"),
                (Some(version), false) => format!("{version}, not available"),
                (None, _) => "-".into(),
            },
        ),
    ];
    lines.push((
        "CUDA graphs",
        match (cuda.graphs_available, &cuda.graphs_problem) {
            (true, _) => "available (--cuda-graphs)".into(),
            (false, Some(why)) => format!("not available: {why}"),
            (false, None) => "not available".into(),
        },
    ));
    if cuda.gpus.is_empty() {
        lines.push(("GPUs", "none: models run on the CPU".into()));
    }
    for gpu in &cuda.gpus {
        lines.push((
            "GPU",
            format!(
                "cuda:{} {}, {:.1} GiB, compute capability {}",
                gpu.index,
                gpu.name,
                gpu.memory_bytes as f64 / f64::from(1u32 << 30),
                gpu.compute_capability
            ),
        ));
    }
    lines.push(("--device auto", runtime.auto_device.clone()));
    lines
}

/// The first executable file called `name` in a folder of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
