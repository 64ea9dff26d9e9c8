//! Neighbour search over the points of a cloud: a `kiddo` k-d tree shared by the filters,
//! normal estimation and ICP.

use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::Point3;

use crate::{Error, Result};

/// A k-d tree over the points of a cloud, shared by the filters, normal estimation and
/// ICP.
///
/// `P` is whatever holds the points: a borrowed slice or `&Vec` for a query that lives
/// as long as its cloud, an owned `Vec` for an index kept beyond it (ICP targets).
///
/// Distances returned here are recomputed in `f64` from the `f32` coordinates, so
/// that callers (and their brute-force test oracles) agree on one definition of
/// distance; the tree itself only proposes candidates.
pub(crate) struct PointIndex<P> {
    points: P,
    tree: ImmutableKdTree<f32, 3>,
}

/// Squared Euclidean distance in `f64`.
pub(crate) fn distance_squared(a: &Point3<f32>, b: &Point3<f32>) -> f64 {
    let dx = f64::from(a.x) - f64::from(b.x);
    let dy = f64::from(a.y) - f64::from(b.y);
    let dz = f64::from(a.z) - f64::from(b.z);
    dx * dx + dy * dy + dz * dz
}

impl<P: AsRef<[Point3<f32>]>> PointIndex<P> {
    /// Builds the tree.
    ///
    /// # Errors
    /// [`Error::Invalid`] for non-finite points or more than `u32::MAX` points.
    pub(crate) fn new(storage: P) -> Result<Self> {
        let points = storage.as_ref();
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
        Ok(Self {
            points: storage,
            tree,
        })
    }

    /// The indexed points.
    pub(crate) fn points(&self) -> &[Point3<f32>] {
        self.points.as_ref()
    }

    /// The point nearest to `query` as `(index, squared distance)`, `None` for an
    /// empty cloud. Among points at the same distance the tree picks one.
    pub(crate) fn nearest_one(&self, query: &Point3<f32>) -> Option<(usize, f64)> {
        if self.points().is_empty() {
            return None;
        }
        let found = self
            .tree
            .query(&[query.x, query.y, query.z])
            .nearest_one::<SquaredEuclidean<f32>>()
            .execute();
        let i = found.item as usize;
        Some((i, distance_squared(query, &self.points()[i])))
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
                (i, distance_squared(query, &self.points()[i]))
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
            .filter(|r| distance_squared(query, &self.points()[r.item as usize]) <= radius_sq)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Lcg;

    /// Points far from the origin, where `f32` coordinates are coarse against the radii.
    #[test]
    fn radius_counts_agree_with_brute_force_far_from_the_origin() -> Result<()> {
        let mut rng = Lcg(7);
        let points: Vec<Point3<f32>> = (0..2000)
            .map(|_| {
                Point3::new(
                    rng.uniform_f32(100.0, 100.2),
                    rng.uniform_f32(-3.0, -2.9),
                    rng.uniform_f32(5.0, 5.01),
                )
            })
            .collect();
        let index = PointIndex::new(&points)?;
        for q in points.iter().step_by(17) {
            for radius in [1e-4, 0.003, 0.01] {
                let exact = points
                    .iter()
                    .filter(|p| distance_squared(q, p) <= radius * radius)
                    .count();
                assert_eq!(index.count_within(q, radius, usize::MAX), exact);
                assert_eq!(index.count_within(q, radius, 3), exact.min(3));
            }
        }
        Ok(())
    }

    #[test]
    fn nearest_one_agrees_with_brute_force_and_owns_its_points() -> Result<()> {
        let mut rng = Lcg(11);
        let mut cloud = || -> Vec<Point3<f32>> {
            (0..3000)
                .map(|_| {
                    Point3::new(
                        rng.uniform_f32(-1.0, 1.0),
                        rng.uniform_f32(2.0, 3.0),
                        rng.uniform_f32(-0.5, 0.5),
                    )
                })
                .collect()
        };
        let points = cloud();
        let queries = cloud();
        let index = PointIndex::new(points.clone())?;
        for q in &queries {
            let (i, d2) = index.nearest_one(q).expect("non-empty");
            let best = points
                .iter()
                .map(|p| distance_squared(q, p))
                .fold(f64::INFINITY, f64::min);
            assert_eq!(d2, distance_squared(q, &points[i]));
            // The f32 tree may pick a point that is nearer only by rounding.
            assert!(d2 <= best + 1e-6, "{d2} vs {best}");
        }
        let empty = PointIndex::new(Vec::new())?;
        assert_eq!(empty.nearest_one(&Point3::origin()), None);
        Ok(())
    }
}
