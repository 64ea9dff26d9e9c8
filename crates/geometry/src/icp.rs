//! Rigid registration: point-to-plane ICP of a source cloud against a target with
//! normals.
//!
//! Each iteration moves the source points by the current estimate of
//! `target_from_source`, pairs each with its nearest target point (one k-d tree query
//! per point, pairs farther apart than [`IcpOptions::max_correspondence_m`] ignored) and
//! minimises `sum(((R p + t - q) . n_q)^2)` linearised for small rotations (Chen &
//! Medioni's objective, Low's linearisation): a 6 x 6 system solved in `f64`. The update
//! is composed on the left of the estimate. A result that went wrong is refused with
//! [`Error::Diverged`] rather than returned (see [`icp_point_to_plane`]).
//!
//! The target is built once ([`IcpTarget`]: the cloud, its normals and its k-d tree)
//! and can refine any number of sources, e.g. every frame of a sequence against a mesh
//! fused from it:
//!
//! ```
//! use anydepth_geometry::icp::{icp_point_to_plane, IcpOptions, IcpTarget};
//! use anydepth_geometry::PointCloud;
//! use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};
//!
//! // The inside corner of a box: three perpendicular 1 m squares on a 5 cm grid.
//! let (mut points, mut normals) = (Vec::new(), Vec::new());
//! for axis in 0..3 {
//!     for i in 0..20 {
//!         for j in 0..20 {
//!             let mut p = Vector3::zeros();
//!             p[(axis + 1) % 3] = 0.05 * i as f32;
//!             p[(axis + 2) % 3] = 0.05 * j as f32;
//!             points.push(Point3::from(p));
//!             normals.push(Vector3::ith(axis, 1.0));
//!         }
//!     }
//! }
//! let target = IcpTarget::new(PointCloud { points, normals: Some(normals), colors: None }).unwrap();
//!
//! // The same points seen from 2 cm and 1 degree away.
//! let truth = Isometry3::from_parts(
//!     Translation3::new(0.02, -0.01, 0.015),
//!     UnitQuaternion::from_euler_angles(0.0, 0.0, 1f64.to_radians()),
//! );
//! let source = PointCloud {
//!     points: target.cloud().points.iter().map(|p| (truth.inverse() * p.cast::<f64>()).cast()).collect(),
//!     ..Default::default()
//! };
//! let result = icp_point_to_plane(&source, &target, &Isometry3::identity(), &IcpOptions::default()).unwrap();
//! assert!((result.target_from_source.translation.vector - truth.translation.vector).norm() < 1e-5);
//! assert!(result.rmse_m < 1e-5 && result.fitness == 1.0 && result.converged);
//! ```

use nalgebra::{
    Isometry3, Matrix6, Point3, SymmetricEigen, Translation3, UnitQuaternion, Vector3, Vector6,
};
use rayon::prelude::*;

use crate::neighbors::PointIndex;
use crate::{Error, PointCloud, Result};

/// Directions of the 6 x 6 system whose eigenvalue is below this share of the largest
/// are left unchanged (see [`icp_point_to_plane`]). The system is scaled so that its
/// rotation and translation parts are comparable (rotations times the source's RMS
/// radius), which makes this ratio a property of the geometry, not of its units.
pub const MIN_EIGENVALUE_RATIO: f64 = 1e-6;

/// A result whose RMSE exceeds the initial one by more than this share (plus
/// [`RMSE_MARGIN_M`]) is refused as diverged.
pub const RMSE_MARGIN_RELATIVE: f64 = 0.02;

/// Absolute part of the margin of [`RMSE_MARGIN_RELATIVE`], metres: keeps round-off
/// at an already exact alignment from counting as getting worse.
pub const RMSE_MARGIN_M: f64 = 1e-6;

/// Normals shorter than this mark target points without a usable normal (e.g. mesh
/// vertices in degenerate faces only); they are left out of the correspondences.
const MIN_NORMAL_LENGTH: f64 = 1e-3;

/// Source points per parallel work item; sums are made per chunk, then added in chunk
/// order so the result does not depend on the thread count.
const CHUNK: usize = 1024;

/// Parameters of [`icp_point_to_plane`].
#[derive(Clone, Debug, PartialEq)]
pub struct IcpOptions {
    /// Most iterations (each one correspondence search and one solve).
    pub max_iterations: usize,
    /// Pairs farther apart than this (metres, point to point) are ignored.
    pub max_correspondence_m: f64,
    /// Stop when an update rotates by less than this (radians) and moves the source's
    /// centroid by less than this (metres).
    pub tolerance: f64,
    /// Share of the source points that must have a correspondence at the returned pose.
    pub min_fitness: f64,
    /// Refuse results whose source centroid moved farther than this (metres) from where
    /// `initial` puts it.
    pub max_translation_m: f64,
    /// Refuse results rotated by more than this (degrees) from `initial`.
    pub max_rotation_deg: f64,
    /// Coarse stages run before the final one, as multiples of `max_correspondence_m`
    /// (for example `[4.0, 2.0]`: pairs up to 4 times, then 2 times that far), each for
    /// up to `max_iterations`; they pull in starts that are farther off than the final
    /// distance. Empty: one stage. Fitness, RMSE and refusal are judged at the final
    /// distance.
    pub coarse_to_fine: Vec<f64>,
}

impl Default for IcpOptions {
    /// 30 iterations, 5 cm correspondences, tolerance 1e-6, fitness at least 0.3, at
    /// most 0.5 m and 30 degrees from the initial pose, one stage.
    fn default() -> Self {
        Self {
            max_iterations: 30,
            max_correspondence_m: 0.05,
            tolerance: 1e-6,
            min_fitness: 0.3,
            max_translation_m: 0.5,
            max_rotation_deg: 30.0,
            coarse_to_fine: Vec::new(),
        }
    }
}

impl IcpOptions {
    /// Checks that every limit is positive and finite and `min_fitness` is in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        if self.max_iterations == 0 {
            return Err(Error::Invalid("ICP needs at least one iteration".into()));
        }
        if let Some(f) = self
            .coarse_to_fine
            .iter()
            .find(|f| !(f.is_finite() && **f >= 1.0))
        {
            return Err(Error::Invalid(format!(
                "ICP coarse-to-fine factors must be finite and at least 1, got {f}"
            )));
        }
        for (name, value) in [
            (
                "maximum correspondence distance (m)",
                self.max_correspondence_m,
            ),
            ("tolerance", self.tolerance),
            ("maximum translation (m)", self.max_translation_m),
            ("maximum rotation (deg)", self.max_rotation_deg),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::Invalid(format!(
                    "ICP {name} must be positive and finite, got {value}"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.min_fitness) {
            return Err(Error::Invalid(format!(
                "ICP minimum fitness must be in [0, 1], got {}",
                self.min_fitness
            )));
        }
        Ok(())
    }
}

/// How well a source matches the target at one pose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IcpFit {
    /// Point-to-plane RMS distance over the correspondences, metres; NaN without any.
    pub rmse_m: f64,
    /// Share of the source points with a correspondence.
    pub fitness: f64,
    /// How many source points have a correspondence.
    pub correspondences: usize,
}

/// What [`icp_point_to_plane`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct IcpResult {
    /// `p_in_target = target_from_source * p_in_source`.
    pub target_from_source: Isometry3<f64>,
    /// Point-to-plane RMS distance over the correspondences at the returned pose, metres.
    pub rmse_m: f64,
    /// Share of the source points with a correspondence at the returned pose.
    pub fitness: f64,
    /// [`IcpResult::rmse_m`] at `initial`.
    pub initial_rmse_m: f64,
    /// [`IcpResult::fitness`] at `initial`.
    pub initial_fitness: f64,
    /// Updates computed.
    pub iterations: usize,
    /// Whether ICP settled before `max_iterations` ran out: an update fell below the
    /// tolerance, or the estimate came back (within the tolerance) to where it was two
    /// iterations before — the pairs alternate between two sets, so further
    /// iterations would only repeat themselves.
    pub converged: bool,
    /// Directions of motion (of 6) that the geometry did not constrain in the last
    /// iteration, and that were therefore left as they were: 0 for a well-posed
    /// problem, 3 for a single plane (two in-plane translations, the rotation about its
    /// normal).
    pub unconstrained_dofs: usize,
}

/// A target cloud with normals and its k-d tree, built once and reused for many sources.
pub struct IcpTarget {
    cloud: PointCloud,
    /// The points with a usable normal, indexed.
    index: PointIndex<Vec<Point3<f32>>>,
    /// Their unit normals, in `f64`.
    normals: Vec<Vector3<f64>>,
}

impl IcpTarget {
    /// Indexes `cloud`, which must have normals (e.g. from
    /// [`crate::normals::estimate_normals`], or a mesh's vertex normals through
    /// `PointCloud::from(mesh)`). Normals need not be unit length; zero normals (shorter
    /// than 1e-3) mark points that take no part in the matching.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a cloud without normals, with non-finite normals, without
    /// any usable normal, or that fails [`PointCloud::validate`].
    ///
    /// # Performance
    /// Copies the points with usable normals into a k-d tree: O(n log n).
    pub fn new(cloud: PointCloud) -> Result<Self> {
        cloud.validate()?;
        let Some(normals) = &cloud.normals else {
            return Err(Error::Invalid(
                "point-to-plane ICP needs a target with normals (estimate_normals, or a mesh's vertex normals)".into(),
            ));
        };
        if let Some(i) = normals
            .iter()
            .position(|n| !n.iter().all(|c| c.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "normal {i} of the ICP target is not finite: {:?}",
                normals[i]
            )));
        }
        let (points, unit_normals): (Vec<Point3<f32>>, Vec<Vector3<f64>>) = cloud
            .points
            .iter()
            .zip(normals)
            .filter_map(|(p, n)| {
                let n = n.cast::<f64>();
                let length = n.norm();
                (length >= MIN_NORMAL_LENGTH).then(|| (*p, n / length))
            })
            .unzip();
        if points.is_empty() {
            return Err(Error::Invalid(format!(
                "the ICP target has no point with a usable normal ({} points)",
                cloud.len()
            )));
        }
        let index = PointIndex::new(points)?;
        Ok(Self {
            cloud,
            index,
            normals: unit_normals,
        })
    }

    /// The cloud the target was built from.
    pub fn cloud(&self) -> &PointCloud {
        &self.cloud
    }
}

/// Refines `initial` (`target_from_source`) so that the source points lie on the
/// target's surface: point-to-plane ICP.
///
/// Each iteration pairs every source point, moved by the current estimate, with its
/// nearest target point `q` (normal `n`) if they are at most
/// [`IcpOptions::max_correspondence_m`] apart, then minimises
/// `sum(((R p + t - q) . n)^2)` over a small rotation (about the moved source's
/// centroid) and translation, linearised and solved in `f64` with a symmetric
/// eigendecomposition of the 6 x 6 normal equations. It stops after
/// [`IcpOptions::max_iterations`] updates, or earlier when an update is below
/// [`IcpOptions::tolerance`] or the estimate is back where it was two iterations before
/// (`converged`), or when no pair is left.
///
/// Degenerate geometry: directions of motion the pairs do not constrain (eigenvalues
/// below [`MIN_EIGENVALUE_RATIO`] of the largest, e.g. sliding along a single plane or
/// turning about its normal) are left where `initial` put them, not guessed; their
/// number is [`IcpResult::unconstrained_dofs`].
///
/// The source needs no normals; its colours and normals are ignored.
///
/// # Errors
/// - [`Error::Invalid`] for invalid options (see [`IcpOptions::validate`]), an empty
///   source or one that fails [`PointCloud::validate`], or a non-finite `initial`.
/// - [`Error::Diverged`], with the numbers, when the returned pose would be one not to
///   trust: fewer than [`IcpOptions::min_fitness`] of the source points have a pair
///   there, its RMSE is not finite, it moved the source's centroid farther than
///   [`IcpOptions::max_translation_m`] or rotated more than
///   [`IcpOptions::max_rotation_deg`] from `initial`, or its RMSE is worse than at
///   `initial` (by more than [`RMSE_MARGIN_RELATIVE`] and [`RMSE_MARGIN_M`]).
///
/// # Performance
/// One nearest-neighbour query per source point and iteration, in parallel (rayon);
/// the sums are added in a fixed order, so results do not depend on the thread count.
pub fn icp_point_to_plane(
    source: &PointCloud,
    target: &IcpTarget,
    initial: &Isometry3<f64>,
    options: &IcpOptions,
) -> Result<IcpResult> {
    options.validate()?;
    let frame = SourceFrame::new(source)?;
    check_pose(initial)?;
    let final_distance_sq = options.max_correspondence_m * options.max_correspondence_m;
    let initial_fit = frame
        .pair(target, initial, final_distance_sq)
        .fit(source.len());

    let mut estimate = *initial;
    let mut iterations = 0;
    let mut converged = false;
    let mut unconstrained_dofs = 0;
    let mut sums = Sums::default();
    for factor in options.coarse_to_fine.iter().chain(std::iter::once(&1.0)) {
        let max_distance_sq = final_distance_sq * factor * factor;
        // The estimate before the current one, to notice pairs alternating between two
        // sets: the new estimate is then back where the previous one was.
        let mut previous: Option<Isometry3<f64>> = None;
        sums = frame.pair(target, &estimate, max_distance_sq);
        let mut stage_iterations = 0;
        converged = false;
        while stage_iterations < options.max_iterations && sums.count > 0 {
            let Some((update, dropped)) = solve(&sums.normal_matrix, &sums.gradient)
                .filter(|(update, _)| update.iter().all(|v| v.is_finite()))
            else {
                return Err(Error::Diverged(format!(
                    "ICP could not solve its 6 x 6 system at iteration {iterations} ({} pairs): \
                     not finite, or no eigendecomposition",
                    sums.count
                )));
            };
            unconstrained_dofs = dropped;
            let rotation = update.fixed_rows::<3>(0) / frame.radius_m;
            let translation = update.fixed_rows::<3>(3).into_owned();
            // p -> R (p - c) + c + t, with c the moved source's centroid.
            let centre = estimate * frame.centroid;
            let delta_rotation = UnitQuaternion::from_scaled_axis(rotation);
            let delta = Isometry3::from_parts(
                Translation3::from(centre.coords + translation - delta_rotation * centre.coords),
                delta_rotation,
            );
            let two_back = previous.replace(estimate);
            estimate = delta * estimate;
            estimate.rotation.renormalize();
            iterations += 1;
            stage_iterations += 1;
            sums = frame.pair(target, &estimate, max_distance_sq);
            let small = |(moved_m, rotated_rad): (f64, f64)| {
                moved_m < options.tolerance && rotated_rad < options.tolerance
            };
            let cycled = two_back.is_some_and(|p| small(frame.motion(&p, &estimate)));
            if small((translation.norm(), rotation.norm())) || cycled {
                converged = true;
                break;
            }
        }
    }
    let fit = sums.fit(source.len());

    let (moved_m, rotated_rad) = frame.motion(initial, &estimate);
    let rotated_deg = rotated_rad.to_degrees();
    tracing::debug!(
        iterations,
        converged,
        unconstrained_dofs,
        rmse_m = fit.rmse_m,
        fitness = fit.fitness,
        initial_rmse_m = initial_fit.rmse_m,
        initial_fitness = initial_fit.fitness,
        moved_m,
        rotated_deg,
        "point-to-plane ICP"
    );
    if let Some(reason) = refusal(&initial_fit, &fit, moved_m, rotated_deg, options) {
        return Err(Error::Diverged(format!(
            "ICP result refused: {reason} (fitness {:.3}, initial {:.3}; RMSE {:.2} mm, \
             initial {:.2} mm; moved {:.1} mm and {:.2} deg from the initial pose; \
             {iterations} iterations)",
            fit.fitness,
            initial_fit.fitness,
            fit.rmse_m * 1e3,
            initial_fit.rmse_m * 1e3,
            moved_m * 1e3,
            rotated_deg,
        )));
    }
    Ok(IcpResult {
        target_from_source: estimate,
        rmse_m: fit.rmse_m,
        fitness: fit.fitness,
        initial_rmse_m: initial_fit.rmse_m,
        initial_fitness: initial_fit.fitness,
        iterations,
        converged,
        unconstrained_dofs,
    })
}

/// How well `source`, moved by `target_from_source`, lies on the target: the
/// point-to-plane RMSE and fitness [`icp_point_to_plane`] reports, with pairs at most
/// `max_correspondence_m` apart.
///
/// # Errors
/// [`Error::Invalid`] for a non-positive or non-finite distance, a non-finite pose, or
/// an empty or invalid source.
pub fn evaluate_point_to_plane(
    source: &PointCloud,
    target: &IcpTarget,
    target_from_source: &Isometry3<f64>,
    max_correspondence_m: f64,
) -> Result<IcpFit> {
    if !(max_correspondence_m.is_finite() && max_correspondence_m > 0.0) {
        return Err(Error::Invalid(format!(
            "maximum correspondence distance must be positive and finite, got {max_correspondence_m} m"
        )));
    }
    let frame = SourceFrame::new(source)?;
    check_pose(target_from_source)?;
    let sums = frame.pair(
        target,
        target_from_source,
        max_correspondence_m * max_correspondence_m,
    );
    Ok(sums.fit(source.len()))
}

fn check_pose(pose: &Isometry3<f64>) -> Result<()> {
    if pose.to_homogeneous().iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("ICP pose is not finite: {pose:?}")))
    }
}

/// Why a result must not be returned, if it must not.
fn refusal(
    initial: &IcpFit,
    fit: &IcpFit,
    moved_m: f64,
    rotated_deg: f64,
    options: &IcpOptions,
) -> Option<String> {
    if fit.fitness.is_nan() || fit.fitness < options.min_fitness {
        return Some(format!(
            "too few correspondences ({} of the source points, {:.3} < {:.3})",
            fit.correspondences, fit.fitness, options.min_fitness
        ));
    }
    if !fit.rmse_m.is_finite() {
        return Some("the RMSE is not finite".into());
    }
    if moved_m.is_nan() || moved_m > options.max_translation_m {
        return Some(format!(
            "moved {:.1} mm, more than the {:.1} mm allowed",
            moved_m * 1e3,
            options.max_translation_m * 1e3
        ));
    }
    if rotated_deg.is_nan() || rotated_deg > options.max_rotation_deg {
        return Some(format!(
            "rotated {rotated_deg:.2} deg, more than the {:.2} deg allowed",
            options.max_rotation_deg
        ));
    }
    if initial.rmse_m.is_finite()
        && fit.rmse_m > initial.rmse_m * (1.0 + RMSE_MARGIN_RELATIVE) + RMSE_MARGIN_M
    {
        return Some("the RMSE got worse than at the initial pose".into());
    }
    None
}

/// The source points in `f64` with their centroid and RMS radius about it, which fix
/// the frame the 6 x 6 system is written in.
struct SourceFrame {
    points: Vec<Point3<f64>>,
    centroid: Point3<f64>,
    /// RMS distance of the points from their centroid (1 when all coincide).
    radius_m: f64,
}

impl SourceFrame {
    fn new(source: &PointCloud) -> Result<Self> {
        if source.is_empty() {
            return Err(Error::Invalid("the ICP source has no points".into()));
        }
        source.validate()?;
        let points: Vec<Point3<f64>> = source.points.iter().map(|p| p.cast::<f64>()).collect();
        let n = points.len() as f64;
        let centroid = Point3::from(points.iter().map(|p| p.coords).sum::<Vector3<f64>>() / n);
        let spread = points
            .iter()
            .map(|p| (p - centroid).norm_squared())
            .sum::<f64>()
            / n;
        let radius_m = if spread > 0.0 { spread.sqrt() } else { 1.0 };
        Ok(Self {
            points,
            centroid,
            radius_m,
        })
    }

    /// How far `to` puts the centroid from where `from` puts it (metres), and the
    /// angle between their rotations (radians).
    fn motion(&self, from: &Isometry3<f64>, to: &Isometry3<f64>) -> (f64, f64) {
        (
            (to * self.centroid - from * self.centroid).norm(),
            (to.rotation * from.rotation.inverse()).angle(),
        )
    }

    /// Pairs every point moved by `target_from_source` with its nearest target point
    /// within `sqrt(max_distance_sq)` and sums the linearised system about the moved
    /// centroid.
    fn pair(
        &self,
        target: &IcpTarget,
        target_from_source: &Isometry3<f64>,
        max_distance_sq: f64,
    ) -> Sums {
        let centre = target_from_source * self.centroid;
        let target_points = target.index.points();
        let chunks: Vec<Sums> = self
            .points
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut sums = Sums::default();
                for p in chunk {
                    let moved = target_from_source * p;
                    let Some((i, _)) = target.index.nearest_one(&moved.cast::<f32>()) else {
                        continue;
                    };
                    let q = target_points[i].cast::<f64>();
                    let offset = moved - q;
                    if offset.norm_squared() > max_distance_sq {
                        continue;
                    }
                    let n = &target.normals[i];
                    let residual = offset.dot(n);
                    let arm = (moved - centre) / self.radius_m;
                    let row = Vector6::from_iterator(arm.cross(n).iter().chain(n.iter()).copied());
                    sums.normal_matrix += row * row.transpose();
                    sums.gradient += row * residual;
                    sums.residual_sq += residual * residual;
                    sums.count += 1;
                }
                sums
            })
            .collect();
        chunks.into_iter().fold(Sums::default(), |mut total, s| {
            total.normal_matrix += s.normal_matrix;
            total.gradient += s.gradient;
            total.residual_sq += s.residual_sq;
            total.count += s.count;
            total
        })
    }
}

/// Sums over the correspondences of one pose.
struct Sums {
    /// `sum(J^T J)`, with `J = [((p - c) / radius) x n, n]`.
    normal_matrix: Matrix6<f64>,
    /// `sum(J^T r)`.
    gradient: Vector6<f64>,
    residual_sq: f64,
    count: usize,
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            normal_matrix: Matrix6::zeros(),
            gradient: Vector6::zeros(),
            residual_sq: 0.0,
            count: 0,
        }
    }
}

impl Sums {
    fn fit(&self, source_points: usize) -> IcpFit {
        IcpFit {
            rmse_m: if self.count > 0 {
                (self.residual_sq / self.count as f64).sqrt()
            } else {
                f64::NAN
            },
            fitness: self.count as f64 / source_points as f64,
            correspondences: self.count,
        }
    }
}

/// The least-squares update `x` minimising `|J x + r|^2`, i.e. `A x = -g`, restricted
/// to the eigenvectors of `A` whose eigenvalue is at least [`MIN_EIGENVALUE_RATIO`] of
/// the largest; also how many directions were dropped. `None` when the system is not
/// finite or the eigensolver does not converge.
fn solve(normal_matrix: &Matrix6<f64>, gradient: &Vector6<f64>) -> Option<(Vector6<f64>, usize)> {
    if !(normal_matrix
        .iter()
        .chain(gradient.iter())
        .all(|v| v.is_finite()))
    {
        return None;
    }
    // Bounded, unlike `SymmetricEigen::new`; a 6 x 6 matrix needs a few dozen sweeps.
    let eigen = SymmetricEigen::try_new(*normal_matrix, f64::EPSILON, 10_000)?;
    let largest = eigen.eigenvalues.max();
    if largest <= 0.0 {
        return Some((Vector6::zeros(), 6));
    }
    let mut update = Vector6::zeros();
    let mut dropped = 0;
    for (i, &value) in eigen.eigenvalues.iter().enumerate() {
        if value < MIN_EIGENVALUE_RATIO * largest {
            dropped += 1;
            continue;
        }
        let v = eigen.eigenvectors.column(i);
        update -= v * (v.dot(gradient) / value);
    }
    Some((update, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Lcg;

    /// Points on the inside corner of a box (the planes x, y, z = -0.4 over 0.8 m
    /// squares) and on a sphere (centre 0.1, radius 0.2), with their exact normals.
    fn corner_and_sphere(rng: &mut Lcg, per_plane: usize, on_sphere: usize) -> PointCloud {
        let mut points = Vec::new();
        let mut normals = Vec::new();
        for axis in 0..3 {
            for _ in 0..per_plane {
                let mut p = Vector3::repeat(-0.4);
                p[(axis + 1) % 3] = rng.uniform(-0.4, 0.4);
                p[(axis + 2) % 3] = rng.uniform(-0.4, 0.4);
                points.push(Point3::from(p.cast::<f32>()));
                normals.push(Vector3::ith(axis, 1.0f32));
            }
        }
        let centre = Vector3::repeat(0.1);
        for _ in 0..on_sphere {
            // Uniform on the sphere: z uniform, angle uniform.
            let z = rng.uniform(-1.0, 1.0);
            let phi = rng.uniform(0.0, std::f64::consts::TAU);
            let r = (1.0 - z * z).sqrt();
            let n = Vector3::new(r * phi.cos(), r * phi.sin(), z);
            points.push(Point3::from((centre + 0.2 * n).cast::<f32>()));
            normals.push(n.cast::<f32>());
        }
        PointCloud {
            points,
            colors: None,
            normals: Some(normals),
        }
    }

    fn transformed(cloud: &PointCloud, by: &Isometry3<f64>) -> PointCloud {
        PointCloud {
            points: cloud
                .points
                .iter()
                .map(|p| (by * p.cast::<f64>()).cast::<f32>())
                .collect(),
            ..Default::default()
        }
    }

    fn five_cm_five_deg() -> Isometry3<f64> {
        Isometry3::from_parts(
            Translation3::new(0.03, -0.03, 0.025),
            UnitQuaternion::from_axis_angle(
                &nalgebra::Unit::new_normalize(Vector3::new(1.0, 2.0, -1.5)),
                5f64.to_radians(),
            ),
        )
    }

    fn errors(a: &Isometry3<f64>, b: &Isometry3<f64>) -> (f64, f64) {
        let d = a.inverse() * b;
        (d.translation.vector.norm(), d.rotation.angle().to_degrees())
    }

    /// Source and target sampled independently: no exact pairs, so the plane parts
    /// carry the answer and the sphere only approximates its tangent planes.
    #[test]
    fn independent_samples_of_a_corner_and_a_sphere_align() -> Result<()> {
        let target = IcpTarget::new(corner_and_sphere(&mut Lcg(1), 20_000, 20_000))?;
        let truth = five_cm_five_deg();
        let source = transformed(
            &corner_and_sphere(&mut Lcg(2), 3000, 3000),
            &truth.inverse(),
        );
        let options = IcpOptions {
            max_correspondence_m: 0.15,
            ..Default::default()
        };
        let result = icp_point_to_plane(&source, &target, &Isometry3::identity(), &options)?;
        let (dt, dr) = errors(&result.target_from_source, &truth);
        // Target spacing ~6 mm: pairs across the box's edges and the sphere's
        // curvature bias the result, far below the spacing (measured: 6e-6 m,
        // 3e-4 deg, RMSE 0.09 mm).
        assert!(dt < 5e-5 && dr < 3e-3, "{dt} m, {dr} deg");
        assert!(result.rmse_m < 3e-4, "{result:?}");
        assert!(result.rmse_m < result.initial_rmse_m);
        assert_eq!(result.unconstrained_dofs, 0);
        Ok(())
    }

    /// A start 16 cm / 5 degrees off with final pairs only up to 3 cm: coarse stages at 24,
    /// 12 and 6 cm come first, and the result is judged at 3 cm.
    #[test]
    fn coarse_stages_run_first_and_the_result_is_judged_at_the_final_distance() -> Result<()> {
        let target = IcpTarget::new(corner_and_sphere(&mut Lcg(1), 20_000, 20_000))?;
        let truth = Isometry3::translation(0.1, -0.1, 0.08) * five_cm_five_deg();
        let source = transformed(
            &corner_and_sphere(&mut Lcg(2), 3000, 3000),
            &truth.inverse(),
        );
        let single = IcpOptions {
            max_correspondence_m: 0.03,
            ..Default::default()
        };
        let staged = IcpOptions {
            coarse_to_fine: vec![8.0, 4.0, 2.0],
            ..single
        };
        let result = icp_point_to_plane(&source, &target, &Isometry3::identity(), &staged)?;
        let (dt, dr) = errors(&result.target_from_source, &truth);
        assert!(dt < 5e-5 && dr < 3e-3, "{dt} m, {dr} deg");
        assert!(result.initial_fitness < 0.1 && result.fitness > 0.99 && result.converged);
        let judged = evaluate_point_to_plane(&source, &target, &Isometry3::identity(), 0.03)?;
        assert_eq!(result.initial_fitness, judged.fitness);
        let bad = IcpOptions {
            coarse_to_fine: vec![0.5],
            ..IcpOptions::default()
        };
        assert!(matches!(bad.validate(), Err(Error::Invalid(_))));
        Ok(())
    }

    #[test]
    fn result_does_not_depend_on_the_thread_count() -> Result<()> {
        let target = IcpTarget::new(corner_and_sphere(&mut Lcg(3), 5000, 5000))?;
        let source = transformed(
            &corner_and_sphere(&mut Lcg(4), 3000, 3000),
            &five_cm_five_deg().inverse(),
        );
        let options = IcpOptions {
            max_correspondence_m: 0.15,
            ..Default::default()
        };
        let run = |threads: usize| -> Result<IcpResult> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            pool.install(|| icp_point_to_plane(&source, &target, &Isometry3::identity(), &options))
        };
        assert_eq!(run(1)?, run(3)?);
        Ok(())
    }

    #[test]
    fn the_system_matches_a_brute_force_sum() -> Result<()> {
        let target_cloud = corner_and_sphere(&mut Lcg(5), 400, 400);
        let target = IcpTarget::new(target_cloud.clone())?;
        let source = transformed(
            &corner_and_sphere(&mut Lcg(6), 300, 300),
            &five_cm_five_deg(),
        );
        let frame = SourceFrame::new(&source)?;
        let pose = Isometry3::translation(0.01, 0.0, -0.02);
        let max_distance = 0.08;
        let sums = frame.pair(&target, &pose, max_distance * max_distance);
        // Oracle: nearest by a linear scan, the Jacobian written out.
        let centre = pose * frame.centroid;
        let mut matrix = Matrix6::zeros();
        let mut count = 0;
        let mut residual_sq = 0.0;
        let normals = target_cloud.normals.as_ref().expect("normals");
        for p in &source.points {
            let moved = pose * p.cast::<f64>();
            let (i, d2) = target_cloud
                .points
                .iter()
                .map(|q| (moved - q.cast::<f64>()).norm_squared())
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("non-empty");
            if d2 > max_distance * max_distance {
                continue;
            }
            let n = normals[i].cast::<f64>();
            let r = (moved - target_cloud.points[i].cast::<f64>()).dot(&n);
            let a = (moved - centre) / frame.radius_m;
            let row = Vector6::new(
                a.y * n.z - a.z * n.y,
                a.z * n.x - a.x * n.z,
                a.x * n.y - a.y * n.x,
                n.x,
                n.y,
                n.z,
            );
            matrix += row * row.transpose();
            residual_sq += r * r;
            count += 1;
        }
        assert!(count > 100);
        assert_eq!(sums.count, count);
        assert!((sums.normal_matrix - matrix).norm() < 1e-9 * matrix.norm());
        assert!((sums.residual_sq - residual_sq).abs() < 1e-9 * residual_sq);
        Ok(())
    }

    /// One plane: the tilt and the offset along the normal are found, the in-plane
    /// sliding and the turn about the normal stay as `initial` had them.
    #[test]
    fn a_single_plane_corrects_only_what_it_constrains() -> Result<()> {
        let mut rng = Lcg(9);
        let points: Vec<Point3<f32>> = (0..5000)
            .map(|_| Point3::new(rng.uniform_f32(-1.0, 1.0), rng.uniform_f32(-1.0, 1.0), 1.0))
            .collect();
        let target = IcpTarget::new(PointCloud {
            normals: Some(vec![-Vector3::z(); points.len()]),
            points: points.clone(),
            colors: None,
        })?;
        let source = PointCloud {
            points: points.clone(),
            ..Default::default()
        };
        // Off by 2 cm along the normal, 1.5 degrees of tilt, and 3 cm + 2 degrees
        // within the plane that nothing can see.
        let initial = Isometry3::from_parts(
            Translation3::new(0.03, -0.01, 0.02),
            UnitQuaternion::from_euler_angles(1.5f64.to_radians(), 0.0, 2f64.to_radians()),
        );
        let result = icp_point_to_plane(&source, &target, &initial, &IcpOptions::default())?;
        assert_eq!(result.unconstrained_dofs, 3);
        assert!(result.rmse_m < 1e-6, "{result:?}");
        let pose = result.target_from_source;
        for p in points.iter().step_by(50) {
            assert!(((pose * p.cast::<f64>()).z - 1.0).abs() < 1e-6);
        }
        // The centroid slid nowhere: its x and y are where `initial` put them.
        let frame = SourceFrame::new(&source)?;
        let (now, before) = (pose * frame.centroid, initial * frame.centroid);
        assert!((now.x - before.x).abs() < 1e-9 && (now.y - before.y).abs() < 1e-9);
        // The turn about the normal is untouched (to second order in the tilt).
        let heading = |q: &UnitQuaternion<f64>| {
            let x = q * Vector3::x();
            x.y.atan2(x.x)
        };
        let turn = (heading(&pose.rotation) - heading(&initial.rotation)).to_degrees();
        assert!(turn.abs() < 0.05, "{turn} deg");
        Ok(())
    }

    #[test]
    fn refusals_name_their_reason() {
        let options = IcpOptions::default();
        let good = IcpFit {
            rmse_m: 0.004,
            fitness: 0.8,
            correspondences: 800,
        };
        let initial = IcpFit {
            rmse_m: 0.01,
            ..good
        };
        assert_eq!(refusal(&initial, &good, 0.03, 2.0, &options), None);
        let few = IcpFit {
            fitness: 0.2,
            ..good
        };
        assert!(refusal(&initial, &few, 0.03, 2.0, &options)
            .is_some_and(|r| r.contains("too few correspondences")));
        let nan = IcpFit {
            rmse_m: f64::NAN,
            ..good
        };
        assert!(refusal(&initial, &nan, 0.03, 2.0, &options).is_some_and(|r| r.contains("finite")));
        assert!(refusal(&initial, &good, 0.6, 2.0, &options).is_some_and(|r| r.contains("moved")));
        assert!(refusal(&initial, &good, f64::NAN, 2.0, &options).is_some());
        assert!(
            refusal(&initial, &good, 0.03, 31.0, &options).is_some_and(|r| r.contains("rotated"))
        );
        let worse = IcpFit {
            rmse_m: 0.0103,
            ..good
        };
        assert!(refusal(&initial, &worse, 0.03, 2.0, &options).is_some_and(|r| r.contains("worse")));
        // Within the margin: not worse.
        let same = IcpFit {
            rmse_m: 0.0101,
            ..good
        };
        assert_eq!(refusal(&initial, &same, 0.03, 2.0, &options), None);
    }

    #[test]
    fn bad_arguments_are_invalid() -> Result<()> {
        let cloud = corner_and_sphere(&mut Lcg(11), 100, 100);
        assert!(matches!(
            IcpTarget::new(PointCloud {
                normals: None,
                ..cloud.clone()
            }),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            IcpTarget::new(PointCloud::default()),
            Err(Error::Invalid(_))
        ));
        let zero_normals = PointCloud {
            normals: Some(vec![Vector3::zeros(); cloud.len()]),
            ..cloud.clone()
        };
        assert!(matches!(
            IcpTarget::new(zero_normals),
            Err(Error::Invalid(_))
        ));
        let mut nan_normal = cloud.clone();
        if let Some(normals) = nan_normal.normals.as_mut() {
            normals[3].x = f32::NAN;
        }
        assert!(matches!(IcpTarget::new(nan_normal), Err(Error::Invalid(_))));
        let short_normals = PointCloud {
            normals: Some(vec![Vector3::x(); 3]),
            ..cloud.clone()
        };
        assert!(matches!(
            IcpTarget::new(short_normals),
            Err(Error::Invalid(_))
        ));

        let target = IcpTarget::new(cloud.clone())?;
        let identity = Isometry3::identity();
        let run = |source: &PointCloud, initial: &Isometry3<f64>, options: &IcpOptions| {
            icp_point_to_plane(source, &target, initial, options)
        };
        let ok = IcpOptions::default();
        assert!(run(&cloud, &identity, &ok).is_ok());
        for bad in [
            IcpOptions {
                max_iterations: 0,
                ..ok.clone()
            },
            IcpOptions {
                max_correspondence_m: 0.0,
                ..ok.clone()
            },
            IcpOptions {
                max_correspondence_m: f64::INFINITY,
                ..ok.clone()
            },
            IcpOptions {
                tolerance: -1e-6,
                ..ok.clone()
            },
            IcpOptions {
                min_fitness: 1.5,
                ..ok.clone()
            },
            IcpOptions {
                min_fitness: f64::NAN,
                ..ok.clone()
            },
            IcpOptions {
                max_translation_m: f64::NAN,
                ..ok.clone()
            },
            IcpOptions {
                max_rotation_deg: 0.0,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(run(&cloud, &identity, &bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            run(&PointCloud::default(), &identity, &ok),
            Err(Error::Invalid(_))
        ));
        let nan_pose = Isometry3::translation(f64::NAN, 0.0, 0.0);
        assert!(matches!(
            run(&cloud, &nan_pose, &ok),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            evaluate_point_to_plane(&cloud, &target, &identity, -1.0),
            Err(Error::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn targets_skip_points_with_zero_normals() -> Result<()> {
        let mut cloud = corner_and_sphere(&mut Lcg(12), 50, 0);
        // A stray point right next to the source point with no usable normal.
        cloud.points.push(Point3::new(-0.4, 0.0, 0.0));
        if let Some(normals) = cloud.normals.as_mut() {
            normals.push(Vector3::zeros());
        }
        let target = IcpTarget::new(cloud)?;
        assert_eq!(target.cloud().len(), 151);
        let source = PointCloud {
            points: vec![Point3::new(-0.399, 0.0, 0.0)],
            ..Default::default()
        };
        let fit = evaluate_point_to_plane(&source, &target, &Isometry3::identity(), 0.5)?;
        // Paired with a point of the x = -0.4 plane instead: residual 1 mm along x.
        assert_eq!(fit.correspondences, 1);
        assert!((fit.rmse_m - 0.001).abs() < 1e-6, "{fit:?}");
        Ok(())
    }
}
