//! CUDA graphs: the shim is built into this crate and loads against this LibTorch (its C++
//! symbols resolve), refuses the CPU clearly, carries LibTorch's C++ errors across, and on
//! a GPU replays what runs eagerly (to float rounding). One test in its own binary,
//! because CUDA is loaded once per process.

mod common;

use anydepth_core::RgbImage;
use anydepth_torch::cuda_graph::{self, GraphedForward};
use anydepth_torch::{cuda, DepthEstimator, DeviceChoice, EstimatorOptions, ModelSpec};
use tch::{Device, Kind, Tensor};

#[test]
fn cuda_graphs_load_refuse_the_cpu_and_match_eager_runs() {
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    let dir = cuda::libtorch_dir().expect("libtorch_cpu.so is loaded");
    if !dir.join("libtorch_cuda.so").exists() {
        assert!(cuda_graph::load().is_err());
        eprintln!(
            "this LibTorch has no CUDA ({}): no CUDA graphs to check",
            dir.display()
        );
        return;
    }
    // scripts/setup.sh installs PyPI's torch, whose Triton ships the CUDA runtime headers
    // the shim is compiled with: with them, a build without it has lost the feature.
    let triton = dir.join("../../triton/backends/nvidia/include/cuda_runtime_api.h");
    if !cuda_graph::built_in() && !triton.exists() {
        eprintln!("no CUDA runtime headers beside this LibTorch: built without CUDA graphs");
        return;
    }
    assert!(
        cuda_graph::built_in(),
        "the CUDA-graph shim was not built (see the build warning of anydepth-torch)"
    );
    cuda_graph::load().expect("the shim's LibTorch symbols resolve");

    let on_cpu = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let refused = GraphedForward::capture(&on_cpu, |x| Ok(x * 2.0)).expect_err("CPU tensor");
    assert!(
        refused.to_string().contains("need a CUDA device"),
        "{refused}"
    );

    let weights = common::reference_dir().map(|dir| dir.join("v2-vits/depth_anything_v2_vits.pth"));
    if let Some(weights) = &weights {
        let options = EstimatorOptions {
            device: DeviceChoice::Cpu,
            cuda_graphs: true,
            ..Default::default()
        };
        let refused = DepthEstimator::from_checkpoint(weights, ModelSpec::default(), options)
            .expect_err("--cuda-graphs with --device cpu");
        assert!(
            refused
                .to_string()
                .contains("--cuda-graphs needs a CUDA device"),
            "{refused}"
        );
    }

    if cuda::device_count() == 0 {
        // LibTorch's own refusal, thrown in C++, arrives as an error, not a crash.
        let refused = cuda_graph::probe().expect_err("no GPU here");
        assert!(
            refused.to_string().contains("CUDA graph creation failed"),
            "{refused}"
        );
        eprintln!("no CUDA device: the shim loads and refuses cleanly ({refused})");
        return;
    }
    cuda_graph::probe().expect("a graph can be made on the GPU");
    replays_match_eager_runs();
    if let Some(weights) = &weights {
        estimator_gives_the_same_depth_with_graphs(weights);
    }
}

/// A small captured function replays what it computes eagerly, on new inputs each time.
fn replays_match_eager_runs() {
    let _guard = tch::no_grad_guard();
    let device = Device::Cuda(0);
    let weight = Tensor::randn([64, 64], (Kind::Float, device));
    let forward = |x: &Tensor| Ok((x.matmul(&weight).relu() + 1.0).softmax(-1, Kind::Float));
    let first = Tensor::randn([8, 64], (Kind::Float, device));
    let mut graph = GraphedForward::capture(&first, forward).expect("capture");
    for _ in 0..3 {
        let x = Tensor::randn([8, 64], (Kind::Float, device));
        let replayed = graph.run(&x).expect("replay");
        let eager = forward(&x).expect("eager");
        let diff = (replayed - eager).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-6,
            "a replay differs from the eager run by {diff}"
        );
    }
    let other = Tensor::randn([4, 64], (Kind::Float, device));
    assert!(graph.run(&other).is_err(), "another shape must be refused");
}

/// The whole V2 estimator: the same depth with graphs as without, for two photo sizes (two
/// graphs) and the first size again (a replay).
fn estimator_gives_the_same_depth_with_graphs(weights: &std::path::Path) {
    let load = |cuda_graphs| {
        let options = EstimatorOptions {
            device: DeviceChoice::Cuda(0),
            cuda_graphs,
            ..Default::default()
        };
        DepthEstimator::from_checkpoint(weights, ModelSpec::default(), options).expect("loads")
    };
    let (eager, graphed) = (load(false), load(true));
    let photo = |w: u32, h: u32| {
        let data = (0..w * h * 3)
            .map(|i| (i * 37 % 251) as f32 / 250.0)
            .collect();
        RgbImage::new(w, h, data).expect("photo")
    };
    for image in [photo(640, 480), photo(300, 500), photo(640, 480)] {
        let a = eager.predict(&image).expect("eager");
        let b = graphed.predict(&image).expect("graphed");
        let (a, b) = (a.values(), b.values());
        let (lo, hi) = a
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let diff = common::max_abs_diff(a, b) / (hi - lo);
        assert!(
            diff <= 1e-4,
            "graphs changed the depth by {diff:.2e} of its range"
        );
    }
}
