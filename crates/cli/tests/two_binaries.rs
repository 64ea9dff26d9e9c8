//! `anydepth` does not link libtorch and hands commands that run a network to
//! `anydepth-torch`; the others run in `anydepth` itself.

mod common;

use std::path::Path;
use std::process::Command;

use common::{anydepth, assert_code, engine_binary, s, stderr};

/// The shared libraries `binary` asks the loader for (its ELF `NEEDED` entries), read with
/// `readelf`; `None` (the test skips) where `readelf` is missing.
fn needed_libraries(binary: &Path) -> Option<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "readelf failed on {}",
        binary.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
            .collect(),
    )
}

#[test]
fn only_the_engine_binary_links_libtorch() {
    let front = Path::new(env!("CARGO_BIN_EXE_anydepth"));
    let engine = engine_binary();
    let (Some(front_libs), Some(engine_libs)) =
        (needed_libraries(front), needed_libraries(&engine))
    else {
        eprintln!("skipping: readelf not found");
        return;
    };
    let torch = |libs: &[String]| {
        libs.iter()
            .any(|l| l.contains("torch") || l.contains("c10"))
    };
    assert!(!torch(&front_libs), "anydepth links {front_libs:?}");
    assert!(torch(&engine_libs), "anydepth-torch links {engine_libs:?}");
}

#[test]
fn commands_without_a_network_run_in_the_front_binary() {
    // A depth file to a cloud: no network, so no engine binary is needed. Copy the front
    // binary alone into a folder and run it there.
    let dir = tempfile::tempdir().expect("temp dir");
    let front = dir.path().join("anydepth");
    std::fs::copy(env!("CARGO_BIN_EXE_anydepth"), &front).expect("copy the binary");
    let depth = dir.path().join("depth.pfm");
    let values: Vec<f32> = (0..12).map(|i| 1.0 + i as f32 / 10.0).collect();
    let mut bytes = b"Pf\n4 3\n-1.0\n".to_vec();
    for v in &values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&depth, bytes).expect("write depth");
    let cloud = dir.path().join("cloud.ply");
    let out = Command::new(&front)
        .args([
            "cloud",
            "--depth",
            s(&depth),
            "--fov",
            "60",
            "-o",
            s(&cloud),
        ])
        .output()
        .expect("run the copied binary");
    assert_code(&out, 0);
    assert!(cloud.is_file());

    // A photo needs the network: without anydepth-torch beside it, it says so.
    let photo = dir.path().join("photo.png");
    image::RgbImage::from_pixel(8, 6, image::Rgb([10, 20, 30]))
        .save(&photo)
        .expect("write photo");
    let out = Command::new(&front)
        .args([
            "cloud",
            s(&photo),
            "--weights",
            "model.pth",
            "-o",
            s(&cloud),
            "--force",
        ])
        .output()
        .expect("run the copied binary");
    assert_code(&out, 2);
    let message = stderr(&out);
    assert!(message.contains("anydepth-torch"), "{message}");
}

#[test]
fn the_engine_binary_runs_the_same_command_line() {
    // A command without a network runs in `anydepth` itself, so the two binaries' own
    // parsing and refusals are compared (a network command would be handed over and both
    // outputs would come from the engine).
    let dir = tempfile::tempdir().expect("temp dir");
    let depth = dir.path().join("depth.pfm");
    let mut bytes = b"Pf\n2 1\n-1.0\n".to_vec();
    for v in [1.0f32, 2.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&depth, bytes).expect("write depth");
    let cloud = dir.path().join("x.ply");
    let args = [
        "cloud",
        "--depth",
        s(&depth),
        "--intrinsics",
        "1,2",
        "-o",
        s(&cloud),
    ];
    let front = anydepth(&args);
    let engine = Command::new(engine_binary())
        .args(args)
        .output()
        .expect("anydepth-torch runs");
    assert_code(&front, 2);
    let message = stderr(&front);
    assert!(
        message.contains("--intrinsics takes four numbers"),
        "{message}"
    );
    assert_eq!(message, stderr(&engine));
    assert_eq!(front.status.code(), engine.status.code());
}
