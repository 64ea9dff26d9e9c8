//! The Rerun options of the commands that log: recordings saved with `--save`, read back with
//! Rerun's own decoder (entity paths, archetypes, counts against the command's own output
//! files), a missing viewer, a URL nobody listens at, and `--serve`.
//!
//! Tests skip (with a message) when their data or reference folder is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anydepth_geometry::io::ply;
use anydepth_viz::paths;
use anydepth_viz::rrd::Rrd;

mod common;
use common::{anydepth, assert_ok, command, reference_file, s};

fn redwood() -> Option<PathBuf> {
    common::dataset("redwood-livingroom", "odometry.log")
}

const INTRINSICS: &str = "525,525,319.5,239.5";

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn assert_archetype(rrd: &Rrd, entity: &str, archetype: &str) {
    let found = rrd.archetypes(entity);
    assert!(found.contains(archetype), "{entity}: {found:?}");
}

/// The camera, photo and depth of one view, at frame 0.
fn assert_view(rrd: &Rrd, rows: usize) {
    assert_archetype(rrd, paths::WORLD, "ViewCoordinates");
    assert_archetype(rrd, paths::CAMERA, "Transform3D");
    assert_archetype(rrd, paths::IMAGE, "Pinhole");
    assert_archetype(rrd, paths::RGB, "Image");
    assert_archetype(rrd, paths::DEPTH, "DepthImage");
    assert_eq!(
        rrd.row_count(paths::CAMERA, "Transform3D:translation"),
        rows
    );
    assert_eq!(
        rrd.row_count(paths::IMAGE, "Pinhole:image_from_camera"),
        rows
    );
    assert_eq!(rrd.row_count(paths::RGB, "Image:buffer"), rows);
    assert_eq!(rrd.row_count(paths::DEPTH, "DepthImage:buffer"), rows);
    assert!(rrd.timelines(paths::DEPTH).contains(paths::FRAME_TIMELINE));
    // Redwood's camera, principal point moved to Rerun's half-integer pixel centres.
    let k = rrd.f32_values(paths::IMAGE, "Pinhole:image_from_camera");
    assert_eq!(
        &k[..9],
        &[525.0, 0.0, 0.0, 0.0, 525.0, 0.0, 320.0, 240.0, 1.0]
    );
}

#[test]
fn cloud_and_mesh_save_what_they_write() {
    let Some(frame) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (depth, color) = (frame.join("depth/00000.png"), frame.join("color/00000.jpg"));
    let view = [
        "--depth",
        s(&depth),
        "--color",
        s(&color),
        "--intrinsics",
        INTRINSICS,
        "--quiet",
    ];

    // `anydepth <command>` of the view, saved: the PLY it wrote and the recording.
    let save = |command: &str| {
        let ply = dir.path().join(format!("{command}.ply"));
        let rrd = dir.path().join(format!("{command}.rrd"));
        assert_ok(&anydepth(
            &[&[command][..], &view, &["-o", s(&ply), "--save", s(&rrd)]].concat(),
        ));
        (ply, Rrd::read(&rrd).expect("recording decodes"))
    };

    let (cloud_ply, rrd) = save("cloud");
    let cloud = ply::read_point_cloud(&cloud_ply).expect("PLY reads");
    assert_view(&rrd, 1);
    assert_archetype(&rrd, paths::CLOUD, "Points3D");
    assert_eq!(
        rrd.instance_count(paths::CLOUD, "Points3D:positions"),
        cloud.len(),
        "every point of the PLY"
    );
    assert_eq!(
        rrd.instance_count(paths::CLOUD, "Points3D:colors"),
        cloud.len()
    );
    let positions = rrd.f32_values(paths::CLOUD, "Points3D:positions");
    let written: Vec<f32> = cloud.points.iter().flat_map(|p| [p.x, p.y, p.z]).collect();
    assert_eq!(positions, written, "the same points, in order");
    // Logged from a second thread while the PLY is written, still at the view's frame.
    assert!(rrd.timelines(paths::CLOUD).contains(paths::FRAME_TIMELINE));
    let radius = rrd.f32_values(paths::CLOUD, "Points3D:radii");
    assert!(
        radius.len() == 1 && radius[0] > 0.0 && radius[0] < 0.01,
        "half a pixel at a few metres: {radius:?}"
    );

    let (mesh_ply, rrd) = save("mesh");
    let mesh = ply::read_mesh(&mesh_ply).expect("PLY reads");
    assert_view(&rrd, 1);
    assert_archetype(&rrd, paths::MESH, "Mesh3D");
    assert!(rrd.timelines(paths::MESH).contains(paths::FRAME_TIMELINE));
    let n = mesh.vertices.len();
    assert_eq!(
        rrd.instance_count(paths::MESH, "Mesh3D:vertex_positions"),
        n
    );
    assert_eq!(rrd.instance_count(paths::MESH, "Mesh3D:vertex_colors"), n);
    assert_eq!(rrd.instance_count(paths::MESH, "Mesh3D:vertex_normals"), n);
    assert_eq!(
        rrd.instance_count(paths::MESH, "Mesh3D:triangle_indices"),
        mesh.faces.len()
    );
    let normals: Vec<f32> = mesh
        .normals
        .as_ref()
        .expect("the grid mesh has normals")
        .iter()
        .flat_map(|n| [n.x, n.y, n.z])
        .collect();
    assert_eq!(
        rrd.f32_values(paths::MESH, "Mesh3D:vertex_normals"),
        normals
    );
}

#[test]
fn fuse_saves_frames_poses_and_the_model() {
    let Some(frames) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (mesh_ply, rrd_path) = (dir.path().join("room.ply"), dir.path().join("room.rrd"));
    assert_ok(&anydepth(&[
        "fuse",
        "--color",
        s(&frames.join("color/*.jpg")),
        "--depth",
        s(&frames.join("depth/*.png")),
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&frames.join("odometry.log")),
        "--voxel-size",
        "0.02",
        "--quiet",
        "-o",
        s(&mesh_ply),
        "--save",
        s(&rrd_path),
    ]));
    let mesh = ply::read_mesh(&mesh_ply).expect("PLY reads");
    let rrd = Rrd::read(&rrd_path).expect("recording decodes");
    assert_view(&rrd, 5);
    assert_archetype(&rrd, paths::MODEL, "Mesh3D");
    assert!(
        rrd.timelines(paths::MODEL).is_empty(),
        "the model is static"
    );
    assert_eq!(
        rrd.instance_count(paths::MODEL, "Mesh3D:vertex_positions"),
        mesh.vertices.len()
    );
    assert_eq!(
        rrd.instance_count(paths::MODEL, "Mesh3D:triangle_indices"),
        mesh.faces.len()
    );
    // The last frame's pose is odometry.log's fifth.
    let poses = anydepth_core::pose::read_trajectory(&frames.join("odometry.log"), None)
        .expect("poses read");
    let t = poses.poses[4].world_from_camera.translation.vector;
    let logged = rrd.f32_values(paths::CAMERA, "Transform3D:translation");
    let last = &logged[logged.len() - 3..];
    for (a, b) in last.iter().zip(t.iter()) {
        assert!((f64::from(*a) - b).abs() < 1e-5, "{last:?} vs {t:?}");
    }
}

#[test]
fn depth_saves_photos_and_disparity() {
    let (Some(photo), Some(weights)) = (
        reference_file("odd_45x31.png"),
        reference_file("v2-vits/depth_anything_v2_vits.pth"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rrd_path = dir.path().join("depth.rrd");
    // The same photo twice, under two names: two frames.
    let second = dir.path().join("second.png");
    std::fs::copy(&photo, &second).expect("copy");
    assert_ok(&anydepth(&[
        "depth",
        s(&photo),
        s(&second),
        "--out",
        s(&dir.path().join("out")),
        "--weights",
        s(&weights),
        "--device",
        "cpu",
        "--input-size",
        "70",
        "--quiet",
        "--save",
        s(&rrd_path),
    ]));
    let rrd = Rrd::read(&rrd_path).expect("recording decodes");
    assert_archetype(&rrd, paths::IMAGE, "Pinhole");
    assert_archetype(&rrd, paths::RGB, "Image");
    assert_archetype(&rrd, paths::DISPARITY, "Image");
    assert!(
        !rrd.entity_paths().contains(paths::DEPTH),
        "relative: no metres"
    );
    assert_eq!(rrd.row_count(paths::RGB, "Image:buffer"), 2);
    assert_eq!(rrd.row_count(paths::DISPARITY, "Image:buffer"), 2);
    assert!(rrd
        .timelines(paths::DISPARITY)
        .contains(paths::FRAME_TIMELINE));
    // 45 x 31 RGB8 colour-mapped disparity, twice.
    let format = rrd.u32_values(paths::DISPARITY, "Image:format");
    assert_eq!(format, [45, 31, 45, 31]);
}

#[test]
fn spawn_without_a_viewer_fails_fast_and_clearly() {
    let Some(frame) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    let out = command()
        .env("PATH", dir.path()) // an empty folder: no `rerun`
        .args([
            "cloud",
            "--depth",
            s(&frame.join("depth/00000.png")),
            "--intrinsics",
            INTRINSICS,
            "-o",
            s(&dir.path().join("cloud.ply")),
            "--spawn",
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .expect("anydepth runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "no Rerun viewer found",
        "pip install rerun-sdk==0.36.3",
        "--save",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(!dir.path().join("cloud.ply").exists(), "nothing done");
}

/// A `rerun` that starts and dies (as the real one does without a display) is reported
/// after the wait, not waited on forever.
#[test]
fn spawn_of_a_viewer_that_dies_is_reported() {
    let Some(frame) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("rerun");
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let port = free_port();
    let start = Instant::now();
    let out = command()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .args([
            "cloud",
            "--depth",
            s(&frame.join("depth/00000.png")),
            "--intrinsics",
            INTRINSICS,
            "-o",
            s(&dir.path().join("cloud.ply")),
            "--spawn",
            "--port",
            &port.to_string(),
        ])
        .output()
        .expect("anydepth runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("does not listen on port {port}")),
        "{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn connect_to_nothing_fails_fast_and_options_exclude_each_other() {
    let Some(frame) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let depth = frame.join("depth/00000.png");
    let view = [
        "cloud",
        "--depth",
        s(&depth),
        "--intrinsics",
        INTRINSICS,
        "-o",
    ];
    let output = dir.path().join("cloud.ply");
    let url = format!("rerun+http://127.0.0.1:{}/proxy", free_port());
    let start = Instant::now();
    let out = anydepth(&[&view[..], &[s(&output), "--connect", &url]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no Rerun viewer listens at"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));

    let rrd = dir.path().join("x.rrd");
    let out = anydepth(&[&view[..], &[s(&output), "--spawn", "--save", s(&rrd)]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    assert!(!output.exists() && !rrd.exists());
}

#[test]
fn serve_listens_until_stopped() {
    let Some(frame) = redwood() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = command()
        .args([
            "cloud",
            "--depth",
            s(&frame.join("depth/00000.png")),
            "--intrinsics",
            INTRINSICS,
            "-o",
            s(&dir.path().join("cloud.ply")),
            "--serve",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("anydepth starts");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .find_map(|line| line.ok().filter(|l| l.contains("serving the recording")))
        .unwrap_or_default();
    let listening = std::net::TcpStream::connect(("127.0.0.1", port))
        .map(|_| ())
        .map_err(|e| e.to_string());
    let still_running = child.try_wait().map(|status| status.is_none());
    child.kill().ok();
    child.wait().ok();
    assert!(
        serving.contains(&format!("rerun+http://127.0.0.1:{port}/proxy")),
        "{serving}"
    );
    assert_eq!(listening, Ok(()), "the server accepts viewers");
    assert_eq!(still_running.ok(), Some(true), "it waits for Ctrl-C");
    assert!(
        dir.path().join("cloud.ply").is_file(),
        "the work was done first"
    );
}
