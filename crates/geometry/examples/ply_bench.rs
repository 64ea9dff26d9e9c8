//! Times writing a synthetic 1920x1080 frame's coloured point cloud (positions and 8-bit
//! RGB, what `anydepth cloud --depth --color` writes; about 1.8 M points after holes) as
//! binary PLY: the crate's writer against ply-rs-bw's generic writer, as the crate used
//! it before, on the same data. It also checks that the two files are the same bytes.
//!
//! RAYON_NUM_THREADS=1 cargo run --release -p anydepth-geometry --example ply_bench -- [RUNS] [DIR]
//!
//! Each time covers the whole call: validation, encoding, writing, syncing and renaming
//! into place. DIR defaults to /dev/shm where it exists (so that the disk does not
//! dominate), else the system's temporary directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anydepth_geometry::io::ply::{write_point_cloud, PlyEncoding};
use anydepth_geometry::PointCloud;
use nalgebra::Point3;
use ply_rs_bw::ply::{
    Addable, ElementDef, Encoding, Header, Ply, PropertyAccess, PropertyDef, PropertyType,
    ScalarType,
};
use ply_rs_bw::writer::Writer;

/// A smooth surface seen by a 1920x1080 pinhole camera, with every eighth 40x40 block
/// of pixels missing, as invalid depth would leave them.
fn synthetic_frame() -> PointCloud {
    let (w, h) = (1920usize, 1080usize);
    let (fx, fy, cx, cy) = (1400.0f32, 1400.0f32, 959.5f32, 539.5f32);
    let mut points = Vec::with_capacity(w * h);
    let mut colors = Vec::with_capacity(w * h);
    for v in 0..h {
        for u in 0..w {
            if (u / 40 + v / 40) % 8 == 0 {
                continue;
            }
            let (uf, vf) = (u as f32, v as f32);
            let z = 2.0 + 0.5 * (uf * 0.01).sin() * (vf * 0.013).cos();
            points.push(Point3::new((uf - cx) / fx * z, (vf - cy) / fy * z, z));
            colors.push([(u % 256) as u8, (v % 256) as u8, ((u + v) % 256) as u8]);
        }
    }
    PointCloud {
        points,
        colors: Some(colors),
        normals: None,
    }
}

/// The element the crate wrote through ply-rs-bw, with the same fields (their size is
/// part of that writer's cost).
#[derive(Clone, Debug, Default)]
struct Element {
    xyz: [f32; 3],
    normal: [f32; 3],
    rgb: [u8; 3],
    #[allow(dead_code)]
    indices: Option<Vec<u32>>,
    #[allow(dead_code)]
    indices_out: Vec<i32>,
}

impl PropertyAccess for Element {
    fn new() -> Self {
        Self::default()
    }

    fn get_float(&self, name: &str) -> Option<f32> {
        match name {
            "x" => Some(self.xyz[0]),
            "y" => Some(self.xyz[1]),
            "z" => Some(self.xyz[2]),
            "nx" => Some(self.normal[0]),
            "ny" => Some(self.normal[1]),
            "nz" => Some(self.normal[2]),
            _ => None,
        }
    }

    fn get_uchar(&self, name: &str) -> Option<u8> {
        match name {
            "red" => Some(self.rgb[0]),
            "green" => Some(self.rgb[1]),
            "blue" => Some(self.rgb[2]),
            _ => None,
        }
    }
}

/// The crate's former binary writer for a coloured cloud without normals.
fn write_with_ply_rs(path: &Path, cloud: &PointCloud) -> anydepth_core::Result<()> {
    let colors = cloud.colors.as_deref().unwrap_or_default();
    let mut header = Header::new();
    header.encoding = Encoding::BinaryLittleEndian;
    header.comments.push("written by anydepth".into());
    let mut vertex = ElementDef::new("vertex".into());
    for (name, scalar) in [
        ("x", ScalarType::Float),
        ("y", ScalarType::Float),
        ("z", ScalarType::Float),
        ("red", ScalarType::UChar),
        ("green", ScalarType::UChar),
        ("blue", ScalarType::UChar),
    ] {
        vertex
            .properties
            .add(PropertyDef::new(name.into(), PropertyType::Scalar(scalar)));
    }
    vertex.count = cloud.points.len();
    header.elements.add(vertex);
    let elements: Vec<Element> = cloud
        .points
        .iter()
        .zip(colors)
        .map(|(p, &rgb)| Element {
            xyz: [p.x, p.y, p.z],
            rgb,
            ..Element::default()
        })
        .collect();
    let mut ply = Ply::new();
    ply.payload.insert("vertex".into(), elements);
    ply.header = header;
    anydepth_core::fs::write_atomically(path, true, |mut out| {
        Writer::new().write_ply(&mut out, &mut ply)?;
        Ok(())
    })
}

/// Best and median of `runs` timings of `f`, in milliseconds.
fn time(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[0], ms[ms.len() / 2]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(10), |a| a.parse())?.max(1);
    let dir = match args.next() {
        Some(dir) => PathBuf::from(dir),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    let dir = tempfile::tempdir_in(dir)?;
    let cloud = synthetic_frame();
    let bytes = cloud.points.len() * 15;
    println!(
        "{} coloured points ({:.1} MB of payload), {} rayon threads, {runs} runs, in {}",
        cloud.len(),
        bytes as f64 / 1e6,
        rayon::current_num_threads(),
        dir.path().display()
    );

    let new_path = dir.path().join("new.ply");
    let (best, median) = time(runs, || {
        Ok(write_point_cloud(
            &new_path,
            &cloud,
            PlyEncoding::BinaryLittleEndian,
        )?)
    })?;
    println!("write_point_cloud (binary): best {best:.2} ms, median {median:.2} ms");

    let old_path = dir.path().join("ply-rs.ply");
    let (best, median) = time(runs, || Ok(write_with_ply_rs(&old_path, &cloud)?))?;
    println!("ply-rs-bw writer (binary):  best {best:.2} ms, median {median:.2} ms");

    if std::fs::read(&new_path)? != std::fs::read(&old_path)? {
        return Err("the two writers' files differ".into());
    }
    println!("the files are identical");
    Ok(())
}
