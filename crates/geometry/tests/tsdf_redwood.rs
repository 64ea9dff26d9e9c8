//! TSDF fusion of real frames checked without a reference implementation: the Redwood
//! living-room frames 0..4 (accurate poses) are fused, the mesh is rendered back into
//! each frame's camera with `render::render_depth`, and the rendered depth is compared
//! with the frame's own depth where both exist. Same settings as `open3d_tsdf.rs`.

use std::time::Instant;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::{read_trajectory, PoseFormat};
use anydepth_core::{load_image, Intrinsics, Metres};
use anydepth_geometry::render::render_depth;
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};

// Only `data` and `skip` are used here; the Open3D helpers are for the comparisons.
#[allow(dead_code)]
mod common;
use common::{data, skip};

#[test]
fn redwood_mesh_renders_back_to_each_frames_depth() {
    let dir = data().join("redwood-livingroom");
    if !dir.join("odometry.log").exists() {
        skip(&format!("need {}", dir.display()));
        return;
    }
    let start = Instant::now();
    let options = TsdfOptions {
        voxel_size_m: 0.01,
        trunc_m: 0.04,
        max_depth_m: 3.0,
        min_weight: 1.0,
    };
    let camera = Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid camera");
    let trajectory =
        read_trajectory(&dir.join("odometry.log"), Some(PoseFormat::Log)).expect("poses");
    let frames = 5;
    assert!(trajectory.poses.len() >= frames);
    let poses: Vec<_> = trajectory.poses[..frames]
        .iter()
        .map(|p| p.world_from_camera)
        .collect();

    let mut volume = TsdfVolume::new(options.clone()).expect("valid options");
    let mut depths = Vec::new();
    for (i, pose) in poses.iter().enumerate() {
        let image = load_image(&dir.join(format!("color/{i:05}.jpg"))).expect("colour");
        let colors = image.to_rgb8();
        let depth = read_depth_values::<Metres>(&dir.join(format!("depth/{i:05}.png")), 1000.0)
            .expect("depth");
        volume
            .integrate(&depth, Some(&colors), &camera, pose)
            .expect("integrates");
        depths.push(depth);
    }
    let mesh = volume.extract_mesh().expect("extracts");
    let fused = start.elapsed();

    let voxel = f64::from(options.voxel_size_m);
    let max_depth = options.max_depth_m;
    eprintln!(
        "{} vertices, {} faces\nframe  mean |rendered - depth| mm  median mm  pixels  \
         > 5 cm  coverage of the frame's valid pixels",
        mesh.vertices.len(),
        mesh.faces.len()
    );
    let mut worst: f64 = 0.0;
    for (i, (depth, pose)) in depths.iter().zip(&poses).enumerate() {
        let rendered = render_depth(&mesh, &camera, pose).expect("renders");
        let mut valid = 0usize;
        let mut differences = Vec::new();
        for (&d, &r) in depth.data().iter().zip(rendered.data()) {
            if d.is_finite() && d > 0.0 && d <= max_depth {
                valid += 1;
                if r.is_finite() {
                    differences.push(f64::from((r - d).abs()));
                }
            }
        }
        assert!(!differences.is_empty(), "frame {i}: nothing to compare");
        let mean = differences.iter().sum::<f64>() / differences.len() as f64;
        differences.sort_by(f64::total_cmp);
        let median = differences[differences.len() / 2];
        // Pixels at depth discontinuities, where the mesh's edge and the frame's differ.
        let jumps = differences.iter().filter(|&&d| d > 0.05).count();
        let coverage = differences.len() as f64 / valid as f64;
        eprintln!(
            "{i:5}  {:27.2}  {:9.2}  {:6}  {:5.2} %  {:5.2} %",
            mean * 1e3,
            median * 1e3,
            differences.len(),
            jumps as f64 / differences.len() as f64 * 100.0,
            coverage * 100.0
        );
        worst = worst.max(mean);
        assert!(mean < voxel, "frame {i}: mean difference {mean} m");
        assert!(coverage > 0.9, "frame {i}: the mesh covers {coverage}");
    }
    eprintln!(
        "fused in {:.2} s, rendered and compared in {:.2} s; worst mean {:.2} mm",
        fused.as_secs_f64(),
        (start.elapsed() - fused).as_secs_f64(),
        worst * 1e3
    );
}
