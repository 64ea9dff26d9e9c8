//! Times the geometry operations on one depth frame, for docs/BENCHMARKS.md
//! (`scripts/bench/geometry_vs_open3d.py` runs Open3D on the same frame beside it).
//!
//! cargo run --release -p anydepth-geometry --example bench -- DEPTH.png SCALE FX FY CX CY

use std::path::Path;
use std::time::Instant;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{Intrinsics, Metres};
use anydepth_geometry::filter::{
    remove_radius_outliers, remove_statistical_outliers, voxel_downsample,
};
use anydepth_geometry::grid_mesh::{mesh_from_depth, GridMeshOptions};
use anydepth_geometry::normals::estimate_normals;
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use nalgebra::Point3;

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        let v = f();
        best = best.min(t0.elapsed().as_secs_f64());
        out = Some(v);
    }
    (best * 1e3, out.expect("at least one run"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        return Err("usage: bench DEPTH SCALE FX FY CX CY".into());
    }
    let num = |i: usize| args[i].parse::<f64>();
    let depth = read_depth_values::<Metres>(Path::new(&args[0]), num(1)?)?;
    let (w, h) = (depth.width(), depth.height());
    let camera = Intrinsics::new(num(2)?, num(3)?, num(4)?, num(5)?, w, h)?;
    let runs = 5;
    let (t, cloud) = best_of(runs, || {
        unproject(&depth, &camera, &UnprojectOptions::default(), None)
    });
    let cloud = cloud?;
    println!("unproject ({w}x{h}, {} points): {t:.2} ms", cloud.len());
    let (t, down) = best_of(runs, || voxel_downsample(&cloud, 0.01));
    let down = down?;
    println!(
        "voxel_downsample 0.01 m (-> {} points): {t:.2} ms",
        down.len()
    );
    let (t, _) = best_of(runs, || remove_statistical_outliers(&down, 20, 2.0));
    println!("statistical_outliers k=20 (on the downsampled cloud): {t:.2} ms");
    let (t, _) = best_of(runs, || remove_radius_outliers(&down, 16, 0.05));
    println!("radius_outliers 16 in 0.05 m (on the downsampled cloud): {t:.2} ms");
    let (t, _) = best_of(runs, || {
        let mut c = down.clone();
        estimate_normals(&mut c, 20, Point3::origin())
    });
    println!("normals k=20 (on the downsampled cloud): {t:.2} ms");
    let (t, mesh) = best_of(runs, || {
        mesh_from_depth(&depth, &camera, &GridMeshOptions::default(), None)
    });
    println!("grid mesh ({} triangles): {t:.2} ms", mesh?.faces.len());
    Ok(())
}
