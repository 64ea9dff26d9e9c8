//! `anydepth stabilize`: a clip's per-frame relative disparity brought to one consistent
//! scale and shift.

use std::process::ExitCode;

use anydepth_pipeline::stabilize::{StabilizeObserver, StabilizeRequest};
use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use std::sync::OnceLock;

use crate::progress::progress_bar;

/// Arguments of `anydepth stabilize`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # depth of every frame, then one scale and shift for the whole clip
  anydepth depth 'frames/*.jpg' --formats npy --out depth/
  anydepth stabilize --disparity 'depth/*.npy' --color 'frames/*.jpg' --out steady/
  # a fixed camera: no motion search
  anydepth stabilize --disparity 'depth/*.npy' --static --out steady/")]
pub struct StabilizeArgs {
    #[command(flatten)]
    pub request: StabilizeRequest,

    /// No progress bar or summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The progress bar, as the job's observer.
struct Observer {
    quiet: bool,
    bar: OnceLock<ProgressBar>,
}

impl StabilizeObserver for Observer {
    fn frames(&self, count: usize) {
        let _ = self.bar.set(progress_bar(count, self.quiet));
    }

    fn item(&self, name: &str) {
        if let Some(bar) = self.bar.get() {
            bar.set_message(name.to_owned());
        }
    }

    fn advance(&self) {
        if let Some(bar) = self.bar.get() {
            bar.inc(1);
        }
    }
}

/// Runs `anydepth stabilize`.
pub fn run(args: StabilizeArgs) -> Result<ExitCode> {
    let plan = args.request.plan()?;
    let observer = Observer {
        quiet: args.quiet,
        bar: OnceLock::new(),
    };
    let outcome = plan.run(&observer);
    if let Some(bar) = observer.bar.get() {
        bar.finish_and_clear();
    }
    let report = outcome?;
    if !args.quiet {
        let (low, high) = report.scale_range;
        eprintln!(
            "{} frames stabilised into {} (scales {low:.3} to {high:.3})",
            report.written,
            args.request.out.display()
        );
        if !report.unanchored.is_empty() {
            eprintln!(
                "{} frames overlapped no earlier frame (a cut, or motion beyond --max-shift); \
                 their median and spread were matched to the previous frame's:",
                report.unanchored.len()
            );
            for file in &report.unanchored {
                eprintln!("  {}", file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
