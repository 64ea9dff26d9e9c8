//! Point clouds with optional per-point colours and normals.

use nalgebra::{Point3, Vector3};

/// A point cloud; `colors` and `normals`, when present, have one entry per point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCloud {
    pub points: Vec<Point3<f32>>,
    /// 8-bit RGB.
    pub colors: Option<Vec<[u8; 3]>>,
    /// Unit normals.
    pub normals: Option<Vec<Vector3<f32>>>,
}

impl PointCloud {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}
