//! `anydepth`: photos to depth maps, point clouds and meshes.
//!
//! This binary does not link libtorch. Commands that run a depth network are handed, with
//! the same arguments, to `anydepth-torch` in the same folder; the others run here.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anydepth::{Cli, NoEngine};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.needs_engine() {
        return anydepth::run(cli, &NoEngine);
    }
    let engine = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(ENGINE_BINARY)));
    let Some(engine) = engine else {
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

/// The binary that links libtorch and runs depth networks.
const ENGINE_BINARY: &str = "anydepth-torch";
