//! End-to-end tests of `anydepth fuse` on the Redwood living-room frames (accurate poses):
//! metric depth with poses, tracking without poses, relative depth (disparity with a
//! different scale and shift per frame) fitted to the model or to COLMAP sparse points,
//! pose refinement, and bad input.
//!
//! Tests skip (with a message) when the data is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};
use std::process::Output;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{read_trajectory, PoseFormat};
use anydepth_core::{Intrinsics, Metres};
use anydepth_geometry::io::ply;
use anydepth_geometry::render::render_depth;
use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};

mod common;
use common::{assert_ok, command, reference_file, s};

const CAMERA: Intrinsics = Intrinsics {
    width: 640,
    height: 480,
    fx: 525.0,
    fy: 525.0,
    cx: 319.5,
    cy: 239.5,
};
const VOXEL_M: f64 = 0.01;
const FRAMES: usize = 5;

fn redwood() -> Option<PathBuf> {
    common::dataset("redwood-livingroom", "odometry.log")
}

/// Runs `anydepth fuse <args>`.
fn anydepth(args: &[&str]) -> Output {
    command()
        .arg("fuse")
        .args(args)
        .output()
        .expect("anydepth runs")
}

/// Exit status 2, the message contains every one of `needles`, and `output` was not written.
fn assert_refused(out: &Output, needles: &[&str], output: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
    assert!(!output.exists(), "nothing may be written on error");
}

fn true_poses(dir: &Path) -> Vec<Isometry3<f64>> {
    read_trajectory(&dir.join("odometry.log"), None)
        .expect("odometry.log reads")
        .poses
        .iter()
        .map(|p| p.world_from_camera)
        .collect()
}

fn frame_depth(dir: &Path, i: usize) -> Vec<f32> {
    read_depth_values::<Metres>(&dir.join(format!("depth/{i:05}.png")), 1000.0)
        .expect("depth reads")
        .into_data()
}

/// Per frame, the mean absolute difference (metres) between the mesh rendered from the
/// frame's camera and the frame's own depth, over pixels where both are valid (depth up to
/// 3 m), and the share of valid frame pixels the mesh covers.
fn rendered_errors(dir: &Path, mesh: &Path) -> Vec<(f64, f64)> {
    let mesh = ply::read_mesh(mesh).expect("mesh reads back");
    true_poses(dir)
        .iter()
        .enumerate()
        .map(|(i, pose)| {
            let rendered = render_depth(&mesh, &CAMERA, pose).expect("renders");
            let depth = frame_depth(dir, i);
            let (mut sum, mut both, mut valid) = (0.0, 0usize, 0usize);
            for (&d, &r) in depth.iter().zip(rendered.data()) {
                if d > 0.0 && d <= 3.0 {
                    valid += 1;
                    if r.is_finite() {
                        sum += f64::from((d - r).abs());
                        both += 1;
                    }
                }
            }
            (sum / both.max(1) as f64, both as f64 / valid.max(1) as f64)
        })
        .collect()
}

fn assert_mesh_agrees_with_frames(dir: &Path, mesh: &Path, what: &str) {
    for (i, (error, coverage)) in rendered_errors(dir, mesh).into_iter().enumerate() {
        eprintln!(
            "{what}: frame {i}: mean |rendered - depth| {:.2} mm, coverage {:.1}%",
            error * 1e3,
            coverage * 100.0
        );
        assert!(error < VOXEL_M, "{what}: frame {i}: {error} m");
        assert!(coverage > 0.9, "{what}: frame {i}: coverage {coverage}");
    }
}

/// Translation (m) and rotation (degrees) between two poses.
fn pose_error(a: &Isometry3<f64>, b: &Isometry3<f64>) -> (f64, f64) {
    let d = a.inverse() * b;
    (d.translation.vector.norm(), d.rotation.angle().to_degrees())
}

fn write_log(path: &Path, poses: &[Isometry3<f64>]) {
    let mut text = String::new();
    for (i, pose) in poses.iter().enumerate() {
        text.push_str(&format!("{i} {i} {}\n", i + 1));
        let m = pose.to_homogeneous();
        for r in 0..4 {
            let row: Vec<String> = (0..4).map(|c| format!("{:.9}", m[(r, c)])).collect();
            text.push_str(&row.join(" "));
            text.push('\n');
        }
    }
    std::fs::write(path, text).expect("write log");
}

const INTRINSICS: &str = "525,525,319.5,239.5";

#[test]
fn fuses_rgbd_frames_with_poses() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mesh = tmp.path().join("room.ply");
    let color = dir.join("color/*.jpg");
    let depth = dir.join("depth/*.png");
    let log = dir.join("odometry.log");
    let args = [
        "--color",
        s(&color),
        "--depth",
        s(&depth),
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&log),
        "--voxel-size",
        "0.01",
        "--max-depth",
        "3",
    ];
    let stderr = assert_ok(&anydepth(&[&args[..], &["-o", s(&mesh)]].concat()));
    assert!(stderr.contains("5 frames fused"), "{stderr}");
    let read = ply::read_mesh(&mesh).expect("reads");
    assert!(read.colors.is_some() && read.normals.is_some());
    assert_mesh_agrees_with_frames(&dir, &mesh, "rgb-d with poses");

    // An existing output is kept without --force.
    let before = std::fs::read(&mesh).expect("read");
    let out = anydepth(&[&args[..], &["-o", s(&mesh)]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(&mesh).expect("read"), before);

    // The fused point cloud, in ASCII: the mesh's vertices.
    let cloud = tmp.path().join("room-points.ply");
    assert_ok(&anydepth(
        &[&args[..], &["--cloud", "--ascii", "-o", s(&cloud)]].concat(),
    ));
    let points = ply::read_point_cloud(&cloud).expect("reads");
    assert_eq!(points.len(), read.vertices.len());
}

#[test]
fn tracks_frames_without_poses() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mesh = tmp.path().join("room.ply");
    let saved = tmp.path().join("poses.txt");
    let depth = dir.join("depth/*.png");
    let stderr = assert_ok(&anydepth(&[
        "--depth",
        s(&depth),
        "--intrinsics",
        INTRINSICS,
        "--max-depth",
        "3",
        "--save-poses",
        s(&saved),
        "-o",
        s(&mesh),
    ]));
    assert!(stderr.contains("ICP: 4 frames aligned"), "{stderr}");
    let tracked = read_trajectory(&saved, Some(PoseFormat::Plain)).expect("saved poses read");
    let truth = true_poses(&dir);
    assert_eq!(tracked.poses.len(), FRAMES);
    for i in 1..FRAMES {
        // Relative to the first frame, which defines the world when tracking.
        let ours =
            tracked.poses[0].world_from_camera.inverse() * tracked.poses[i].world_from_camera;
        let theirs = truth[0].inverse() * truth[i];
        let (t, r) = pose_error(&ours, &theirs);
        eprintln!(
            "tracked frame {i}: {:.2} mm, {r:.3} deg from the true pose",
            t * 1e3
        );
        assert!(t < 0.01 && r < 0.5, "frame {i}: {t} m, {r} deg");
    }
}

#[test]
fn refines_perturbed_poses() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let truth = true_poses(&dir);
    // 2-3 cm and about a degree off, differently for each frame after the first.
    let perturbed: Vec<Isometry3<f64>> = truth
        .iter()
        .enumerate()
        .map(|(i, pose)| {
            if i == 0 {
                return *pose;
            }
            let k = i as f64;
            let nudge = Isometry3::from_parts(
                Translation3::new(0.02 * (k * 1.3).cos(), 0.015, -0.02 * (k * 0.7).sin()),
                UnitQuaternion::from_scaled_axis(Vector3::new(0.3, -0.5, 0.8 * k.cos()) * 0.02),
            );
            pose * nudge
        })
        .collect();
    let log = tmp.path().join("rough.log");
    write_log(&log, &perturbed);
    let mesh = tmp.path().join("room.ply");
    let saved = tmp.path().join("refined.txt");
    let stderr = assert_ok(&anydepth(&[
        "--depth",
        s(&dir.join("depth/*.png")),
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&log),
        "--refine-poses",
        "--max-depth",
        "3",
        "--save-poses",
        s(&saved),
        "-o",
        s(&mesh),
    ]));
    assert!(stderr.contains("ICP:"), "{stderr}");
    let refined = read_trajectory(&saved, Some(PoseFormat::Plain)).expect("reads");
    for i in 1..FRAMES {
        let (t0, r0) = pose_error(&perturbed[i], &truth[i]);
        let (t1, r1) = pose_error(&refined.poses[i].world_from_camera, &truth[i]);
        eprintln!(
            "frame {i}: given pose {:.1} mm / {r0:.2} deg off, refined {:.1} mm / {r1:.3} deg",
            t0 * 1e3,
            t1 * 1e3
        );
        assert!(t1 < 0.01 && r1 < 0.3, "frame {i}: {t1} m, {r1} deg");
    }
    assert_mesh_agrees_with_frames(&dir, &mesh, "refined poses");
}

/// Writes each frame's depth as disparity `(1 / depth - shift) / scale` with its own
/// `(scale, shift)`; returns them.
fn write_disparities(dir: &Path, out: &Path) -> Vec<(f64, f64)> {
    std::fs::create_dir_all(out).expect("mkdir");
    (0..FRAMES)
        .map(|i| {
            let (scale, shift) = (0.4 + 0.15 * i as f64, 0.02 * i as f64 - 0.03);
            let disparity: Vec<f32> = frame_depth(dir, i)
                .iter()
                .map(|&d| {
                    if d > 0.0 {
                        ((1.0 / f64::from(d) - shift) / scale) as f32
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            let bytes = anydepth_core::npy::encode_f32(&disparity, &[480, 640]);
            std::fs::write(out.join(format!("{i:05}.npy")), bytes).expect("write npy");
            (scale, shift)
        })
        .collect()
}

#[test]
fn fuses_relative_depth_fitted_to_the_model() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let disparity = tmp.path().join("disparity");
    let truth = write_disparities(&dir, &disparity);
    let mesh = tmp.path().join("room.ply");
    let (scale, shift) = (truth[0].0.to_string(), truth[0].1.to_string());
    let (pattern, log) = (disparity.join("*.npy"), dir.join("odometry.log"));
    let common = [
        "--depth",
        s(&pattern),
        "--disparity",
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&log),
        "--max-depth",
        "3",
        "-o",
        s(&mesh),
    ];
    // Without a scale for the first view there is nothing to fit to.
    let out = anydepth(&common);
    assert_refused(&out, &["--scale", "points3D"], &mesh);

    let stderr = assert_ok(&anydepth(
        &[&common[..], &["--scale", &scale, "--shift", &shift]].concat(),
    ));
    assert!(stderr.contains("fitted for 4 frames"), "{stderr}");
    assert_mesh_agrees_with_frames(&dir, &mesh, "disparity fitted to the model");
}

/// A COLMAP model of the five frames: cameras, images (camera_from_world) and, as sparse
/// points, every 40th pixel of each frame's depth seen from that frame; returns its folder.
fn write_colmap_model(dir: &Path, out: &Path) -> PathBuf {
    let model = out.join("sparse");
    std::fs::create_dir_all(&model).expect("mkdir");
    std::fs::write(
        model.join("cameras.txt"),
        "1 PINHOLE 640 480 525 525 320 240\n",
    )
    .expect("write");
    let (mut images, mut points) = (String::new(), String::new());
    let mut id = 0;
    for (i, pose) in true_poses(dir).iter().enumerate() {
        let c = pose.inverse();
        let (q, t) = (c.rotation.quaternion(), c.translation.vector);
        images.push_str(&format!(
            "{} {} {} {} {} {} {} {} 1 {i:05}.jpg\n",
            i + 1,
            q.w,
            q.i,
            q.j,
            q.k,
            t.x,
            t.y,
            t.z
        ));
        let depth = frame_depth(dir, i);
        let mut observed = Vec::new();
        for v in (0..480).step_by(40) {
            for u in (0..640).step_by(40) {
                let d = f64::from(depth[v * 640 + u]);
                if d > 0.0 && d < 3.0 {
                    let p = nalgebra::Point3::new(
                        (u as f64 - 319.5) / 525.0 * d,
                        (v as f64 - 239.5) / 525.0 * d,
                        d,
                    );
                    let w = pose * p;
                    id += 1;
                    points.push_str(&format!(
                        "{id} {} {} {} 128 128 128 0.5 {} 0\n",
                        w.x,
                        w.y,
                        w.z,
                        i + 1
                    ));
                    observed.push(format!("{} {} {id}", u as f64 + 0.5, v as f64 + 0.5));
                }
            }
        }
        images.push_str(&observed.join(" "));
        images.push('\n');
    }
    std::fs::write(model.join("images.txt"), images).expect("write");
    std::fs::write(model.join("points3D.txt"), points).expect("write");

    model
}

#[test]
fn fuses_relative_depth_fitted_to_colmap_points() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let disparity = tmp.path().join("disparity");
    write_disparities(&dir, &disparity);

    let model = write_colmap_model(&dir, tmp.path());

    let mesh = tmp.path().join("room.ply");
    let stderr = assert_ok(&anydepth(&[
        "--depth",
        s(&disparity.join("*.npy")),
        "--color",
        s(&dir.join("color/*.jpg")),
        "--disparity",
        "--poses",
        s(&model),
        "--max-depth",
        "3",
        "-o",
        s(&mesh),
    ]));
    assert!(stderr.contains("fitted for 5 frames"), "{stderr}");
    assert_mesh_agrees_with_frames(&dir, &mesh, "disparity fitted to COLMAP points");
}

#[test]
fn bad_input_is_refused_and_nothing_written() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mesh = tmp.path().join("room.ply");
    let truth = true_poses(&dir);
    let depth = dir.join("depth/*.png");
    let run = |extra: &[&str]| {
        anydepth(
            &[
                &[
                    "--depth",
                    s(&depth),
                    "--intrinsics",
                    INTRINSICS,
                    "-o",
                    s(&mesh),
                ][..],
                extra,
            ]
            .concat(),
        )
    };

    // Fewer poses than frames.
    let short = tmp.path().join("short.log");
    write_log(&short, &truth[..3]);
    assert_refused(
        &run(&["--poses", s(&short)]),
        &["short.log", "only 3 camera poses", "5 frames"],
        &mesh,
    );

    // An unreadable line.
    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, "0 0 0 0 0 0 1\n0 0 zero 0 0 0 1\n").expect("write");
    assert_refused(&run(&["--poses", s(&bad)]), &["bad.txt", "line 2"], &mesh);

    // A matrix that is not rigid (scaled by 1.1).
    let scaled = tmp.path().join("scaled.log");
    let mut poses = truth.clone();
    poses.truncate(FRAMES);
    write_log(&scaled, &poses);
    let text = std::fs::read_to_string(&scaled).expect("read");
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            if (6..9).contains(&n) {
                // Frame 1's rotation rows, columns scaled.
                line.split_whitespace()
                    .enumerate()
                    .map(|(c, v)| {
                        let v: f64 = v.parse().expect("number");
                        (if c < 3 { v * 1.1 } else { v }).to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(&scaled, lines.join("\n")).expect("write");
    assert_refused(
        &run(&["--poses", s(&scaled)]),
        &["scaled.log", "line 7"],
        &mesh,
    );

    // Frames of mixed sizes.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir_all(&mixed).expect("mkdir");
    for i in 0..3 {
        let (w, h) = if i == 2 { (320, 240) } else { (640, 480) };
        let values = vec![1.5f32; w * h];
        let bytes = anydepth_core::npy::encode_f32(&values, &[h, w]);
        std::fs::write(mixed.join(format!("{i}.npy")), bytes).expect("write");
    }
    let out = anydepth(&[
        "--depth",
        s(&mixed.join("*.npy")),
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&dir.join("odometry.log")),
        "-o",
        s(&mesh),
    ]);
    assert_refused(&out, &["2.npy", "320 x 240", "640 x 480"], &mesh);

    // As many colour images as depth maps.
    let out = run(&["--color", s(&dir.join("color/0000[0-2].jpg"))]);
    assert_refused(&out, &["3 colour images for 5 depth maps"], &mesh);

    // Relative depth cannot be tracked.
    let out = run(&["--disparity"]);
    assert_refused(&out, &["--poses"], &mesh);
}

/// Photos through the depth engine (random-weight checkpoints, so the depth itself is
/// meaningless): a metric model's views after the first are fitted to the model, a
/// relative model's to COLMAP points, and without points it is refused.
#[test]
fn fuses_photos_through_the_depth_engine() {
    let Some(dir) = redwood() else { return };
    let (Some(metric), Some(relative)) = (
        reference_file("v2-vits-metric-indoor/model.safetensors"),
        reference_file("v2-vits/depth_anything_v2_vits.pth"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let photos: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("color/{i:05}.jpg")))
        .collect();
    let photos: Vec<&str> = photos.iter().map(|p| s(p)).collect();
    let mesh = tmp.path().join("photos.ply");
    let log = dir.join("odometry.log");
    let engine = ["--device", "cpu", "--input-size", "70"];
    let common = [
        &photos[..],
        &engine,
        &[
            "--intrinsics",
            INTRINSICS,
            "--voxel-size",
            "0.05",
            "--max-depth",
            "20",
        ],
    ]
    .concat();

    let stderr = assert_ok(&anydepth(
        &[
            &common[..],
            &["--weights", s(&metric), "--poses", s(&log), "-o", s(&mesh)],
        ]
        .concat(),
    ));
    assert!(stderr.contains("fitted for 2 frames"), "{stderr}");
    assert!(!ply::read_mesh(&mesh).expect("reads").faces.is_empty());

    let mesh = tmp.path().join("relative.ply");
    let out = anydepth(
        &[
            &common[..],
            &[
                "--weights",
                s(&relative),
                "--poses",
                s(&log),
                "-o",
                s(&mesh),
            ],
        ]
        .concat(),
    );
    assert_refused(&out, &["needs a scale for its first view"], &mesh);

    let model = write_colmap_model(&dir, tmp.path());
    let stderr = assert_ok(&anydepth(
        &[
            &common[..],
            &[
                "--weights",
                s(&relative),
                "--poses",
                s(&model),
                "-o",
                s(&mesh),
            ],
        ]
        .concat(),
    ));
    assert!(stderr.contains("fitted for 3 frames"), "{stderr}");
}
