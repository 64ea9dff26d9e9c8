//! The example runs on a photo with the random-weight metric checkpoint of
//! `scripts/reference/make_references.py` and its recording holds the whole chain.
//! Skips (with a message) without the reference folder, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anydepth_viz::paths;
use anydepth_viz::rrd::Rrd;

fn reference_file(relative: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ANYDEPTH_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/reference"));
    let path = dir.join(relative);
    if path.is_file() {
        return Some(path);
    }
    let what = format!(
        "no {} (run .venv/bin/python scripts/reference/make_references.py)",
        path.display()
    );
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
    None
}

#[test]
fn photo_to_depth_cloud_and_mesh() {
    let (Some(photo), Some(weights)) = (
        reference_file("odd_45x31.png"),
        reference_file("v2-vits-metric-indoor/model.safetensors"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rrd_path = dir.path().join("photo.rrd");
    let out = Command::new(env!("CARGO_BIN_EXE_photo_to_rerun"))
        .args([&photo, &weights, &rrd_path])
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let rrd = Rrd::read(&rrd_path).expect("recording decodes");
    for (entity, archetype) in [
        (paths::IMAGE, "Pinhole"),
        (paths::RGB, "Image"),
        (paths::DEPTH, "DepthImage"),
        (paths::CLOUD, "Points3D"),
        (paths::MESH, "Mesh3D"),
    ] {
        assert!(rrd.archetypes(entity).contains(archetype), "{entity}");
    }
    // The metric head's depth is positive everywhere: one point per pixel.
    assert_eq!(
        rrd.instance_count(paths::CLOUD, "Points3D:positions"),
        45 * 31
    );
    assert_eq!(rrd.instance_count(paths::CLOUD, "Points3D:colors"), 45 * 31);
    let triangles = rrd.instance_count(paths::MESH, "Mesh3D:triangle_indices");
    assert!(triangles > 0, "a mesh");
    assert!(
        stderr.contains(&format!("{} points, {triangles} triangles", 45 * 31)),
        "{stderr}"
    );
}
