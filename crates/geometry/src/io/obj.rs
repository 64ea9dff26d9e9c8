//! Wavefront OBJ output for triangle meshes.
//!
//! Vertex colours use the common extension `v x y z r g b` with components in `0..=1`
//! (read by MeshLab, Open3D and Blender); normals are `vn` lines, one per vertex, and
//! faces refer to them as `f a//a b//b c//c`. Indices are 1-based.
//!
//! ```
//! use anydepth_geometry::io::obj::write_obj;
//! use anydepth_geometry::TriangleMesh;
//! use nalgebra::Point3;
//!
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let path = dir.path().join("triangle.obj");
//! let mesh = TriangleMesh {
//!     vertices: vec![
//!         Point3::new(0.0, 0.0, 1.0),
//!         Point3::new(0.0, 1.0, 1.0),
//!         Point3::new(1.0, 0.0, 1.0),
//!     ],
//!     faces: vec![[0, 1, 2]],
//!     colors: None,
//!     normals: None,
//! };
//! write_obj(&path, &mesh).expect("written");
//! let text = std::fs::read_to_string(&path).expect("readable");
//! assert!(text.contains("\nf 1 2 3\n"));
//! ```

use std::io::{self, Write};
use std::path::Path;

use crate::io::write_atomically;
use crate::{Result, TriangleMesh};

/// Writes a triangle mesh as an OBJ file, atomically.
///
/// # Errors
/// [`crate::Error::Invalid`] when the mesh is inconsistent (see
/// [`TriangleMesh::validate`]); [`crate::Error::File`] when the file cannot be written.
pub fn write_obj(path: &Path, mesh: &TriangleMesh) -> Result<()> {
    mesh.validate()?;
    write_atomically(path, |out| write_obj_to(out, mesh))
}

/// The bytes [`write_obj`] writes.
///
/// # Errors
/// As [`write_obj`], without the file.
pub fn encode_obj(mesh: &TriangleMesh) -> Result<Vec<u8>> {
    mesh.validate()?;
    let mut bytes = Vec::new();
    write_obj_to(&mut bytes, mesh)
        .map_err(|e| crate::Error::Invalid(format!("cannot encode OBJ: {e}")))?;
    Ok(bytes)
}

fn write_obj_to(out: &mut dyn Write, mesh: &TriangleMesh) -> io::Result<()> {
    writeln!(out, "# written by anydepth")?;
    writeln!(
        out,
        "# {} vertices, {} faces",
        mesh.vertices.len(),
        mesh.faces.len()
    )?;
    for (i, p) in mesh.vertices.iter().enumerate() {
        write!(out, "v {} {} {}", p.x, p.y, p.z)?;
        if let Some(colors) = &mesh.colors {
            let [r, g, b] = colors[i].map(|c| f32::from(c) / 255.0);
            write!(out, " {r} {g} {b}")?;
        }
        writeln!(out)?;
    }
    if let Some(normals) = &mesh.normals {
        for n in normals {
            writeln!(out, "vn {} {} {}", n.x, n.y, n.z)?;
        }
    }
    for face in &mesh.faces {
        let [a, b, c] = face.map(|v| u64::from(v) + 1);
        if mesh.normals.is_some() {
            writeln!(out, "f {a}//{a} {b}//{b} {c}//{c}")?;
        } else {
            writeln!(out, "f {a} {b} {c}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use nalgebra::{Point3, Vector3};

    use super::*;

    fn parse_floats(line: &str) -> Vec<f32> {
        line.split_whitespace()
            .skip(1)
            .map(|t| t.parse().expect("a number"))
            .collect()
    }

    #[test]
    fn colours_normals_and_one_based_faces() {
        let mesh = TriangleMesh {
            vertices: vec![
                Point3::new(0.0, 0.0, 1.0),
                Point3::new(0.0, 1.5, 1.0),
                Point3::new(-1.25, 0.0, 1.0),
                Point3::new(1.0, 1.0, 2.0),
            ],
            faces: vec![[0, 1, 2], [2, 1, 3]],
            colors: Some(vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [51, 102, 0]]),
            normals: Some(vec![Vector3::new(0.0, 0.0, -1.0); 4]),
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mesh.obj");
        write_obj(&path, &mesh).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");

        let v: Vec<Vec<f32>> = text
            .lines()
            .filter(|l| l.starts_with("v "))
            .map(parse_floats)
            .collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[1], vec![0.0, 1.5, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(v[3][..3], [1.0, 1.0, 2.0]);
        assert!((v[3][3] - 0.2).abs() < 1e-6 && (v[3][4] - 0.4).abs() < 1e-6);
        let vn: Vec<Vec<f32>> = text
            .lines()
            .filter(|l| l.starts_with("vn "))
            .map(parse_floats)
            .collect();
        assert_eq!(vn, vec![vec![0.0, 0.0, -1.0]; 4]);
        let f: Vec<&str> = text.lines().filter(|l| l.starts_with("f ")).collect();
        assert_eq!(f, ["f 1//1 2//2 3//3", "f 3//3 2//2 4//4"]);
    }

    #[test]
    fn plain_mesh_and_invalid_mesh() {
        let mut mesh = TriangleMesh {
            vertices: vec![Point3::origin(); 3],
            faces: vec![[0, 1, 2]],
            colors: None,
            normals: None,
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("plain.obj");
        write_obj(&path, &mesh).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(text.lines().any(|l| l == "v 0 0 0"));
        assert!(text.lines().any(|l| l == "f 1 2 3"));
        assert!(!text.contains("vn"));

        mesh.faces.push([0, 1, 3]);
        let bad = dir.path().join("bad.obj");
        assert!(write_obj(&bad, &mesh).is_err());
        assert!(!bad.exists(), "nothing is left behind on error");
    }
}
