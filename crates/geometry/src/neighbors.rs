//! Neighbour search over the points of a cloud: a `kiddo` k-d tree shared by the filters,
//! normal estimation and ICP, and a uniform grid that answers "the k nearest points of
//! every point" ([`map_knn`]) several times faster than one tree query per point.

use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::Point3;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::{Error, Result};

/// Checks that a cloud can be indexed: finite points, at most `u32::MAX` of them.
fn check_points(points: &[Point3<f32>]) -> Result<()> {
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
    Ok(())
}

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
        check_points(points)?;
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
    /// `(index, squared distance)`, sorted by distance then index: the same list as a
    /// brute-force search in `f64`, ties at the k-th distance included.
    pub(crate) fn nearest(&self, query: &Point3<f32>, k: usize) -> Vec<(usize, f64)> {
        let Some(k) = NonZeroUsize::new(k) else {
            return Vec::new();
        };
        let q = [query.x, query.y, query.z];
        let found = self
            .tree
            .query(&q)
            .nearest_n::<SquaredEuclidean<f32>>(k)
            .execute();
        let mut out: Vec<(usize, f64)> = found
            .into_iter()
            .map(|r| {
                let i = r.item as usize;
                (i, distance_squared(query, &self.points()[i]))
            })
            .collect();
        if out.len() == k.get() && k.get() < self.points().len() {
            // The tree ranks by f32 distance and picks among ties: take every point
            // within the k-th distance (loosened for f32 rounding) and rank in f64.
            let worst = out.iter().map(|o| o.1).fold(0.0, f64::max);
            let loose = (worst * (1.0 + 1e-5) + f64::from(f32::MIN_POSITIVE)) as f32;
            out = self
                .tree
                .query(&q)
                .within::<SquaredEuclidean<f32>>(loose)
                .execute()
                .into_iter()
                .map(|r| {
                    let i = r.item as usize;
                    (i, distance_squared(query, &self.points()[i]))
                })
                .collect();
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out.truncate(k.get());
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

/// Clouds smaller than this are searched with the k-d tree: building a grid does not pay.
const GRID_MIN_POINTS: usize = 4096;

/// Grid cell edge as a multiple of the estimated distance to the k-th nearest point.
/// Larger cells mean more candidates per query; smaller ones, more queries whose
/// neighbourhood reaches past the 3 x 3 x 3 block and must fall back to the tree.
const GRID_CELL_FACTOR: f64 = 1.4;

/// Cell coordinates are packed in 21 bits per axis.
const GRID_MAX_CELLS: f64 = ((1u64 << 21) - 1) as f64;

/// Runs `f(i, neighbours)` for every point `i` with its `k` nearest points (the point
/// itself included, fewer than `k` if the cloud is smaller), as `(index, squared
/// distance)` in no particular order: the same sets as [`PointIndex::nearest`] and a
/// brute-force search ranking by distance then index, ties included. Returns the
/// results in point order.
///
/// Points are sorted into a uniform grid whose cells are about as wide as the distance
/// to the k-th neighbour (estimated from a sample), and each cell gathers the points of
/// its 3 x 3 x 3 block once for all of its points. A query whose k-th neighbour is
/// farther than the block's nearest face (sparse regions) is answered from the
/// 5 x 5 x 5 block, and failing that (isolated points) by the k-d tree, so the result is
/// exact in every case.
///
/// # Errors
/// [`Error::Invalid`] for non-finite points or more than `u32::MAX` points.
pub(crate) fn map_knn<T, F>(points: &[Point3<f32>], k: usize, f: F) -> Result<Vec<T>>
where
    T: Send + Copy + Default,
    F: Fn(usize, &[(usize, f64)]) -> T + Sync,
{
    check_points(points)?;
    let n = points.len();
    let k = k.min(n);
    if k == 0 {
        return Ok((0..n).map(|i| f(i, &[])).collect());
    }
    let Some(grid) = (n >= GRID_MIN_POINTS)
        .then(|| Grid::new(points, k))
        .flatten()
    else {
        let index = PointIndex::new(points)?;
        return Ok(points
            .par_iter()
            .enumerate()
            .map(|(i, p)| f(i, &index.nearest(p, k)))
            .collect());
    };

    // Each cell's answers, then the queries the block could not answer exactly.
    let per_cell: Vec<CellAnswers<T>> = grid
        .cells
        .par_iter()
        .map_init(Scratch::default, |scratch, cell| {
            grid.answer_cell(cell, k, scratch, &f)
        })
        .collect();
    let mut out = vec![T::default(); n];
    let mut fallback = Vec::new();
    for (answers, missed) in per_cell {
        for (i, value) in answers {
            out[i as usize] = value;
        }
        fallback.extend(missed);
    }
    if !fallback.is_empty() {
        let index = PointIndex::new(points)?;
        let answers: Vec<(u32, T)> = fallback
            .par_iter()
            .map(|&i| (i, f(i as usize, &index.nearest(&points[i as usize], k))))
            .collect();
        for (i, value) in answers {
            out[i as usize] = value;
        }
    }
    tracing::trace!(
        points = n,
        k,
        cell_m = grid.cell_m,
        cells = grid.cells.len(),
        fallback = fallback.len(),
        "grid k-nearest search"
    );
    Ok(out)
}

/// The answers of one cell's queries, and those it could not answer.
type CellAnswers<T> = (Vec<(u32, T)>, Vec<u32>);

/// One occupied cell: its packed coordinates and its points' range in the sorted arrays.
struct Cell {
    key: u64,
    start: u32,
    end: u32,
}

/// Points sorted by grid cell, coordinates in `f64` (struct of arrays).
struct Grid {
    origin: [f64; 3],
    cell_m: f64,
    /// Number of cells along each axis (the last one holds the maximum).
    extent: [u64; 3],
    xs: Vec<f64>,
    ys: Vec<f64>,
    zs: Vec<f64>,
    ids: Vec<u32>,
    cells: Vec<Cell>,
    lookup: FxHashMap<u64, u32>,
}

#[derive(Default)]
struct Scratch {
    xs: Vec<f64>,
    ys: Vec<f64>,
    zs: Vec<f64>,
    ids: Vec<u32>,
    d2: Vec<f64>,
    /// Candidates as `(squared distance bits << 32) | index`.
    found: Vec<u128>,
    neighbours: Vec<(usize, f64)>,
}

/// Three 21-bit cell coordinates in one `u64`, x highest: packed keys sort as `[x, y, z]`.
pub(crate) fn pack(c: [u64; 3]) -> u64 {
    (c[0] << 42) | (c[1] << 21) | c[2]
}

fn unpack(key: u64) -> [u64; 3] {
    let mask = (1u64 << 21) - 1;
    [key >> 42, (key >> 21) & mask, key & mask]
}

impl Grid {
    /// Sorts the points into cells; `None` when a grid would not help (all points in one
    /// spot, or an extent too large for the packed cell coordinates).
    fn new(points: &[Point3<f32>], k: usize) -> Option<Self> {
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for p in points {
            for a in 0..3 {
                let c = f64::from(p[a]);
                lo[a] = lo[a].min(c);
                hi[a] = hi[a].max(c);
            }
        }
        let span = (0..3).map(|a| hi[a] - lo[a]).fold(0.0, f64::max);
        let cell_m =
            (estimate_kth_distance(points, k)? * GRID_CELL_FACTOR).max(span / GRID_MAX_CELLS);
        if !(cell_m.is_finite() && cell_m > 0.0) {
            return None;
        }
        let cell_of = |c: f32, a: usize| ((f64::from(c) - lo[a]) / cell_m).floor() as u64;
        let extent = [0, 1, 2].map(|a| ((hi[a] - lo[a]) / cell_m).floor() as u64 + 1);
        let mut order: Vec<(u64, u32)> = points
            .par_iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    pack([cell_of(p.x, 0), cell_of(p.y, 1), cell_of(p.z, 2)]),
                    i as u32,
                )
            })
            .collect();
        order.par_sort_unstable();
        let mut cells: Vec<Cell> = Vec::new();
        for (j, &(key, _)) in order.iter().enumerate() {
            match cells.last_mut() {
                Some(cell) if cell.key == key => cell.end = j as u32 + 1,
                _ => cells.push(Cell {
                    key,
                    start: j as u32,
                    end: j as u32 + 1,
                }),
            }
        }
        let lookup = cells
            .iter()
            .enumerate()
            .map(|(c, cell)| (cell.key, c as u32))
            .collect();
        let coord = |a: usize| -> Vec<f64> {
            order
                .iter()
                .map(|&(_, i)| f64::from(points[i as usize][a]))
                .collect()
        };
        Some(Self {
            origin: lo,
            cell_m,
            extent,
            xs: coord(0),
            ys: coord(1),
            zs: coord(2),
            ids: order.iter().map(|&(_, i)| i).collect(),
            cells,
            lookup,
        })
    }

    /// Gathers the points of the `(2 reach + 1)^3` block of cells around `centre` into
    /// the scratch candidates, and returns the block's faces per axis (infinite where no
    /// cell lies beyond the block).
    fn gather(&self, centre: [u64; 3], reach: u64, s: &mut Scratch) -> [(f64, f64); 3] {
        s.xs.clear();
        s.ys.clear();
        s.zs.clear();
        s.ids.clear();
        let lo = centre.map(|c| c.saturating_sub(reach));
        let hi = [0, 1, 2].map(|a| (centre[a] + reach).min(self.extent[a] - 1));
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for z in lo[2]..=hi[2] {
                    let Some(&other) = self.lookup.get(&pack([x, y, z])) else {
                        continue;
                    };
                    let other = &self.cells[other as usize];
                    let range = other.start as usize..other.end as usize;
                    s.xs.extend_from_slice(&self.xs[range.clone()]);
                    s.ys.extend_from_slice(&self.ys[range.clone()]);
                    s.zs.extend_from_slice(&self.zs[range.clone()]);
                    s.ids.extend_from_slice(&self.ids[range]);
                }
            }
        }
        [0, 1, 2].map(|a| {
            let below = if lo[a] == 0 {
                f64::NEG_INFINITY
            } else {
                self.origin[a] + lo[a] as f64 * self.cell_m
            };
            let above = if hi[a] + 1 >= self.extent[a] {
                f64::INFINITY
            } else {
                self.origin[a] + (hi[a] + 1) as f64 * self.cell_m
            };
            (below, above)
        })
    }

    /// The `k` nearest candidates of sorted point `j` into `s.neighbours`, if they are
    /// certainly its `k` nearest points: the k-th lies closer than the block's faces.
    /// `bound` is a distance within which at least `k` candidates are known to lie.
    /// Returns the k-th distance.
    fn answer(
        &self,
        j: usize,
        k: usize,
        faces: &[(f64, f64); 3],
        bound: Option<f64>,
        s: &mut Scratch,
    ) -> Option<f64> {
        if s.ids.len() < k {
            return None;
        }
        let q = [self.xs[j], self.ys[j], self.zs[j]];
        s.d2.clear();
        s.d2.extend(s.xs.iter().zip(&s.ys).zip(&s.zs).map(|((x, y), z)| {
            let (dx, dy, dz) = (x - q[0], y - q[1], z - q[2]);
            dx * dx + dy * dy + dz * dz
        }));
        let limit = bound.map_or(f64::INFINITY, |b| b * b * (1.0 + 1e-9));
        // Squared distances are non-negative, so their bits order as they do; with the
        // index below them, one integer comparison ranks by distance then index.
        // Branch-free compaction: every candidate is written, only those within the
        // limit advance the end.
        s.found.resize(s.d2.len(), 0);
        let mut kept = 0;
        for (&d2, &i) in s.d2.iter().zip(&s.ids) {
            s.found[kept] = (u128::from(d2.to_bits()) << 32) | u128::from(i);
            kept += usize::from(d2 <= limit);
        }
        if kept < k {
            return None;
        }
        s.found.truncate(kept);
        let kth_key = if s.found.len() > k {
            *s.found.select_nth_unstable(k - 1).1
        } else {
            s.found.iter().copied().fold(0, u128::max)
        };
        let kth = f64::from_bits((kth_key >> 32) as u64).sqrt();
        let margin = faces
            .iter()
            .zip(q)
            .map(|(&(below, above), c)| (c - below).min(above - c))
            .fold(f64::INFINITY, f64::min);
        // The slack keeps the test safe against the rounding of the cell assignment.
        if kth >= margin - 1e-9 * self.cell_m {
            return None;
        }
        s.neighbours.clear();
        s.neighbours.extend(s.found[..k].iter().map(|&key| {
            (
                (key & u128::from(u32::MAX)) as usize,
                f64::from_bits((key >> 32) as u64),
            )
        }));
        Some(kth)
    }

    /// Answers the queries of one cell from its 3 x 3 x 3 block, then those whose
    /// neighbourhood reaches past it from the 5 x 5 x 5 block; returns the answers and
    /// the queries still unanswered (isolated points, for the k-d tree).
    fn answer_cell<T, F>(&self, cell: &Cell, k: usize, s: &mut Scratch, f: &F) -> CellAnswers<T>
    where
        F: Fn(usize, &[(usize, f64)]) -> T,
    {
        let centre = unpack(cell.key);
        let queries = cell.start as usize..cell.end as usize;
        let mut answers = Vec::with_capacity(queries.len());
        let mut missed: Vec<usize> = Vec::new();
        let faces = self.gather(centre, 1, s);
        // The previous answer bounds the next: its k points lie within its k-th
        // distance plus the distance between the two queries.
        let mut previous: Option<(usize, f64)> = None;
        for j in queries {
            let bound = previous.map(|(p, kth)| kth + self.distance(p, j));
            match self.answer(j, k, &faces, bound, s) {
                Some(kth) => {
                    previous = Some((j, kth));
                    let id = self.ids[j];
                    answers.push((id, f(id as usize, &s.neighbours)));
                }
                None => missed.push(j),
            }
        }
        let mut unanswered = Vec::new();
        if !missed.is_empty() {
            let faces = self.gather(centre, 2, s);
            for j in missed {
                let id = self.ids[j];
                match self.answer(j, k, &faces, None, s) {
                    Some(_) => answers.push((id, f(id as usize, &s.neighbours))),
                    None => unanswered.push(id),
                }
            }
        }
        (answers, unanswered)
    }

    /// Euclidean distance between sorted points `a` and `b`.
    fn distance(&self, a: usize, b: usize) -> f64 {
        let (dx, dy, dz) = (
            self.xs[a] - self.xs[b],
            self.ys[a] - self.ys[b],
            self.zs[a] - self.zs[b],
        );
        (dx * dx + dy * dy + dz * dz).sqrt()
    }
}

/// The typical distance from a point to its `k`-th nearest point (itself counted), from
/// a sample of queries against every fourth point (whose `k/4`-th neighbour is about as
/// far); `None` for a degenerate cloud.
fn estimate_kth_distance(points: &[Point3<f32>], k: usize) -> Option<f64> {
    const QUERIES: usize = 32;
    const THIN: usize = 4;
    let kk = k.div_ceil(THIN).max(1);
    let step = (points.len() / QUERIES).max(1);
    let mut radii: Vec<f64> = (0..points.len())
        .step_by(step)
        .take(QUERIES)
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&q| {
            // The kk smallest squared distances, kept sorted (kk is small).
            let mut best: Vec<f32> = Vec::with_capacity(kk + 1);
            for (j, p) in points.iter().enumerate().step_by(THIN) {
                if j == q {
                    continue;
                }
                let d = p - points[q];
                let d2 = d.x * d.x + d.y * d.y + d.z * d.z;
                if best.len() == kk && d2 >= best[kk - 1] {
                    continue;
                }
                let at = best.partition_point(|&b| b <= d2);
                best.insert(at, d2);
                best.truncate(kk);
            }
            best.last().map_or(0.0, |&d2| f64::from(d2).sqrt())
        })
        .collect();
    radii.sort_unstable_by(f64::total_cmp);
    let median = *radii.get(radii.len() / 2)?;
    (median > 0.0).then_some(median)
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
    /// Brute force: every point's `k` nearest, sorted by (distance, index).
    fn brute_knn(points: &[Point3<f32>], k: usize) -> Vec<Vec<(usize, f64)>> {
        points
            .par_iter()
            .map(|q| {
                let mut all: Vec<(usize, f64)> = points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, distance_squared(q, p)))
                    .collect();
                all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
                all
            })
            .collect()
    }

    fn check_map_knn(points: &[Point3<f32>], k: usize) -> Result<()> {
        let expected = brute_knn(points, k);
        // Each result in its point's slot, its full list equal to brute force's.
        let got = map_knn(points, k, |i, found| {
            let mut found = found.to_vec();
            found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            (i, usize::from(found != expected[i]))
        })?;
        for (i, (j, _)) in got.iter().enumerate() {
            assert_eq!(*j, i);
        }
        let mismatches: Vec<usize> = got.iter().map(|g| g.1).collect();
        assert_eq!(mismatches.iter().sum::<usize>(), 0, "k = {k}");
        Ok(())
    }

    #[test]
    fn grid_knn_equals_brute_force_on_surfaces_volumes_and_outliers() -> Result<()> {
        let mut rng = Lcg(5);
        // A noisy wavy surface (what depth maps give), a few far outliers, a dense
        // clump and exact duplicates (ties broken by index).
        let mut points: Vec<Point3<f32>> = (0..9000)
            .map(|_| {
                let (x, y) = (rng.uniform(-1.0, 1.0), rng.uniform(-0.7, 0.7));
                let z = 2.0 + 0.1 * (3.0 * x).sin() + rng.uniform(-0.002, 0.002);
                Point3::new(x, y, z).cast::<f32>()
            })
            .collect();
        for _ in 0..20 {
            points.push(Point3::new(
                rng.uniform_f32(-5.0, 5.0),
                rng.uniform_f32(-5.0, 5.0),
                rng.uniform_f32(0.0, 9.0),
            ));
        }
        for _ in 0..500 {
            points.push(Point3::new(
                rng.uniform_f32(0.3, 0.31),
                rng.uniform_f32(0.0, 0.01),
                rng.uniform_f32(2.5, 2.51),
            ));
        }
        let copies: Vec<Point3<f32>> = points.iter().step_by(97).copied().collect();
        points.extend(copies);
        for k in [1, 3, 10, 21, 64] {
            check_map_knn(&points, k)?;
        }
        // A uniform volume.
        let cube: Vec<Point3<f32>> = (0..6000)
            .map(|_| {
                Point3::new(
                    rng.uniform_f32(0.0, 1.0),
                    rng.uniform_f32(0.0, 1.0),
                    rng.uniform_f32(0.0, 1.0),
                )
            })
            .collect();
        check_map_knn(&cube, 21)?;
        // Small clouds use the tree; k above the size returns every point.
        check_map_knn(&cube[..300], 21)?;
        check_map_knn(&cube[..10], 50)?;
        // All points in one spot: no grid can be built.
        check_map_knn(&vec![Point3::new(1.0, 2.0, 3.0); 5000], 5)?;
        assert!(map_knn(&[Point3::new(f32::NAN, 0.0, 0.0)], 1, |_, _| 0).is_err());
        Ok(())
    }
}
