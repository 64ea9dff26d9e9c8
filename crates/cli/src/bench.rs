//! `anydepth bench`: latency and throughput of the network and of the whole pipeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anydepth_core::colormap::Colormap;
use anydepth_model::{
    DepthEngine, DeviceChoice, EngineLoader, EstimatorOptions, ModelSpec, Precision, Preprocessing,
    StageTimings,
};
use anydepth_pipeline::output::{output_path, write_output, DEFAULT_FORMATS};
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

    /// Allow TensorFloat-32 in fp32 convolutions and matrix products on CUDA GPUs (in
    /// convolutions always with fp16 and bf16, for those that stay fp32).
    #[arg(long)]
    pub tf32: bool,

    /// Capture the network as a CUDA graph and replay it (V1/V2 on a CUDA device).
    #[arg(long)]
    pub cuda_graphs: bool,

    /// Where photos are resized and normalised (auto: on a GPU there, else exact).
    #[arg(
        long = "preprocess",
        value_enum,
        default_value = "auto",
        value_name = "WHERE"
    )]
    pub preprocessing: Preprocessing,

    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Network input size WIDTHxHEIGHT (multiples of 14) for the network-only timing.
    #[arg(long, default_value = "518x518")]
    pub size: String,

    /// Also time the whole pipeline on a photo, stage by stage: decode, preprocess, upload,
    /// network, resize back, and writing the maps `depth` writes by default (npy, color).
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
        allow_tf32: args.tf32,
        preprocessing: args.preprocessing,
        cuda_graphs: args.cuda_graphs,
        ..Default::default()
    };
    let estimator = loader
        .load(&args.weights, ModelSpec::default(), options)
        .context("cannot load the model")?;
    println!(
        "{} on {}{}, {:?}, batch {}{}",
        estimator.config().describe(),
        estimator.device_name(),
        if args.device == DeviceChoice::Auto {
            " (chosen by --device auto)"
        } else {
            ""
        },
        options.precision,
        args.batch,
        // The options as loaded: `--device auto` on a machine without a GPU turns them off.
        if estimator.options().cuda_graphs {
            ", CUDA graphs"
        } else {
            ""
        }
    );

    let timings = estimator.time_forward(args.batch, (w, h), args.warmup, args.iters)?;
    let t = median(timings.seconds);
    println!(
        "network {w}x{h}: {:.2} ms per batch, {:.1} images/s",
        t * 1e3,
        args.batch as f64 / t
    );
    if let Some(memory) = timings.memory {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        // Weights, input and passes: the estimator drops what loading left cached first.
        println!(
            "device memory: {:.1} MiB allocated at the peak, {:.1} MiB reserved at the peak, \
             {:.1} MiB reserved after",
            mib(memory.peak_allocated),
            mib(memory.peak_reserved),
            mib(memory.reserved)
        );
    }

    if let Some(photo) = &args.photo {
        time_pipeline(&*estimator, photo, &args)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Times the whole pipeline on `photo` (`--batch` copies of it), stage by stage, and prints
/// one line per stage: the mean per batch, and the stages' sum against the measured total.
fn time_pipeline(estimator: &dyn DepthEngine, photo: &Path, args: &BenchArgs) -> Result<()> {
    let out_dir = tempfile::tempdir().context("cannot create a folder for the written maps")?;
    let mut sum = PipelineTimings::default();
    let mut size = (0, 0);
    for i in 0..args.warmup + args.iters {
        let mut timed = PipelineTimings::default();
        let t0 = Instant::now();
        let image = anydepth_core::load_image(photo)
            .with_context(|| format!("cannot read {}", photo.display()))?;
        size = (image.width, image.height);
        let images = vec![image; args.batch];
        let t1 = Instant::now();
        let (predictions, stages) = estimator.predict_batch_timed(&images)?;
        let t2 = Instant::now();
        for (j, prediction) in predictions.iter().enumerate() {
            for format in DEFAULT_FORMATS {
                let path = output_path(out_dir.path(), &format!("{j}"), format);
                write_output(
                    &path,
                    format,
                    prediction.values(),
                    prediction.width(),
                    prediction.height(),
                    None,
                    Colormap::default(),
                    true,
                )?;
            }
        }
        let t3 = Instant::now();
        timed.decode = (t1 - t0).as_secs_f64();
        timed.stages = stages;
        timed.write = (t3 - t2).as_secs_f64();
        timed.total = (t3 - t0).as_secs_f64();
        if i >= args.warmup {
            sum.add(&timed);
        }
    }
    let n = args.iters as f64;
    let per_batch = |seconds: f64| seconds / n * 1e3;
    let PipelineTimings {
        decode,
        stages,
        write,
        total,
    } = sum;
    println!(
        "pipeline {}x{} photo: {:.2} ms per batch, {:.1} images/s (mean of {})",
        size.0,
        size.1,
        per_batch(total),
        args.batch as f64 * n / total,
        args.iters
    );
    for (name, seconds) in [
        ("decode", decode),
        ("preprocess", stages.preprocess),
        ("upload", stages.upload),
        ("network", stages.network),
        ("resize back", stages.resize_back),
        ("write", write),
    ] {
        println!(
            "  {name:<12} {:8.2} ms  {:5.1}%",
            per_batch(seconds),
            100.0 * seconds / total
        );
    }
    let staged = decode + stages.total() + write;
    println!(
        "  stages sum to {:.2} ms, {:.1}% of the total",
        per_batch(staged),
        100.0 * staged / total
    );
    Ok(())
}

/// Seconds spent in each stage of the pipeline timing.
#[derive(Clone, Copy, Debug, Default)]
struct PipelineTimings {
    /// Reading and decoding the photo (and copying it `--batch` times).
    decode: f64,
    /// The engine's stages.
    stages: StageTimings,
    /// Writing the default formats.
    write: f64,
    /// The whole iteration.
    total: f64,
}

impl PipelineTimings {
    fn add(&mut self, other: &Self) {
        self.decode += other.decode;
        self.stages += other.stages;
        self.write += other.write;
        self.total += other.total;
    }
}
