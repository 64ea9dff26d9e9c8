//! Triangle meshes with optional per-vertex colours and normals.

use nalgebra::{Point3, Vector3};

/// A triangle mesh: vertices, counter-clockwise faces (indices into `vertices`), and
/// optional per-vertex colours and normals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriangleMesh {
    pub vertices: Vec<Point3<f32>>,
    pub faces: Vec<[u32; 3]>,
    /// 8-bit RGB, one per vertex.
    pub colors: Option<Vec<[u8; 3]>>,
    /// Unit normals, one per vertex.
    pub normals: Option<Vec<Vector3<f32>>>,
}
