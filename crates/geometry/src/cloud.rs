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
/// Distances are computed in `f64` from the `f32` coordinates (see
/// [`distance_squared`]), so that callers (and their brute-force test oracles) agree on
/// one definition of distance; searches are exact under that definition.
///
/// The tree is implicit and balanced: node `i` splits the index range of its subtree
/// at the median along `axes[i]`, its children are `2i + 1` and `2i + 2`, and ranges of
/// at most [`LEAF_SIZE`] points are leaves. Points are stored reordered, in `f64`, so
/// that leaves are scanned contiguously.
pub(crate) struct PointIndex {
    /// Coordinates in tree order.
    coords: Vec<[f64; 3]>,
    /// Original index of each point in tree order.
    ids: Vec<u32>,
    /// Split coordinate per inner node (the median point's own coordinate).
    splits: Vec<f64>,
    /// Split axis per inner node.
    axes: Vec<u8>,
}

const LEAF_SIZE: usize = 16;

#[cfg(test)]
/// Squared Euclidean distance in `f64`.
pub(crate) fn distance_squared(a: &Point3<f32>, b: &Point3<f32>) -> f64 {
    let dx = f64::from(a.x) - f64::from(b.x);
    let dy = f64::from(a.y) - f64::from(b.y);
    let dz = f64::from(a.z) - f64::from(b.z);
    dx * dx + dy * dy + dz * dz
}

/// Same arithmetic as [`distance_squared`], on converted coordinates.
#[inline(always)]
fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    dx * dx + dy * dy + dz * dz
}

/// The `k` best `(squared distance, index)` pairs seen so far, sorted ascending.
pub(crate) struct Neighbours {
    k: usize,
    best: Vec<(f64, u32)>,
}

impl Neighbours {
    pub(crate) fn new() -> Self {
        Self {
            k: 0,
            best: Vec::new(),
        }
    }

    /// `(index, squared distance)`, nearest first, ties by index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.best.iter().map(|&(d, i)| (i as usize, d))
    }

    pub(crate) fn len(&self) -> usize {
        self.best.len()
    }

    /// Squared distance a candidate must not exceed to be considered.
    #[inline(always)]
    fn bound(&self) -> f64 {
        if self.best.len() < self.k {
            f64::INFINITY
        } else {
            self.best[self.k - 1].0
        }
    }

    #[inline(always)]
    fn offer(&mut self, d: f64, id: u32) {
        let full = self.best.len() == self.k;
        if full {
            let (wd, wi) = self.best[self.k - 1];
            if d > wd || (d == wd && id > wi) {
                return;
            }
            self.best.pop();
        }
        let mut pos = self.best.len();
        while pos > 0 {
            let (pd, pi) = self.best[pos - 1];
            if pd < d || (pd == d && pi < id) {
                break;
            }
            pos -= 1;
        }
        self.best.insert(pos, (d, id));
    }
}

impl PointIndex {
    /// Builds the tree.
    ///
    /// # Errors
    /// [`Error::Invalid`] for non-finite points or more than `u32::MAX` points.
    pub(crate) fn new(points: &[Point3<f32>]) -> Result<Self> {
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
        let n = points.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let inner = Self::inner_nodes(n);
        let mut splits = vec![0.0f64; inner];
        let mut axes = vec![0u8; inner];
        Self::build(points, &mut order, 0, &mut splits, &mut axes);
        let coords = order
            .iter()
            .map(|&i| {
                let p = &points[i as usize];
                [f64::from(p.x), f64::from(p.y), f64::from(p.z)]
            })
            .collect();
        Ok(Self {
            coords,
            ids: order,
            splits,
            axes,
        })
    }

    /// Number of node slots needed for inner nodes of a tree over `n` points.
    fn inner_nodes(n: usize) -> usize {
        fn walk(node: usize, len: usize) -> usize {
            if len <= LEAF_SIZE {
                0
            } else {
                let mid = len / 2;
                (node + 1)
                    .max(walk(2 * node + 1, mid))
                    .max(walk(2 * node + 2, len - mid))
            }
        }
        walk(0, n)
    }

    fn build(
        points: &[Point3<f32>],
        order: &mut [u32],
        node: usize,
        splits: &mut [f64],
        axes: &mut [u8],
    ) {
        if order.len() <= LEAF_SIZE {
            return;
        }
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for &i in order.iter() {
            let p = &points[i as usize];
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        let mut axis = 0;
        for a in 1..3 {
            if hi[a] - lo[a] > hi[axis] - lo[axis] {
                axis = a;
            }
        }
        let mid = order.len() / 2;
        order.select_nth_unstable_by(mid, |&a, &b| {
            points[a as usize][axis].total_cmp(&points[b as usize][axis])
        });
        splits[node] = f64::from(points[order[mid] as usize][axis]);
        axes[node] = axis as u8;
        let (left, right) = order.split_at_mut(mid);
        Self::build(points, left, 2 * node + 1, splits, axes);
        Self::build(points, right, 2 * node + 2, splits, axes);
    }

    /// The `k` points nearest to `query` (fewer if the cloud is smaller) as
    /// `(index, squared distance)`, nearest first; ties are broken by index.
    #[cfg(test)]
    pub(crate) fn nearest(&self, query: &Point3<f32>, k: usize) -> Vec<(usize, f64)> {
        let mut out = Neighbours::new();
        self.nearest_into(query, k, &mut out);
        out.iter().collect()
    }

    /// Like [`PointIndex::nearest`], into a reusable buffer.
    pub(crate) fn nearest_into(&self, query: &Point3<f32>, k: usize, out: &mut Neighbours) {
        out.best.clear();
        out.k = k;
        if k == 0 {
            return;
        }
        out.best.reserve(k + 1);
        let q = [f64::from(query.x), f64::from(query.y), f64::from(query.z)];
        let mut offsets = [0.0f64; 3];
        self.knn(&q, 0, 0, self.coords.len(), 0.0, &mut offsets, out);
    }

    /// `min_d2` is a lower bound on the squared distance from `q` to the node's cell,
    /// the sum of the squares of the per-axis `offsets` (as in nanoflann).
    #[allow(clippy::too_many_arguments)]
    fn knn(
        &self,
        q: &[f64; 3],
        node: usize,
        lo: usize,
        hi: usize,
        min_d2: f64,
        offsets: &mut [f64; 3],
        out: &mut Neighbours,
    ) {
        if hi - lo <= LEAF_SIZE {
            for (c, &id) in self.coords[lo..hi].iter().zip(&self.ids[lo..hi]) {
                let d = dist2(q, c);
                if d <= out.bound() {
                    out.offer(d, id);
                }
            }
            return;
        }
        let mid = lo + (hi - lo) / 2;
        let axis = usize::from(self.axes[node]);
        let diff = q[axis] - self.splits[node];
        let ((near, nlo, nhi), (far, flo, fhi)) = if diff < 0.0 {
            ((2 * node + 1, lo, mid), (2 * node + 2, mid, hi))
        } else {
            ((2 * node + 2, mid, hi), (2 * node + 1, lo, mid))
        };
        self.knn(q, near, nlo, nhi, min_d2, offsets, out);
        // Points across the split are at least |diff| away along `axis`; the bound is
        // computed in floating point, so prune only with a margin far above rounding.
        let old = offsets[axis];
        let far_d2 = min_d2 - old * old + diff * diff;
        if far_d2 * (1.0 - 1e-9) <= out.bound() {
            offsets[axis] = diff;
            self.knn(q, far, flo, fhi, far_d2, offsets, out);
            offsets[axis] = old;
        }
    }

    /// How many points lie within `radius_m` of `query` (inclusive, the query's own
    /// point counted if it is in the cloud), counting no further than `max_count`.
    pub(crate) fn count_within(
        &self,
        query: &Point3<f32>,
        radius_m: f64,
        max_count: usize,
    ) -> usize {
        if max_count == 0 {
            return 0;
        }
        let q = [f64::from(query.x), f64::from(query.y), f64::from(query.z)];
        let mut count = 0;
        self.count(
            &q,
            radius_m * radius_m,
            max_count,
            0,
            0,
            self.coords.len(),
            &mut count,
        );
        count
    }

    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        q: &[f64; 3],
        r2: f64,
        max_count: usize,
        node: usize,
        lo: usize,
        hi: usize,
        count: &mut usize,
    ) {
        if hi - lo <= LEAF_SIZE {
            for c in &self.coords[lo..hi] {
                if dist2(q, c) <= r2 {
                    *count += 1;
                    if *count >= max_count {
                        return;
                    }
                }
            }
            return;
        }
        let mid = lo + (hi - lo) / 2;
        let diff = q[usize::from(self.axes[node])] - self.splits[node];
        let (near, far) = if diff < 0.0 {
            ((2 * node + 1, lo, mid), (2 * node + 2, mid, hi))
        } else {
            ((2 * node + 2, mid, hi), (2 * node + 1, lo, mid))
        };
        self.count(q, r2, max_count, near.0, near.1, near.2, count);
        if *count < max_count && diff * diff <= r2 {
            self.count(q, r2, max_count, far.0, far.1, far.2, count);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_and_count_match_brute_force_with_ties() -> Result<()> {
        let mut rng = Lcg(42);
        // A coarse lattice makes many exactly tied distances.
        let points: Vec<Point3<f32>> = (0..3000)
            .map(|_| {
                Point3::new(
                    (rng.uniform(0.0, 20.0).floor() * 0.05) as f32,
                    (rng.uniform(0.0, 20.0).floor() * 0.05) as f32,
                    rng.uniform_f32(-0.5, 0.5),
                )
            })
            .collect();
        let index = PointIndex::new(&points)?;
        for (qi, q) in points.iter().enumerate().step_by(37) {
            let mut all: Vec<(usize, f64)> = points
                .iter()
                .enumerate()
                .map(|(i, p)| (i, distance_squared(q, p)))
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for k in [0, 1, 7, 21, 100] {
                assert_eq!(index.nearest(q, k), all[..k].to_vec(), "query {qi}, k {k}");
            }
            for (r, max) in [(0.05, 5), (0.1, 1000), (0.0, 10)] {
                let within = all.iter().filter(|&&(_, d)| d <= r * r).count();
                assert_eq!(index.count_within(q, r, max), within.min(max), "query {qi}");
            }
        }
        Ok(())
    }
}
