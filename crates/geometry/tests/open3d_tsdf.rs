//! TSDF fusion of the Redwood living-room frames (accurate poses) against Open3D's
//! `VoxelBlockGrid` with the same voxel size, truncation, depth limit and weight
//! threshold, and against each frame's own depth.

use std::path::PathBuf;
use std::process::Command;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{read_trajectory, PoseFormat};
use anydepth_core::{load_image, Intrinsics, Metres};
use anydepth_geometry::io::ply::read_mesh;
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::Point3;

mod common;
use common::{data, open3d_python, root, skip};

/// Mean distance from each of `from` to its nearest point of `to`.
fn mean_nearest(from: &[Point3<f32>], to: &[Point3<f32>]) -> f64 {
    let coords: Vec<[f32; 3]> = to.iter().map(|p| [p.x, p.y, p.z]).collect();
    let tree = ImmutableKdTree::<f32, 3>::new_from_slice(&coords).expect("tree");
    let total: f64 = from
        .iter()
        .map(|p| {
            let nearest = tree
                .query(&[p.x, p.y, p.z])
                .nearest_one::<SquaredEuclidean<f32>>()
                .execute();
            f64::from(nearest.distance).sqrt()
        })
        .sum();
    total / from.len() as f64
}

#[test]
// One scenario, read top to bottom.
#[allow(clippy::too_many_lines)]
fn redwood_fusion_matches_open3d_and_each_frame() {
    let dir = data().join("redwood-livingroom");
    if !dir.join("odometry.log").exists() {
        skip(&format!("need {}", dir.display()));
        return;
    }
    let Some(python) = open3d_python() else {
        return;
    };
    let (voxel, trunc, depth_max, min_weight, scale) = (0.01f32, 0.04f32, 3.0f32, 1.0f32, 1000.0);
    let camera = Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid camera");
    let trajectory =
        read_trajectory(&dir.join("odometry.log"), Some(PoseFormat::Log)).expect("poses");
    let poses: Vec<_> = trajectory
        .poses
        .iter()
        .map(|p| p.world_from_camera)
        .collect();
    let frames: Vec<(PathBuf, PathBuf)> = (0..5)
        .map(|i| {
            (
                dir.join(format!("color/{i:05}.jpg")),
                dir.join(format!("depth/{i:05}.png")),
            )
        })
        .collect();
    assert!(poses.len() >= frames.len());

    // Open3D.
    let tmp = tempfile::tempdir().expect("temp dir");
    let poses_txt = tmp.path().join("poses.txt");
    let rows: Vec<String> = poses
        .iter()
        .map(|pose| {
            pose.to_homogeneous()
                .transpose()
                .iter()
                .map(|v| format!("{v:.17e}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    std::fs::write(&poses_txt, rows.join("\n")).expect("write poses");
    let reference = tmp.path().join("open3d.ply");
    let mut command = Command::new(&python);
    command
        .arg(root().join("scripts/reference/open3d_tsdf.py"))
        .arg(&reference)
        .args([voxel, trunc, depth_max, min_weight].map(|v| v.to_string()))
        .arg(scale.to_string())
        .args([camera.fx, camera.fy, camera.cx, camera.cy].map(|v| v.to_string()))
        .arg(&poses_txt);
    for (color, depth) in &frames {
        command.arg(color).arg(depth);
    }
    let status = command.status().expect("python runs");
    assert!(status.success(), "the Open3D reference script failed");
    let theirs = read_mesh(&reference).expect("Open3D's mesh reads back");

    // Ours.
    let mut volume = TsdfVolume::new(TsdfOptions {
        voxel_size_m: voxel,
        trunc_m: trunc,
        max_depth_m: depth_max,
        min_weight,
    })
    .expect("valid options");
    let mut depths = Vec::new();
    for ((color, depth), pose) in frames.iter().zip(&poses) {
        let image = load_image(color).expect("colour");
        let colors = image.to_rgb8();
        let values = read_depth_values::<Metres>(depth, scale).expect("depth");
        volume
            .integrate(&values, Some(&colors), &camera, pose)
            .expect("integrates");
        depths.push(values);
    }
    let ours = volume.extract_mesh().expect("extracts");

    let a = mean_nearest(&ours.vertices, &theirs.vertices);
    let b = mean_nearest(&theirs.vertices, &ours.vertices);
    let chamfer = 0.5 * (a + b);
    eprintln!(
        "ours {} vertices, Open3D {}; mean nearest ours->Open3D {a:.5} m, Open3D->ours {b:.5} m",
        ours.vertices.len(),
        theirs.vertices.len()
    );
    assert!(
        chamfer < 0.5 * f64::from(voxel),
        "Chamfer distance {chamfer} m"
    );

    // Each frame's own surface points (within range) lie on the mesh.
    for (values, pose) in depths.iter().zip(&poses) {
        let options = UnprojectOptions {
            max_depth_m: depth_max,
            stride: 4,
            world_from_camera: Some(pose.cast::<f32>()),
            ..Default::default()
        };
        let seen = unproject(values, &camera, &options, None).expect("unprojects");
        let mean = mean_nearest(&seen.points, &ours.vertices);
        eprintln!("frame: mean distance of its depth points to the mesh {mean:.5} m");
        assert!(
            mean < f64::from(voxel),
            "frame's points are {mean} m from the mesh"
        );
    }
}
