//! Point cloud filters: voxel downsampling and outlier removal (Open3D's semantics,
//! with the differences stated on each function).
//!
//! ```
//! use anydepth_geometry::filter::{remove_radius_outliers, voxel_downsample};
//! use anydepth_geometry::PointCloud;
//! use nalgebra::Point3;
//!
//! let cloud = PointCloud {
//!     points: vec![
//!         Point3::new(0.01, 0.01, 1.0),
//!         Point3::new(0.03, 0.01, 1.0),
//!         Point3::new(5.0, 5.0, 5.0), // alone
//!     ],
//!     ..Default::default()
//! };
//! let down = voxel_downsample(&cloud, 0.1).unwrap();
//! assert_eq!(down.len(), 2);
//! assert!((down.points[0].x - 0.02).abs() < 1e-6);
//!
//! let (kept, indices) = remove_radius_outliers(&cloud, 1, 0.05).unwrap();
//! assert_eq!(indices, vec![0, 1]);
//! assert_eq!(kept.len(), 2);
//! ```

use nalgebra::{Point3, Vector3};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::hash::Hash;

use crate::neighbors::{map_knn, pack, PointIndex};
use crate::{Error, PointCloud, Result};

/// Integer voxel coordinates `floor(p / voxel_size_m)`, on a grid anchored at the origin.
type VoxelKey = [i64; 3];

fn voxel_key(p: &Point3<f32>, voxel_size_m: f64) -> Option<VoxelKey> {
    // Beyond 2^62 voxels from the origin the key would not fit an i64.
    const LIMIT: f64 = 4.611_686_018_427_388e18;
    let mut key = [0i64; 3];
    for (k, c) in key.iter_mut().zip(p.coords.iter()) {
        let cell = f64::from(*c) / voxel_size_m;
        if cell.is_nan() || cell.abs() >= LIMIT {
            return None;
        }
        // floor(), without the library call it compiles to on baseline x86-64.
        let truncated = cell as i64;
        *k = truncated - i64::from((truncated as f64) > cell);
    }
    Some(key)
}

/// Voxel keys within 2^20 voxels of the origin on every axis pack into a `u64` that
/// sorts in the same order (x, then y, then z).
fn pack_voxel_key(key: &VoxelKey) -> Option<u64> {
    const HALF: i64 = 1 << 20;
    key.iter()
        .all(|k| (-HALF..HALF).contains(k))
        .then(|| pack(key.map(|k| (k + HALF) as u64)))
}

/// Points summed by one task of [`voxel_downsample`]. Fixed, so that the order of the
/// sums (and so the result, to the last bit) does not depend on the number of threads.
const VOXEL_CHUNK: usize = 1 << 15;

/// Running sums of the points of one voxel.
#[derive(Clone)]
struct VoxelSums {
    position: [f64; 3],
    color: [u64; 3],
    normal: [f64; 3],
    count: u64,
    /// Index of the voxel's first point, in input order.
    first: usize,
}

impl VoxelSums {
    fn new(first: usize) -> Self {
        Self {
            position: [0.0; 3],
            color: [0; 3],
            normal: [0.0; 3],
            count: 0,
            first,
        }
    }

    fn add_point(&mut self, cloud: &PointCloud, i: usize) {
        for (s, c) in self.position.iter_mut().zip(cloud.points[i].coords.iter()) {
            *s += f64::from(*c);
        }
        if let Some(colors) = &cloud.colors {
            for (s, c) in self.color.iter_mut().zip(colors[i]) {
                *s += u64::from(c);
            }
        }
        if let Some(normals) = &cloud.normals {
            for (s, c) in self.normal.iter_mut().zip(normals[i].iter()) {
                *s += f64::from(*c);
            }
        }
        self.count += 1;
    }

    fn merge(&mut self, other: &VoxelSums) {
        for (s, o) in self.position.iter_mut().zip(other.position) {
            *s += o;
        }
        for (s, o) in self.color.iter_mut().zip(other.color) {
            *s += o;
        }
        for (s, o) in self.normal.iter_mut().zip(other.normal) {
            *s += o;
        }
        self.count += other.count;
        self.first = self.first.min(other.first);
    }
}

/// The voxels of `range` of the cloud, in order of first appearance, with their keys;
/// `None` if a point has no key.
fn sum_voxels<K: Copy + Eq + Hash>(
    cloud: &PointCloud,
    range: std::ops::Range<usize>,
    key_of: &impl Fn(&Point3<f32>) -> Option<K>,
) -> Option<Vec<(K, VoxelSums)>> {
    // A depth map gives a few points per voxel at typical voxel sizes.
    let expected = range.len() / 4;
    let mut slots: FxHashMap<K, u32> =
        FxHashMap::with_capacity_and_hasher(expected, Default::default());
    let mut voxels: Vec<(K, VoxelSums)> = Vec::with_capacity(expected);
    // Neighbouring points (pixels of a depth map) mostly share a voxel: remember the last.
    let mut last: Option<(K, usize)> = None;
    for i in range {
        let key = key_of(&cloud.points[i])?;
        let slot = match last {
            Some((k, slot)) if k == key => slot,
            _ => *slots.entry(key).or_insert_with(|| {
                voxels.push((key, VoxelSums::new(i)));
                (voxels.len() - 1) as u32
            }) as usize,
        };
        last = Some((key, slot));
        voxels[slot].1.add_point(cloud, i);
    }
    Some(voxels)
}

/// Sums every voxel of the cloud: chunks of the input in parallel, then each voxel's
/// chunk sums merged in chunk order; voxels in key order. `None` if a point has no key.
fn merged_voxels<K: Copy + Ord + Hash + Send + Sync>(
    cloud: &PointCloud,
    key_of: impl Fn(&Point3<f32>) -> Option<K> + Sync,
) -> Option<Vec<VoxelSums>> {
    let n = cloud.len();
    let chunks: Vec<Vec<(K, VoxelSums)>> = (0..n.div_ceil(VOXEL_CHUNK))
        .into_par_iter()
        .map(|c| {
            sum_voxels(
                cloud,
                c * VOXEL_CHUNK..n.min((c + 1) * VOXEL_CHUNK),
                &key_of,
            )
        })
        .collect::<Option<_>>()?;
    let mut order: Vec<(K, u32, u32)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(c, voxels)| {
            voxels
                .iter()
                .enumerate()
                .map(move |(slot, (key, _))| (*key, c as u32, slot as u32))
        })
        .collect();
    order.par_sort_unstable();
    // Runs of one key, merged in parallel.
    let sums = |&(_, c, slot): &(K, u32, u32)| &chunks[c as usize][slot as usize].1;
    Some(
        order
            .par_chunk_by(|a, b| a.0 == b.0)
            .map(|run| {
                let mut merged = sums(&run[0]).clone();
                for r in &run[1..] {
                    merged.merge(sums(r));
                }
                merged
            })
            .collect(),
    )
}

/// Replaces the points of each occupied voxel by their centroid.
///
/// The grid is anchored at the origin (voxel `[i, j, k]` spans
/// `[i, i + 1) * voxel_size_m` along x, and so on), unlike Open3D, which anchors it at
/// the cloud's minimum corner; the output therefore does not move when points are
/// added far away. Colours are averaged and rounded to nearest (halves up); normals are
/// averaged and renormalised (if they cancel out, the voxel's first normal is kept).
/// Output voxels are sorted by key (x, then y, then z). Sums are taken in `f64` over
/// fixed chunks of the input, in input order, so the result is the same on every run
/// and any number of threads.
///
/// # Errors
/// [`Error::Invalid`] for a voxel size that is not positive and finite, a cloud that
/// fails [`PointCloud::validate`], or points too far out for the grid.
///
/// # Performance
/// One hashed pass per chunk of the input, chunks in parallel, then a sort of the
/// chunks' occupied voxels only: O(n + v log v) for v voxels.
pub fn voxel_downsample(cloud: &PointCloud, voxel_size_m: f32) -> Result<PointCloud> {
    if !(voxel_size_m.is_finite() && voxel_size_m > 0.0) {
        return Err(Error::Invalid(format!(
            "voxel size must be positive and finite, got {voxel_size_m} m"
        )));
    }
    cloud.validate()?;
    let voxel = f64::from(voxel_size_m);
    let n = cloud.len();
    // Packed keys hash and sort several times faster; clouds reaching beyond them take
    // the general path (a second pass: checking the bounds first cost more, on the common
    // path, than the rare second pass does).
    let voxels = merged_voxels(cloud, |p| pack_voxel_key(&voxel_key(p, voxel)?))
        .or_else(|| merged_voxels(cloud, |p| voxel_key(p, voxel)))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "points too far from the origin for a {voxel_size_m} m voxel grid"
            ))
        })?;

    let points: Vec<Point3<f32>> = voxels
        .iter()
        .map(|v| {
            let n = v.count as f64;
            Point3::from(v.position.map(|s| (s / n) as f32))
        })
        .collect();
    // Round half up: floor(sum / n + 1/2). The mean of u8 values fits u8.
    let colors = cloud.colors.as_ref().map(|_| {
        voxels
            .iter()
            .map(|v| v.color.map(|s| ((2 * s + v.count) / (2 * v.count)) as u8))
            .collect()
    });
    let normals = cloud.normals.as_ref().map(|normals| {
        voxels
            .iter()
            .map(|v| {
                Vector3::from(v.normal)
                    .try_normalize(1e-12)
                    .map_or(normals[v.first], |unit| unit.cast::<f32>())
            })
            .collect()
    });
    tracing::debug!(
        input = n,
        output = points.len(),
        voxel_size_m,
        "voxel downsample"
    );
    Ok(PointCloud {
        points,
        colors,
        normals,
    })
}

/// Removes points whose mean distance to their `k_neighbors` nearest neighbours is
/// large compared with the rest of the cloud.
///
/// For each point, `d_i` is the mean Euclidean distance to its `k_neighbors` nearest
/// *other* points (all of them if the cloud is smaller). With `m` and `s` the mean and
/// sample standard deviation (n - 1) of all `d_i`, a point is kept when
/// `d_i <= m + std_ratio * s`. Returns the kept points and their indices, ascending.
///
/// Differences from Open3D's `remove_statistical_outlier`, which searches `k` points
/// *including* the point itself and keeps `0 < d_i < threshold`: the point itself is
/// excluded here (PCL's convention, so `k_neighbors` means neighbours), and exact
/// duplicates (`d_i = 0`) are kept rather than dropped. Clouds of fewer than two points
/// come back whole.
///
/// # Errors
/// [`Error::Invalid`] for `k_neighbors == 0`, a negative or non-finite `std_ratio`, or a
/// cloud that fails [`PointCloud::validate`].
///
/// # Performance
/// One grid k-nearest search (the crate's `neighbors` module), in parallel: about O(n k).
pub fn remove_statistical_outliers(
    cloud: &PointCloud,
    k_neighbors: usize,
    std_ratio: f64,
) -> Result<(PointCloud, Vec<usize>)> {
    if k_neighbors == 0 {
        return Err(Error::Invalid("k_neighbors must be at least 1".into()));
    }
    if !(std_ratio.is_finite() && std_ratio >= 0.0) {
        return Err(Error::Invalid(format!(
            "std_ratio must be finite and non-negative, got {std_ratio}"
        )));
    }
    cloud.validate()?;
    let n = cloud.len();
    if n < 2 {
        let all: Vec<usize> = (0..n).collect();
        return Ok((cloud.clone(), all));
    }
    let mean_distances: Vec<f64> = map_knn(&cloud.points, k_neighbors + 1, |_, found| {
        // The point itself is among them at distance 0, which adds nothing to the sum.
        found.iter().map(|&(_, d2)| d2.sqrt()).sum::<f64>() / (found.len() - 1) as f64
    })?;
    let mean = mean_distances.iter().sum::<f64>() / n as f64;
    let variance = mean_distances
        .iter()
        .map(|d| (d - mean) * (d - mean))
        .sum::<f64>()
        / (n - 1) as f64;
    let threshold = mean + std_ratio * variance.sqrt();
    let kept: Vec<usize> = (0..n).filter(|&i| mean_distances[i] <= threshold).collect();
    tracing::debug!(
        input = n,
        kept = kept.len(),
        threshold_m = threshold,
        "statistical outlier removal"
    );
    Ok((cloud.select(&kept), kept))
}

/// Removes points with fewer than `min_points` other points within `radius_m`
/// (inclusive, distances in `f64`).
///
/// This is Open3D's `remove_radius_outlier(nb_points, radius)`: Open3D counts the
/// point itself among those found in the ball and keeps it when that count is
/// `> nb_points`, i.e. when at least `nb_points` *other* points are there. Returns the
/// kept points and their indices, ascending.
///
/// # Errors
/// [`Error::Invalid`] for a radius that is not positive and finite or a cloud that fails
/// [`PointCloud::validate`].
///
/// # Performance
/// One k-d tree; each query stops after `min_points + 1` hits: O(n min_points log n).
pub fn remove_radius_outliers(
    cloud: &PointCloud,
    min_points: usize,
    radius_m: f32,
) -> Result<(PointCloud, Vec<usize>)> {
    if !(radius_m.is_finite() && radius_m > 0.0) {
        return Err(Error::Invalid(format!(
            "radius must be positive and finite, got {radius_m} m"
        )));
    }
    cloud.validate()?;
    let index = PointIndex::new(&cloud.points)?;
    let needed = min_points.saturating_add(1); // the point itself, then its neighbours
    let keep: Vec<bool> = cloud
        .points
        .par_iter()
        .map(|p| index.count_within(p, f64::from(radius_m), needed) >= needed)
        .collect();
    let kept: Vec<usize> = (0..cloud.len()).filter(|&i| keep[i]).collect();
    tracing::debug!(
        input = cloud.len(),
        kept = kept.len(),
        "radius outlier removal"
    );
    Ok((cloud.select(&kept), kept))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cloud::Lcg;
    use crate::neighbors::distance_squared;

    fn random_cloud(seed: u64, n: usize, extent_m: f64) -> PointCloud {
        let mut rng = Lcg(seed);
        let mut cloud = PointCloud::default();
        let (mut colors, mut normals) = (Vec::new(), Vec::new());
        for _ in 0..n {
            cloud.points.push(Point3::new(
                rng.uniform_f32(-extent_m, extent_m),
                rng.uniform_f32(-extent_m, extent_m),
                rng.uniform_f32(0.0, extent_m),
            ));
            colors.push([0; 3].map(|_: u8| (rng.next_f64() * 256.0) as u8));
            let v = Vector3::new(
                rng.uniform(-1.0, 1.0),
                rng.uniform(-1.0, 1.0),
                rng.uniform(0.1, 1.0),
            );
            normals.push(v.normalize().cast::<f32>());
        }
        cloud.colors = Some(colors);
        cloud.normals = Some(normals);
        cloud
    }

    /// Key, centroid, mean colour (rounded), mean normal (renormalised).
    type OracleVoxel = (VoxelKey, Point3<f64>, [f64; 3], Vector3<f64>);

    /// Brute force: group in a HashMap, average in f64, then sort by key.
    fn voxel_oracle(cloud: &PointCloud, voxel: f32) -> Vec<OracleVoxel> {
        let mut groups: HashMap<VoxelKey, Vec<usize>> = HashMap::new();
        for (i, p) in cloud.points.iter().enumerate() {
            let key = [p.x, p.y, p.z].map(|c| (f64::from(c) / f64::from(voxel)).floor() as i64);
            groups.entry(key).or_default().push(i);
        }
        let mut out: Vec<_> = groups
            .into_iter()
            .map(|(key, members)| {
                let n = members.len() as f64;
                let mut centroid = Vector3::zeros();
                let mut color = [0.0; 3];
                let mut normal = Vector3::zeros();
                for &i in &members {
                    centroid += cloud.points[i].coords.cast::<f64>();
                    for c in 0..3 {
                        color[c] += f64::from(cloud.colors.as_ref().map_or(0, |v| v[i][c]));
                    }
                    normal += cloud
                        .normals
                        .as_ref()
                        .map_or(Vector3::zeros(), |v| v[i].cast());
                }
                (
                    key,
                    Point3::from(centroid / n),
                    color.map(|c| (c / n).round()),
                    normal.normalize(),
                )
            })
            .collect();
        out.sort_by_key(|(key, ..)| *key);
        out
    }

    #[test]
    fn voxel_downsample_matches_brute_force() -> Result<()> {
        for (seed, n, extent, voxel) in [
            (1, 5000, 1.0, 0.1f32),
            (2, 3000, 3.0, 0.25),
            (3, 200, 0.5, 2.0),
            // Several input chunks, most voxels spread over all of them.
            (5, 3 * VOXEL_CHUNK + 123, 1.0, 0.2),
            // Beyond 2^20 voxels from the origin: keys too wide to pack.
            (6, 4000, 3.0e4, 0.01),
        ] {
            let cloud = random_cloud(seed, n, extent);
            let down = voxel_downsample(&cloud, voxel)?;
            let oracle = voxel_oracle(&cloud, voxel);
            assert_eq!(down.len(), oracle.len());
            let colors = down
                .colors
                .as_ref()
                .ok_or(Error::Invalid("no colours".into()))?;
            let normals = down
                .normals
                .as_ref()
                .ok_or(Error::Invalid("no normals".into()))?;
            for (i, (key, centroid, color, normal)) in oracle.iter().enumerate() {
                // The centroid is computed in f64 and rounded to f32 once.
                assert!(
                    (down.points[i].cast::<f64>() - centroid).norm() < 1e-6,
                    "voxel {key:?}"
                );
                assert_eq!(colors[i].map(f64::from), *color, "voxel {key:?}");
                assert!(
                    (normals[i].cast::<f64>() - normal).norm() < 1e-6,
                    "voxel {key:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn voxel_downsample_is_deterministic_and_rejects_bad_sizes() -> Result<()> {
        let cloud = random_cloud(4, 20_000, 1.0);
        let a = voxel_downsample(&cloud, 0.05)?;
        let b = voxel_downsample(&cloud, 0.05)?;
        assert_eq!(a, b);
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(voxel_downsample(&cloud, bad).is_err());
        }
        let mut nan = cloud.clone();
        nan.points[7].y = f32::NAN;
        assert!(voxel_downsample(&nan, 0.1).is_err());
        Ok(())
    }

    /// Mean distance to the k nearest other points, by brute force.
    fn mean_knn_distances(points: &[Point3<f32>], k: usize) -> Vec<f64> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d: Vec<f64> = points
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, q)| distance_squared(p, q).sqrt())
                    .collect();
                d.sort_by(f64::total_cmp);
                let d = &d[..k.min(d.len())];
                d.iter().sum::<f64>() / d.len() as f64
            })
            .collect()
    }

    /// A random cloud in a 1 m cube plus far-away planted outliers at the end.
    fn cloud_with_outliers(seed: u64, inliers: usize, outliers: usize) -> PointCloud {
        let mut cloud = random_cloud(seed, inliers, 0.5);
        let mut rng = Lcg(seed + 100);
        for _ in 0..outliers {
            let p = Point3::new(
                rng.uniform_f32(3.0, 6.0),
                rng.uniform_f32(-6.0, -3.0),
                rng.uniform_f32(3.0, 6.0),
            );
            cloud.points.push(p);
            if let Some(c) = cloud.colors.as_mut() {
                c.push([1, 2, 3]);
            }
            if let Some(n) = cloud.normals.as_mut() {
                n.push(Vector3::z());
            }
        }
        cloud
    }

    #[test]
    fn statistical_outliers_match_brute_force() -> Result<()> {
        for (seed, k, std_ratio) in [(5, 8, 2.0), (6, 20, 1.0), (7, 1, 0.5)] {
            let cloud = cloud_with_outliers(seed, 1500, 6);
            let (kept_cloud, kept) = remove_statistical_outliers(&cloud, k, std_ratio)?;

            let d = mean_knn_distances(&cloud.points, k);
            let n = d.len() as f64;
            let mean = d.iter().sum::<f64>() / n;
            let std = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let expected: Vec<usize> = (0..d.len())
                .filter(|&i| d[i] <= mean + std_ratio * std)
                .collect();

            assert_eq!(kept, expected, "seed {seed}");
            assert!(kept.iter().all(|&i| i < 1500), "a planted outlier survived");
            assert!(kept.len() > 1000);
            assert_eq!(kept_cloud, cloud.select(&kept));
        }
        Ok(())
    }

    #[test]
    fn radius_outliers_match_brute_force() -> Result<()> {
        for (seed, min_points, radius) in
            [(8, 4, 0.08f32), (9, 1, 0.05), (10, 0, 0.01), (11, 30, 0.2)]
        {
            let mut cloud = cloud_with_outliers(seed, 1500, 6);
            // A duplicate pair far away: each is the other's only neighbour.
            cloud.points.push(Point3::new(-9.0, 9.0, 9.0));
            cloud.points.push(Point3::new(-9.0, 9.0, 9.0));
            cloud.colors = None;
            cloud.normals = None;
            let (kept_cloud, kept) = remove_radius_outliers(&cloud, min_points, radius)?;

            let r2 = f64::from(radius) * f64::from(radius);
            let expected: Vec<usize> = (0..cloud.len())
                .filter(|&i| {
                    let others = (0..cloud.len())
                        .filter(|&j| {
                            j != i && distance_squared(&cloud.points[i], &cloud.points[j]) <= r2
                        })
                        .count();
                    others >= min_points
                })
                .collect();
            assert_eq!(kept, expected, "seed {seed}");
            assert_eq!(kept_cloud.points, cloud.select(&kept).points);
            if min_points >= 1 {
                assert!(
                    kept.iter().all(|i| !(1500..1506).contains(i)),
                    "a planted outlier survived"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn outlier_filters_reject_bad_arguments() {
        let cloud = random_cloud(12, 50, 1.0);
        assert!(remove_statistical_outliers(&cloud, 0, 1.0).is_err());
        assert!(remove_statistical_outliers(&cloud, 5, -1.0).is_err());
        assert!(remove_statistical_outliers(&cloud, 5, f64::NAN).is_err());
        assert!(remove_radius_outliers(&cloud, 5, 0.0).is_err());
        assert!(remove_radius_outliers(&cloud, 5, f32::NAN).is_err());
        let mut short = cloud.clone();
        short.colors.as_mut().map(|c| c.pop());
        assert!(remove_radius_outliers(&short, 5, 0.1).is_err());
        let empty = PointCloud::default();
        assert!(remove_statistical_outliers(&empty, 5, 1.0)
            .is_ok_and(|(c, i)| c.is_empty() && i.is_empty()));
        assert!(
            remove_radius_outliers(&empty, 5, 1.0).is_ok_and(|(c, i)| c.is_empty() && i.is_empty())
        );
    }
}
