//! `anydepth`: photos to depth maps (and, in time, point clouds and meshes).
//!
//! A thin binary: arguments are validated into a plan before any work starts, the work is
//! done by the library crates, and errors are printed once with their chain of causes.

mod bench;
mod cloud;
mod colormap;
mod datasets;
mod depth;
mod eval;
mod fuse;
mod inputs;
mod output;
mod scene;
mod viz;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Photos to depth maps with Depth Anything V1/V2 on LibTorch.
#[derive(Debug, Parser)]
#[command(name = "anydepth", version, about, long_about = None)]
struct Cli {
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
    /// Time the network and the whole pipeline (latency, throughput).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Depth(args) => depth::run(args),
        Command::Cloud(args) => cloud::run_cloud(args),
        Command::Mesh(args) => cloud::run_mesh(args),
        Command::Eval(args) => eval::run(args),
        Command::Fuse(args) => fuse::run(args),
        Command::Bench(args) => bench::run(args),
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
