//! End-to-end tests of `anydepth stabilize` on a generated panning clip: every frame's
//! disparity has its own scale and shift; after the command, one scale and shift fits the
//! whole clip. Needs no data and no network.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_code, assert_ok, s, stderr};

const W: usize = 160;
const H: usize = 120;
const FRAMES: usize = 24;

/// Smooth value noise, for texture at the scale of `cell` pixels.
fn noise(x: f64, y: f64, cell: f64) -> f64 {
    let hash = |i: i64, j: i64| {
        let mut z = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (j as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (z >> 11) as f64 / (1u64 << 53) as f64
    };
    let (x, y) = (x / cell, y / cell);
    let (i, j) = (x.floor() as i64, y.floor() as i64);
    let (fx, fy) = (x - x.floor(), y - y.floor());
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let top = hash(i, j) + (hash(i + 1, j) - hash(i, j)) * sx;
    let bottom = hash(i, j + 1) + (hash(i + 1, j + 1) - hash(i, j + 1)) * sx;
    top + (bottom - top) * sy
}

/// True disparity of the scene at canvas position `(x, y)`: a rising floor and bumps.
fn truth(x: f64, y: f64) -> f64 {
    0.3 + 0.004 * y + 0.5 * noise(x, y, 40.0) + 0.15 * noise(x, y, 9.0)
}

/// Where frame `i`'s window starts: steps of up to about 8 pixels, turning, some fractional.
fn origin(i: usize) -> (f64, f64) {
    let t = i as f64;
    (
        60.0 + 50.0 * (0.15 * t).sin() + 3.0 * t,
        40.0 + 40.0 * (0.11 * t).cos() - 1.5 * t,
    )
}

/// Writes the clip into `dir/depth` (`.npy`) and `dir/color` (`.png`); returns the truth.
fn write_clip(dir: &Path) -> Vec<Vec<f32>> {
    let (depth_dir, color_dir) = (dir.join("depth"), dir.join("color"));
    std::fs::create_dir_all(&depth_dir).expect("mkdir");
    std::fs::create_dir_all(&color_dir).expect("mkdir");
    let mut truths = Vec::new();
    for i in 0..FRAMES {
        let (x0, y0) = origin(i);
        // Per frame: scale 0.4 to 2.5 and a shift, as a per-frame model gives them.
        let scale = (1.0 + 0.9 * (1.7 * i as f64).sin()).exp() / 2.0;
        let shift = 0.3 * (2.3 * i as f64).cos();
        let mut true_values = Vec::with_capacity(W * H);
        let mut raw = Vec::with_capacity(W * H);
        let mut rgb = image::RgbImage::new(W as u32, H as u32);
        for y in 0..H {
            for x in 0..W {
                let (u, v) = (x0 + x as f64, y0 + y as f64);
                let d = truth(u, v);
                true_values.push(d as f32);
                raw.push((scale * d + shift) as f32);
                let shade = 40.0 + 200.0 * (0.6 * noise(u, v, 5.0) + 0.4 * noise(u, v, 2.5));
                let byte = shade.round().clamp(0.0, 255.0) as u8;
                rgb.put_pixel(
                    x as u32,
                    y as u32,
                    image::Rgb([byte, byte / 2 + 60, 255 - byte]),
                );
            }
        }
        let npy = anydepth_core::npy::encode_f32(&raw, &[H, W]);
        std::fs::write(depth_dir.join(format!("frame_{i:03}.npy")), npy).expect("write npy");
        rgb.save(color_dir.join(format!("frame_{i:03}.png")))
            .expect("write png");
        truths.push(true_values);
    }
    truths
}

/// AbsRel of `frames` against the truth after one least-squares scale and shift for all.
fn global_abs_rel(frames: &[Vec<f32>], truth: &[Vec<f32>]) -> f64 {
    let pairs: Vec<(f64, f64)> = frames
        .iter()
        .zip(truth)
        .flat_map(|(f, t)| f.iter().zip(t))
        .map(|(&f, &t)| (f64::from(f), f64::from(t)))
        .collect();
    let n = pairs.len() as f64;
    let (sx, sy) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = pairs.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
    });
    let scale = sxy / sxx;
    let shift = my - scale * mx;
    pairs
        .iter()
        .map(|(x, y)| ((scale * x + shift) - y).abs() / y)
        .sum::<f64>()
        / n
}

fn read_frames(dir: &Path) -> Vec<Vec<f32>> {
    (0..FRAMES)
        .map(|i| {
            let (shape, values) =
                anydepth_core::npy::read_f32(&dir.join(format!("frame_{i:03}.npy")))
                    .expect("an output per input");
            assert_eq!(shape, [H, W]);
            values
        })
        .collect()
}

/// `anydepth` copied alone into `dir`: no `anydepth-torch` beside it, so a command that
/// asked for a network would fail.
fn front_binary_alone(dir: &Path) -> PathBuf {
    let front = dir.join("bin").join("anydepth");
    std::fs::create_dir_all(front.parent().expect("bin folder")).expect("mkdir");
    std::fs::copy(env!("CARGO_BIN_EXE_anydepth"), &front).expect("copy the binary");
    front
}

fn run(binary: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("anydepth runs")
}

#[test]
fn stabilize_gives_a_panning_clip_one_scale_and_shift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let truth = write_clip(dir.path());
    let binary = front_binary_alone(dir.path());
    let out = dir.path().join("steady");
    let depth_glob = dir.path().join("depth/*.npy");
    let color_glob = dir.path().join("color/*.png");
    let args = [
        "stabilize",
        "--disparity",
        s(&depth_glob),
        "--color",
        s(&color_glob),
        "--out",
        s(&out),
    ];
    let stderr_text = assert_ok(&run(&binary, &args));
    assert!(
        stderr_text.contains(&format!("{FRAMES} frames stabilised")),
        "{stderr_text}"
    );

    let before = global_abs_rel(&read_frames(&dir.path().join("depth")), &truth);
    let after = global_abs_rel(&read_frames(&out), &truth);
    eprintln!("AbsRel after one global scale and shift: before {before:.4}, after {after:.4}");
    assert!(before > 0.1, "the clip should need stabilising: {before}");
    assert!(after <= 0.05, "after {after}");

    // Guided by the disparity alone (no --color), into another folder.
    let alone = dir.path().join("alone");
    assert_ok(&run(
        &binary,
        &[
            "stabilize",
            "--disparity",
            s(&depth_glob),
            "--out",
            s(&alone),
            "-q",
        ],
    ));
    let after = global_abs_rel(&read_frames(&alone), &truth);
    assert!(after <= 0.05, "without colour: {after}");

    // The outputs exist: refused (naming one) without --force, nothing changed.
    let first = out.join("frame_000.npy");
    let kept = std::fs::read(&first).expect("read");
    let refused = run(&binary, &args);
    assert_code(&refused, 2);
    let message = stderr(&refused);
    assert!(
        message.contains("--force") && message.contains("frame_000.npy"),
        "{message}"
    );
    assert_eq!(std::fs::read(&first).expect("read"), kept);
    let forced = [&args[..], &["--force", "-q"]].concat();
    assert_ok(&run(&binary, &forced));
}

#[test]
fn stabilize_refuses_mismatched_colour_images() {
    let dir = tempfile::tempdir().expect("temp dir");
    let depth = dir.path().join("depth");
    std::fs::create_dir_all(&depth).expect("mkdir");
    let values = vec![1.0f32; 12];
    for name in ["a", "b"] {
        let npy = anydepth_core::npy::encode_f32(&values, &[3, 4]);
        std::fs::write(depth.join(format!("{name}.npy")), npy).expect("write");
    }
    let color = dir.path().join("color");
    std::fs::create_dir_all(&color).expect("mkdir");
    image::RgbImage::new(4, 3)
        .save(color.join("a.png"))
        .expect("write");
    let out = dir.path().join("out");
    let depth_glob = depth.join("*.npy");

    // One colour image for two disparity maps.
    let result = common::anydepth(&[
        "stabilize",
        "--disparity",
        s(&depth_glob),
        "--color",
        s(&color),
        "--out",
        s(&out),
    ]);
    assert_code(&result, 2);
    assert!(
        stderr(&result).contains("1 colour images for 2 disparity maps"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists(), "nothing written");

    // Two, but the second is the wrong size: named.
    image::RgbImage::new(5, 3)
        .save(color.join("b.png"))
        .expect("write");
    let result = common::anydepth(&[
        "stabilize",
        "--disparity",
        s(&depth_glob),
        "--color",
        s(&color),
        "--out",
        s(&out),
    ]);
    assert_code(&result, 2);
    let message = stderr(&result);
    assert!(
        message.contains("5 x 3") && message.contains("b.png"),
        "{message}"
    );
}
