//! The CUDA shim: it is built into this crate and loads against this LibTorch (its C++
//! symbols resolve), refuses the CPU clearly and carries LibTorch's C++ errors across. On
//! a GPU, CUDA graphs replay what runs eagerly (to float rounding), graphs sharing a memory
//! pool reserve less than graphs with pools of their own, and photos uploaded on the copy
//! stream arrive whole. One test in its own binary, because CUDA is loaded once per
//! process.

mod common;

use anydepth_core::RgbImage;
use anydepth_torch::copy_stream::CopyStream;
use anydepth_torch::cuda_graph::{self, GraphedForward};
use anydepth_torch::{cuda, DepthEstimator, DeviceChoice, EstimatorOptions, ModelSpec};
use anydepth_torch::{cuda_memory, cuda_shim};
use tch::{Device, Kind, Tensor};

#[test]
fn cuda_shim_loads_refuses_the_cpu_and_matches_eager_runs() {
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    let dir = cuda::libtorch_dir().expect("libtorch_cpu.so is loaded");
    if !dir.join("libtorch_cuda.so").exists() {
        assert!(cuda_shim::load().is_err());
        eprintln!(
            "this LibTorch has no CUDA ({}): no CUDA graphs to check",
            dir.display()
        );
        return;
    }
    // scripts/setup.sh installs PyPI's torch, whose Triton ships the CUDA runtime headers
    // the shim is compiled with: with them, a build without it has lost the feature.
    let triton = dir.join("../../triton/backends/nvidia/include/cuda_runtime_api.h");
    if !cuda_shim::built_in() && !triton.exists() {
        eprintln!("no CUDA runtime headers beside this LibTorch: built without the CUDA shim");
        return;
    }
    assert!(
        cuda_shim::built_in(),
        "the CUDA shim was not built (see the build warning of anydepth-torch)"
    );
    cuda_shim::load().expect("the shim's LibTorch symbols resolve");

    let on_cpu = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let refused = GraphedForward::capture(&on_cpu, None, |x| Ok(x * 2.0)).expect_err("CPU tensor");
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
        let refused = CopyStream::new(0).expect_err("no GPU here");
        assert!(
            refused.to_string().contains("copy stream creation failed"),
            "{refused}"
        );
        let refused = cuda_memory::device_memory(0).expect_err("no GPU here");
        assert!(
            refused.to_string().contains("no CUDA device 0"),
            "{refused}"
        );
        eprintln!("no CUDA device: the shim loads and refuses cleanly ({refused})");
        return;
    }
    cuda_graph::probe().expect("a graph can be made on the GPU");
    replays_match_eager_runs();
    a_shared_pool_reserves_less();
    copies_arrive_whole();
    if let Some(weights) = &weights {
        estimator_gives_the_same_depth_with_graphs(weights);
        staged_uploads_give_the_same_depth(weights);
    }
}

/// Tensors uploaded on the copy stream from another thread, while the compute stream is
/// busy, hold what was uploaded once the compute stream has waited for them; and their
/// memory, freed while the compute stream still has to read them, is not reused by the
/// next upload before that read (what `record_stream` is for).
fn copies_arrive_whole() {
    let device = Device::Cuda(0);
    let copy = CopyStream::new(0).expect("copy stream");
    let busy = Tensor::randn([2048, 2048], (Kind::Float, device));
    let keep_busy = || {
        let mut x = busy.shallow_clone();
        for _ in 0..20 {
            x = x.matmul(&busy).tanh();
        }
        x
    };
    let upload_from_thread = |value: u8| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let host: Vec<Tensor> = (0..3)
                    .map(|_| {
                        Tensor::full([480, 640, 3], i64::from(value), (Kind::Uint8, Device::Cpu))
                    })
                    .collect();
                let upload = |t: &Tensor| {
                    t.internal_pin_memory(device)
                        .to_device_(device, Kind::Uint8, true, false)
                };
                copy.run(|| host.iter().map(upload).collect::<Vec<_>>())
                    .expect("copy")
            })
            .join()
        })
        .expect("copy thread")
    };
    let elements = 480 * 640 * 3;
    for round in 1..=4u8 {
        let _busy = keep_busy();
        let (uploaded, copied) = upload_from_thread(round);
        copied.wait(&uploaded).expect("wait");
        // Queued behind more busy work, then the photos' memory is given back at once.
        let _busy = keep_busy();
        let sums: Vec<Tensor> = uploaded.iter().map(|u| u.sum(Kind::Int64)).collect();
        drop(uploaded);
        let (overwriting, _) = upload_from_thread(200);
        for sum in &sums {
            assert_eq!(
                sum.int64_value(&[]),
                i64::from(round) * elements,
                "an upload arrived changed, or was overwritten before it was read"
            );
        }
        drop(overwriting);
    }
}

/// The estimator with device preprocessing gives the same depth from photos staged on
/// another thread (uploaded on the copy stream) as from photos uploaded as it runs.
fn staged_uploads_give_the_same_depth(weights: &std::path::Path) {
    use anydepth_model::DepthEngine;

    let options = EstimatorOptions {
        device: DeviceChoice::Cuda(0),
        preprocessing: anydepth_torch::Preprocessing::Device,
        batch_size: 2,
        ..Default::default()
    };
    let estimator =
        DepthEstimator::from_checkpoint(weights, ModelSpec::default(), options).expect("loads");
    let images = [photo(640, 480), photo(300, 500), photo(640, 480)];
    let refs: Vec<&RgbImage> = images.iter().collect();
    let stager = DepthEngine::stager(&estimator).expect("a stager");
    let staged = std::thread::scope(|s| s.spawn(|| stager.stage(&refs)).join())
        .expect("staging thread")
        .expect("staged");
    let staged = DepthEngine::predict_staged(&estimator, &images, staged).expect("staged run");
    let direct = estimator.predict_batch(&images).expect("direct run");
    for (a, b) in staged.iter().zip(&direct) {
        assert_eq!(a.values(), b.values(), "staging changed the depth");
    }
}

/// A photo of `w` x `h` with a fixed pattern of 8-bit values.
fn photo(w: u32, h: u32) -> RgbImage {
    let data = (0..w * h * 3)
        .map(|i| (i * 37 % 251) as f32 / 250.0)
        .collect();
    RgbImage::new(w, h, data).expect("photo")
}

/// A small captured function replays what it computes eagerly, on new inputs each time,
/// alone and beside graphs sharing its memory, also after a capture into that memory
/// failed and after the first graph is gone.
fn replays_match_eager_runs() {
    let _guard = tch::no_grad_guard();
    let device = Device::Cuda(0);
    let weight = Tensor::randn([64, 64], (Kind::Float, device));
    let forward = |x: &Tensor| Ok((x.matmul(&weight).relu() + 1.0).softmax(-1, Kind::Float));
    // A replay of `graph` on a new input gives what `forward` computes eagerly.
    let matches_eager = |graph: &mut GraphedForward, when: &str| {
        let x = Tensor::randn(graph.input_size(), (Kind::Float, device));
        let diff = (graph.run(&x).expect("replay") - forward(&x).expect("eager"))
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            diff <= 1e-6,
            "a replay {when} differs from the eager run by {diff}"
        );
    };
    let first = Tensor::randn([8, 64], (Kind::Float, device));
    let mut graph = GraphedForward::capture(&first, None, forward).expect("capture");
    for _ in 0..3 {
        matches_eager(&mut graph, "alone");
    }
    let other = Tensor::randn([4, 64], (Kind::Float, device));
    assert!(graph.run(&other).is_err(), "another shape must be refused");

    // A graph for that shape in the first one's memory pool: replays of the two,
    // alternating, still match their eager runs.
    let mut second = GraphedForward::capture(&other, Some(&graph), forward).expect("shared pool");
    for _ in 0..3 {
        matches_eager(&mut graph, "in a shared pool");
        matches_eager(&mut second, "in a shared pool");
    }

    // A capture into the shared pool that fails (reading a value back to the host is not
    // allowed while capturing) leaves the pool usable: a third graph captured after it,
    // and the second, still replay what runs eagerly once the first graph is gone.
    let third_input = Tensor::randn([2, 64], (Kind::Float, device));
    let failing = |x: &Tensor| {
        let _ = x.sum(Kind::Float).double_value(&[]);
        forward(x)
    };
    let refused = GraphedForward::capture(&third_input, Some(&graph), failing);
    assert!(
        refused.is_err(),
        "a read back to the host cannot be captured"
    );
    let mut third =
        GraphedForward::capture(&third_input, Some(&graph), forward).expect("after a failure");
    drop(graph);
    matches_eager(&mut second, "after the pool's first graph went");
    matches_eager(&mut third, "after the pool's first graph went");
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

/// A graph captured into another's memory pool reuses the blocks the other's capture freed:
/// the device memory reserved grows far less than for the same graph in a pool of its own.
fn a_shared_pool_reserves_less() {
    // Another allocator backend, or none, reserves differently.
    if let Ok(setting) = std::env::var("PYTORCH_CUDA_ALLOC_CONF") {
        if setting.contains("cudaMallocAsync") {
            eprintln!("PYTORCH_CUDA_ALLOC_CONF={setting}: pools not compared");
            return;
        }
    }
    if std::env::var_os("PYTORCH_NO_CUDA_MEMORY_CACHING").is_some() {
        eprintln!("PYTORCH_NO_CUDA_MEMORY_CACHING is set: pools not compared");
        return;
    }
    let _guard = tch::no_grad_guard();
    let device = Device::Cuda(0);
    let weight = Tensor::randn([1024, 1024], (Kind::Float, device));
    // Sixteen intermediates held at once, 4 MiB each for 1024 rows, freed by the end.
    let forward = |x: &Tensor| {
        let mut held = vec![x.matmul(&weight).relu()];
        for _ in 1..16 {
            let next = held[held.len() - 1].matmul(&weight).relu();
            held.push(next);
        }
        Ok(Tensor::stack(&held, 0).sum_dim_intlist(0, false, Kind::Float))
    };
    let reserved = || {
        let memory = cuda_memory::device_memory(0).expect("device memory");
        assert!(memory.peak_allocated >= memory.allocated, "{memory:?}");
        assert!(memory.peak_reserved >= memory.reserved, "{memory:?}");
        assert!(memory.reserved >= memory.allocated, "{memory:?}");
        i64::try_from(memory.reserved).expect("bytes")
    };
    let example = |rows| Tensor::randn([rows, 1024], (Kind::Float, device));
    let (large, small) = (example(1024), example(960));
    let first = GraphedForward::capture(&large, None, forward).expect("first graph");
    let before = reserved();
    let shared = GraphedForward::capture(&small, Some(&first), forward).expect("shared");
    let after_shared = reserved();
    let own = GraphedForward::capture(&small, None, forward).expect("own pool");
    let after_own = reserved();
    let (grew_shared, grew_own) = (after_shared - before, after_own - after_shared);
    // Each graph also keeps a copy of its input; one of its own also has a side stream of
    // its own, and with it a cuBLAS workspace.
    eprintln!(
        "reserved by a second graph: {:.1} MiB in a shared pool, {:.1} MiB in its own",
        grew_shared as f64 / f64::from(1 << 20),
        grew_own as f64 / f64::from(1 << 20)
    );
    assert!(
        grew_shared * 2 < grew_own,
        "a graph in a shared pool reserved {grew_shared} bytes, in its own {grew_own}"
    );
    drop((first, shared, own));
}
