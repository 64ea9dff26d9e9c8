//! Fuses RGB-D frames with known poses into one mesh and times it, beside
//! `scripts/reference/open3d_tsdf.py` (same arguments), for the TSDF test and
//! docs/BENCHMARKS.md.
//!
//! cargo run --release -p anydepth-geometry --example fuse -- OUT.ply VOXEL_M TRUNC_M \
//!     DEPTH_MAX_M MIN_WEIGHT DEPTH_SCALE FX FY CX CY POSES.txt COLOR DEPTH [COLOR DEPTH ...]
//!
//! POSES.txt: one world_from_camera 4x4 matrix per frame, 16 numbers per line, row major.

use std::path::Path;
use std::time::Instant;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, Intrinsics, Metres};
use anydepth_geometry::io::ply::{write_mesh, PlyEncoding};
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
use nalgebra::{Isometry3, Matrix3, Matrix4, Rotation3, Translation3, UnitQuaternion};

/// Peak resident memory of this process so far, bytes (Linux).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 13 || !(args.len() - 11).is_multiple_of(2) {
        return Err("usage: fuse OUT.ply VOXEL TRUNC DEPTH_MAX MIN_WEIGHT DEPTH_SCALE FX FY CX CY POSES COLOR DEPTH...".into());
    }
    let num = |i: usize| args[i].parse::<f64>();
    let options = TsdfOptions {
        voxel_size_m: num(1)? as f32,
        trunc_m: num(2)? as f32,
        max_depth_m: num(3)? as f32,
        min_weight: num(4)? as f32,
    };
    let scale = num(5)?;
    let (fx, fy, cx, cy) = (num(6)?, num(7)?, num(8)?, num(9)?);
    let poses: Vec<Isometry3<f64>> = std::fs::read_to_string(&args[10])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| -> Result<Isometry3<f64>, Box<dyn std::error::Error>> {
            let v: Vec<f64> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            if v.len() != 16 {
                return Err(format!("a pose line needs 16 numbers: {l}").into());
            }
            let m = Matrix4::from_row_slice(&v);
            let r: Matrix3<f64> = m.fixed_view::<3, 3>(0, 0).into_owned();
            let rotation = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix(&r));
            Ok(Isometry3::from_parts(
                Translation3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)]),
                rotation,
            ))
        })
        .collect::<Result<_, _>>()?;
    let mut frames = Vec::new();
    for pair in args[11..].chunks(2) {
        let image = load_image(Path::new(&pair[0]))?;
        let colors = image.to_rgb8();
        let depth = read_depth_values::<Metres>(Path::new(&pair[1]), scale)?;
        // The camera of each frame's size (the frames are normally all one size).
        let camera = Intrinsics::new(fx, fy, cx, cy, depth.width(), depth.height())?;
        frames.push((colors, camera, depth));
    }
    if poses.len() < frames.len() {
        return Err(format!("{} poses for {} frames", poses.len(), frames.len()).into());
    }
    let before = peak_rss_bytes();
    let t0 = Instant::now();
    let mut volume = TsdfVolume::new(options)?;
    for ((colors, camera, depth), pose) in frames.iter().zip(&poses) {
        volume.integrate(depth, Some(colors), camera, pose)?;
    }
    let mesh = volume.extract_mesh()?;
    let seconds = t0.elapsed().as_secs_f64();
    let added = peak_rss_bytes().saturating_sub(before);
    write_mesh(Path::new(&args[0]), &mesh, PlyEncoding::BinaryLittleEndian)?;
    println!(
        "{{\"seconds\": {seconds}, \"peak_added_bytes\": {added}, \"blocks\": {}, \"vertices\": {}, \"triangles\": {}}}",
        volume.block_count(),
        mesh.vertices.len(),
        mesh.faces.len()
    );
    Ok(())
}
