//! End-to-end tests of what the runtime reports: `anydepth doctor`, the device
//! `--device auto` chose, and `anydepth bench`'s stages, which must account for its total.

use std::path::Path;

mod common;
use common::{anydepth, assert_ok, reference_file, s};

#[test]
fn doctor_reports_the_runtime_and_exits_0_with_or_without_a_gpu() {
    let out = anydepth(&["doctor"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for label in [
        "LibTorch:",
        "CUDA:",
        "CUDA driver:",
        "cuDNN:",
        "CUDA graphs:",
        "--device auto:",
        "weights cache:",
        "video:",
        "rerun viewer:",
    ] {
        assert!(text.contains(label), "no {label:?} in:\n{text}");
    }
    if cfg!(feature = "ffmpeg") {
        assert!(text.contains("FFmpeg: libavformat "), "{text}");
    } else {
        assert!(text.contains("built without FFmpeg"), "{text}");
    }

    let out = anydepth(&["doctor", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let runtime = &report["runtime"];
    let cuda = &runtime["cuda"];
    assert!(
        runtime["library_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{runtime}"
    );
    let gpus = cuda["gpus"].as_array().expect("gpus is a list");
    let available = cuda["available"].as_bool().expect("available");
    if available {
        assert!(runtime["auto_device"]
            .as_str()
            .is_some_and(|d| d.starts_with("Cuda")));
        assert!(!gpus.is_empty());
    } else {
        // A machine without a GPU: said plainly, with the reason, and auto is the CPU.
        assert_eq!(runtime["auto_device"], "Cpu");
        assert!(
            cuda["problem"].as_str().is_some_and(|p| !p.is_empty()),
            "{cuda}"
        );
        assert!(
            text.contains("not available") || text.contains("not compiled in"),
            "{text}"
        );
        // Graphs need a GPU too, and say why they cannot run.
        assert_eq!(cuda["graphs_available"], false, "{cuda}");
        assert!(
            cuda["graphs_problem"]
                .as_str()
                .is_some_and(|p| !p.is_empty()),
            "{cuda}"
        );
    }
    if gpus.is_empty() {
        assert!(text.contains("none: models run on the CPU"), "{text}");
    }
}

#[test]
fn auto_device_is_named_with_verbose() {
    let Some(weights) = reference_file("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    let out = anydepth(&[
        "-v",
        "bench",
        "--weights",
        s(&weights),
        "--size",
        "14x14",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]);
    let stderr = assert_ok(&out);
    assert!(stderr.contains("--device auto chose"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(chosen by --device auto)"), "{stdout}");
}

#[test]
fn bench_stages_add_up_to_the_pipeline_total() {
    let Some(weights) = reference_file("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let photo = dir.path().join("photo.png");
    write_photo(&photo);
    let out = anydepth(&[
        "bench",
        "--weights",
        s(&weights),
        "--device",
        "cpu",
        "--size",
        "14x14",
        "--photo",
        s(&photo),
        "--iters",
        "2",
        "--warmup",
        "0",
    ]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ms = |line: &str| -> f64 {
        let before = line.split(" ms").next().expect("a time in ms");
        let number = before.rsplit([' ', ':']).next().expect("a number");
        number.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    let total = stdout
        .lines()
        .find(|l| l.starts_with("pipeline "))
        .map(ms)
        .unwrap_or_else(|| panic!("no pipeline line in:\n{stdout}"));
    let stages = [
        "decode",
        "preprocess",
        "upload",
        "network",
        "resize back",
        "write",
    ];
    let mut sum = 0.0;
    for stage in stages {
        let line = stdout
            .lines()
            .find(|l| l.strip_prefix("  ").is_some_and(|l| l.starts_with(stage)))
            .unwrap_or_else(|| panic!("no {stage} line in:\n{stdout}"));
        let t = ms(line);
        assert!(t >= 0.0, "{line}");
        sum += t;
    }
    assert!(
        (sum - total).abs() <= 0.05 * total,
        "stages sum to {sum} ms, total {total} ms:\n{stdout}"
    );
    assert!(stdout.contains("of the total"), "{stdout}");
}

/// A small RGB photo with some structure.
fn write_photo(path: &Path) {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    img.save(path).expect("png written");
}

#[test]
fn doctor_reports_an_engine_that_cannot_start_and_exits_1() {
    // `anydepth` alone, without `anydepth-torch` beside it.
    let dir = tempfile::tempdir().expect("temp dir");
    let alone = dir.path().join("anydepth");
    std::fs::copy(env!("CARGO_BIN_EXE_anydepth"), &alone).expect("binary copied");
    let out = std::process::Command::new(&alone)
        .arg("doctor")
        .output()
        .expect("anydepth runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cannot inspect the depth runtime") && text.contains("anydepth-torch"),
        "{text}"
    );
    // What does not need the engine is still reported.
    assert!(
        text.contains("weights cache:") && text.contains("rerun viewer:"),
        "{text}"
    );
}

/// `scripts/gpu_check.sh` on a machine without a GPU: `no CUDA device`, nothing checked or
/// written, exit 0; a device it does not know is refused before anything runs.
#[test]
fn gpu_check_without_a_gpu_says_so_and_exits_0() {
    let gpus = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let doctor = anydepth(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor --json");
    if gpus.lines().any(|line| line.starts_with("GPU"))
        || report["runtime"]["cuda"]["available"] == true
    {
        eprintln!("skipping: this machine has a GPU, where the script runs the whole check");
        return;
    }
    let root = common::project_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("gpu-check");
    let script = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(root.join("scripts/gpu_check.sh"))
            .args([
                "--binary",
                env!("CARGO_BIN_EXE_anydepth"),
                "--out",
                s(&out_dir),
            ])
            .args(args)
            .output()
            .expect("bash runs")
    };

    let out = script(&[]);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no CUDA device"
    );
    assert!(!out_dir.exists(), "nothing is written without a GPU");

    let out = script(&["--device", "gpu"]);
    common::assert_code(&out, 2);
    assert!(
        common::stderr(&out).contains("--device takes cuda or cpu"),
        "{}",
        common::stderr(&out)
    );
}
