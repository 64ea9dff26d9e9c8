//! End-to-end tests of `anydepth cloud` and `anydepth mesh` on sensor depth.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anydepth_geometry::io::ply;

fn data() -> Option<PathBuf> {
    let dir = std::env::var_os("ANYDEPTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("redwood-livingroom").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "data folder not found: {}",
        dir.display()
    );
    eprintln!("skipping: data folder not found: {}", dir.display());
    None
}

fn anydepth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anydepth"))
        .args(args)
        .output()
        .expect("anydepth runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cloud = ply::read_point_cloud(&cloud_path).expect("our PLY reads back");
    let (_, _, values) = anydepth_core::depth_io::read_depth_values(&depth, 1000.0).expect("depth");
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
