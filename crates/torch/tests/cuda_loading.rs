//! LibTorch's CUDA part is loaded at run time: not at start, not for `--device cpu`, and
//! whenever `--device auto` resolves with a LibTorch that has it. One test in its own
//! binary, because loading is once per process.

use anydepth_torch::cuda;
use anydepth_torch::estimator::resolve_device;
use anydepth_torch::DeviceChoice;

#[test]
fn libtorch_cuda_is_loaded_by_auto_and_cuda_not_by_cpu() {
    // Touch LibTorch so that it is certainly loaded.
    let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
    let dir = cuda::libtorch_dir().expect("libtorch_cpu.so is loaded");
    let has_cuda = dir.join("libtorch_cuda.so").exists();
    assert!(!cuda::is_loaded(), "libtorch_cuda.so was loaded at start");

    assert_eq!(
        resolve_device(DeviceChoice::Cpu).expect("cpu"),
        tch::Device::Cpu
    );
    assert!(!cuda::is_loaded(), "--device cpu loaded libtorch_cuda.so");

    let auto = resolve_device(DeviceChoice::Auto).expect("auto always resolves");
    if has_cuda {
        assert!(
            cuda::is_loaded(),
            "--device auto did not load libtorch_cuda.so"
        );
        assert_eq!(
            cuda::load().ok(),
            Some(dir.join("libtorch_cuda.so").as_path())
        );
    } else {
        eprintln!(
            "this LibTorch has no CUDA ({}): checked that it is not needed",
            dir.display()
        );
        assert!(!cuda::is_loaded());
        assert_eq!(auto, tch::Device::Cpu);
    }
    // Whatever the machine, `cuda` is either usable or refused with a reason.
    match resolve_device(DeviceChoice::Cuda(0)) {
        Ok(device) => assert_eq!(device, auto),
        Err(e) => assert!(e.to_string().contains("not available"), "{e}"),
    }
    // The report agrees with what was found.
    let report = cuda::report();
    assert_eq!(report.compiled, has_cuda);
    assert_eq!(report.loaded, has_cuda);
    assert_eq!(report.available, auto != tch::Device::Cpu);
    if !report.available {
        assert!(report.problem.is_some(), "{report:?}");
    }
}
