//! Normal estimation: principal component analysis of each point's neighbourhood.
//!
//! ```
//! use anydepth_geometry::normals::estimate_normals;
//! use anydepth_geometry::PointCloud;
//! use nalgebra::{Point3, Vector3};
//!
//! // A patch of the plane z = 2 seen from the origin.
//! let points = (0..25).map(|i| Point3::new((i % 5) as f32 * 0.1, (i / 5) as f32 * 0.1, 2.0));
//! let mut cloud = PointCloud { points: points.collect(), ..Default::default() };
//! estimate_normals(&mut cloud, 8, Point3::origin()).unwrap();
//! let normals = cloud.normals.unwrap();
//! assert!(normals.iter().all(|n| (n - -Vector3::z()).norm() < 1e-5));
//! ```

use nalgebra::{Matrix3, Point3, SymmetricEigen, Vector3};

use crate::neighbors::map_knn;
use crate::{Error, PointCloud, Result};

/// Sets `cloud.normals` to the unit normal of each point's neighbourhood, replacing any
/// normals it had.
///
/// Each normal is the eigenvector of the smallest eigenvalue of the covariance (in
/// `f64`) of the point's `k` nearest points, the point itself included (Open3D's
/// `KDTreeSearchParamKNN`), flipped if needed so that it points toward `orient_toward`
/// — the camera centre, i.e. the origin for a cloud in camera coordinates. A normal
/// perpendicular to the direction of `orient_toward` is left as the solver gave it.
///
/// # Errors
/// [`Error::Invalid`] for `k < 3`, fewer than 3 points, a non-finite `orient_toward`, or
/// a cloud that fails [`PointCloud::validate`].
///
/// # Performance
/// One grid k-nearest search (the crate's `neighbors` module), neighbourhoods solved in
/// parallel: about O(n k).
pub fn estimate_normals(
    cloud: &mut PointCloud,
    k: usize,
    orient_toward: Point3<f32>,
) -> Result<()> {
    if k < 3 {
        return Err(Error::Invalid(format!(
            "normal estimation needs at least 3 neighbours, got k = {k}"
        )));
    }
    if cloud.len() < 3 {
        return Err(Error::Invalid(format!(
            "normal estimation needs at least 3 points, the cloud has {}",
            cloud.len()
        )));
    }
    if !orient_toward.coords.iter().all(|c| c.is_finite()) {
        return Err(Error::Invalid(format!(
            "orientation target must be finite, got {orient_toward:?}"
        )));
    }
    cloud.validate()?;
    let points = &cloud.points;
    let normals: Vec<Vector3<f32>> = map_knn(points, k, |i, found| {
        let normal = plane_normal(found.iter().map(|&(j, _)| &points[j]));
        let toward = (orient_toward - points[i]).cast::<f64>();
        let oriented = if normal.dot(&toward) < 0.0 {
            -normal
        } else {
            normal
        };
        oriented.cast::<f32>()
    })?;
    cloud.normals = Some(normals);
    Ok(())
}

/// Unit eigenvector of the smallest eigenvalue of the points' covariance (in `f64`,
/// centred on the first point to keep the sums well conditioned).
fn plane_normal<'a>(points: impl Iterator<Item = &'a Point3<f32>>) -> Vector3<f64> {
    let mut first = None;
    let mut n = 0.0;
    let mut sum = Vector3::<f64>::zeros();
    let mut products = Matrix3::<f64>::zeros();
    for p in points {
        let p = p.coords.cast::<f64>();
        let origin = *first.get_or_insert(p);
        let d = p - origin;
        n += 1.0;
        sum += d;
        products += d * d.transpose();
    }
    let mean = sum / n;
    let covariance = products / n - mean * mean.transpose();
    smallest_eigenvector(&covariance)
}

/// Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix.
///
/// Closed form: the eigenvalue from the trigonometric solution of the characteristic
/// cubic, the eigenvector as the longest cross product of two rows of `A - lambda I`
/// (they span the plane the eigenvector is normal to). When that is ill-conditioned —
/// the smallest eigenvalue is (nearly) double, as for points along a line, where any
/// normal of the line is as good — the iterative solver decides.
fn smallest_eigenvector(a: &Matrix3<f64>) -> Vector3<f64> {
    let scale = a.amax();
    if !(scale > 0.0 && scale.is_finite()) {
        return Vector3::z();
    }
    let m = a / scale;
    let q = m.trace() / 3.0;
    let off = m[(0, 1)].powi(2) + m[(0, 2)].powi(2) + m[(1, 2)].powi(2);
    let diagonal = (m[(0, 0)] - q).powi(2) + (m[(1, 1)] - q).powi(2) + (m[(2, 2)] - q).powi(2);
    let p = ((diagonal + 2.0 * off) / 6.0).sqrt();
    if p < 1e-12 {
        // A multiple of the identity: every direction is an eigenvector.
        return Vector3::z();
    }
    let b = (m - Matrix3::identity() * q) / p;
    let r = (b.determinant() / 2.0).clamp(-1.0, 1.0);
    let phi = r.acos() / 3.0;
    let smallest = q + 2.0 * p * (phi + 2.0 * std::f64::consts::FRAC_PI_3).cos();
    let shifted = m - Matrix3::identity() * smallest;
    let rows = [
        shifted.row(0).transpose(),
        shifted.row(1).transpose(),
        shifted.row(2).transpose(),
    ];
    let best = [
        rows[0].cross(&rows[1]),
        rows[0].cross(&rows[2]),
        rows[1].cross(&rows[2]),
    ]
    .into_iter()
    .max_by(|x, y| x.norm_squared().total_cmp(&y.norm_squared()))
    .unwrap_or_else(Vector3::z);
    // The rows have norm up to about 1 after scaling; a cross product this short means
    // the two largest eigenvalues are not both well above the smallest.
    if best.norm_squared() > 1e-10 {
        return best.normalize();
    }
    let eigen = SymmetricEigen::new(*a);
    let smallest = eigen.eigenvalues.imin();
    // Eigenvectors from SymmetricEigen are orthonormal columns.
    eigen.eigenvectors.column(smallest).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unproject::{unproject, UnprojectOptions};
    use anydepth_core::{DepthMap, Intrinsics};

    fn angle_rad(a: &Vector3<f32>, b: &Vector3<f64>) -> f64 {
        let a = a.cast::<f64>().normalize();
        a.cross(&b.normalize()).norm().atan2(a.dot(&b.normalize()))
    }

    fn normals_of(cloud: &PointCloud) -> Result<&Vec<Vector3<f32>>> {
        cloud
            .normals
            .as_ref()
            .ok_or_else(|| Error::Invalid("no normals".into()))
    }

    #[test]
    fn plane_from_depth_map_normals_face_the_camera() -> Result<()> {
        let (w, h) = (80u32, 60u32);
        let camera = Intrinsics::new(60.0, 60.0, 39.5, 29.5, w, h).expect("valid camera");
        let n = Vector3::new(0.3, -0.2, 1.0).normalize();
        let d = 2.5;
        let depth: Vec<f32> = (0..w * h)
            .map(|i| {
                let (u, v) = (f64::from(i % w), f64::from(i / w));
                let ray = Vector3::new(
                    (u - camera.cx) / camera.fx,
                    (v - camera.cy) / camera.fy,
                    1.0,
                );
                (d / n.dot(&ray)) as f32
            })
            .collect();
        let depth = DepthMap::new(w, h, depth).expect("w x h values");
        let mut cloud = unproject(&depth, &camera, &UnprojectOptions::default(), None)?;
        estimate_normals(&mut cloud, 12, Point3::origin())?;
        // The camera is on the side of the plane opposite to n (n . 0 < d).
        for normal in normals_of(&cloud)? {
            // f32 points ~2.5 m apart by ~4 cm: ~1e-5 rad of noise.
            assert!(angle_rad(normal, &-n) < 1e-4, "{normal:?}");
            assert!((normal.norm() - 1.0).abs() < 1e-6);
        }
        Ok(())
    }

    /// `n` points spread evenly over the unit sphere (Fibonacci lattice).
    fn fibonacci_sphere(n: usize) -> Vec<Point3<f32>> {
        let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
        (0..n)
            .map(|i| {
                let z = 1.0 - (2 * i + 1) as f64 / n as f64;
                let r = (1.0 - z * z).sqrt();
                let phi = golden * i as f64;
                Point3::new(r * phi.cos(), r * phi.sin(), z).cast::<f32>()
            })
            .collect()
    }

    #[test]
    fn sphere_normals_are_radial_and_point_inward_to_the_centre() -> Result<()> {
        let mut cloud = PointCloud {
            points: fibonacci_sphere(800_000),
            ..Default::default()
        };
        // k = 19 fills the first three rings of a locally hexagonal lattice, so most
        // neighbourhoods are nearly symmetric; where the lattice is not hexagonal the
        // error is about 0.25 * spacing, so 800k points (spacing 4 mm) keep it < 1e-3.
        estimate_normals(&mut cloud, 19, Point3::origin())?;
        let mut worst = 0f64;
        for (p, normal) in cloud.points.iter().zip(normals_of(&cloud)?) {
            worst = worst.max(angle_rad(normal, &-p.coords.cast::<f64>()));
        }
        // PCA fits the plane at the neighbourhood's centroid, not at the point: the
        // error is about (centroid offset) / radius (measured: 3e-3 rad at 200k points
        // with k = 10, median 2e-5 but p99 1.6e-3 with k = 19).
        assert!(worst < 1e-3, "worst angle {worst} rad");
        Ok(())
    }

    #[test]
    fn cube_face_normals_away_from_edges_are_axis_aligned() -> Result<()> {
        let steps = 81; // 0.025 m spacing on a 2 m cube
        let mut points = Vec::new();
        let mut outward = Vec::new();
        for axis in 0..3 {
            for sign in [-1.0f64, 1.0] {
                for i in 0..steps {
                    for j in 0..steps {
                        let a = -1.0 + 2.0 * i as f64 / (steps - 1) as f64;
                        let b = -1.0 + 2.0 * j as f64 / (steps - 1) as f64;
                        let mut p = Vector3::zeros();
                        p[axis] = sign;
                        p[(axis + 1) % 3] = a;
                        p[(axis + 2) % 3] = b;
                        points.push(Point3::from(p.cast::<f32>()));
                        let mut n = Vector3::zeros();
                        n[axis] = sign;
                        // Only points whose 10 neighbours all lie on their own face.
                        let interior = a.abs() < 0.85 && b.abs() < 0.85;
                        outward.push(interior.then_some(n));
                    }
                }
            }
        }
        let mut cloud = PointCloud {
            points,
            ..Default::default()
        };
        // Seen from inside the cube: normals point inward.
        estimate_normals(&mut cloud, 10, Point3::new(0.1, -0.2, 0.05))?;
        let mut checked = 0;
        for (normal, outward) in normals_of(&cloud)?.iter().zip(&outward) {
            if let Some(outward) = outward {
                assert!(
                    angle_rad(normal, &-outward) < 1e-5,
                    "{normal:?} vs {outward:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 6 * 60 * 60);
        Ok(())
    }

    #[test]
    fn closed_form_eigenvector_matches_the_iterative_solver() {
        let mut rng = crate::cloud::Lcg(3);
        for case in 0..2000 {
            // Random rotation times diag(l0, l1, l2), with the smallest eigenvalue
            // separated from the others (as for a neighbourhood on a surface) or not.
            let axis = Vector3::new(
                rng.uniform(-1.0, 1.0),
                rng.uniform(-1.0, 1.0),
                rng.uniform(-1.0, 1.0),
            );
            let rotation = nalgebra::Rotation3::new(axis * 3.0);
            let spread = [1.0, 1e-2, 1e-4, 1e-8][case % 4];
            let l = Vector3::new(
                rng.uniform(0.5, 1.0),
                rng.uniform(0.5, 1.0),
                spread * rng.uniform(0.0, 0.1),
            ) * 1e-4;
            let a = rotation.matrix() * Matrix3::from_diagonal(&l) * rotation.matrix().transpose();
            let expected = rotation.matrix().column(2).into_owned();
            let got = smallest_eigenvector(&a);
            let angle = got.cross(&expected).norm().atan2(got.dot(&expected).abs());
            assert!(angle < 1e-9, "case {case}: {angle} rad");
            assert!((got.norm() - 1.0).abs() < 1e-12);
        }
        // Degenerate: a line (double smallest eigenvalue), a multiple of the identity.
        let line = Matrix3::from_diagonal(&Vector3::new(0.0, 2.0, 0.0));
        assert!(smallest_eigenvector(&line).y.abs() < 1e-12);
        let n = smallest_eigenvector(&Matrix3::identity());
        assert!((n.norm() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut cloud = PointCloud {
            points: fibonacci_sphere(100),
            ..Default::default()
        };
        assert!(estimate_normals(&mut cloud, 2, Point3::origin()).is_err());
        assert!(estimate_normals(&mut cloud, 5, Point3::new(f32::NAN, 0.0, 0.0)).is_err());
        let mut tiny = PointCloud {
            points: fibonacci_sphere(2),
            ..Default::default()
        };
        assert!(estimate_normals(&mut tiny, 5, Point3::origin()).is_err());
        assert!(estimate_normals(&mut cloud, 5, Point3::origin()).is_ok());
        assert_eq!(cloud.normals.map(|n| n.len()), Some(100));
    }
}
