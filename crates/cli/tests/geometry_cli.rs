//! End-to-end tests of `anydepth cloud` and `anydepth mesh`: on sensor depth, and on
//! photos through the depth engine with the random-weight checkpoints of
//! `scripts/reference/make_references.py`.
//!
//! Tests skip (with a message) when their data or reference folder is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::PathBuf;

use anydepth_geometry::io::ply;

mod common;
use common::{anydepth, assert_ok, reference_file, s};

fn data() -> Option<PathBuf> {
    common::dataset("redwood-livingroom", "").map(|_| common::data_root())
}

#[test]
fn cloud_and_mesh_from_a_redwood_frame() {
    let Some(data) = data() else { return };
    let frame = data.join("redwood-livingroom");
    let depth = frame.join("depth/00000.png");
    let color = frame.join("color/00000.jpg");
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud_path = dir.path().join("cloud.ply");
    let common = [
        "--depth",
        s(&depth),
        "--color",
        s(&color),
        "--intrinsics",
        "525,525,319.5,239.5",
    ];

    let out = anydepth(&[&["cloud"][..], &common, &["-o", s(&cloud_path)]].concat());
    assert_ok(&out);
    let cloud = ply::read_point_cloud(&cloud_path).expect("our PLY reads back");
    let (_, _, values) =
        anydepth_core::depth_io::read_depth_values::<anydepth_core::Metres>(&depth, 1000.0)
            .expect("depth")
            .into_parts();
    let valid = values.iter().filter(|&&d| d > 0.0).count();
    assert_eq!(cloud.len(), valid, "one point per valid pixel");
    assert!(cloud.colors.is_some());

    // The output exists: refused without --force, nothing changed.
    let before = std::fs::read(&cloud_path).expect("read");
    let out = anydepth(
        &[
            &["cloud"][..],
            &common,
            &["-o", s(&cloud_path), "--voxel-size", "0.05"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(&cloud_path).expect("read"), before);

    let out = anydepth(
        &[
            &["cloud"][..],
            &common,
            &[
                "-o",
                s(&cloud_path),
                "--voxel-size",
                "0.05",
                "--normals",
                "--force",
            ],
        ]
        .concat(),
    );
    assert_ok(&out);
    let small = ply::read_point_cloud(&cloud_path).expect("read back");
    assert!(small.len() < cloud.len() / 10 && small.normals.is_some());

    let mesh_path = dir.path().join("mesh.ply");
    let out = anydepth(
        &[
            &["mesh"][..],
            &common,
            &["-o", s(&mesh_path), "--max-depth", "3"],
        ]
        .concat(),
    );
    assert_ok(&out);
    let mesh = ply::read_mesh(&mesh_path).expect("mesh reads back");
    assert!(!mesh.faces.is_empty());
    assert!(
        mesh.vertices.iter().all(|p| p.z <= 3.0 + 1e-6),
        "--max-depth crops"
    );
}

#[test]
fn bad_geometry_inputs_are_clear_errors() {
    let Some(data) = data() else { return };
    let frame = data.join("redwood-livingroom");
    let depth = frame.join("depth/00000.png");
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("x.ply");
    let small = dir.path().join("small.png");
    image::RgbImage::new(10, 10).save(&small).expect("png");
    let missing = dir.path().join("missing.png");
    let cases: [(&[&str], &str); 4] = [
        (&["--depth", s(&depth), "--color", s(&small)], "10 x 10"),
        (
            &["--depth", s(&depth), "--intrinsics", "0,525,319.5,239.5"],
            "intrinsics",
        ),
        (&["--depth", s(&depth), "--disparity"], "disparity"),
        (&["--depth", s(&missing)], "missing.png"),
    ];
    for (args, needle) in cases {
        let out = anydepth(&[&["cloud"][..], args, &["-o", s(&out_path)]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "{args:?}: {stderr}"
        );
        assert!(!out_path.exists(), "no partial output");
    }
}

/// Small network input, CPU: the engine runs in well under a second per call.
const FAST: [&str; 4] = ["--device", "cpu", "--input-size", "70"];

/// Largest depth of the metric indoor (Hypersim) head, in metres.
const INDOOR_MAX_DEPTH_M: f32 = 20.0;

#[test]
// One scenario, read top to bottom.
#[allow(clippy::too_many_lines)]
fn cloud_and_mesh_from_a_photo_with_a_metric_model() {
    let (Some(photo), Some(weights)) = (
        reference_file("odd_45x31.png"),
        reference_file("v2-vits-metric-indoor/model.safetensors"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = [&["--weights", s(&weights)][..], &FAST].concat();
    let (fx, fy, cx, cy) = (40.0f32, 41.0f32, 22.0f32, 15.0f32);
    let camera = format!("{fx},{fy},{cx},{cy}");

    // The depth the engine gives for this photo, as `anydepth depth` writes it.
    let out = anydepth(
        &[
            &[
                "depth",
                s(&photo),
                "--out",
                s(dir.path()),
                "--formats",
                "npy,exr",
            ][..],
            &engine,
        ]
        .concat(),
    );
    assert_ok(&out);
    let (w, h, depth) = anydepth_core::depth_io::read_depth_values::<anydepth_core::Disparity>(
        &dir.path().join("odd_45x31.npy"),
        1.0,
    )
    .expect("depth npy")
    .into_parts();
    assert_eq!((w, h), (45, 31));
    let valid: Vec<(usize, f32)> = depth
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, z)| z.is_finite() && z > 0.0)
        .collect();
    assert!(!valid.is_empty(), "the metric model predicts some depth");

    let cloud_path = dir.path().join("cloud.ply");
    let out = anydepth(
        &[
            &[
                "cloud",
                s(&photo),
                "--intrinsics",
                &camera,
                "-o",
                s(&cloud_path),
            ][..],
            &engine,
        ]
        .concat(),
    );
    assert_ok(&out);
    let cloud = ply::read_point_cloud(&cloud_path).expect("our PLY reads back");
    assert_eq!(cloud.len(), valid.len(), "one point per valid pixel");
    assert!(cloud.len() <= (w * h) as usize);
    assert!(
        cloud
            .points
            .iter()
            .all(|p| p.z > 0.0 && p.z <= INDOOR_MAX_DEPTH_M),
        "depth within the metric head's range"
    );
    let colors = cloud.colors.as_ref().expect("the photo's colours");
    let rgb = image::open(&photo).expect("photo").into_rgb8();
    // Points come in row-major pixel order: each is its pixel's ray at the engine's depth,
    // with its pixel's colour. 1e-5 relative: the two runs and the PLY are all f32.
    for ((p, color), &(i, z)) in cloud.points.iter().zip(colors).zip(&valid) {
        let (u, v) = ((i % w as usize) as f32, (i / w as usize) as f32);
        let tol = 1e-5 * z;
        assert!((p.z - z).abs() <= tol, "pixel {i}: z {} vs {z}", p.z);
        assert!(
            (p.x - (u - cx) * z / fx).abs() <= tol,
            "pixel {i}: x {}",
            p.x
        );
        assert!(
            (p.y - (v - cy) * z / fy).abs() <= tol,
            "pixel {i}: y {}",
            p.y
        );
        assert_eq!(*color, rgb.get_pixel(u as u32, v as u32).0, "pixel {i}");
    }

    // The same view from the written EXR depth (metres as stored) and the photo's colours.
    let exr = dir.path().join("odd_45x31.exr");
    let exr_cloud_path = dir.path().join("cloud_exr.ply");
    let out = anydepth(&[
        "cloud",
        "--depth",
        s(&exr),
        "--color",
        s(&photo),
        "--intrinsics",
        &camera,
        "-o",
        s(&exr_cloud_path),
    ]);
    assert_ok(&out);
    let exr_cloud = ply::read_point_cloud(&exr_cloud_path).expect("PLY reads back");
    let exr_z: Vec<f32> = exr_cloud.points.iter().map(|p| p.z).collect();
    let npy_z: Vec<f32> = valid.iter().map(|&(_, z)| z).collect();
    assert_eq!(exr_z, npy_z, "the EXR holds the same f32 depth as the npy");
    assert_eq!(exr_cloud.colors, cloud.colors);

    let mesh_path = dir.path().join("mesh.ply");
    let out = anydepth(
        &[
            &[
                "mesh",
                s(&photo),
                "--intrinsics",
                &camera,
                "-o",
                s(&mesh_path),
            ][..],
            &engine,
        ]
        .concat(),
    );
    assert_ok(&out);
    let mesh = ply::read_mesh(&mesh_path).expect("mesh reads back");
    assert!(!mesh.faces.is_empty(), "a smooth photo gives triangles");
    let n = mesh.vertices.len() as u32;
    assert!(mesh.faces.iter().flatten().all(|&i| i < n));
    assert_eq!(
        mesh.colors.as_ref().map(Vec::len),
        Some(mesh.vertices.len())
    );
    // The mesh's vertices are cloud points (those used by a triangle), in the same order.
    let mut points = cloud.points.iter();
    for v in &mesh.vertices {
        assert!(
            points.any(|p| (p - v).norm() <= 1e-5 * p.z),
            "vertex {v:?} is not a point of the cloud, in order"
        );
    }
}

#[test]
fn relative_depth_without_metres_is_refused() {
    let (Some(photo), Some(weights)) = (
        reference_file("odd_45x31.png"),
        reference_file("v2-vits/depth_anything_v2_vits.pth"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for command in ["cloud", "mesh"] {
        let out_path = dir.path().join(format!("{command}.ply"));
        let out = anydepth(
            &[
                &[
                    command,
                    s(&photo),
                    "--weights",
                    s(&weights),
                    "-o",
                    s(&out_path),
                ][..],
                &FAST,
            ]
            .concat(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        for needle in ["disparity", "--metric", "--align-depth", "--scale"] {
            assert!(
                stderr.contains(needle),
                "{command}: no {needle:?} in {stderr}"
            );
        }
        assert!(!out_path.exists(), "{command}: nothing written");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            0,
            "no temp files"
        );
    }
}
