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

use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::{Point3, Vector3};

use crate::{Error, Result};

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

/// A k-d tree over the points of a cloud, shared by the filters and normal estimation.
///
/// Distances returned here are recomputed in `f64` from the `f32` coordinates, so
/// that callers (and their brute-force test oracles) agree on one definition of
/// distance; the tree itself only proposes candidates.
pub(crate) struct PointIndex<'a> {
    points: &'a [Point3<f32>],
    tree: ImmutableKdTree<f32, 3>,
}

/// Squared Euclidean distance in `f64`.
pub(crate) fn distance_squared(a: &Point3<f32>, b: &Point3<f32>) -> f64 {
    let dx = f64::from(a.x) - f64::from(b.x);
    let dy = f64::from(a.y) - f64::from(b.y);
    let dz = f64::from(a.z) - f64::from(b.z);
    dx * dx + dy * dy + dz * dz
}

impl<'a> PointIndex<'a> {
    /// Builds the tree.
    ///
    /// # Errors
    /// [`Error::Invalid`] for non-finite points or more than `u32::MAX` points.
    pub(crate) fn new(points: &'a [Point3<f32>]) -> Result<Self> {
        if points.len() > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "{} points are more than a k-d tree can index",
                points.len()
            )));
        }
        if let Some(i) = points
            .iter()
            .position(|p| !p.coords.iter().all(|c| c.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "point {i} of the cloud is not finite: {:?}",
                points[i]
            )));
        }
        let coords: Vec<[f32; 3]> = points.iter().map(|p| [p.x, p.y, p.z]).collect();
        let tree = ImmutableKdTree::new_from_slice(&coords)
            .map_err(|e| Error::Invalid(format!("cannot build a k-d tree: {e:?}")))?;
        Ok(Self { points, tree })
    }

    /// The `k` points nearest to `query` (fewer if the cloud is smaller) as
    /// `(index, squared distance)`, nearest first; ties are broken by index.
    pub(crate) fn nearest(&self, query: &Point3<f32>, k: usize) -> Vec<(usize, f64)> {
        let Some(k) = NonZeroUsize::new(k) else {
            return Vec::new();
        };
        let found = self
            .tree
            .query(&[query.x, query.y, query.z])
            .nearest_n::<SquaredEuclidean<f32>>(k)
            .execute();
        let mut out: Vec<(usize, f64)> = found
            .into_iter()
            .map(|r| {
                let i = r.item as usize;
                (i, distance_squared(query, &self.points[i]))
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }

    /// How many points lie within `radius_m` of `query` (inclusive, the query's own
    /// point counted if it is in the cloud), counting no further than `max_count`.
    pub(crate) fn count_within(
        &self,
        query: &Point3<f32>,
        radius_m: f64,
        max_count: usize,
    ) -> usize {
        let Some(max_count) = NonZeroUsize::new(max_count) else {
            return 0;
        };
        // Ask the f32 tree for a slightly larger ball, then decide in f64.
        let radius_sq = radius_m * radius_m;
        let loose = (radius_sq * (1.0 + 1e-5) + f64::from(f32::MIN_POSITIVE)) as f32;
        self.tree
            .query(&[query.x, query.y, query.z])
            .nearest_n::<SquaredEuclidean<f32>>(max_count)
            .within::<SquaredEuclidean<f32>>(loose)
            .execute()
            .into_iter()
            .filter(|r| distance_squared(query, &self.points[r.item as usize]) <= radius_sq)
            .count()
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
