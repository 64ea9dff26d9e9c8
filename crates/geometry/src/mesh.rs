//! Triangle meshes with optional per-vertex colours and normals.
//!
//! ```
//! use anydepth_geometry::TriangleMesh;
//! use nalgebra::Point3;
//!
//! // One triangle in the z = 1 plane, wound so that it faces a camera at the origin.
//! let mut mesh = TriangleMesh {
//!     vertices: vec![
//!         Point3::new(0.0, 0.0, 1.0),
//!         Point3::new(0.0, 1.0, 1.0),
//!         Point3::new(1.0, 0.0, 1.0),
//!     ],
//!     faces: vec![[0, 1, 2]],
//!     colors: None,
//!     normals: None,
//! };
//! mesh.validate().expect("consistent");
//! mesh.compute_vertex_normals();
//! let normals = mesh.normals.as_ref().expect("computed");
//! assert_eq!(normals[0], nalgebra::Vector3::new(0.0, 0.0, -1.0));
//! ```

use nalgebra::{Point3, Vector3};

use crate::{Error, Result};

/// A triangle mesh: vertices, counter-clockwise faces (indices into `vertices`), and
/// optional per-vertex colours and normals.
///
/// "Counter-clockwise" means the face normal `(v1 - v0) x (v2 - v0)` points towards
/// the side the face is meant to be seen from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriangleMesh {
    /// Vertex positions, in metres.
    pub vertices: Vec<Point3<f32>>,
    /// Triangles as indices into `vertices`, counter-clockwise.
    pub faces: Vec<[u32; 3]>,
    /// 8-bit RGB, one per vertex.
    pub colors: Option<Vec<[u8; 3]>>,
    /// Unit normals, one per vertex.
    pub normals: Option<Vec<Vector3<f32>>>,
}

impl TriangleMesh {
    /// Checks that colours and normals have one entry per vertex, that every vertex is
    /// finite and that every face index is in range.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first problem found.
    pub fn validate(&self) -> Result<()> {
        let n = self.vertices.len();
        if let Some(colors) = &self.colors {
            if colors.len() != n {
                return Err(Error::Invalid(format!(
                    "mesh has {n} vertices but {} colours",
                    colors.len()
                )));
            }
        }
        if let Some(normals) = &self.normals {
            if normals.len() != n {
                return Err(Error::Invalid(format!(
                    "mesh has {n} vertices but {} normals",
                    normals.len()
                )));
            }
        }
        if let Some(i) = self
            .vertices
            .iter()
            .position(|p| !p.coords.iter().all(|c| c.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "vertex {i} of the mesh is not finite: {:?}",
                self.vertices[i]
            )));
        }
        if let Some((i, face)) = self
            .faces
            .iter()
            .enumerate()
            .find(|(_, face)| face.iter().any(|&v| v as usize >= n))
        {
            return Err(Error::Invalid(format!(
                "face {i} {face:?} refers to a vertex beyond the {n} vertices of the mesh"
            )));
        }
        Ok(())
    }

    /// The unnormalised normal of face `face`: `(v1 - v0) x (v2 - v0)`, whose length is
    /// twice the triangle's area.
    ///
    /// # Panics
    /// If an index of the face is out of range (see [`TriangleMesh::validate`]).
    pub fn face_normal_area_weighted(&self, face: &[u32; 3]) -> Vector3<f32> {
        let [a, b, c] = face.map(|i| self.vertices[i as usize]);
        (b - a).cross(&(c - a))
    }

    /// Sets `normals` to the area-weighted average of the normals of the faces around
    /// each vertex, normalised. Vertices in no face (or only in degenerate faces) get a
    /// zero normal.
    ///
    /// # Panics
    /// If a face index is out of range (see [`TriangleMesh::validate`]).
    pub fn compute_vertex_normals(&mut self) {
        let mut sums = vec![Vector3::<f32>::zeros(); self.vertices.len()];
        for face in &self.faces {
            let n = self.face_normal_area_weighted(face);
            for &v in face {
                sums[v as usize] += n;
            }
        }
        for n in &mut sums {
            let norm = n.norm();
            *n = if norm > 0.0 {
                *n / norm
            } else {
                Vector3::zeros()
            };
        }
        self.normals = Some(sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> TriangleMesh {
        TriangleMesh {
            vertices: vec![
                Point3::new(0.0, 0.0, 1.0),
                Point3::new(1.0, 0.0, 1.0),
                Point3::new(0.0, 1.0, 1.0),
                Point3::new(1.0, 1.0, 1.0),
            ],
            faces: vec![[0, 2, 1], [1, 2, 3]],
            colors: None,
            normals: None,
        }
    }

    #[test]
    fn vertex_normals_of_a_flat_square_face_the_camera() {
        let mut mesh = square();
        mesh.compute_vertex_normals();
        let normals = mesh.normals.expect("computed");
        assert_eq!(normals, vec![Vector3::new(0.0, 0.0, -1.0); 4]);
    }

    #[test]
    fn vertex_normals_are_area_weighted() {
        // A big triangle in z = 0 facing -z and a small one in x = 0 facing -x share
        // vertex 0; its normal leans towards the big one in proportion to the areas.
        let mut mesh = TriangleMesh {
            vertices: vec![
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(0.0, 3.0, 0.0),
                Point3::new(3.0, 0.0, 0.0),
                Point3::new(0.0, 0.0, 1.0),
                Point3::new(0.0, 1.0, 0.0),
            ],
            faces: vec![[0, 1, 2], [0, 3, 4]],
            colors: None,
            normals: None,
        };
        mesh.compute_vertex_normals();
        let n0 = mesh.normals.expect("computed")[0];
        // Weights are 2 * area: 9 for the big face, 1 for the small one.
        let expected = Vector3::new(-1.0, 0.0, -9.0).normalize();
        assert!((n0 - expected).norm() < 1e-6, "{n0:?} vs {expected:?}");
    }

    #[test]
    fn validate_catches_mismatches_and_bad_indices() {
        square().validate().expect("valid");
        let mut bad = square();
        bad.colors = Some(vec![[0, 0, 0]; 3]);
        assert!(bad.validate().is_err());
        let mut bad = square();
        bad.normals = Some(vec![Vector3::zeros(); 5]);
        assert!(bad.validate().is_err());
        let mut bad = square();
        bad.faces.push([0, 1, 4]);
        assert!(bad.validate().is_err());
        let mut bad = square();
        bad.vertices[2].x = f32::NAN;
        assert!(bad.validate().is_err());
    }
}
