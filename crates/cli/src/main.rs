//! `anydepth`: photos to depth maps, point clouds and meshes.
//!
//! This binary does not link libtorch. Commands that run a depth network are handed, with
//! the same arguments, to `anydepth-torch` in the same folder; the others run here.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anydepth::{engine_binary, Cli, NoEngine, ENGINE_BINARY};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.needs_engine() {
        return anydepth::run(cli, &NoEngine);
    }
    let Some(engine) = engine_binary() else {
        eprintln!("error: cannot find the folder of this binary to start {ENGINE_BINARY}");
        return ExitCode::from(2);
    };
    // Only returns when the binary cannot be started.
    let error = std::process::Command::new(&engine)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "error: this command runs a depth network, which needs {ENGINE_BINARY} beside anydepth \
         (`cargo build --release` builds both)\n  caused by: {error}: {}",
        engine.display()
    );
    ExitCode::from(2)
}
