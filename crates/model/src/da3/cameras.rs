//! Camera arithmetic of Depth Anything 3, in f64: the 9-number pose encoding the camera
//! decoder predicts and the camera encoder reads (translation, quaternion x y z w, vertical
//! and horizontal field of view), the normalisation of given poses, and the Umeyama
//! Sim(3) that puts given poses' scale onto the prediction.

use nalgebra::{Matrix3, Matrix4, Vector3};

use super::Da3Camera;

/// The rotation of a quaternion `(x, y, z, w)`, unnormalised as the official code takes it
/// (`2 / |q|^2`).
pub fn quaternion_to_matrix([x, y, z, w]: [f64; 4]) -> Matrix3<f64> {
    let two_s = 2.0 / (x * x + y * y + z * z + w * w);
    Matrix3::new(
        1.0 - two_s * (y * y + z * z),
        two_s * (x * y - z * w),
        two_s * (x * z + y * w),
        two_s * (x * y + z * w),
        1.0 - two_s * (x * x + z * z),
        two_s * (y * z - x * w),
        two_s * (x * z - y * w),
        two_s * (y * z + x * w),
        1.0 - two_s * (x * x + y * y),
    )
}

/// The quaternion `(x, y, z, w)`, `w >= 0`, of a rotation matrix, by the official code's
/// rule (the best-conditioned of four candidates).
pub fn matrix_to_quaternion(m: &Matrix3<f64>) -> [f64; 4] {
    let (m00, m01, m02) = (m[(0, 0)], m[(0, 1)], m[(0, 2)]);
    let (m10, m11, m12) = (m[(1, 0)], m[(1, 1)], m[(1, 2)]);
    let (m20, m21, m22) = (m[(2, 0)], m[(2, 1)], m[(2, 2)]);
    let q_abs = [
        1.0 + m00 + m11 + m22,
        1.0 + m00 - m11 - m22,
        1.0 - m00 + m11 - m22,
        1.0 - m00 - m11 + m22,
    ]
    .map(|v: f64| if v > 0.0 { v.sqrt() } else { 0.0 });
    // Candidates as (w, x, y, z) rows.
    let candidates = [
        [q_abs[0] * q_abs[0], m21 - m12, m02 - m20, m10 - m01],
        [m21 - m12, q_abs[1] * q_abs[1], m10 + m01, m02 + m20],
        [m02 - m20, m10 + m01, q_abs[2] * q_abs[2], m12 + m21],
        [m10 - m01, m20 + m02, m21 + m12, q_abs[3] * q_abs[3]],
    ];
    let best = (0..4).fold(0, |best, i| if q_abs[i] > q_abs[best] { i } else { best });
    let denominator = 2.0 * q_abs[best].max(0.1);
    let [w, x, y, z] = candidates[best].map(|v| v / denominator);
    if w < 0.0 {
        [-x, -y, -z, -w]
    } else {
        [x, y, z, w]
    }
}

/// The camera of a pose encoding predicted for an image of `width x height` pixels:
/// `world_from_camera = [R(q) | t]`, `fx = (width / 2) / tan(fov_w / 2)`, `fy` likewise,
/// principal point at the centre (tangents clamped at 1e-6 as the official code does).
pub fn camera_from_encoding(encoding: &[f64; 9], width: u32, height: u32) -> Da3Camera {
    let r = quaternion_to_matrix([encoding[3], encoding[4], encoding[5], encoding[6]]);
    let mut world_from_camera = [[0.0; 4]; 4];
    for (i, row) in world_from_camera.iter_mut().take(3).enumerate() {
        for (j, value) in row.iter_mut().take(3).enumerate() {
            *value = r[(i, j)];
        }
        row[3] = encoding[i];
    }
    world_from_camera[3][3] = 1.0;
    let (w, h) = (f64::from(width), f64::from(height));
    let fy = (h / 2.0) / (encoding[7] / 2.0).tan().max(1e-6);
    let fx = (w / 2.0) / (encoding[8] / 2.0).tan().max(1e-6);
    Da3Camera {
        world_from_camera,
        k: [[fx, 0.0, w / 2.0], [0.0, fy, h / 2.0], [0.0, 0.0, 1.0]],
    }
}

/// The pose encoding of a camera (`world_from_camera`, intrinsics `k` of an image of
/// `width x height` pixels), as the camera encoder reads it.
pub fn encode_camera(
    world_from_camera: &Matrix4<f64>,
    k: &Matrix3<f64>,
    width: u32,
    height: u32,
) -> [f64; 9] {
    let r: Matrix3<f64> = world_from_camera.fixed_view::<3, 3>(0, 0).into_owned();
    let q = matrix_to_quaternion(&r);
    let (w, h) = (f64::from(width), f64::from(height));
    let fov_h = 2.0 * ((h / 2.0) / k[(1, 1)]).atan();
    let fov_w = 2.0 * ((w / 2.0) / k[(0, 0)]).atan();
    [
        world_from_camera[(0, 3)],
        world_from_camera[(1, 3)],
        world_from_camera[(2, 3)],
        q[0],
        q[1],
        q[2],
        q[3],
        fov_h,
        fov_w,
    ]
}

/// Given poses (`world_from_camera`) as the network sees them: relative to the first
/// camera, and scaled so that the median distance of the cameras from the first is 1
/// (distances below 0.1 count as 0.1; the lower median for an even count, as
/// `torch.median`). Returns `world_from_camera` matrices.
pub fn normalise_given_poses(world_from_camera: &[Matrix4<f64>]) -> Vec<Matrix4<f64>> {
    let Some(first) = world_from_camera.first() else {
        return Vec::new();
    };
    // camera_from_world(i) @ world_from_camera(0) = camera_i from camera_0.
    let relative: Vec<Matrix4<f64>> = world_from_camera
        .iter()
        .map(|pose| invert_rigid(pose) * first)
        .collect();
    let mut distances: Vec<f64> = relative
        .iter()
        .map(|c_from_0| invert_rigid(c_from_0).fixed_view::<3, 1>(0, 3).norm())
        .collect();
    distances.sort_by(f64::total_cmp);
    let median = distances[(distances.len() - 1) / 2].max(0.1);
    relative
        .iter()
        .map(|c_from_0| {
            let mut scaled = *c_from_0;
            for i in 0..3 {
                scaled[(i, 3)] /= median;
            }
            invert_rigid(&scaled)
        })
        .collect()
}

/// The inverse of a rigid transform `[R | t]`: `[R^T | -R^T t]`.
pub fn invert_rigid(m: &Matrix4<f64>) -> Matrix4<f64> {
    let r = m.fixed_view::<3, 3>(0, 0).transpose();
    let t = -(r * m.fixed_view::<3, 1>(0, 3));
    let mut out = Matrix4::identity();
    out.fixed_view_mut::<3, 3>(0, 0).copy_from(&r);
    out.fixed_view_mut::<3, 1>(0, 3).copy_from(&t);
    out
}

/// A similarity transform: `y = scale * rotation * x + translation`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sim3 {
    /// Rotation.
    pub rotation: Matrix3<f64>,
    /// Translation.
    pub translation: Vector3<f64>,
    /// Scale.
    pub scale: f64,
}

/// Umeyama's least-squares similarity taking the points `from` onto `to` (same length, at
/// least 2 points that are not all equal), as evo's `align(correct_scale=True)` computes
/// it. `None` when the points are fewer than 2 or all equal. With 2 points, or points on
/// one line, the rotation about that line is arbitrary; the scale is still determined.
pub fn umeyama_sim3(from: &[Vector3<f64>], to: &[Vector3<f64>]) -> Option<Sim3> {
    let n = from.len();
    if n < 2 || to.len() != n {
        return None;
    }
    let count = n as f64;
    let mean_from = from.iter().sum::<Vector3<f64>>() / count;
    let mean_to = to.iter().sum::<Vector3<f64>>() / count;
    let mut covariance = Matrix3::zeros();
    let mut variance_from = 0.0;
    for (x, y) in from.iter().zip(to) {
        let (dx, dy) = (x - mean_from, y - mean_to);
        covariance += dy * dx.transpose();
        variance_from += dx.norm_squared();
    }
    covariance /= count;
    variance_from /= count;
    if variance_from <= f64::EPSILON {
        return None;
    }
    let svd = covariance.svd(true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    let mut s = Matrix3::identity();
    if u.determinant() * v_t.determinant() < 0.0 {
        s[(2, 2)] = -1.0;
    }
    let rotation = u * s * v_t;
    let scale = (Matrix3::from_diagonal(&svd.singular_values) * s).trace() / variance_from;
    let translation = mean_to - scale * rotation * mean_from;
    Some(Sim3 {
        rotation,
        translation,
        scale,
    })
}

/// Views from which the official code aligns given poses with RANSAC.
pub const RANSAC_MIN_VIEWS: usize = 10;

/// The Sim(3) taking the given camera centres `from` onto the predicted ones `to`, as the
/// official code computes it: Umeyama on all cameras below [`RANSAC_MIN_VIEWS`]; from there
/// on, its RANSAC: 10 draws of half the cameras (at least 3), inliers within the median
/// distance from each camera (aligned on all) to its nearest predicted one, the best draw
/// by inlier count then mean error, refitted on its inliers. The draws come from a fixed
/// seed, but not numpy's generator, so they differ from the official ones.
pub fn align_given_cameras(from: &[Vector3<f64>], to: &[Vector3<f64>]) -> Option<Sim3> {
    let all = umeyama_sim3(from, to)?;
    let n = from.len();
    if n < RANSAC_MIN_VIEWS {
        return Some(all);
    }
    let apply = |sim: &Sim3, x: &Vector3<f64>| sim.scale * (sim.rotation * x) + sim.translation;
    let mut nearest: Vec<f64> = from
        .iter()
        .map(|x| {
            let p = apply(&all, x);
            to.iter()
                .map(|y| (y - p).norm())
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    nearest.sort_by(f64::total_cmp);
    let threshold = if n % 2 == 1 {
        nearest[n / 2]
    } else {
        (nearest[n / 2 - 1] + nearest[n / 2]) / 2.0
    };
    let sample_size = n.div_ceil(2).max(3);
    let mut state: u64 = 42;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut best: Option<(usize, f64, Vec<bool>)> = None;
    for _ in 0..10 {
        // A partial Fisher-Yates shuffle: `sample_size` distinct cameras.
        let mut order: Vec<usize> = (0..n).collect();
        for i in 0..sample_size {
            let j = i + (next() % (n - i) as u64) as usize;
            order.swap(i, j);
        }
        let sample = &order[..sample_size];
        let pick = |points: &[Vector3<f64>]| -> Vec<Vector3<f64>> {
            sample.iter().map(|&i| points[i]).collect()
        };
        let Some(sim) = umeyama_sim3(&pick(from), &pick(to)) else {
            continue;
        };
        let errors: Vec<f64> = from
            .iter()
            .zip(to)
            .map(|(x, y)| (apply(&sim, x) - y).norm())
            .collect();
        let inliers: Vec<bool> = errors.iter().map(|&e| e <= threshold).collect();
        let count = inliers.iter().filter(|&&i| i).count();
        let mean = if count > 0 {
            errors
                .iter()
                .zip(&inliers)
                .filter(|(_, &i)| i)
                .map(|(e, _)| e)
                .sum::<f64>()
                / count as f64
        } else {
            f64::INFINITY
        };
        let better = best
            .as_ref()
            .is_none_or(|(c, m, _)| count > *c || (count == *c && mean < *m));
        if better {
            best = Some((count, mean, inliers));
        }
    }
    match best {
        Some((count, _, inliers)) if count >= 3 => {
            let keep = |points: &[Vector3<f64>]| -> Vec<Vector3<f64>> {
                points
                    .iter()
                    .zip(&inliers)
                    .filter(|(_, &i)| i)
                    .map(|(p, _)| *p)
                    .collect()
            };
            umeyama_sim3(&keep(from), &keep(to)).or(Some(all))
        }
        _ => Some(all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Rotation3, UnitQuaternion};

    #[test]
    fn quaternions_round_trip() {
        for (axis, angle) in [
            (Vector3::new(0.3, -0.5, 0.8), 0.7),
            (Vector3::new(1.0, 0.0, 0.0), 3.1),
            (Vector3::new(0.0, 1.0, 0.2), -2.0),
        ] {
            let r = Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(axis), angle);
            let q = matrix_to_quaternion(r.matrix());
            assert!(q[3] >= 0.0);
            let back = quaternion_to_matrix(q);
            assert!((back - r.matrix()).abs().max() < 1e-12);
            let expected = UnitQuaternion::from_rotation_matrix(&r);
            let sign = if expected.w < 0.0 { -1.0 } else { 1.0 };
            assert!((q[0] - sign * expected.i).abs() < 1e-12);
            assert!((q[3] - sign * expected.w).abs() < 1e-12);
        }
    }

    #[test]
    fn encoding_round_trips_through_a_camera() {
        let r = Rotation3::from_euler_angles(0.1, -0.2, 0.3);
        let mut pose = Matrix4::identity();
        pose.fixed_view_mut::<3, 3>(0, 0).copy_from(r.matrix());
        pose[(0, 3)] = 0.5;
        pose[(2, 3)] = -1.5;
        let k = Matrix3::new(400.0, 0.0, 252.0, 0.0, 410.0, 189.0, 0.0, 0.0, 1.0);
        let encoding = encode_camera(&pose, &k, 504, 378);
        let camera = camera_from_encoding(&encoding, 504, 378);
        for i in 0..4 {
            for j in 0..4 {
                assert!((camera.world_from_camera[i][j] - pose[(i, j)]).abs() < 1e-12);
            }
        }
        assert!((camera.k[0][0] - 400.0).abs() < 1e-9);
        assert!((camera.k[1][1] - 410.0).abs() < 1e-9);
    }

    #[test]
    fn normalised_poses_start_at_the_identity_with_unit_median_distance() {
        let pose = |x: f64, yaw: f64| {
            let mut m = Matrix4::identity();
            m.fixed_view_mut::<3, 3>(0, 0)
                .copy_from(Rotation3::from_euler_angles(0.0, yaw, 0.0).matrix());
            m[(0, 3)] = x;
            m
        };
        let normalised = normalise_given_poses(&[pose(1.0, 0.2), pose(3.0, 0.1), pose(5.0, 0.0)]);
        assert!((normalised[0] - Matrix4::identity()).abs().max() < 1e-12);
        let d: Vec<f64> = normalised
            .iter()
            .map(|m| m.fixed_view::<3, 1>(0, 3).norm())
            .collect();
        // Distances 0, 2, 4 from the first: the median 2 becomes 1.
        assert!(
            (d[1] - 1.0).abs() < 1e-12 && (d[2] - 2.0).abs() < 1e-12,
            "{d:?}"
        );
    }

    #[test]
    fn umeyama_recovers_a_similarity() {
        let rotation = *Rotation3::from_euler_angles(0.3, -0.4, 1.1).matrix();
        let translation = Vector3::new(1.0, -2.0, 0.5);
        let from = [
            Vector3::new(0.0, 0.0, 0.0),
            Vector3::new(1.0, 0.2, 0.0),
            Vector3::new(0.3, 1.0, 0.4),
            Vector3::new(-0.5, 0.1, 1.2),
        ];
        let to: Vec<Vector3<f64>> = from
            .iter()
            .map(|x| 2.5 * rotation * x + translation)
            .collect();
        let sim = umeyama_sim3(&from, &to).expect("non-degenerate points");
        assert!((sim.scale - 2.5).abs() < 1e-12);
        assert!((sim.rotation - rotation).abs().max() < 1e-12);
        assert!((sim.translation - translation).norm() < 1e-12);
        assert!(umeyama_sim3(&from[..1], &to[..1]).is_none());
    }

    #[test]
    fn ransac_ignores_a_camera_far_off() {
        let rotation = *Rotation3::from_euler_angles(0.1, 0.2, -0.3).matrix();
        let from: Vec<Vector3<f64>> = (0..12)
            .map(|i| {
                let t = f64::from(i);
                Vector3::new(t.cos(), 0.3 * t, t.sin())
            })
            .collect();
        let mut to: Vec<Vector3<f64>> = from.iter().map(|x| 1.7 * rotation * x).collect();
        to[5] += Vector3::new(5.0, -3.0, 2.0);
        let plain = umeyama_sim3(&from, &to).expect("fits");
        let robust = align_given_cameras(&from, &to).expect("fits");
        assert!(
            (plain.scale - 1.7).abs() > 1e-3,
            "the outlier moves the plain fit"
        );
        assert!((robust.scale - 1.7).abs() < 1e-9, "{}", robust.scale);
        // Fewer than 10 cameras: Umeyama on all, as the official code.
        let few = align_given_cameras(&from[..6], &to[..6]).expect("fits");
        assert_eq!(few, umeyama_sim3(&from[..6], &to[..6]).expect("fits"));
    }
}
