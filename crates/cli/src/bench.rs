//! `anydepth bench`: latency and throughput of the network and of the whole pipeline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anydepth_model::{DeviceChoice, EngineLoader, EstimatorOptions, ModelSpec, Precision};
use anyhow::{bail, Context, Result};
use clap::Args;

/// Arguments of `anydepth bench`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  anydepth bench --weights depth_anything_v2_vits.pth --device cuda --precision fp16 --batch 16
  anydepth bench --weights depth_anything_v2_vits.pth --photo photo.jpg")]
pub struct BenchArgs {
    /// Checkpoint file (.pth or .safetensors).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,

    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,

    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,

    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Network input size WIDTHxHEIGHT (multiples of 14) for the network-only timing.
    #[arg(long, default_value = "518x518")]
    pub size: String,

    /// Also time the whole pipeline (decode, preprocess, network, resize back) on a photo.
    #[arg(long, value_name = "FILE")]
    pub photo: Option<PathBuf>,

    /// Timed iterations (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,

    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `anydepth bench` and prints one line per measurement.
pub fn run(args: BenchArgs, loader: &dyn EngineLoader) -> Result<ExitCode> {
    if args.iters == 0 || args.batch == 0 {
        bail!("--iters and --batch must be at least 1");
    }
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w >= 14 && *h >= 14 && w % 14 == 0 && h % 14 == 0)
        .context("--size must be WIDTHxHEIGHT with multiples of 14, e.g. 518x518")?;
    let options = EstimatorOptions {
        device: args.device,
        precision: args.precision,
        batch_size: args.batch,
        ..Default::default()
    };
    let estimator = loader
        .load(&args.weights, ModelSpec::default(), options)
        .context("cannot load the model")?;
    println!(
        "{} on {}, {:?}, batch {}",
        estimator.config().describe(),
        estimator.device_name(),
        options.precision,
        args.batch
    );

    let timings = estimator.time_forward(args.batch, (w, h), args.warmup, args.iters)?;
    let t = median(timings.seconds);
    println!(
        "network {w}x{h}: {:.2} ms per batch, {:.1} images/s",
        t * 1e3,
        args.batch as f64 / t
    );

    if let Some(photo) = &args.photo {
        let mut times = Vec::with_capacity(args.iters);
        let mut size = (0, 0);
        for i in 0..args.warmup + args.iters {
            let t0 = Instant::now();
            let image = anydepth_core::load_image(photo)?;
            size = (image.width, image.height);
            let images = vec![image; args.batch];
            let out = estimator.predict_batch(&images)?;
            drop(out);
            if i >= args.warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        let t = median(times);
        println!(
            "pipeline {}x{} photo: {:.2} ms per batch, {:.1} images/s",
            size.0,
            size.1,
            t * 1e3,
            args.batch as f64 / t
        );
    }
    Ok(ExitCode::SUCCESS)
}
