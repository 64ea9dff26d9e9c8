//! Point clouds with optional per-point colours and normals.
//!
//! ```
//! use anydepth_geometry::PointCloud;
//! use nalgebra::Point3;
//!
//! let cloud = PointCloud {
//!     points: vec![Point3::new(0.0, 0.0, 1.0), Point3::new(1.0, 0.0, 1.0)],
//!     colors: Some(vec![[255, 0, 0], [0, 255, 0]]),
//!     normals: None,
//! };
//! cloud.validate().unwrap();
//! let second = cloud.select(&[1]);
//! assert_eq!(second.points, vec![Point3::new(1.0, 0.0, 1.0)]);
//! assert_eq!(second.colors, Some(vec![[0, 255, 0]]));
//! ```

use nalgebra::{Point3, Vector3};

use crate::{Error, Result, TriangleMesh};

/// A point cloud; `colors` and `normals`, when present, have one entry per point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCloud {
    /// Positions, in metres.
    pub points: Vec<Point3<f32>>,
    /// 8-bit RGB.
    pub colors: Option<Vec<[u8; 3]>>,
    /// Unit normals.
    pub normals: Option<Vec<Vector3<f32>>>,
}

impl PointCloud {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Checks that colours and normals have one entry per point and that every
    /// coordinate is finite.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first problem found.
    pub fn validate(&self) -> Result<()> {
        let n = self.points.len();
        if let Some(colors) = &self.colors {
            if colors.len() != n {
                return Err(Error::Invalid(format!(
                    "point cloud has {n} points but {} colours",
                    colors.len()
                )));
            }
        }
        if let Some(normals) = &self.normals {
            if normals.len() != n {
                return Err(Error::Invalid(format!(
                    "point cloud has {n} points but {} normals",
                    normals.len()
                )));
            }
        }
        if let Some(i) = self
            .points
            .iter()
            .position(|p| !p.coords.iter().all(|c| c.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "point {i} of the cloud is not finite: {:?}",
                self.points[i]
            )));
        }
        Ok(())
    }

    /// The points at `indices` (in that order), with their colours and normals.
    ///
    /// # Panics
    /// If an index is out of range, or colours/normals are shorter than the points
    /// (see [`PointCloud::validate`]).
    pub fn select(&self, indices: &[usize]) -> PointCloud {
        PointCloud {
            points: indices.iter().map(|&i| self.points[i]).collect(),
            colors: self
                .colors
                .as_ref()
                .map(|c| indices.iter().map(|&i| c[i]).collect()),
            normals: self
                .normals
                .as_ref()
                .map(|n| indices.iter().map(|&i| n[i]).collect()),
        }
    }
}

/// A mesh's vertices as a point cloud, with their colours and normals (the faces are
/// dropped). With vertex normals (e.g. from [`crate::tsdf::TsdfVolume::extract_mesh`])
/// this is a target for [`crate::icp::IcpTarget::new`].
///
/// ```
/// use anydepth_geometry::{PointCloud, TriangleMesh};
/// use nalgebra::Point3;
///
/// let mut mesh = TriangleMesh {
///     vertices: vec![Point3::new(0.0, 0.0, 1.0), Point3::new(0.0, 1.0, 1.0), Point3::new(1.0, 0.0, 1.0)],
///     faces: vec![[0, 1, 2]],
///     ..Default::default()
/// };
/// mesh.compute_vertex_normals();
/// let cloud = PointCloud::from(mesh);
/// assert_eq!(cloud.len(), 3);
/// assert!(cloud.normals.is_some());
/// ```
impl From<TriangleMesh> for PointCloud {
    fn from(mesh: TriangleMesh) -> Self {
        PointCloud {
            points: mesh.vertices,
            colors: mesh.colors,
            normals: mesh.normals,
        }
    }
}

/// As `From<TriangleMesh>`, copying the vertices, colours and normals.
impl From<&TriangleMesh> for PointCloud {
    fn from(mesh: &TriangleMesh) -> Self {
        PointCloud {
            points: mesh.vertices.clone(),
            colors: mesh.colors.clone(),
            normals: mesh.normals.clone(),
        }
    }
}

/// A fixed-seed linear congruential generator for reproducible test data.
#[cfg(test)]
pub(crate) struct Lcg(pub u64);

#[cfg(test)]
impl Lcg {
    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // Knuth's MMIX constants; the top 53 bits make the float.
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform in `[lo, hi)`, as `f32`.
    pub(crate) fn uniform_f32(&mut self, lo: f64, hi: f64) -> f32 {
        self.uniform(lo, hi) as f32
    }
}
