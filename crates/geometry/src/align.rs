//! Fitting relative disparity to metric depth: `1 / depth = scale * disparity + shift`.
//!
//! Relative Depth Anything models predict affine-invariant disparity; metric depth needs a
//! scale and a shift from somewhere: a metric depth map (a sensor, a metric model), sparse
//! metric points (LiDAR, SfM, a tape measure), or one known distance. The fits work on
//! paired samples `(disparity, depth_m)` and minimise residuals in **inverse depth**, the
//! space in which the model is affine (the usual choice since MiDaS).
//!
//! - [`fit_least_squares`]: closed-form least squares, for clean samples;
//! - [`fit_robust`]: least median of squares then Tukey IRLS and a least-squares refit on the
//!   inliers; survives up to nearly half of the samples being gross outliers;
//! - [`fit_scale_only`]: `shift = 0`, from as little as one known distance.
//!
//! [`samples_from_dense`] and [`samples_from_points`] gather samples from a dense disparity
//! map and metric data.
//!
//! ```
//! use anydepth_core::{DepthMap, Disparity, Metres};
//! use anydepth_geometry::align::{fit_robust, samples_from_dense};
//!
//! // Disparity from a model, and a sensor's metric depth (0 = no reading).
//! let disparity = DepthMap::<Disparity>::new(4, 1, vec![1.0, 2.0, 3.0, 4.0]).expect("4 x 1");
//! let depth = DepthMap::<Metres>::new(4, 1, vec![2.0, 1.0, 0.0, 0.5]).expect("4 x 1");
//! let samples = samples_from_dense(&disparity, &depth).expect("same size");
//! assert_eq!(samples.len(), 3);
//! let affine = fit_robust(&samples.disparity, &samples.depth_m).expect("enough samples");
//! assert!((affine.apply(3.0) - 2.0 / 3.0).abs() < 1e-5);
//! ```

use anydepth_core::{DepthMap, Disparity, Metres};

use crate::error::{Error, Result};

/// `1 / depth = scale * disparity + shift`: disparity to metric depth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Inverse metres per unit of disparity.
    pub scale: f64,
    /// Inverse metres.
    pub shift: f64,
}

impl Affine {
    /// Inverse depth (1 / metres) for `disparity`; not checked.
    pub fn inverse_depth(&self, disparity: f32) -> f64 {
        self.scale * f64::from(disparity) + self.shift
    }

    /// Depth in metres for `disparity`, or `f32::NAN` when there is none: the inverse depth
    /// is not positive and finite, or the depth does not fit a finite positive `f32`.
    ///
    /// ```
    /// use anydepth_geometry::align::Affine;
    ///
    /// let affine = Affine { scale: 0.5, shift: -1.0 };
    /// assert_eq!(affine.apply(4.0), 1.0);
    /// assert!(affine.apply(2.0).is_nan()); // inverse depth 0: at infinity, invalid
    /// assert!(affine.apply(1.0).is_nan()); // behind the camera
    /// ```
    pub fn apply(&self, disparity: f32) -> f32 {
        let inverse = self.inverse_depth(disparity);
        if !(inverse.is_finite() && inverse > 0.0) {
            return f32::NAN;
        }
        let depth = (1.0 / inverse) as f32;
        if depth.is_finite() && depth > 0.0 {
            depth
        } else {
            f32::NAN
        }
    }

    /// [`Affine::apply`] on every value: a metric depth map with `NaN` where depth is invalid.
    ///
    /// # Errors
    /// None in practice (the size is the input's); kept to avoid a panic path.
    pub fn apply_map(&self, disparity: &DepthMap<Disparity>) -> Result<DepthMap<Metres>> {
        let data = disparity.data().iter().map(|&d| self.apply(d)).collect();
        DepthMap::new(disparity.width(), disparity.height(), data)
            .map_err(|e| Error::Invalid(e.to_string()))
    }
}

/// Paired samples: `disparity[i]` was predicted where metric depth `depth_m[i]` is known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// The predicted disparity of each pair.
    pub disparity: Vec<f32>,
    /// The known metric depth of each pair, in metres.
    pub depth_m: Vec<f32>,
}

impl Samples {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.disparity.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.disparity.is_empty()
    }
}

/// A metric depth known at a pixel position `(u, v)` (pixel centres at integer
/// coordinates, as in [`anydepth_core::camera`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelDepth {
    /// Column, in pixels.
    pub u: f64,
    /// Row, in pixels.
    pub v: f64,
    /// Depth along the optical axis (camera z), in metres.
    pub depth_m: f64,
}

/// How [`samples_from_points`] reads the disparity map at a fractional position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// The pixel whose centre is nearest; never mixes two surfaces at an edge.
    #[default]
    Nearest,
    /// Bilinear between the four surrounding pixel centres (clamped to the border pixels
    /// within half a pixel of the edge); smoother, but blends across depth edges. A point is
    /// skipped when any of the four values is not finite.
    Bilinear,
}

/// Pairs every pixel where both maps are valid: depth finite and `> 0`, disparity finite.
///
/// # Errors
/// [`Error::Invalid`] when the maps differ in size.
pub fn samples_from_dense(
    disparity: &DepthMap<Disparity>,
    depth: &DepthMap<Metres>,
) -> Result<Samples> {
    if (disparity.width(), disparity.height()) != (depth.width(), depth.height()) {
        return Err(Error::Invalid(format!(
            "disparity map is {} x {} but metric depth map is {} x {}",
            disparity.width(),
            disparity.height(),
            depth.width(),
            depth.height()
        )));
    }
    let (disparity, depth_m) = disparity
        .data()
        .iter()
        .zip(depth.data())
        .filter(|(d, z)| d.is_finite() && z.is_finite() && **z > 0.0)
        .map(|(&d, &z)| (d, z))
        .unzip();
    Ok(Samples { disparity, depth_m })
}

/// Pairs sparse metric points with the disparity read at their positions.
///
/// Points are skipped (and counted in a `tracing` debug message) when their depth is not
/// finite and positive, they lie outside the image (`u` outside `[-0.5, W - 0.5)`, same for
/// `v`), or the disparity read there is not finite.
///
/// ```
/// use anydepth_core::{DepthMap, Disparity};
/// use anydepth_geometry::align::{samples_from_points, PixelDepth, Sampling};
///
/// let disparity = DepthMap::<Disparity>::new(2, 1, vec![1.0, 3.0]).expect("2 x 1");
/// let points = [PixelDepth { u: 0.5, v: 0.0, depth_m: 0.5 }];
/// let samples = samples_from_points(&disparity, &points, Sampling::Bilinear).expect("valid");
/// assert_eq!(samples.disparity, vec![2.0]);
/// ```
///
/// # Errors
/// [`Error::Invalid`] when the disparity map is empty.
pub fn samples_from_points(
    disparity: &DepthMap<Disparity>,
    points: &[PixelDepth],
    sampling: Sampling,
) -> Result<Samples> {
    let (w, h) = (disparity.width(), disparity.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!(
            "disparity map is empty ({w} x {h})"
        )));
    }
    let (wf, hf) = (f64::from(w), f64::from(h));
    let mut samples = Samples::default();
    for p in points {
        let inside = (-0.5..wf - 0.5).contains(&p.u) && (-0.5..hf - 0.5).contains(&p.v);
        if !(inside && p.depth_m.is_finite() && p.depth_m > 0.0) {
            continue;
        }
        let d = match sampling {
            Sampling::Nearest => {
                // Inside the image, so these round to a valid column and row.
                let x = ((p.u + 0.5).floor() as u32).min(w - 1);
                let y = ((p.v + 0.5).floor() as u32).min(h - 1);
                disparity.get(x, y)
            }
            Sampling::Bilinear => bilinear(disparity, p.u, p.v),
        };
        let z = p.depth_m as f32;
        if d.is_finite() && z.is_finite() && z > 0.0 {
            samples.disparity.push(d);
            samples.depth_m.push(z);
        }
    }
    let skipped = points.len() - samples.len();
    if skipped > 0 {
        tracing::debug!(skipped, of = points.len(), "metric points without a sample");
    }
    Ok(samples)
}

/// Bilinear read at `(u, v)`, clamped to the border pixel centres; `(u, v)` inside the image.
fn bilinear(map: &DepthMap<Disparity>, u: f64, v: f64) -> f32 {
    let (w, h) = (map.width(), map.height());
    let u = u.clamp(0.0, f64::from(w - 1));
    let v = v.clamp(0.0, f64::from(h - 1));
    let (x0, y0) = (u.floor() as u32, v.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (ax, ay) = (u - f64::from(x0), v - f64::from(y0));
    let at = |x, y| f64::from(map.get(x, y));
    let top = at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax;
    let bottom = at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax;
    (top * (1.0 - ay) + bottom * ay) as f32
}

/// Closed-form least squares of `1 / depth_m ≈ scale * disparity + shift` (2 x 2 normal
/// equations, centred, in `f64`).
///
/// ```
/// use anydepth_geometry::align::fit_least_squares;
///
/// let affine = fit_least_squares(&[1.0, 3.0], &[1.0, 0.5]).expect("two samples");
/// assert!((affine.scale - 0.5).abs() < 1e-12 && (affine.shift - 0.5).abs() < 1e-12);
/// ```
///
/// # Errors
/// [`Error::Invalid`] when the slices differ in length, a disparity is not finite, a depth
/// is not finite and positive, there are fewer than 2 samples, or all disparities are equal.
pub fn fit_least_squares(disparity: &[f32], depth_m: &[f32]) -> Result<Affine> {
    let (d, y) = validated(disparity, depth_m, 2)?;
    weighted_least_squares(&d, &y, None).ok_or_else(all_equal)
}

/// Robust fit of `1 / depth_m ≈ scale * disparity + shift`, deterministic (fixed seed):
///
/// 1. least median of squares over up to 256 two-sample hypotheses (scored on at most
///    4096 evenly spaced samples), which tolerates almost 50% gross outliers;
/// 2. iteratively reweighted least squares with Tukey's biweight (`c = 4.685 sigma`,
///    `sigma = 1.4826 * MAD` of the residuals, re-estimated each iteration);
/// 3. a plain least-squares refit on the inliers (`|residual| < c`).
///
/// Residuals are in inverse depth. Costs a few passes over the samples per iteration
/// (at most 50 iterations).
///
/// ```
/// use anydepth_geometry::align::fit_robust;
///
/// let disparity = [1.0, 2.0, 3.0, 4.0, 5.0];
/// // 1 / depth = 0.5 * disparity, but the third reading is garbage.
/// let depth_m = [2.0, 1.0, 40.0, 0.5, 0.4];
/// let affine = fit_robust(&disparity, &depth_m).expect("enough samples");
/// assert!((affine.scale - 0.5).abs() < 1e-6 && affine.shift.abs() < 1e-6);
/// ```
///
/// # Errors
/// As [`fit_least_squares`].
pub fn fit_robust(disparity: &[f32], depth_m: &[f32]) -> Result<Affine> {
    let (d, y) = validated(disparity, depth_m, 2)?;
    let mut model = least_median_of_squares(&d, &y).ok_or_else(all_equal)?;
    // A floor for sigma when more than half the samples fit exactly (MAD = 0).
    let sigma_floor = 1e-9 * median(y.iter().map(|v| v.abs()).collect()).max(f64::MIN_POSITIVE);
    let mut residuals = vec![0.0; d.len()];
    let mut weights = vec![0.0; d.len()];
    let mut c = 0.0;
    for _ in 0..50 {
        residuals_into(&model, &d, &y, &mut residuals);
        let sigma = (1.4826 * median(residuals.iter().map(|r| r.abs()).collect())).max(sigma_floor);
        c = 4.685 * sigma;
        for (w, r) in weights.iter_mut().zip(&residuals) {
            let u = r / c;
            *w = if u.abs() < 1.0 {
                (1.0 - u * u).powi(2)
            } else {
                0.0
            };
        }
        let Some(next) = weighted_least_squares(&d, &y, Some(&weights)) else {
            break;
        };
        let converged = (next.scale - model.scale).abs() <= 1e-12 * next.scale.abs()
            && (next.shift - model.shift).abs() <= 1e-12 * next.shift.abs().max(sigma);
        model = next;
        if converged {
            break;
        }
    }
    residuals_into(&model, &d, &y, &mut residuals);
    for (w, r) in weights.iter_mut().zip(&residuals) {
        *w = if r.abs() < c { 1.0 } else { 0.0 };
    }
    Ok(weighted_least_squares(&d, &y, Some(&weights)).unwrap_or(model))
}

/// The fit of metric samples the project uses: [`fit_scale_only`] from a single sample
/// (one distance fixes the scale only), [`fit_robust`] from more.
///
/// # Errors
/// As the fit used.
pub fn fit_samples(samples: &Samples) -> Result<Affine> {
    if samples.len() == 1 {
        fit_scale_only(&samples.disparity, &samples.depth_m)
    } else {
        fit_robust(&samples.disparity, &samples.depth_m)
    }
}

/// Least squares of `1 / depth_m ≈ scale * disparity` with `shift = 0`: one sample (a known
/// distance) determines it; more are fitted in the least-squares sense.
///
/// Right only when the disparity is proportional to inverse depth (shift known to be 0).
///
/// ```
/// use anydepth_geometry::align::fit_scale_only;
///
/// // The model says 0.25 where the wall is known to be 2 m away.
/// let affine = fit_scale_only(&[0.25], &[2.0]).expect("one sample");
/// assert_eq!((affine.scale, affine.shift), (2.0, 0.0));
/// assert_eq!(affine.apply(0.5), 1.0);
/// ```
///
/// # Errors
/// [`Error::Invalid`] when the slices differ in length or are empty, a value is invalid (as
/// in [`fit_least_squares`]), or the fitted scale is not positive (disparities `<= 0`).
pub fn fit_scale_only(disparity: &[f32], depth_m: &[f32]) -> Result<Affine> {
    let (d, y) = validated(disparity, depth_m, 1)?;
    let dd: f64 = d.iter().map(|d| d * d).sum();
    let dy: f64 = d.iter().zip(&y).map(|(d, y)| d * y).sum();
    let scale = dy / dd;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Invalid(format!(
            "scale-only alignment gives scale {scale}: disparities at the known depths must \
             be positive"
        )));
    }
    Ok(Affine { scale, shift: 0.0 })
}

fn all_equal() -> Error {
    Error::Invalid(
        "cannot fit disparity to depth: all disparities are equal (degenerate samples)".into(),
    )
}

/// Checks the samples and converts them to `f64` disparity and inverse depth.
fn validated(disparity: &[f32], depth_m: &[f32], min: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if disparity.len() != depth_m.len() {
        return Err(Error::Invalid(format!(
            "{} disparities but {} depths",
            disparity.len(),
            depth_m.len()
        )));
    }
    if disparity.len() < min {
        return Err(Error::Invalid(format!(
            "cannot fit disparity to depth from {} samples: at least {min} needed",
            disparity.len()
        )));
    }
    if let Some(i) = disparity.iter().position(|d| !d.is_finite()) {
        return Err(Error::Invalid(format!(
            "sample {i}: disparity {} is not finite",
            disparity[i]
        )));
    }
    if let Some(i) = depth_m.iter().position(|z| !(z.is_finite() && *z > 0.0)) {
        return Err(Error::Invalid(format!(
            "sample {i}: depth {} m is not finite and positive",
            depth_m[i]
        )));
    }
    let d = disparity.iter().map(|&d| f64::from(d)).collect();
    let y = depth_m.iter().map(|&z| 1.0 / f64::from(z)).collect();
    Ok((d, y))
}

/// Weighted least squares of `y ≈ s * d + t`, centred; `None` when the weighted disparities
/// have no spread.
fn weighted_least_squares(d: &[f64], y: &[f64], w: Option<&[f64]>) -> Option<Affine> {
    let weight = |i: usize| w.map_or(1.0, |w| w[i]);
    let (mut sw, mut sd, mut sy) = (0.0, 0.0, 0.0);
    for i in 0..d.len() {
        sw += weight(i);
        sd += weight(i) * d[i];
        sy += weight(i) * y[i];
    }
    if sw <= 0.0 {
        return None;
    }
    let (md, my) = (sd / sw, sy / sw);
    let (mut sxx, mut sxy, mut scale2) = (0.0, 0.0, 0.0);
    for i in 0..d.len() {
        let (dc, yc) = (d[i] - md, y[i] - my);
        sxx += weight(i) * dc * dc;
        sxy += weight(i) * dc * yc;
        scale2 += weight(i) * d[i] * d[i];
    }
    // No spread, or a spread at rounding level of the values themselves.
    if !sxx.is_finite() || sxx <= 1e-24 * scale2 {
        return None;
    }
    let scale = sxy / sxx;
    let shift = my - scale * md;
    (scale.is_finite() && shift.is_finite()).then_some(Affine { scale, shift })
}

fn residuals_into(model: &Affine, d: &[f64], y: &[f64], out: &mut [f64]) {
    for ((r, d), y) in out.iter_mut().zip(d).zip(y) {
        *r = y - (model.scale * d + model.shift);
    }
}

/// Median (upper median for even lengths) of finite values; 0 when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// The two-sample line with the smallest median absolute residual; `None` when every
/// disparity is the same.
fn least_median_of_squares(d: &[f64], y: &[f64]) -> Option<Affine> {
    const HYPOTHESES: usize = 256;
    const SCORED: usize = 4096;
    let n = d.len();
    let stride = n.div_ceil(SCORED).max(1);
    let scored: Vec<usize> = (0..n).step_by(stride).collect();
    let mut pairs = Vec::with_capacity(HYPOTHESES);
    if n * (n - 1) / 2 <= HYPOTHESES {
        for i in 0..n {
            pairs.extend((i + 1..n).map(|j| (i, j)));
        }
    } else {
        let mut rng = SplitMix64(0x5eed_a11e_d15a_u64);
        while pairs.len() < HYPOTHESES {
            let (i, j) = (rng.below(n), rng.below(n));
            if i != j {
                pairs.push((i, j));
            }
        }
    }
    let mut best: Option<(f64, Affine)> = None;
    let mut abs_residuals = Vec::with_capacity(scored.len());
    for (i, j) in pairs {
        if d[i] == d[j] {
            continue;
        }
        let scale = (y[i] - y[j]) / (d[i] - d[j]);
        let model = Affine {
            scale,
            shift: y[i] - scale * d[i],
        };
        abs_residuals.clear();
        abs_residuals.extend(
            scored
                .iter()
                .map(|&k| (y[k] - (model.scale * d[k] + model.shift)).abs()),
        );
        let score = median(std::mem::take(&mut abs_residuals));
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, model));
        }
    }
    match best {
        Some((_, model)) => Some(model),
        // Random pairs all had equal disparities: fall back to plain least squares.
        None => weighted_least_squares(d, y, None),
    }
}

/// A tiny deterministic generator (SplitMix64) for hypothesis sampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough index in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    const TRUTH: Affine = Affine {
        scale: 0.37,
        shift: 0.021,
    };

    /// Mean of `|pred - truth| / truth` over pairs where the truth is valid.
    fn abs_rel(pred: &[f32], truth: &[f32]) -> f64 {
        let (sum, n) = pred
            .iter()
            .zip(truth)
            .filter(|(_, t)| t.is_finite() && **t > 0.0)
            .fold((0.0, 0usize), |(s, n), (p, t)| {
                (s + f64::from((p - t).abs() / t), n + 1)
            });
        sum / n as f64
    }

    /// Disparities in `[0.5, 10]` and their exact depths under `TRUTH`.
    fn synthetic(n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = SplitMix64(7);
        let disparity: Vec<f32> = (0..n)
            .map(|_| 0.5 + 9.5 * (rng.next() % 1_000_000) as f32 / 1e6)
            .collect();
        let depth = disparity
            .iter()
            .map(|&d| (1.0 / TRUTH.inverse_depth(d)) as f32)
            .collect();
        (disparity, depth)
    }

    /// Replaces every fifth depth (20%) with a gross error: 0.2 to 5 times the truth.
    fn with_outliers(depth: &[f32], every: usize) -> Vec<f32> {
        let mut rng = SplitMix64(11);
        depth
            .iter()
            .enumerate()
            .map(|(i, &z)| {
                if i % every == 0 {
                    let factor = 0.2 + 4.8 * (rng.next() % 1000) as f32 / 1000.0;
                    let factor = if (factor - 1.0).abs() < 0.3 {
                        3.0
                    } else {
                        factor
                    };
                    z * factor
                } else {
                    z
                }
            })
            .collect()
    }

    fn recovered(affine: &Affine, disparity: &[f32]) -> Vec<f32> {
        disparity.iter().map(|&d| affine.apply(d)).collect()
    }

    #[test]
    fn least_squares_recovers_exact_data() {
        let (disparity, depth) = synthetic(1000);
        let affine = fit_least_squares(&disparity, &depth).expect("fits");
        assert!(
            (affine.scale / TRUTH.scale - 1.0).abs() < 1e-5,
            "{affine:?}"
        );
        assert!((affine.shift - TRUTH.shift).abs() < 1e-5, "{affine:?}");
        assert!(abs_rel(&recovered(&affine, &disparity), &depth) < 1e-6);
        // Two samples determine the line.
        let two = fit_least_squares(&disparity[..2], &depth[..2]).expect("fits");
        assert!(abs_rel(&recovered(&two, &disparity), &depth) < 1e-4);
    }

    #[test]
    fn robust_fit_survives_20_percent_gross_outliers() {
        let (disparity, depth) = synthetic(2000);
        let corrupted = with_outliers(&depth, 5);
        let robust = fit_robust(&disparity, &corrupted).expect("fits");
        let inliers: Vec<usize> = (0..depth.len()).filter(|i| i % 5 != 0).collect();
        let pick = |v: &[f32]| inliers.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let error = abs_rel(&pick(&recovered(&robust, &disparity)), &pick(&depth));
        assert!(error < 1e-3, "robust AbsRel {error}, {robust:?}");
        // The outliers are bad enough to ruin plain least squares: the test has teeth.
        let plain = fit_least_squares(&disparity, &corrupted).expect("fits");
        let plain_error = abs_rel(&pick(&recovered(&plain, &disparity)), &pick(&depth));
        assert!(plain_error > 1e-2, "least squares AbsRel {plain_error}");
    }

    #[test]
    fn robust_fit_survives_40_percent_outliers_and_small_inputs() {
        let (disparity, depth) = synthetic(500);
        let mut corrupted = with_outliers(&depth, 5);
        // Another 20%: everything at i % 5 == 1 is pushed 3x further away.
        for (i, z) in corrupted.iter_mut().enumerate() {
            if i % 5 == 1 {
                *z *= 3.0;
            }
        }
        let robust = fit_robust(&disparity, &corrupted).expect("fits");
        assert!(
            (robust.scale / TRUTH.scale - 1.0).abs() < 1e-4,
            "{robust:?}"
        );
        // Few samples (all pairs enumerated): 2 exact and 5 with one outlier.
        let two = fit_robust(&disparity[..2], &depth[..2]).expect("fits");
        assert!((two.scale / TRUTH.scale - 1.0).abs() < 1e-4, "{two:?}");
        let mut five = depth[..5].to_vec();
        five[2] *= 10.0;
        let five = fit_robust(&disparity[..5], &five).expect("fits");
        assert!((five.scale / TRUTH.scale - 1.0).abs() < 1e-4, "{five:?}");
    }

    #[test]
    fn robust_fit_is_deterministic_and_handles_noise() {
        let (disparity, depth) = synthetic(3000);
        let mut rng = SplitMix64(3);
        // 0.5% multiplicative noise on the inliers, plus 20% gross outliers.
        let noisy: Vec<f32> = depth
            .iter()
            .map(|&z| z * (1.0 + 0.01 * ((rng.next() % 1000) as f32 / 1000.0 - 0.5)))
            .collect();
        let noisy = with_outliers(&noisy, 5);
        let a = fit_robust(&disparity, &noisy).expect("fits");
        let b = fit_robust(&disparity, &noisy).expect("fits");
        assert_eq!(a, b);
        assert!((a.scale / TRUTH.scale - 1.0).abs() < 5e-3, "{a:?}");
        assert!((a.shift - TRUTH.shift).abs() < 5e-3, "{a:?}");
    }

    #[test]
    fn scale_only_from_one_or_many_points() {
        let truth = Affine {
            scale: 0.8,
            shift: 0.0,
        };
        let disparity = [0.5f32, 1.0, 2.0];
        let depth: Vec<f32> = disparity.iter().map(|&d| truth.apply(d)).collect();
        let one = fit_scale_only(&disparity[..1], &depth[..1]).expect("fits");
        assert!((one.scale - 0.8).abs() < 1e-6 && one.shift == 0.0);
        let all = fit_scale_only(&disparity, &depth).expect("fits");
        assert!((all.scale - 0.8).abs() < 1e-6);
        assert!(fit_scale_only(&[-1.0], &[2.0]).is_err());
        assert!(fit_scale_only(&[0.0], &[2.0]).is_err());
        assert!(fit_scale_only(&[], &[]).is_err());
    }

    #[test]
    fn invalid_samples_are_clear_errors() {
        let message = |r: Result<Affine>| match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Error::Invalid, got {other:?}"),
        };
        for fit in [fit_least_squares, fit_robust] {
            assert!(message(fit(&[1.0], &[1.0])).contains("at least 2"));
            assert!(message(fit(&[], &[])).contains("at least 2"));
            assert!(message(fit(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]))
                .contains("all disparities are equal"));
            assert!(message(fit(&[1.0, f32::NAN], &[1.0, 2.0])).contains("sample 1"));
            assert!(message(fit(&[1.0, 2.0], &[1.0, f32::INFINITY])).contains("not finite"));
            assert!(message(fit(&[1.0, 2.0], &[0.0, 1.0])).contains("sample 0"));
            assert!(message(fit(&[1.0, 2.0], &[-1.0, 1.0])).contains("positive"));
            assert!(message(fit(&[1.0, 2.0, 3.0], &[1.0, 2.0])).contains("3 disparities but 2"));
        }
    }

    #[test]
    fn apply_marks_invalid_depth_as_nan() {
        let affine = Affine {
            scale: 1.0,
            shift: -1.0,
        };
        assert_eq!(affine.apply(3.0), 0.5);
        for d in [1.0, 0.5, f32::NAN, f32::INFINITY] {
            assert!(affine.apply(d).is_nan(), "{d}");
        }
        // Depths beyond f32 (or rounding to 0) are invalid too.
        let tiny = Affine {
            scale: 1e-300,
            shift: 0.0,
        };
        assert!(tiny.apply(1.0).is_nan());
        let huge = Affine {
            scale: 1e300,
            shift: 0.0,
        };
        assert!(huge.apply(1.0).is_nan());
        let map = DepthMap::<Disparity>::new(3, 1, vec![3.0, 1.0, 2.0]).expect("3 x 1");
        let metric = affine.apply_map(&map).expect("same size");
        assert_eq!(metric.get(0, 0), 0.5);
        assert!(metric.get(1, 0).is_nan());
        assert_eq!(metric.get(2, 0), 1.0);
    }

    #[test]
    fn dense_samples_keep_valid_pixels_only() {
        let disparity = DepthMap::<Disparity>::new(3, 2, vec![1.0, 2.0, f32::NAN, 4.0, 5.0, 6.0])
            .expect("3 x 2");
        let depth =
            DepthMap::<Metres>::new(3, 2, vec![1.0, 0.0, 3.0, f32::NAN, -2.0, f32::INFINITY])
                .expect("3 x 2");
        let samples = samples_from_dense(&disparity, &depth).expect("same size");
        assert_eq!(samples.disparity, vec![1.0]);
        assert_eq!(samples.depth_m, vec![1.0]);
        let small = DepthMap::<Metres>::new(2, 3, vec![1.0; 6]).expect("2 x 3");
        assert!(samples_from_dense(&disparity, &small).is_err());
    }

    #[test]
    fn sparse_samples_nearest_and_bilinear() {
        // A linear ramp: bilinear reads it exactly, nearest rounds to the pixel centre.
        let (w, h) = (4u32, 3u32);
        let ramp = |x: f64, y: f64| (1.0 + x + 10.0 * y) as f32;
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| ramp(f64::from(x), f64::from(y))))
            .collect();
        let map = DepthMap::<Disparity>::new(w, h, data).expect("4 x 3");
        let point = |u, v| PixelDepth { u, v, depth_m: 1.0 };
        let points = [
            point(1.25, 0.75),
            point(2.5, 1.5),
            point(-0.4, 2.4), // within half a pixel of the corner
            point(-0.6, 1.0), // outside
            point(1.0, 2.5),  // outside (half-open edge)
            PixelDepth {
                u: 1.0,
                v: 1.0,
                depth_m: 0.0,
            }, // invalid depth
            PixelDepth {
                u: 1.0,
                v: 1.0,
                depth_m: f64::NAN,
            },
        ];
        let bilinear = samples_from_points(&map, &points, Sampling::Bilinear).expect("valid");
        assert_eq!(
            bilinear.disparity,
            vec![ramp(1.25, 0.75), ramp(2.5, 1.5), ramp(0.0, 2.0)]
        );
        let nearest = samples_from_points(&map, &points, Sampling::Nearest).expect("valid");
        assert_eq!(
            nearest.disparity,
            vec![ramp(1.0, 1.0), ramp(3.0, 2.0), ramp(0.0, 2.0)]
        );
        assert_eq!(nearest.depth_m, vec![1.0; 3]);
        // Non-finite disparity next to a point skips it.
        let mut holes = map.into_data();
        holes[0] = f32::NAN;
        let holes = DepthMap::<Disparity>::new(w, h, holes).expect("4 x 3");
        let at_hole = [point(0.3, 0.3)];
        assert!(samples_from_points(&holes, &at_hole, Sampling::Bilinear)
            .expect("valid")
            .is_empty());
        assert!(samples_from_points(&holes, &at_hole, Sampling::Nearest)
            .expect("valid")
            .is_empty());
    }

    #[test]
    fn sparse_points_align_a_synthetic_scene() {
        let (w, h) = (64u32, 48u32);
        // Inverse depth of a tilted plane, and the model's disparity for it.
        let inverse = |x: f64, y: f64| 0.2 + 0.01 * x + 0.005 * y;
        let disparity: Vec<f32> = (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    ((inverse(f64::from(x), f64::from(y)) - TRUTH.shift) / TRUTH.scale) as f32
                })
            })
            .collect();
        let map = DepthMap::<Disparity>::new(w, h, disparity).expect("64 x 48");
        let points: Vec<PixelDepth> = (0..50)
            .map(|i| {
                let (u, v) = (f64::from(i) * 1.23 % 63.0, f64::from(i) * 0.91 % 47.0);
                PixelDepth {
                    u,
                    v,
                    depth_m: 1.0 / inverse(u, v),
                }
            })
            .collect();
        let samples = samples_from_points(&map, &points, Sampling::Bilinear).expect("valid");
        assert_eq!(samples.len(), 50);
        let affine = fit_robust(&samples.disparity, &samples.depth_m).expect("fits");
        assert!(
            (affine.scale / TRUTH.scale - 1.0).abs() < 1e-4,
            "{affine:?}"
        );
    }

    fn data_dir() -> PathBuf {
        std::env::var_os("ANYDEPTH_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
    }

    /// NYU Depth V2 frames: disparity = 1 / depth distorted by a known affine
    /// `d' = (disp - t) / s`, aligned back from the dense maps (with 20% of the metric
    /// pixels corrupted for the robust fit).
    #[test]
    fn nyu_depth_round_trips_through_a_known_affine() {
        let dir = data_dir().join("nyu-samples/depth");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipping: {} is absent (set ANYDEPTH_DATA)", dir.display());
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no PNG in {}", dir.display());
        for path in files {
            let png = image::open(&path).expect("reads the PNG").into_luma16();
            let (w, h) = png.dimensions();
            let depth: Vec<f32> = png.pixels().map(|p| f32::from(p.0[0]) / 1000.0).collect();
            let disparity: Vec<f32> = depth
                .iter()
                .map(|&z| {
                    let disp = if z > 0.0 { 1.0 / f64::from(z) } else { 0.0 };
                    ((disp - TRUTH.shift) / TRUTH.scale) as f32
                })
                .collect();
            let depth = DepthMap::<Metres>::new(w, h, depth).expect("sizes agree");
            let disparity = DepthMap::<Disparity>::new(w, h, disparity).expect("sizes agree");
            let samples = samples_from_dense(&disparity, &depth).expect("same size");
            assert!(samples.len() > (w * h / 2) as usize, "{}", path.display());

            let metric =
                |affine: &Affine| affine.apply_map(&disparity).expect("same size").into_data();
            let ls = fit_least_squares(&samples.disparity, &samples.depth_m).expect("fits");
            let error = abs_rel(&metric(&ls), depth.data());
            assert!(
                error < 1e-3,
                "{}: least squares AbsRel {error}",
                path.display()
            );

            let corrupted = with_outliers(&samples.depth_m, 5);
            let robust = fit_robust(&samples.disparity, &corrupted).expect("fits");
            let error = abs_rel(&metric(&robust), depth.data());
            assert!(error < 1e-3, "{}: robust AbsRel {error}", path.display());
            eprintln!(
                "{}: {} samples, {ls:?}, {robust:?}",
                path.display(),
                samples.len()
            );
        }
    }
}
