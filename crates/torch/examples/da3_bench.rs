//! Times the Depth Anything 3 network's forward pass on a scene, as
//! `scripts/bench/da3_official.py` times the official one (docs/BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p anydepth-torch --example da3_bench -- \
//!     .cache/reference/da3/da3-small .cache/reference/da3/cases/small_3view/input.npy \
//!     [RUNS] [cpu|cuda] [fp32|fp16|bf16]
//! ```
//!
//! The input is the official preprocessed tensor `(views, 3, h, w)` written by
//! `scripts/reference/da3_reference.py`. Prints one warm-up and the median of RUNS (3).

use std::path::PathBuf;
use std::time::Instant;

use anydepth_model::da3::RefViewStrategy;
use anydepth_model::{DeviceChoice, EstimatorOptions, Precision};
use anydepth_torch::da3::Da3Estimator;
use tch::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(weights), Some(input)) = (args.first(), args.get(1)) else {
        return Err(
            "usage: da3_bench CHECKPOINT_DIR INPUT.npy [RUNS] [cpu|cuda] [fp32|fp16|bf16]".into(),
        );
    };
    let runs: usize = args.get(2).map_or(Ok(3), |r| r.parse())?;
    let device: DeviceChoice = args.get(3).map_or(Ok(DeviceChoice::Cpu), |d| d.parse())?;
    let precision = match args.get(4).map(String::as_str) {
        None | Some("fp32") => Precision::Fp32,
        Some("fp16") => Precision::Fp16,
        Some("bf16") => Precision::Bf16,
        Some(other) => return Err(format!("unknown precision {other}").into()),
    };
    let options = EstimatorOptions {
        device,
        precision,
        ..Default::default()
    };
    let estimator = Da3Estimator::load(&PathBuf::from(weights), None, options)?;
    let (shape, values) = anydepth_core::npy::read_f32(&PathBuf::from(input))?;
    let shape: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    let images = Tensor::from_slice(&values)
        .reshape(&shape)
        .to_device(estimator.device())
        .to_kind(estimator.input_kind());
    let forward = || -> Result<f64, Box<dyn std::error::Error>> {
        let start = Instant::now();
        let out = tch::no_grad(|| {
            estimator
                .network()
                .forward(&images, None, RefViewStrategy::SaddleBalanced, false)
        })?;
        // Waits for the device.
        let _ = out.depth.sum(tch::Kind::Float).double_value(&[]);
        Ok(start.elapsed().as_secs_f64())
    };
    let warmup = forward()?;
    let mut times: Vec<f64> = (0..runs).map(|_| forward()).collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"model\": \"{}\", \"input\": {:?}, \"device\": \"{:?}\", \"precision\": \"{precision:?}\", \"threads\": {}, \"warmup_s\": {warmup:.3}, \"times_s\": {times:.3?}, \"median_s\": {median:.3}}}",
        estimator.network().config().model,
        shape,
        estimator.device(),
        tch::get_num_threads()
    );
    Ok(())
}
