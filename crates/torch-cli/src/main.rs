//! `anydepth-torch`: the `anydepth` command line with the depth networks on LibTorch.
//!
//! `anydepth` hands it the commands that run a network; it takes the same arguments.

use std::process::ExitCode;

use anydepth::Cli;
use anydepth_torch::TorchLoader;
use clap::Parser;

fn main() -> ExitCode {
    anydepth::run(Cli::parse(), &TorchLoader)
}
