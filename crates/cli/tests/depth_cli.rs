//! End-to-end tests of `anydepth depth`: the real binary on small generated images, with
//! the random-weight checkpoints of `scripts/reference/make_references.py`.
//!
//! Tests that need a checkpoint skip (with a message) when the reference folder is missing,
//! unless `ANYDEPTH_REQUIRE_REFERENCES=1`, as in `crates/torch/tests/common`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{assert_code, command, data_root, reference_file, stderr};

/// The random-weight V2 ViT-S checkpoint.
fn vits_weights() -> Option<PathBuf> {
    reference_file("v2-vits/depth_anything_v2_vits.pth")
}

/// `anydepth <args>` with a clean logging environment; returns its output.
fn anydepth<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    anydepth_with(args, |_| {})
}

fn anydepth_with<I, S>(args: I, env: impl FnOnce(&mut Command)) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = command();
    cmd.args(args);
    env(&mut cmd);
    cmd.output().expect("run anydepth")
}

/// Writes a `w x h` RGB PNG with a smooth pattern that depends on `seed`.
fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let r = (x * 255 / w.max(1) + seed * 37) % 256;
        let g = (y * 255 / h.max(1) + seed * 71) % 256;
        let b = ((x + y) * 7 + seed * 13) % 256;
        image::Rgb([r as u8, g as u8, b as u8])
    });
    img.save(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The names of the entries of `dir`.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Smaller than the trained 518 so the network runs fast on CPU.
const FAST: [&str; 4] = ["--device", "cpu", "--input-size", "140"];

#[test]
fn bad_files_fail_alone_and_leave_no_temp_files() {
    let Some(weights) = vits_weights() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("in");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&input).expect("mkdir");
    write_png(&input.join("good.png"), 40, 30, 1);
    std::fs::write(input.join("empty.png"), b"").expect("write");
    let demo = data_root().join("photos/demo08.jpg");
    let truncated_name = if demo.is_file() {
        let bytes = std::fs::read(&demo).expect("read demo08.jpg");
        std::fs::write(input.join("truncated.jpg"), &bytes[..500]).expect("write");
        "truncated.jpg"
    } else {
        eprintln!("{} not found: truncating a PNG instead", demo.display());
        let full = tmp.path().join("full.png");
        write_png(&full, 64, 48, 9);
        let bytes = std::fs::read(&full).expect("read png");
        std::fs::write(input.join("truncated.png"), &bytes[..bytes.len() / 2]).expect("write");
        "truncated.png"
    };
    std::fs::write(input.join("fake.jpg"), b"this is not a JPEG\n").expect("write");
    std::fs::write(input.join("notes.txt"), b"some notes\n").expect("write");

    let out = anydepth(
        [
            "depth".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            out_dir.as_os_str(),
            "--weights".as_ref(),
            weights.as_os_str(),
        ]
        .into_iter()
        .chain(FAST.iter().map(|s| s.as_ref())),
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    let failed = err
        .split("failed:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no failure list in stderr:\n{err}"));
    for name in ["empty.png", truncated_name, "fake.jpg"] {
        let line = failed
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed as failed:\n{err}"));
        let reason = line.split_once(&format!("{name}: ")).map(|(_, r)| r.trim());
        assert!(
            reason.is_some_and(|r| !r.is_empty()),
            "no reason for {name}: {line:?}"
        );
    }
    assert!(!failed.contains("notes.txt"), "notes.txt reported:\n{err}");
    assert!(!failed.contains("good.png"), "good.png reported:\n{err}");
    assert_eq!(failed.lines().count(), 3, "{err}");
    assert_eq!(names(&out_dir), set(&["good.npy", "good_depth.png"]));
}

#[test]
fn all_formats_have_the_input_size() {
    let Some(weights) = vits_weights() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let (w, h) = (45u32, 31u32);
    let photo = tmp.path().join("odd.png");
    write_png(&photo, w, h, 2);
    let out_dir = tmp.path().join("out");
    let out = anydepth(
        [
            "depth".as_ref(),
            photo.as_os_str(),
            "--out".as_ref(),
            out_dir.as_os_str(),
            "--weights".as_ref(),
            weights.as_os_str(),
            "--formats".as_ref(),
            "npy,png16,pfm,color,side-by-side".as_ref(),
        ]
        .into_iter()
        .chain(FAST.iter().map(|s| s.as_ref())),
    );
    assert_code(&out, 0);
    assert_eq!(
        names(&out_dir),
        set(&[
            "odd.npy",
            "odd_depth16.png",
            "odd.pfm",
            "odd_depth.png",
            "odd_side.png"
        ])
    );

    let (shape, values) = read_npy_f32(&out_dir.join("odd.npy"));
    assert_eq!(shape, [h as usize, w as usize]);
    assert!(values.iter().all(|v| v.is_finite()), "non-finite depth");

    let png16 = image::open(out_dir.join("odd_depth16.png")).expect("decode png16");
    assert_eq!(png16.color(), image::ColorType::L16);
    assert_eq!((png16.width(), png16.height()), (w, h));

    let pfm = std::fs::read(out_dir.join("odd.pfm")).expect("read pfm");
    let header = format!("Pf\n{w} {h}\n-1.0\n");
    assert!(pfm.starts_with(header.as_bytes()), "pfm header");
    assert_eq!(pfm.len(), header.len() + 4 * (w * h) as usize);
    // The PFM holds the same values as the npy, bottom row first.
    let first_pfm_row: Vec<f32> = pfm[header.len()..header.len() + 4 * w as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(first_pfm_row, values[values.len() - w as usize..]);

    let color = image::open(out_dir.join("odd_depth.png")).expect("decode color");
    assert_eq!(color.color(), image::ColorType::Rgb8);
    assert_eq!((color.width(), color.height()), (w, h));

    let side = image::open(out_dir.join("odd_side.png")).expect("decode side");
    assert_eq!(side.color(), image::ColorType::Rgb8);
    assert_eq!((side.width(), side.height()), (2 * w + 50, h));
}

#[test]
fn existing_outputs_are_kept_unless_forced() {
    let Some(weights) = vits_weights() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 32, 24, 3);
    let out_dir = tmp.path().join("out");
    let run = |extra: &[&str]| {
        anydepth(
            [
                "depth".as_ref(),
                photo.as_os_str(),
                "--out".as_ref(),
                out_dir.as_os_str(),
                "--weights".as_ref(),
                weights.as_os_str(),
                "--formats".as_ref(),
                "npy,png16,color".as_ref(),
            ]
            .into_iter()
            .chain(FAST.iter().map(|s| s.as_ref()))
            .chain(extra.iter().map(|s| s.as_ref())),
        )
    };
    let expected = set(&["p.npy", "p_depth16.png", "p_depth.png"]);
    let read_all = || -> Vec<Vec<u8>> {
        expected
            .iter()
            .map(|n| std::fs::read(out_dir.join(n)).expect("read output"))
            .collect()
    };

    assert_code(&run(&[]), 0);
    assert_eq!(names(&out_dir), expected);
    let first = read_all();

    let again = run(&[]);
    assert_code(&again, 0);
    assert!(
        stderr(&again).contains("kept"),
        "no 'kept' message:\n{}",
        stderr(&again)
    );
    assert_eq!(read_all(), first, "outputs changed without --force");
    assert_eq!(names(&out_dir), expected);

    let forced = run(&["--force"]);
    assert_code(&forced, 0);
    assert_eq!(
        names(&out_dir),
        expected,
        "temp files or extra outputs left"
    );
    assert_eq!(
        read_npy_f32(&out_dir.join("p.npy")).0,
        [24, 32],
        "forced npy shape"
    );
}

#[test]
fn missing_weights_file_is_exit_2_naming_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 16, 16, 4);
    let weights = tmp.path().join("no_such_weights.pth");
    let out = anydepth([
        "depth".as_ref(),
        photo.as_os_str(),
        "--out".as_ref(),
        tmp.path().join("out").as_os_str(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains(&weights.display().to_string()),
        "path not named:\n{}",
        stderr(&out)
    );
}

#[test]
fn garbage_checkpoint_is_exit_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 16, 16, 5);
    let weights = tmp.path().join("bad.pth");
    std::fs::write(&weights, b"definitely not a torch checkpoint").expect("write");
    let out_dir = tmp.path().join("out");
    let out = anydepth([
        "depth".as_ref(),
        photo.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).to_lowercase().contains("checkpoint"),
        "no 'checkpoint' in:\n{}",
        stderr(&out)
    );
    assert!(
        !out_dir.exists() || names(&out_dir).is_empty(),
        "outputs written"
    );
}

#[test]
fn wrong_model_size_is_exit_2_mentioning_vits() {
    let Some(weights) = vits_weights() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 16, 16, 6);
    let out = anydepth([
        "depth".as_ref(),
        photo.as_os_str(),
        "--out".as_ref(),
        tmp.path().join("out").as_os_str(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--model".as_ref(),
        "vitb".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).to_lowercase().contains("vits"),
        "no 'vits' in:\n{}",
        stderr(&out)
    );
}

#[test]
fn unknown_input_is_exit_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = anydepth([
        "depth".as_ref(),
        tmp.path().join("nowhere.jpg").as_os_str(),
        "--out".as_ref(),
        tmp.path().join("out").as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("input not found"), "{}", stderr(&out));
}

#[test]
fn batch_zero_is_exit_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 16, 16, 7);
    let out = anydepth([
        "depth".as_ref(),
        photo.as_os_str(),
        "--out".as_ref(),
        tmp.path().join("out").as_os_str(),
        "--batch".as_ref(),
        "0".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--batch"), "{}", stderr(&out));
}

#[test]
fn batches_give_the_same_depth_as_single_images() {
    let Some(weights) = vits_weights() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        write_png(&input.join(format!("{name}.png")), 40, 30, 10 + i as u32);
    }
    write_png(&input.join("d.png"), 30, 40, 20);
    let run = |batch: &str, out_dir: &Path| {
        anydepth(
            [
                "depth".as_ref(),
                input.as_os_str(),
                "--out".as_ref(),
                out_dir.as_os_str(),
                "--weights".as_ref(),
                weights.as_os_str(),
                "--formats".as_ref(),
                "npy".as_ref(),
                "--batch".as_ref(),
                batch.as_ref(),
            ]
            .into_iter()
            .chain(FAST.iter().map(|s| s.as_ref())),
        )
    };
    let single = tmp.path().join("single");
    let batched = tmp.path().join("batched");
    assert_code(&run("1", &single), 0);
    assert_code(&run("3", &batched), 0);
    for name in ["a", "b", "c", "d"] {
        let file = format!("{name}.npy");
        let (shape1, v1) = read_npy_f32(&single.join(&file));
        let (shape3, v3) = read_npy_f32(&batched.join(&file));
        assert_eq!(shape1, shape3, "{file}");
        let scale = v1.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = v1
            .iter()
            .zip(&v3)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-5 * scale,
            "{file}: batch 3 differs from batch 1 by {diff} (max |value| {scale})"
        );
    }
}

#[test]
fn unreachable_hub_is_exit_2_suggesting_weights() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 16, 16, 8);
    let cache = tmp.path().join("hub-cache");
    let out = anydepth_with(
        [
            "depth".as_ref(),
            photo.as_os_str(),
            "--out".as_ref(),
            tmp.path().join("out").as_os_str(),
            "--device".as_ref(),
            "cpu".as_ref(),
            "--quiet".as_ref(),
        ],
        |cmd| {
            cmd.env("HF_ENDPOINT", "http://127.0.0.1:9")
                .env("HF_HUB_CACHE", &cache)
                .env_remove("HF_HUB_OFFLINE");
        },
    );
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--weights"), "{}", stderr(&out));
}

#[test]
fn v1_safetensors_checkpoint_runs() {
    let Some(weights) = reference_file("v1-vits/model.safetensors") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let photo = tmp.path().join("p.png");
    write_png(&photo, 36, 28, 9);
    let out_dir = tmp.path().join("out");
    let out = anydepth(
        [
            "depth".as_ref(),
            photo.as_os_str(),
            "--out".as_ref(),
            out_dir.as_os_str(),
            "--weights".as_ref(),
            weights.as_os_str(),
            "--formats".as_ref(),
            "npy".as_ref(),
        ]
        .into_iter()
        .chain(FAST.iter().map(|s| s.as_ref())),
    );
    assert_code(&out, 0);
    let (shape, values) = read_npy_f32(&out_dir.join("p.npy"));
    assert_eq!(shape, [28, 36]);
    assert!(values.iter().all(|v| v.is_finite()), "non-finite depth");
    assert!(values.iter().any(|&v| v != values[0]), "constant depth map");
}

/// Reads a `.npy` written by the code under test or the reference scripts.
fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    anydepth_core::npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"))
}
