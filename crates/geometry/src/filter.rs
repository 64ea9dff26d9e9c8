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

use crate::cloud::PointIndex;
use crate::{Error, PointCloud, Result};

/// Integer voxel coordinates `floor(p / voxel_size_m)`, on a grid anchored at the origin.
type VoxelKey = [i64; 3];

fn voxel_key(p: &Point3<f32>, voxel_size_m: f64) -> Option<VoxelKey> {
    // Beyond 2^62 voxels from the origin the key would not fit an i64.
    const LIMIT: f64 = 4.611_686_018_427_388e18;
    let mut key = [0i64; 3];
    for (k, c) in key.iter_mut().zip(p.coords.iter()) {
        let cell = (f64::from(*c) / voxel_size_m).floor();
        if cell.is_nan() || cell.abs() >= LIMIT {
            return None;
        }
        *k = cell as i64;
    }
    Some(key)
}

/// Replaces the points of each occupied voxel by their centroid.
///
/// The grid is anchored at the origin (voxel `[i, j, k]` spans
/// `[i, i + 1) * voxel_size_m` along x, and so on), unlike Open3D, which anchors it at
/// the cloud's minimum corner; the output therefore does not move when points are
/// added far away. Colours are averaged and rounded to nearest (halves up); normals are
/// averaged and renormalised (if they cancel out, the voxel's first normal is kept).
/// Output voxels are sorted by key (x, then y, then z); sums run in input order, so the
/// result is the same on every run.
///
/// # Errors
/// [`Error::Invalid`] for a voxel size that is not positive and finite, a cloud that
/// fails [`PointCloud::validate`], or points too far out for the grid.
///
/// # Performance
/// Keys are computed and sorted in parallel, voxels averaged in parallel: O(n log n).
pub fn voxel_downsample(cloud: &PointCloud, voxel_size_m: f32) -> Result<PointCloud> {
    if !(voxel_size_m.is_finite() && voxel_size_m > 0.0) {
        return Err(Error::Invalid(format!(
            "voxel size must be positive and finite, got {voxel_size_m} m"
        )));
    }
    cloud.validate()?;
    let voxel = f64::from(voxel_size_m);
    let mut keyed: Vec<(VoxelKey, usize)> = cloud
        .points
        .par_iter()
        .enumerate()
        .map(|(i, p)| voxel_key(p, voxel).map(|k| (k, i)))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "points too far from the origin for a {voxel_size_m} m voxel grid"
            ))
        })?;
    // (key, index) pairs are unique, so an unstable sort is deterministic.
    keyed.par_sort_unstable();

    let mut starts: Vec<usize> = (0..keyed.len())
        .filter(|&i| i == 0 || keyed[i].0 != keyed[i - 1].0)
        .collect();
    starts.push(keyed.len());

    type Voxel = (Point3<f32>, Option<[u8; 3]>, Option<Vector3<f32>>);
    let voxels: Vec<Voxel> = starts
        .par_windows(2)
        .map(|run| {
            let members = &keyed[run[0]..run[1]];
            let n = members.len();
            let mut sum = Vector3::<f64>::zeros();
            for &(_, i) in members {
                sum += cloud.points[i].coords.cast::<f64>();
            }
            let centroid = Point3::from((sum / n as f64).cast::<f32>());
            let color = cloud.colors.as_ref().map(|colors| {
                let mut sum = [0u64; 3];
                for &(_, i) in members {
                    for (s, c) in sum.iter_mut().zip(colors[i]) {
                        *s += u64::from(c);
                    }
                }
                let n = n as u64;
                // Round half up: floor(sum / n + 1/2). The mean of u8 values fits u8.
                sum.map(|s| ((2 * s + n) / (2 * n)) as u8)
            });
            let normal = cloud.normals.as_ref().map(|normals| {
                let mut sum = Vector3::<f64>::zeros();
                for &(_, i) in members {
                    sum += normals[i].cast::<f64>();
                }
                let first = normals[members[0].1];
                sum.try_normalize(1e-12)
                    .map_or(first, |unit| unit.cast::<f32>())
            });
            (centroid, color, normal)
        })
        .collect();

    let (mut points, mut colors, mut normals) =
        (Vec::with_capacity(voxels.len()), Vec::new(), Vec::new());
    for (p, c, n) in voxels {
        points.push(p);
        colors.extend(c);
        normals.extend(n);
    }
    tracing::debug!(
        input = cloud.len(),
        output = points.len(),
        voxel_size_m,
        "voxel downsample"
    );
    Ok(PointCloud {
        points,
        colors: cloud.colors.as_ref().map(|_| colors),
        normals: cloud.normals.as_ref().map(|_| normals),
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
/// One k-d tree, k-nearest queries in parallel: O(n k log n).
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
    let index = PointIndex::new(&cloud.points)?;
    let mean_distances: Vec<f64> = cloud
        .points
        .par_iter()
        .map(|p| {
            let found = index.nearest(p, k_neighbors + 1);
            // The point itself is at distance 0, the smallest possible, so dropping the
            // first of the sorted distances drops it (or an exact duplicate: same value).
            let others = &found[1..];
            others.iter().map(|&(_, d2)| d2.sqrt()).sum::<f64>() / others.len() as f64
        })
        .collect();
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
    use crate::cloud::{distance_squared, Lcg};

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
