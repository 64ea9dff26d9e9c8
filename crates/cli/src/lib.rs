//! The `anydepth` command line: clap commands parsed into typed requests of
//! [`anydepth_pipeline`], one call into it per command, and the report.
//!
//! Two binaries share this code. `anydepth` does not link libtorch, so commands that never
//! run a network (geometry from depth files, evaluation of predictions on disk) start in
//! milliseconds; when a command needs a network, it hands the same arguments to
//! `anydepth-torch` beside it, which links libtorch and runs the command with
//! [`anydepth_torch::TorchLoader`](https://docs.rs/anydepth-torch).

mod bench;
mod cloud;
mod colormap;
mod depth;
mod doctor;
mod eval;
mod fuse;
mod progress;
mod serve;
mod stabilize;
mod train;
mod video;
mod views;
mod viz;

use std::process::ExitCode;

use anydepth_model::{DepthEngine, EngineLoader, EstimatorOptions, ModelSpec};
use clap::{Parser, Subcommand};

/// Photos to depth maps with Depth Anything V1/V2 on LibTorch.
#[derive(Debug, Parser)]
#[command(name = "anydepth", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Estimate depth for photos, folders or globs and write depth maps.
    Depth(depth::DepthArgs),
    /// Turn one photo or depth map into a point cloud (PLY).
    Cloud(cloud::CloudArgs),
    /// Turn one photo or depth map into a mesh (PLY), cut at depth discontinuities.
    Mesh(cloud::MeshArgs),
    /// Score a model (or predictions on disk) on NYU, KITTI, DA-2K or a list of RGB-D
    /// pairs: AbsRel, delta1-3, RMSE, log-RMSE (or DA-2K pair accuracy).
    Eval(eval::EvalArgs),
    /// Fuse many RGB-D frames or photos into one mesh (TSDF), with poses or tracked.
    Fuse(fuse::FuseArgs),
    /// Depth Anything 3: a few photos of one scene to depth, confidence and cameras.
    Views(views::ViewsArgs),
    /// Give a clip's per-frame relative disparity one consistent scale and shift (steady
    /// video depth), fitting each frame to earlier ones over pixels that correspond.
    Stabilize(stabilize::StabilizeArgs),
    /// Time the network and the whole pipeline (latency, throughput).
    Bench(bench::BenchArgs),
    /// Fine-tune a model on depth ground truth (NYU, KITTI or a list of RGB-D pairs).
    Train(train::TrainArgs),
    /// Distil a teacher into a student: the teacher labels unlabelled photos (cached),
    /// the student learns the labels under strong perturbations.
    Distill(train::DistillArgs),
    /// Report LibTorch, CUDA, the GPUs, the weights cache and the Rerun viewer.
    Doctor(doctor::DoctorArgs),
    /// Serve depth maps, point clouds and meshes of posted photos over HTTP, the model
    /// loaded once and requests batched on it.
    Serve(serve::ServeArgs),
}

impl Cli {
    /// Whether the command runs a depth network (and so needs libtorch).
    pub fn needs_engine(&self) -> bool {
        match &self.command {
            Command::Depth(_)
            | Command::Bench(_)
            | Command::Train(_)
            | Command::Distill(_)
            | Command::Serve(_) => true,
            // Runs here, and asks the engine binary for its runtime: so it also reports an
            // engine that cannot start.
            Command::Doctor(_) => false,
            Command::Stabilize(_) => false,
            Command::Cloud(args) => args.scene.photo.is_some(),
            Command::Mesh(args) => args.scene.photo.is_some(),
            Command::Fuse(args) => !args.request.photos.is_empty(),
            Command::Views(_) => true,
            Command::Eval(args) => args.predictions.is_none(),
        }
    }
}

/// Runs the parsed command with networks from `loader`; prints errors with their causes.
pub fn run(cli: Cli, loader: &dyn EngineLoader) -> ExitCode {
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Depth(args) => depth::run(args, loader),
        Command::Cloud(args) => cloud::run_cloud(args, loader),
        Command::Mesh(args) => cloud::run_mesh(args, loader),
        Command::Eval(args) => eval::run(args, loader),
        Command::Fuse(args) => fuse::run(args, loader),
        Command::Views(args) => views::run(args, loader),
        Command::Stabilize(args) => stabilize::run(args),
        Command::Bench(args) => bench::run(args, loader),
        Command::Train(args) => train::run(args, loader),
        Command::Distill(args) => train::run_distill(args, loader),
        Command::Doctor(args) => doctor::run(args, loader),
        Command::Serve(args) => serve::run(args, loader),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

/// The loader of a binary without libtorch: every load is refused (such a binary hands
/// commands that need a network to `anydepth-torch`, so this is reached only by mistake);
/// the runtime is `anydepth-torch doctor --json`'s, run beside this binary.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEngine;

impl EngineLoader for NoEngine {
    fn load(
        &self,
        weights: &std::path::Path,
        _spec: ModelSpec,
        _options: EstimatorOptions,
    ) -> anydepth_model::Result<Box<dyn DepthEngine>> {
        Err(anydepth_model::Error::Invalid(format!(
            "this binary runs no network (anydepth-torch does): cannot load {}",
            weights.display()
        )))
    }

    fn runtime(&self) -> anydepth_model::Result<anydepth_model::RuntimeReport> {
        let invalid = anydepth_model::Error::Invalid;
        let engine = engine_binary()
            .ok_or_else(|| invalid(format!("cannot find the folder of {ENGINE_BINARY}")))?;
        let out = std::process::Command::new(&engine)
            .args(["doctor", "--json"])
            .output()
            .map_err(|e| invalid(format!("cannot start {}: {e}", engine.display())))?;
        if !out.status.success() {
            return Err(invalid(format!(
                "{} failed ({}): {}",
                engine.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| invalid(format!("{} printed no report: {e}", engine.display())))?;
        serde_json::from_value(report["runtime"].clone())
            .map_err(|e| invalid(format!("{} printed no runtime: {e}", engine.display())))
    }
}

/// The binary that links libtorch and runs depth networks, beside `anydepth`.
pub const ENGINE_BINARY: &str = "anydepth-torch";

/// Where [`ENGINE_BINARY`] should be: in the folder of the running binary.
pub fn engine_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join(ENGINE_BINARY))
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_writes_the_default_formats_by_default() {
        let cli = Cli::try_parse_from(["anydepth", "depth", "photo.jpg", "--out", "depth"])
            .expect("parses");
        let Command::Depth(args) = cli.command else {
            panic!("not depth: {cli:?}");
        };
        assert_eq!(
            args.formats,
            anydepth_pipeline::output::DEFAULT_FORMATS.to_vec()
        );
    }

    #[test]
    fn serve_runs_a_network() {
        let cli = Cli::try_parse_from(["anydepth", "serve", "--port", "0"]).expect("parses");
        assert!(cli.needs_engine());
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {cli:?}");
        };
        assert_eq!(args.request.model.input_size, 518);
        assert_eq!(
            args.request.max_body,
            anydepth_serve::DEFAULT_MAX_BODY_BYTES
        );
    }

    #[test]
    fn stabilize_runs_without_a_network() {
        let cli = Cli::try_parse_from([
            "anydepth",
            "stabilize",
            "--disparity",
            "depth/*.npy",
            "--out",
            "steady",
        ])
        .expect("parses");
        assert!(!cli.needs_engine());
    }
}
