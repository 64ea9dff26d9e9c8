//! Unprojection of real RGB-D frames equals Open3D's `create_from_rgbd_image` point for
//! point: same count and order, positions within 1e-5 m (both compute in f32 from the
//! same 16-bit depth; they differ by rounding only), colours within one 8-bit level (the
//! JPEG decoders may differ by one).

use std::path::Path;
use std::process::Command;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, Intrinsics, Metres};
use anydepth_geometry::unproject::{unproject, UnprojectOptions};

mod common;
use common::{data, open3d_python, root, skip};

fn check_frame(color: &Path, depth: &Path, scale: f64, camera: Intrinsics) {
    if !depth.exists() {
        skip(&format!("need {}", depth.display()));
        return;
    }
    let Some(python) = open3d_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = dir.path().join("o3d");
    let status = Command::new(&python)
        .arg(root().join("scripts/reference/open3d_cloud.py"))
        .arg(color)
        .arg(depth)
        .arg(scale.to_string())
        .args([camera.fx, camera.fy, camera.cx, camera.cy].map(|v| v.to_string()))
        .arg(&prefix)
        .status()
        .expect("python runs");
    assert!(status.success(), "the Open3D reference script failed");
    let (shape, expected) =
        anydepth_core::npy::read_f32(&prefix.with_extension("points.npy")).expect("points");
    let (_, expected_colors) =
        anydepth_core::npy::read_f32(&prefix.with_extension("colors.npy")).expect("colors");

    let values = read_depth_values::<Metres>(depth, scale).expect("depth");
    let image = load_image(color).expect("colour");
    let rgb = image.to_rgb8();
    let cloud = unproject(
        &values,
        &camera,
        &UnprojectOptions::default(),
        Some(rgb.as_flattened()),
    )
    .expect("unproject");

    assert_eq!(shape[0], cloud.len(), "{}: point count", depth.display());
    let mut worst = 0f32;
    for (i, p) in cloud.points.iter().enumerate() {
        for (a, b) in [p.x, p.y, p.z].iter().zip(&expected[3 * i..3 * i + 3]) {
            worst = worst.max((a - b).abs());
        }
    }
    let colors = cloud.colors.as_ref().expect("colours");
    let worst_color = colors
        .iter()
        .flatten()
        .zip(&expected_colors)
        .map(|(&a, &b)| (a as f32 - b * 255.0).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "{}: {} points, max position difference {worst:.2e} m, max colour difference {worst_color}",
        depth.display(),
        cloud.len()
    );
    assert!(worst < 1e-5, "positions differ by {worst} m");
    assert!(worst_color <= 1.0, "colours differ by {worst_color}");
}

#[test]
fn redwood_frame_matches_open3d() {
    let d = data().join("redwood-livingroom");
    check_frame(
        &d.join("color/00000.jpg"),
        &d.join("depth/00000.png"),
        1000.0,
        Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid camera"),
    );
}

#[test]
fn kinect_pgm_frame_matches_open3d() {
    let d = data().join("kinect-office");
    check_frame(
        &d.join("color/1.png"),
        &d.join("depth/1.pgm"),
        1000.0,
        Intrinsics::new(518.0, 519.0, 325.5, 253.5, 640, 480).expect("valid camera"),
    );
}
