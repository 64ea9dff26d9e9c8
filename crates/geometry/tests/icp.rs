//! Point-to-plane ICP: exact recovery on a synthetic shape, refusals, and refinement of
//! real frames (Redwood against a TSDF mesh; kinect-office frame against frame).
//!
//! The real-data tests print their numbers (`--nocapture` shows them):
//! `cargo test -p anydepth-geometry --test icp -- --nocapture`. The real data is read
//! from `../shared/data` (or `ANYDEPTH_DATA`); without it those tests say so and pass.

use std::path::Path;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{read_trajectory, PoseFormat};
use anydepth_core::{Intrinsics, Metres};
use anydepth_geometry::icp::{
    evaluate_point_to_plane, icp_point_to_plane, IcpFit, IcpOptions, IcpResult, IcpTarget,
};
use anydepth_geometry::normals::estimate_normals;
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use anydepth_geometry::{Error, PointCloud};
use nalgebra::{Isometry3, Point3, Translation3, Unit, UnitQuaternion, Vector3};

#[allow(dead_code)]
mod common;
use common::{data, skip};

/// `(translation m, rotation deg)` of `a^-1 * b`: for camera poses, the distance
/// between the camera centres and the angle between the orientations.
fn pose_error(a: &Isometry3<f64>, b: &Isometry3<f64>) -> (f64, f64) {
    let d = a.inverse() * b;
    (d.translation.vector.norm(), d.rotation.angle().to_degrees())
}

/// A translation of `translation_m` along a fixed direction and a rotation of
/// `rotation_deg` about a fixed axis.
fn perturbation(translation_m: f64, rotation_deg: f64) -> Isometry3<f64> {
    Isometry3::from_parts(
        Translation3::from(Vector3::new(0.6, -0.5, 0.62).normalize() * translation_m),
        UnitQuaternion::from_axis_angle(
            &Unit::new_normalize(Vector3::new(-0.3, 1.0, 0.4)),
            rotation_deg.to_radians(),
        ),
    )
}

/// The inside corner of a box (planes x, y, z = -0.4, 0.8 m squares on a 1 cm grid)
/// and a sphere (centre 0.1, radius 0.2, Fibonacci lattice), with exact normals.
fn corner_and_sphere() -> PointCloud {
    let mut points = Vec::new();
    let mut normals = Vec::new();
    for axis in 0..3 {
        for i in 0..80 {
            for j in 0..80 {
                let mut p = Vector3::repeat(-0.4);
                p[(axis + 1) % 3] = -0.4 + 0.01 * f64::from(i);
                p[(axis + 2) % 3] = -0.4 + 0.01 * f64::from(j);
                points.push(Point3::from(p.cast::<f32>()));
                normals.push(Vector3::ith(axis, 1.0f32));
            }
        }
    }
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let on_sphere = 5000;
    for i in 0..on_sphere {
        let z = 1.0 - f64::from(2 * i + 1) / f64::from(on_sphere);
        let r = (1.0 - z * z).sqrt();
        let phi = golden * f64::from(i);
        let n = Vector3::new(r * phi.cos(), r * phi.sin(), z);
        points.push(Point3::from((Vector3::repeat(0.1) + 0.2 * n).cast::<f32>()));
        normals.push(n.cast::<f32>());
    }
    PointCloud {
        points,
        colors: None,
        normals: Some(normals),
    }
}

/// `cloud`'s points moved by `by` (no normals: ICP sources need none).
fn moved(cloud: &PointCloud, by: &Isometry3<f64>) -> PointCloud {
    PointCloud {
        points: cloud
            .points
            .iter()
            .map(|p| (by * p.cast::<f64>()).cast::<f32>())
            .collect(),
        ..Default::default()
    }
}

/// Wide enough for the 5 cm / 5 degree start of the synthetic tests: points 0.7 m
/// from the rotation axis move by up to 11 cm.
fn synthetic_options() -> IcpOptions {
    IcpOptions {
        max_correspondence_m: 0.15,
        ..Default::default()
    }
}

#[test]
fn a_known_motion_is_recovered_exactly() {
    let shape = corner_and_sphere();
    let target = IcpTarget::new(shape.clone()).expect("target");
    let truth = perturbation(0.05, 5.0);
    // The target's own points seen from `truth`: every point has an exact partner.
    let source = moved(&shape, &truth.inverse());
    let result = icp_point_to_plane(
        &source,
        &target,
        &Isometry3::identity(),
        &synthetic_options(),
    )
    .expect("aligns");
    let (dt, dr) = pose_error(&result.target_from_source, &truth);
    eprintln!(
        "synthetic: error {dt:.2e} m, {dr:.2e} deg; RMSE {:.2e} m (initial {:.2e} m), \
         {} iterations",
        result.rmse_m, result.initial_rmse_m, result.iterations
    );
    assert!(dt < 1e-4 && dr < 0.01, "{dt} m, {dr} deg");
    assert!(result.converged);
    // f32 points about 0.5 m from the origin: round-off of a few 1e-8 m.
    assert!(result.rmse_m < 1e-6, "{result:?}");
    assert_eq!(result.fitness, 1.0);
    assert_eq!(result.unconstrained_dofs, 0);
    assert!(result.initial_rmse_m > 0.01);
}

fn expect_diverged(result: Result<IcpResult, Error>, what: &str) -> String {
    match result {
        Err(Error::Diverged(message)) => {
            eprintln!("{what}: {message}");
            message
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn hopeless_and_overreaching_results_are_refused() {
    let shape = corner_and_sphere();
    let target = IcpTarget::new(shape.clone()).expect("target");

    // A metre away with 5 cm correspondences: nothing to pair.
    let far = moved(&shape, &Isometry3::translation(1.0, 0.0, 0.0));
    let message = expect_diverged(
        icp_point_to_plane(
            &far,
            &target,
            &Isometry3::identity(),
            &IcpOptions::default(),
        ),
        "1 m away",
    );
    assert!(message.contains("too few correspondences"), "{message}");

    // The right answer, but farther than the caller allows.
    let truth = perturbation(0.05, 5.0);
    let source = moved(&shape, &truth.inverse());
    let short_leash = IcpOptions {
        max_translation_m: 0.02,
        ..synthetic_options()
    };
    let message = expect_diverged(
        icp_point_to_plane(&source, &target, &Isometry3::identity(), &short_leash),
        "translation limit 2 cm",
    );
    assert!(message.contains("moved"), "{message}");
    let stiff = IcpOptions {
        max_rotation_deg: 3.0,
        ..synthetic_options()
    };
    let message = expect_diverged(
        icp_point_to_plane(&source, &target, &Isometry3::identity(), &stiff),
        "rotation limit 3 deg",
    );
    assert!(message.contains("rotated"), "{message}");

    // Most of the source far from the target: the few points that pair do not make
    // the minimum fitness.
    let mut partial = source.clone();
    let stray = moved(&shape, &Isometry3::translation(0.0, 3.0, 0.0));
    partial
        .points
        .extend(stray.points.iter().cycle().take(4 * source.len()));
    let message = expect_diverged(
        icp_point_to_plane(
            &partial,
            &target,
            &Isometry3::identity(),
            &synthetic_options(),
        ),
        "80% strays",
    );
    assert!(message.contains("too few correspondences"), "{message}");
}

#[test]
fn a_single_plane_keeps_the_unseen_motion_of_the_initial_pose() {
    // A 2 m wall on a 2 cm grid, 1.5 m in front of the origin.
    let points: Vec<Point3<f32>> = (0..100 * 100)
        .map(|i| {
            Point3::new(
                -1.0 + 0.02 * (i % 100) as f32,
                -1.0 + 0.02 * (i / 100) as f32,
                1.5,
            )
        })
        .collect();
    let target = IcpTarget::new(PointCloud {
        normals: Some(vec![-Vector3::z(); points.len()]),
        points: points.clone(),
        colors: None,
    })
    .expect("target");
    let source = PointCloud {
        points,
        ..Default::default()
    };
    let initial = perturbation(0.03, 2.0);
    let result =
        icp_point_to_plane(&source, &target, &initial, &IcpOptions::default()).expect("aligns");
    eprintln!("single plane: {result:?}");
    assert_eq!(result.unconstrained_dofs, 3);
    assert!(result.rmse_m < 1e-6);
    // On the wall, with the in-plane part of `initial` untouched.
    let pose = result.target_from_source;
    assert!(source
        .points
        .iter()
        .all(|p| ((pose * p.cast::<f64>()).z - 1.5).abs() < 1e-6));
    let centroid = Point3::new(-0.01, -0.01, 1.5);
    let (now, before) = (pose * centroid, initial * centroid);
    assert!((now.xy() - before.xy()).norm() < 1e-6, "{now} vs {before}");
}

const REDWOOD: Intrinsics = Intrinsics {
    width: 640,
    height: 480,
    fx: 525.0,
    fy: 525.0,
    cx: 319.5,
    cy: 239.5,
};

/// Frame 2 of the Redwood living room, its pose disturbed by 3 cm and 2 degrees, is
/// put back on the TSDF mesh fused from frames 0..=4 with their accurate poses.
#[test]
fn redwood_frame_returns_to_its_pose_on_the_fused_mesh() {
    let dir = data().join("redwood-livingroom");
    if !dir.join("odometry.log").exists() {
        skip(&format!("need {}", dir.display()));
        return;
    }
    let trajectory =
        read_trajectory(&dir.join("odometry.log"), Some(PoseFormat::Log)).expect("poses");
    let poses: Vec<Isometry3<f64>> = trajectory
        .poses
        .iter()
        .map(|p| p.world_from_camera)
        .collect();
    assert!(poses.len() >= 5);
    let depths: Vec<_> = (0..5)
        .map(|i| {
            read_depth_values::<Metres>(&dir.join(format!("depth/{i:05}.png")), 1000.0)
                .expect("depth")
        })
        .collect();

    let mut volume = TsdfVolume::new(TsdfOptions {
        voxel_size_m: 0.01,
        trunc_m: 0.04,
        max_depth_m: 3.0,
        ..Default::default()
    })
    .expect("options");
    for (depth, world_from_camera) in depths.iter().zip(&poses) {
        volume
            .integrate(depth, None, &REDWOOD, world_from_camera)
            .expect("integrates");
    }
    let mesh = volume.extract_mesh().expect("mesh");
    let target = IcpTarget::new(PointCloud::from(mesh)).expect("target");

    let source = unproject(
        &depths[2],
        &REDWOOD,
        &UnprojectOptions {
            max_depth_m: 3.0,
            stride: 4,
            ..Default::default()
        },
        None,
    )
    .expect("unprojects");
    let truth = poses[2];
    // Disturbed in the camera's frame: the camera centre moves 3 cm, the view turns
    // 2 degrees about the camera centre (points 2 m away move 7 cm).
    let initial = truth * perturbation(0.03, 2.0);
    let options = IcpOptions::default();
    let result = icp_point_to_plane(&source, &target, &initial, &options).expect("refines");
    let (t0, r0) = pose_error(&truth, &initial);
    let (t1, r1) = pose_error(&truth, &result.target_from_source);
    let at_truth = evaluate_point_to_plane(&source, &target, &truth, options.max_correspondence_m)
        .expect("evaluates");
    eprintln!(
        "Redwood frame 2 against the mesh of frames 0..=4 ({} vertices), {} source points:",
        target.cloud().len(),
        source.len()
    );
    eprintln!(
        "  start      {:6.2} mm {:6.3} deg from the given pose; RMSE {:.2} mm, fitness {:.3}",
        t0 * 1e3,
        r0,
        result.initial_rmse_m * 1e3,
        result.initial_fitness
    );
    eprintln!(
        "  ICP        {:6.2} mm {:6.3} deg from the given pose; RMSE {:.2} mm, fitness {:.3}; \
         {} iterations, converged {}",
        t1 * 1e3,
        r1,
        result.rmse_m * 1e3,
        result.fitness,
        result.iterations,
        result.converged
    );
    eprintln!(
        "  given pose                              RMSE {:.2} mm, fitness {:.3}",
        at_truth.rmse_m * 1e3,
        at_truth.fitness
    );
    assert!(t1 < 0.01 && r1 < 0.5, "{t1} m, {r1} deg from the true pose");
    assert!(result.rmse_m < result.initial_rmse_m);
    assert_eq!(result.unconstrained_dofs, 0);
}

const KINECT: Intrinsics = Intrinsics {
    width: 640,
    height: 480,
    fx: 518.0,
    fy: 519.0,
    cx: 325.5,
    cy: 253.5,
};

/// A kinect-office frame's points within 3 m, every `stride`-th pixel, in world or
/// camera coordinates.
fn kinect_points(
    depth: &Path,
    stride: usize,
    world_from_camera: Option<&Isometry3<f64>>,
) -> PointCloud {
    let values = read_depth_values::<Metres>(depth, 1000.0).expect("depth");
    unproject(
        &values,
        &KINECT,
        &UnprojectOptions {
            max_depth_m: 3.0,
            stride,
            world_from_camera: world_from_camera.map(|p| p.cast::<f32>()),
            ..Default::default()
        },
        None,
    )
    .expect("unprojects")
}

/// Each kinect-office frame refined against the one before it (pairwise, not chained:
/// frame `i` stays at its given pose, so every pair measures only the ICP step), and
/// the disagreement between the two before and after.
///
/// Disagreement: point-to-plane RMS and fitness of frame `i + 1` (stride 4, at most
/// 3 m, at its pose) against frame `i` (stride 2, normals from 20 neighbours facing its
/// camera, in world coordinates), pairs at most 5 cm apart. ICP runs twice, 10 cm then
/// 5 cm correspondences, because the given poses are off by up to 13 cm; a refused
/// refinement keeps the given pose.
#[test]
fn kinect_office_frames_agree_better_after_refinement() {
    let dir = data().join("kinect-office");
    if !dir.join("pose.txt").exists() {
        skip(&format!("need {}", dir.display()));
        return;
    }
    let trajectory =
        read_trajectory(&dir.join("pose.txt"), Some(PoseFormat::Plain)).expect("poses");
    let poses: Vec<Isometry3<f64>> = trajectory
        .poses
        .iter()
        .map(|p| p.world_from_camera)
        .collect();
    assert!(poses.len() >= 5);
    let depth = |i: usize| dir.join(format!("depth/{}.pgm", i + 1));
    let measure_m = 0.05;
    let stages = [0.10, 0.05];

    eprintln!(
        "kinect-office, frame i+1 against frame i, point-to-plane within {:.0} cm:",
        measure_m * 100.0
    );
    eprintln!("pair | RMSE before | RMSE after | fitness before | fitness after | ICP correction");
    let mut before_sum = 0.0;
    let mut after_sum = 0.0;
    let pairs = poses.len().min(5) - 1;
    for i in 0..pairs {
        let mut target_cloud = kinect_points(&depth(i), 2, Some(&poses[i]));
        let camera_centre = Point3::from(poses[i].translation.vector.cast::<f32>());
        estimate_normals(&mut target_cloud, 20, camera_centre).expect("normals");
        let target = IcpTarget::new(target_cloud).expect("target");
        let source = kinect_points(&depth(i + 1), 4, None);
        let given = poses[i + 1];

        let mut refined = Ok(given);
        for max_correspondence_m in stages {
            let Ok(start) = refined else { break };
            let options = IcpOptions {
                max_correspondence_m,
                max_iterations: 50,
                ..Default::default()
            };
            refined = icp_point_to_plane(&source, &target, &start, &options)
                .map(|r| r.target_from_source);
        }
        let (after_pose, outcome) = match &refined {
            Ok(pose) => {
                let (t, r) = pose_error(&given, pose);
                (*pose, format!("{:.1} mm, {:.2} deg", t * 1e3, r))
            }
            Err(Error::Diverged(message)) => (given, format!("refused: {message}")),
            Err(e) => panic!("pair {i}: ICP failed: {e}"),
        };
        let fit = |pose: &Isometry3<f64>| -> IcpFit {
            evaluate_point_to_plane(&source, &target, pose, measure_m).expect("evaluates")
        };
        let (before, after) = (fit(&given), fit(&after_pose));
        eprintln!(
            "{}-{} | {:8.2} mm | {:7.2} mm | {:14.3} | {:13.3} | {outcome}",
            i + 1,
            i + 2,
            before.rmse_m * 1e3,
            after.rmse_m * 1e3,
            before.fitness,
            after.fitness
        );
        before_sum += before.rmse_m;
        after_sum += after.rmse_m;
    }
    let (before_mean, after_mean) = (before_sum / pairs as f64, after_sum / pairs as f64);
    eprintln!(
        "mean | {:8.2} mm | {:7.2} mm |",
        before_mean * 1e3,
        after_mean * 1e3
    );
    assert!(
        after_mean <= before_mean,
        "{after_mean} m after vs {before_mean} m before"
    );
}
