//! Temporal consistency of depth over a video: the temporal alignment error (TAE) of Video
//! Depth Anything's benchmark (`benchmark/eval/eval_tae.py`), computed as that script
//! computes it.
//!
//! For a sequence of frames with metric ground truth, intrinsics and `world_from_camera`
//! poses ([`SequenceTae`]):
//!
//! 1. **One alignment for the whole sequence.** Disparity is clipped to at least
//!    [`DISPARITY_FLOOR`] and fitted by least squares to the ground truth's inverse depth
//!    `1 / (gt + 1e-8)` over the valid pixels of *all* frames together: one scale and one
//!    shift, not one per frame (a per-frame fit would hide the flicker the metric is
//!    about). The aligned disparity is clipped to at least [`DISPARITY_FLOOR`], inverted and
//!    clipped to the depth range. Metric predictions are taken as they are, clipped to the
//!    range ([`Alignment::None`]), or inverted and fitted the same way
//!    ([`Alignment::Affine`]). Valid ground truth lies strictly inside the protocol's range.
//! 2. **Each consecutive pair, both ways** ([`reprojection_absrel`]). Every pixel of frame
//!    `i` is unprojected with its aligned depth, moved by `camera2_from_camera1 =
//!    world_from_camera2^-1 * world_from_camera1` and projected with frame `i`'s
//!    intrinsics; the pixel is rounded (half to even) and the point's depth written there.
//!    Where several points land on one pixel the last in row-major order stays, points
//!    behind the camera are written too (and then fail the `> 0` test). AbsRel is the
//!    mean of `|target - projected| / target` over pixels where both are positive, 0 when
//!    there is none. Backward, frame `i + 1` goes into frame `i` with the inverse motion
//!    and, as in the script, frame `i`'s intrinsics.
//! 3. **TAE** = 100 x the mean of the `2 (n - 1)` AbsRel values (percent).
//!
//! The ground truth enters only through the alignment: TAE measures whether the aligned
//! predictions of consecutive frames agree with each other under the true camera motion.
//!
//! Where this differs from the script, on purpose:
//! - A crop ([`Protocol::crop`]) cuts the prediction and the ground truth alike and moves the
//!   principal point with it. The script crops ScanNet's ground truth (8 rows and 11
//!   columns off each side) but keeps the uncropped camera matrix, and stretches an
//!   uncropped prediction onto the crop unless it runs with `--hard_crop`.
//! - Without an upper end of the range ([`Protocol::max_depth_m`] `None`), the deepest valid
//!   ground truth of the sequence caps predictions (the script always has one: 10 m for
//!   ScanNet). The lower end is the protocol's (the script's 0.001 m is the default).
//! - A prediction that is not finite is an error (the script would carry NaN along).
//! - No per-pixel masks (the script's ScanNet setting uses none).
//!
//! ```
//! use anydepth_core::{camera::Intrinsics, DepthMap, Metres, Prediction};
//! use anydepth_eval::protocol::{Alignment, Crop, Protocol};
//! use anydepth_eval::temporal::{FrameCamera, SequenceTae};
//! use nalgebra::Isometry3;
//!
//! // A wall 2 m in front of a camera that moves 5 cm sideways; the second frame 25% too far.
//! let intrinsics = Intrinsics::new(100.0, 100.0, 15.5, 11.5, 32, 24).expect("valid");
//! let wall = DepthMap::<Metres>::new(32, 24, vec![2.0; 32 * 24]).expect("32 x 24");
//! let protocol = Protocol {
//!     min_depth_m: 1e-3,
//!     max_depth_m: Some(10.0),
//!     crop: Crop::None,
//!     alignment: Alignment::None,
//! };
//! let mut sequence = SequenceTae::new(&protocol).expect("a supported alignment");
//! for (i, scale) in [1.0f32, 1.25].into_iter().enumerate() {
//!     let depth: Vec<f32> = wall.data().iter().map(|z| z * scale).collect();
//!     let prediction = Prediction::Metric(DepthMap::new(32, 24, depth).expect("32 x 24"));
//!     let camera = FrameCamera {
//!         intrinsics,
//!         world_from_camera: Isometry3::translation(0.05 * i as f64, 0.0, 0.0),
//!     };
//!     sequence.push(&prediction, &wall, &camera).expect("same size");
//! }
//! let score = sequence.finish().expect("two frames");
//! // Forward |2.5 - 2| / 2.5, backward |2 - 2.5| / 2: their mean, in percent.
//! assert!((score.tae - 50.0 * (0.2 + 0.25)).abs() < 1e-9, "{}", score.tae);
//! ```

use anydepth_core::camera::Intrinsics;
use anydepth_core::{DepthMap, Metres, Prediction};
use anydepth_geometry::align::Affine;
use nalgebra::Isometry3;

use crate::error::{bail, Error, Result};
use crate::protocol::{self, decimal_metres, Alignment, Fit, Protocol};

/// Smallest disparity the script lets through: predictions are clipped to it before the
/// fit, and aligned disparity (1 / metres) after it.
pub const DISPARITY_FLOOR: f64 = 1e-3;

/// Added to the ground truth before it is inverted for the fit, as the script does.
pub const INVERSE_DEPTH_EPSILON: f64 = 1e-8;

/// The camera of one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameCamera {
    /// Intrinsics of the frame's ground truth (the same size).
    pub intrinsics: Intrinsics,
    /// `p_in_world = world_from_camera * p_in_camera`, OpenCV camera axes.
    pub world_from_camera: Isometry3<f64>,
}

/// One direction of a frame pair: a frame's depth reprojected into another.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reprojection {
    /// Mean of `|target - projected| / target` over the compared pixels (0 when none).
    pub absrel: f64,
    /// Target pixels compared: a positive projected depth landed there.
    pub pixels: usize,
}

/// The errors of one pair of consecutive frames.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PairError {
    /// The first frame reprojected into the second.
    pub forward: Reprojection,
    /// The second frame reprojected into the first.
    pub backward: Reprojection,
}

impl PairError {
    /// The pair's share of TAE: the mean of both directions' AbsRel, in percent.
    pub fn tae(&self) -> f64 {
        50.0 * (self.forward.absrel + self.backward.absrel)
    }
}

/// The temporal alignment error of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct TemporalScore {
    /// 100 x the mean over consecutive pairs and both directions of the reprojection AbsRel.
    pub tae: f64,
    /// Per pair of consecutive frames, in order.
    pub pairs: Vec<PairError>,
    /// The sequence's alignment: [`Fit::Affine`] (one scale and shift in disparity space)
    /// or [`Fit::None`].
    pub fit: Fit,
    /// Valid ground-truth pixels of the whole sequence (those the alignment fitted).
    pub fitted_pixels: usize,
    /// Predictions were clipped to this depth, in metres.
    pub max_depth_m: f64,
}

/// A frame as kept until the sequence is complete.
struct Frame {
    /// The prediction inside the crop, as the alignment takes it: clipped disparity, or
    /// metres for [`Alignment::None`].
    values: Vec<f32>,
    /// Intrinsics of the cropped frame.
    intrinsics: Intrinsics,
    world_from_camera: Isometry3<f64>,
}

/// Least squares of `y = scale * x + shift`, accumulated one sample at a time (Welford's
/// updates of the means and co-moments, so millions of samples lose no precision).
#[derive(Clone, Copy, Debug, Default)]
struct LineFit {
    count: usize,
    mean_x: f64,
    mean_y: f64,
    /// `sum (x - mean_x)^2`.
    sxx: f64,
    /// `sum (x - mean_x) (y - mean_y)`.
    sxy: f64,
    /// `sum x^2`, for the test of a spread at rounding level.
    sum_xx: f64,
}

impl LineFit {
    fn add(&mut self, x: f64, y: f64) {
        self.count += 1;
        let n = self.count as f64;
        let dx = x - self.mean_x;
        self.mean_x += dx / n;
        self.mean_y += (y - self.mean_y) / n;
        self.sxx += dx * (x - self.mean_x);
        self.sxy += dx * (y - self.mean_y);
        self.sum_xx += x * x;
    }

    /// The fit; `None` for fewer than 2 samples or no spread in `x`.
    fn solve(&self) -> Option<Affine> {
        if self.count < 2 || !(self.sxx.is_finite() && self.sxx > 1e-24 * self.sum_xx) {
            return None;
        }
        let scale = self.sxy / self.sxx;
        let shift = self.mean_y - scale * self.mean_x;
        (scale.is_finite() && shift.is_finite()).then_some(Affine { scale, shift })
    }
}

/// A sequence's frames, added in order, and its temporal alignment error.
///
/// Keeps each frame's prediction (inside the crop, `f32`) until [`SequenceTae::finish`]:
/// the alignment needs every frame before any pair can be scored.
pub struct SequenceTae {
    protocol: Protocol,
    /// Whether the frames hold metres (else disparity); set by the first frame.
    metric: Option<bool>,
    frames: Vec<Frame>,
    fit: LineFit,
    /// Valid ground-truth pixels so far.
    fitted_pixels: usize,
    /// The deepest valid ground truth so far, in metres.
    deepest_m: f32,
}

impl SequenceTae {
    /// An empty sequence scored with `protocol`'s range, crop and alignment (applied to
    /// the whole sequence at once).
    ///
    /// # Errors
    /// [`Error::Invalid`] for [`Alignment::Median`]: TAE aligns a sequence with one scale
    /// and shift in disparity space (affine) or takes metric depth as it is (none).
    pub fn new(protocol: &Protocol) -> Result<Self> {
        if protocol.alignment == Alignment::Median {
            bail!(
                "the temporal alignment error aligns a sequence with one scale and shift in \
                 disparity space (affine) or takes metric depth as it is (none), not median \
                 scaling"
            );
        }
        Ok(Self {
            protocol: *protocol,
            metric: None,
            frames: Vec::new(),
            fit: LineFit::default(),
            fitted_pixels: 0,
            deepest_m: 0.0,
        })
    }

    /// Frames added so far.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame was added.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Adds the next frame: its prediction (any size of the ground truth's aspect ratio,
    /// resized as [`protocol::fit_to`] does), metric ground truth (`0`, negative or
    /// non-finite = none) and camera.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the intrinsics are not of the ground truth's size, the
    /// sizes cannot be matched, the crop does not fit, the prediction is not finite
    /// somewhere, it is disparity under [`Alignment::None`], or the frames mix disparity
    /// and metres.
    pub fn push(
        &mut self,
        prediction: &Prediction,
        gt: &DepthMap<Metres>,
        camera: &FrameCamera,
    ) -> Result<()> {
        let metric = matches!(prediction, Prediction::Metric(_));
        if self.metric.is_some_and(|m| m != metric) {
            bail!("the sequence mixes disparity and metric predictions");
        }
        if !metric && self.protocol.alignment != Alignment::Affine {
            bail!(
                "a relative model predicts disparity up to an unknown scale and shift: it needs \
                 affine alignment, not {:?}",
                self.protocol.alignment.name()
            );
        }
        let (width, height) = (gt.width(), gt.height());
        let k = &camera.intrinsics;
        if (k.width, k.height) != (width, height) {
            bail!(
                "the camera is for {} x {} frames but the ground truth is {width} x {height}",
                k.width,
                k.height
            );
        }
        let (prediction, _) = protocol::fit_to(prediction, width, height)?;
        let (top, bottom, left, right) = self.protocol.crop.bounds(width, height)?;
        let values = prediction.values();
        let affine = self.protocol.alignment == Alignment::Affine;
        let floor = DISPARITY_FLOOR as f32;
        let mut kept = Vec::with_capacity(((bottom - top) * (right - left)) as usize);
        let mut non_finite = 0usize;
        for y in top..bottom {
            let row = y as usize * width as usize;
            let cols = row + left as usize..row + right as usize;
            for (&value, &z) in values[cols.clone()].iter().zip(&gt.data()[cols]) {
                if !value.is_finite() {
                    non_finite += 1;
                    continue;
                }
                let value = match (metric, affine) {
                    // Metres to disparity as the per-image protocol does, then the script's clip.
                    (true, true) => (1.0 / value.max(self.protocol.min_depth_m)).max(floor),
                    (false, _) => value.max(floor),
                    (true, false) => value,
                };
                kept.push(value);
                if self.protocol.in_range(z) {
                    self.fitted_pixels += 1;
                    self.deepest_m = self.deepest_m.max(z);
                    if affine {
                        let inverse_depth = 1.0 / (f64::from(z) + INVERSE_DEPTH_EPSILON);
                        self.fit.add(f64::from(value), inverse_depth);
                    }
                }
            }
        }
        if non_finite > 0 {
            bail!(
                "the prediction is not finite at {non_finite} of the {} pixels the temporal \
                 alignment error uses",
                non_finite + kept.len()
            );
        }
        let intrinsics = Intrinsics::new(
            k.fx,
            k.fy,
            k.cx - f64::from(left),
            k.cy - f64::from(top),
            right - left,
            bottom - top,
        )?;
        self.metric = Some(metric);
        self.frames.push(Frame {
            values: kept,
            intrinsics,
            world_from_camera: camera.world_from_camera,
        });
        Ok(())
    }

    /// Aligns the sequence and scores every pair of consecutive frames.
    ///
    /// # Performance
    /// Two passes over each frame's pixels; two frames' depth (`f64`) alive at a time.
    ///
    /// # Errors
    /// - [`Error::Invalid`] for fewer than 2 frames, consecutive frames of different sizes,
    ///   or a degenerate fit (a constant prediction);
    /// - [`Error::NoValidPixels`] when no frame holds ground truth inside the range.
    pub fn finish(self) -> Result<TemporalScore> {
        if self.frames.len() < 2 {
            bail!(
                "the temporal alignment error compares consecutive frames: the sequence has {}",
                self.frames.len()
            );
        }
        if self.fitted_pixels == 0 {
            return Err(Error::NoValidPixels(format!(
                "no ground-truth depth of the sequence lies in ({}, {}) m inside the crop",
                self.protocol.min_depth_m,
                self.protocol
                    .max_depth_m
                    .map_or_else(|| "inf".to_string(), |m| m.to_string())
            )));
        }
        let min_depth_m = decimal_metres(self.protocol.min_depth_m);
        let max_depth_m = decimal_metres(self.protocol.max_depth_m.unwrap_or(self.deepest_m));
        let fit = if self.protocol.alignment == Alignment::Affine {
            match self.fit.solve() {
                Some(affine) => Fit::Affine(affine),
                None => bail!(
                    "cannot align the sequence: its predictions are the same at every pixel with \
                     ground truth"
                ),
            }
        } else {
            Fit::None
        };
        // np.clip(v, lo, hi): the lower bound first, so no panic if the range is empty.
        let clip = |v: f64| v.max(min_depth_m).min(max_depth_m);
        let depth_of = |frame: &Frame| -> Vec<f64> {
            match fit {
                Fit::Affine(a) => frame
                    .values
                    .iter()
                    .map(|&d| clip(1.0 / a.inverse_depth(d).max(DISPARITY_FLOOR)))
                    .collect(),
                _ => frame.values.iter().map(|&d| clip(f64::from(d))).collect(),
            }
        };
        let mut pairs = Vec::with_capacity(self.frames.len() - 1);
        let mut error_sum = 0.0;
        let mut first_m = depth_of(&self.frames[0]);
        for (i, window) in self.frames.windows(2).enumerate() {
            let [first, second] = window else {
                continue;
            };
            let (a, b) = (&first.intrinsics, &second.intrinsics);
            if (a.width, a.height) != (b.width, b.height) {
                bail!(
                    "frames {i} and {} differ in size ({} x {} and {} x {})",
                    i + 1,
                    a.width,
                    a.height,
                    b.width,
                    b.height
                );
            }
            let second_m = depth_of(second);
            let second_from_first = second.world_from_camera.inverse() * first.world_from_camera;
            let pair = PairError {
                forward: reprojection_absrel(&first_m, &second_m, a, &second_from_first)?,
                backward: reprojection_absrel(
                    &second_m,
                    &first_m,
                    a,
                    &second_from_first.inverse(),
                )?,
            };
            error_sum += pair.forward.absrel;
            error_sum += pair.backward.absrel;
            pairs.push(pair);
            first_m = second_m;
        }
        let tae = error_sum / (2 * pairs.len()) as f64 * 100.0;
        Ok(TemporalScore {
            tae,
            pairs,
            fit,
            fitted_pixels: self.fitted_pixels,
            max_depth_m,
        })
    }
}

/// Reprojects `source_m` (depth of a `camera.width x camera.height` frame, row-major) into
/// another frame of the same camera moved by `target_from_source`, and compares with that
/// frame's depth `target_m`: the script's `tae_torch` (see the [module docs](self)).
///
/// ```
/// use anydepth_core::camera::Intrinsics;
/// use anydepth_eval::temporal::reprojection_absrel;
/// use nalgebra::Isometry3;
///
/// // A wall 2 m away, seen 10 cm further left: 5 columns leave the image.
/// let camera = Intrinsics::new(100.0, 100.0, 9.5, 4.5, 20, 10).expect("valid");
/// let wall = vec![2.0; 200];
/// let moved = Isometry3::translation(-0.1, 0.0, 0.0);
/// let r = reprojection_absrel(&wall, &wall, &camera, &moved).expect("same sizes");
/// assert_eq!((r.absrel, r.pixels), (0.0, 15 * 10));
/// ```
///
/// # Errors
/// [`Error::Invalid`] when a depth slice does not hold one value per pixel of `camera`.
pub fn reprojection_absrel(
    source_m: &[f64],
    target_m: &[f64],
    camera: &Intrinsics,
    target_from_source: &Isometry3<f64>,
) -> Result<Reprojection> {
    let (w, h) = (camera.width as usize, camera.height as usize);
    if source_m.len() != w * h || target_m.len() != w * h {
        bail!(
            "{} source and {} target depths for a {w} x {h} camera",
            source_m.len(),
            target_m.len()
        );
    }
    let (fx, fy, cx, cy) = (camera.fx, camera.fy, camera.cx, camera.cy);
    let rotation = target_from_source.rotation.to_rotation_matrix();
    let r = rotation.matrix();
    let t = &target_from_source.translation.vector;
    let (width, height) = (w as f64, h as f64);
    let mut projected = vec![0.0f64; w * h];
    for (y, row) in source_m.chunks_exact(w).enumerate() {
        let v_in = y as f64;
        for (x, &z) in row.iter().enumerate() {
            let px = (x as f64 - cx) * z / fx;
            let py = (v_in - cy) * z / fy;
            let xt = r[(0, 0)] * px + r[(0, 1)] * py + r[(0, 2)] * z + t.x;
            let yt = r[(1, 0)] * px + r[(1, 1)] * py + r[(1, 2)] * z + t.y;
            let zt = r[(2, 0)] * px + r[(2, 1)] * py + r[(2, 2)] * z + t.z;
            let u = (xt * fx / zt + cx).round_ties_even();
            let v = (yt * fy / zt + cy).round_ties_even();
            // NaN (a point at the camera's centre) fails these tests.
            if u >= 0.0 && u < width && v >= 0.0 && v < height {
                projected[v as usize * w + u as usize] = zt;
            }
        }
    }
    let (mut sum, mut pixels) = (0.0, 0usize);
    for (&p, &d) in projected.iter().zip(target_m) {
        if p > 0.0 && d > 0.0 {
            sum += (d - p).abs() / d;
            pixels += 1;
        }
    }
    let absrel = if pixels == 0 {
        0.0
    } else {
        sum / pixels as f64
    };
    Ok(Reprojection { absrel, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Crop;
    use nalgebra::{Translation3, UnitQuaternion, Vector3};

    fn camera(fx: f64, cx: f64, cy: f64, w: u32, h: u32) -> Intrinsics {
        Intrinsics::new(fx, fx, cx, cy, w, h).expect("valid")
    }

    fn metric_protocol() -> Protocol {
        Protocol {
            min_depth_m: 1e-3,
            max_depth_m: Some(10.0),
            crop: Crop::None,
            alignment: Alignment::None,
        }
    }

    #[test]
    fn projections_round_half_to_even() {
        // fx = 1, cx = 0, depth 1, half a metre sideways: column x lands on x + 0.5 exactly,
        // which rounds to the even neighbour: columns 0, 2, 4, 6 (7.5 -> 8 is outside).
        // Rounding half away from zero would fill columns 1..=7.
        let k = camera(1.0, 0.0, 0.0, 8, 1);
        let ones = vec![1.0; 8];
        let moved = Isometry3::translation(0.5, 0.0, 0.0);
        let r = reprojection_absrel(&ones, &ones, &k, &moved).expect("sizes");
        assert_eq!((r.absrel, r.pixels), (0.0, 4));
    }

    #[test]
    fn the_last_point_in_row_major_order_wins_a_pixel() {
        // Column x with depth z lands on x + 0.5 / z: column 1 (z 0.5) on 2 exactly, then
        // column 2 (z 1) on 2.5 -> 2. The later write (depth 1) must stay: the target reads
        // 1 there. Had the first stayed, its error would be |1 - 0.5| / 1.
        let k = camera(1.0, 0.0, 0.0, 4, 1);
        let source = [1.0, 0.5, 1.0, 1.0];
        let target = [1.0; 4];
        let moved = Isometry3::translation(0.5, 0.0, 0.0);
        let r = reprojection_absrel(&source, &target, &k, &moved).expect("sizes");
        assert_eq!((r.absrel, r.pixels), (0.0, 2));
    }

    #[test]
    fn points_behind_the_camera_overwrite_and_drop_out() {
        // Moving 1.5 m forward puts a wall 1 m away behind the camera: every projection is
        // mirrored through the centre, some land inside and carry negative depth.
        let k = camera(1.0, 1.0, 0.0, 3, 1);
        let wall = [1.0; 3];
        let moved = Isometry3::translation(0.0, 0.0, -1.5);
        let r = reprojection_absrel(&wall, &wall, &k, &moved).expect("sizes");
        assert_eq!((r.absrel, r.pixels), (0.0, 0));
        // And with nothing in view at all, the script's 0.
        let far = Isometry3::translation(100.0, 0.0, 0.0);
        let r = reprojection_absrel(&wall, &wall, &k, &far).expect("sizes");
        assert_eq!(r, Reprojection::default());
        assert!(reprojection_absrel(&wall, &wall[..2], &k, &far).is_err());
    }

    /// Depth of a tilted plane `z = 2 + 0.01 * X` (metres, camera coordinates) seen by `k`.
    fn tilted_plane(k: &Intrinsics) -> Vec<f64> {
        let (w, h) = (k.width as usize, k.height as usize);
        let mut depth = Vec::with_capacity(w * h);
        for _ in 0..h {
            for x in 0..w {
                // z = 2 + 0.01 * (x - cx) * z / fx  =>  z = 2 / (1 - 0.01 * (x - cx) / fx)
                depth.push(2.0 / (1.0 - 0.01 * (x as f64 - k.cx) / k.fx));
            }
        }
        depth
    }

    #[test]
    fn matches_a_pixel_by_pixel_oracle_under_a_general_motion() {
        // The oracle: each target pixel's value is the depth of the last source pixel (row
        // major) whose projection rounds onto it, computed point by point with nalgebra.
        let k = camera(40.0, 15.3, 11.7, 32, 24);
        let source = tilted_plane(&k);
        let target: Vec<f64> = source.iter().map(|z| z * 1.03).collect();
        let motion = Isometry3::from_parts(
            Translation3::new(0.07, -0.03, 0.11),
            UnitQuaternion::from_scaled_axis(Vector3::new(0.02, -0.05, 0.03)),
        );
        let (w, h) = (32usize, 24usize);
        let mut oracle = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let z = source[y * w + x];
                let p = nalgebra::Point3::new(
                    (x as f64 - k.cx) * z / k.fx,
                    (y as f64 - k.cy) * z / k.fy,
                    z,
                );
                let q = motion * p;
                let u = (q.x * k.fx / q.z + k.cx).round_ties_even();
                let v = (q.y * k.fy / q.z + k.cy).round_ties_even();
                if (0.0..w as f64).contains(&u) && (0.0..h as f64).contains(&v) {
                    oracle[v as usize * w + u as usize] = q.z;
                }
            }
        }
        let compared: Vec<(f64, f64)> = oracle
            .iter()
            .zip(&target)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, d)| (*p, *d))
            .collect();
        let expected =
            compared.iter().map(|(p, d)| (d - p).abs() / d).sum::<f64>() / compared.len() as f64;
        let r = reprojection_absrel(&source, &target, &k, &motion).expect("sizes");
        assert_eq!(r.pixels, compared.len());
        assert!(r.pixels > w * h / 2, "{}", r.pixels);
        assert!(
            (r.absrel - expected).abs() < 1e-12,
            "{} vs {expected}",
            r.absrel
        );
    }

    /// A wall 2 m away, the camera sliding sideways 6 cm (3 pixels) a frame; `values(i, z)`
    /// gives frame `i`'s prediction from the true depth `z`.
    fn wall_sequence(
        protocol: &Protocol,
        values: impl Fn(usize, f32) -> Prediction,
    ) -> TemporalScore {
        let k = camera(100.0, 15.5, 11.5, 32, 24);
        let wall = DepthMap::<Metres>::new(32, 24, vec![2.0; 32 * 24]).expect("32 x 24");
        let mut sequence = SequenceTae::new(protocol).expect("supported");
        for i in 0..4 {
            let camera = FrameCamera {
                intrinsics: k,
                world_from_camera: Isometry3::translation(0.06 * i as f64, 0.0, 0.0),
            };
            sequence
                .push(&values(i, 2.0), &wall, &camera)
                .expect("pushes");
        }
        assert_eq!(sequence.len(), 4);
        sequence.finish().expect("scores")
    }

    fn filled(value: f32) -> DepthMap<anydepth_core::Disparity> {
        DepthMap::new(32, 24, vec![value; 32 * 24]).expect("32 x 24")
    }

    #[test]
    fn consistent_depth_scores_zero_and_a_wrong_frame_scores_its_error() {
        let protocol = metric_protocol();
        let exact = wall_sequence(&protocol, |_, z| {
            Prediction::Metric(DepthMap::new(32, 24, vec![z; 32 * 24]).expect("size"))
        });
        assert_eq!(exact.tae, 0.0);
        assert_eq!(exact.pairs.len(), 3);
        assert_eq!(exact.fit, Fit::None);
        // Points move 3 pixels left: 29 of 32 columns stay in view.
        assert_eq!(exact.pairs[0].forward.pixels, 29 * 24);
        // Frame 2 at 2.5 m instead of 2: pairs (1, 2) and (2, 3) see |2.5 - 2| / 2.5 one way
        // and |2 - 2.5| / 2 the other.
        let scaled = wall_sequence(&protocol, |i, z| {
            let z = if i == 2 { z * 1.25 } else { z };
            Prediction::Metric(DepthMap::new(32, 24, vec![z; 32 * 24]).expect("size"))
        });
        assert_eq!(scaled.pairs[0].tae(), 0.0);
        for pair in &scaled.pairs[1..] {
            assert!((pair.tae() - 22.5).abs() < 1e-12, "{:?}", scaled.pairs);
        }
        assert!((scaled.tae - 15.0).abs() < 1e-12, "{}", scaled.tae);
    }

    #[test]
    fn one_scale_and_shift_for_the_whole_sequence() {
        let protocol = Protocol {
            alignment: Alignment::Affine,
            ..metric_protocol()
        };
        // Disparity under one affine map: recovered exactly, TAE 0.
        let (scale, shift) = (0.02, 0.05);
        let under =
            |z: f32| ((1.0 / (f64::from(z) + INVERSE_DEPTH_EPSILON) - shift) / scale) as f32;
        // A wall at one depth has no spread to fit: give the frames different walls.
        let k = camera(100.0, 15.5, 11.5, 32, 24);
        let mut sequence = SequenceTae::new(&protocol).expect("supported");
        for (i, z) in [2.0f32, 2.5, 3.0].into_iter().enumerate() {
            let gt = DepthMap::<Metres>::new(32, 24, vec![z; 32 * 24]).expect("size");
            let prediction = Prediction::Disparity(filled(under(z)));
            let camera = FrameCamera {
                intrinsics: k,
                world_from_camera: Isometry3::translation(0.0, 0.0, -0.5 * i as f64),
            };
            sequence.push(&prediction, &gt, &camera).expect("pushes");
        }
        let score = sequence.finish().expect("scores");
        let Fit::Affine(affine) = score.fit else {
            panic!("expected an affine fit, got {:?}", score.fit);
        };
        assert!((affine.scale / scale - 1.0).abs() < 1e-5, "{affine:?}");
        assert!((affine.shift - shift).abs() < 1e-6, "{affine:?}");
        assert_eq!(score.fitted_pixels, 3 * 32 * 24);
        // One wall, the camera backing away 0.5 m a frame: the aligned frames agree.
        assert!(score.tae < 1e-4, "{score:?}");
        // A per-frame fit would hide a frame's wrong scale; one fit for all does not.
        let mut sequence = SequenceTae::new(&protocol).expect("supported");
        for (i, z) in [2.0f32, 2.5, 3.0].into_iter().enumerate() {
            let gt = DepthMap::<Metres>::new(32, 24, vec![z; 32 * 24]).expect("size");
            let d = under(z) * if i == 1 { 1.2 } else { 1.0 };
            let camera = FrameCamera {
                intrinsics: k,
                world_from_camera: Isometry3::translation(0.0, 0.0, -0.5 * i as f64),
            };
            sequence
                .push(&Prediction::Disparity(filled(d)), &gt, &camera)
                .expect("pushes");
        }
        assert!(sequence.finish().expect("scores").tae > 1.0);
    }

    #[test]
    fn clipping_follows_the_script() {
        // Disparity below the floor (here negative) is clipped to 0.001 before the fit and
        // the aligned disparity again: the depth ends at the range's far end.
        let protocol = Protocol {
            alignment: Alignment::Affine,
            ..metric_protocol()
        };
        let k = camera(100.0, 1.5, 0.0, 4, 1);
        let gt = DepthMap::<Metres>::new(4, 1, vec![1.0, 2.0, 4.0, 0.0]).expect("4 x 1");
        let disparity = [1.0f32, 0.5, 0.25, -3.0];
        let mut sequence = SequenceTae::new(&protocol).expect("supported");
        for _ in 0..2 {
            let prediction =
                Prediction::Disparity(DepthMap::new(4, 1, disparity.to_vec()).expect("4 x 1"));
            let camera = FrameCamera {
                intrinsics: k,
                world_from_camera: Isometry3::identity(),
            };
            sequence.push(&prediction, &gt, &camera).expect("pushes");
        }
        let score = sequence.finish().expect("scores");
        // Standing still, identical frames agree exactly, the clipped pixel included.
        assert_eq!(score.tae, 0.0);
        assert_eq!(score.pairs[0].forward.pixels, 4);
        assert_eq!(score.fitted_pixels, 6);
        assert_eq!(score.max_depth_m, 10.0);
    }

    #[test]
    fn a_crop_moves_the_principal_point() {
        // A tilted plane, the camera moving forward and turning: where a pixel lands
        // depends on the principal point. The cropped sequence must score as the cropped
        // arrays do with the principal point moved by the crop's corner.
        let k = camera(40.0, 15.5, 11.5, 32, 24);
        let (top, bottom, left, right) = (6u32, 22u32, 8u32, 30u32);
        let protocol = Protocol {
            crop: Crop::Pixels {
                top,
                bottom,
                left,
                right,
            },
            ..metric_protocol()
        };
        let poses: Vec<Isometry3<f64>> = (0..3)
            .map(|i| {
                Isometry3::from_parts(
                    Translation3::new(0.0, 0.0, 0.8 * i as f64),
                    UnitQuaternion::from_scaled_axis(Vector3::new(0.0, 0.03 * i as f64, 0.0)),
                )
            })
            .collect();
        // Frame i's depth of the world plane Z = 3 + 0.2 X, pixel by pixel.
        let depth = |pose: &Isometry3<f64>| -> Vec<f32> {
            let mut out = Vec::new();
            for y in 0..24 {
                for x in 0..32 {
                    let ray = nalgebra::Vector3::new(
                        (x as f64 - k.cx) / k.fx,
                        (y as f64 - k.cy) / k.fy,
                        1.0,
                    );
                    let (o, d) = (pose.translation.vector, pose.rotation * ray);
                    // o.z + t d.z = 3 + 0.2 (o.x + t d.x)
                    let t = (3.0 + 0.2 * o.x - o.z) / (d.z - 0.2 * d.x);
                    out.push(t as f32);
                }
            }
            out
        };
        let mut sequence = SequenceTae::new(&protocol).expect("supported");
        let mut frames = Vec::new();
        for pose in &poses {
            let z = depth(pose);
            let map = DepthMap::<Metres>::new(32, 24, z.clone()).expect("size");
            let camera = FrameCamera {
                intrinsics: k,
                world_from_camera: *pose,
            };
            sequence
                .push(&Prediction::Metric(map.clone()), &map, &camera)
                .expect("pushes");
            let cropped: Vec<f64> = (top..bottom)
                .flat_map(|y| (left..right).map(move |x| (y * 32 + x) as usize))
                .map(|i| f64::from(z[i]))
                .collect();
            frames.push(cropped);
        }
        let score = sequence.finish().expect("scores");
        let (w, h) = (right - left, bottom - top);
        let moved = Intrinsics::new(k.fx, k.fy, k.cx - 8.0, k.cy - 6.0, w, h).expect("valid");
        let unmoved = Intrinsics::new(k.fx, k.fy, k.cx, k.cy, w, h).expect("valid");
        let motion = poses[1].inverse() * poses[0];
        let forward = |camera: &Intrinsics| {
            reprojection_absrel(&frames[0], &frames[1], camera, &motion).expect("sizes")
        };
        assert_eq!(score.pairs[0].forward, forward(&moved));
        // The test can tell: the principal point of the uncropped frame scores worse.
        assert!(forward(&unmoved).absrel > 2.0 * forward(&moved).absrel);
        assert!(score.pairs[0].forward.pixels > (w * h / 2) as usize);
    }

    #[test]
    fn refusals() {
        let protocol = metric_protocol();
        let median = Protocol {
            alignment: Alignment::Median,
            ..protocol
        };
        assert!(SequenceTae::new(&median).is_err());
        let k = camera(100.0, 15.5, 11.5, 32, 24);
        let gt = DepthMap::<Metres>::new(32, 24, vec![2.0; 32 * 24]).expect("size");
        let camera = FrameCamera {
            intrinsics: k,
            world_from_camera: Isometry3::identity(),
        };
        let metric = Prediction::Metric(DepthMap::new(32, 24, vec![2.0; 32 * 24]).expect("s"));
        let mut one = SequenceTae::new(&protocol).expect("supported");
        one.push(&metric, &gt, &camera).expect("pushes");
        let err = one.finish().expect_err("one frame");
        assert!(err.to_string().contains("consecutive frames"), "{err}");
        // Disparity needs the affine alignment; sizes must agree; NaN is refused.
        let mut sequence = SequenceTae::new(&protocol).expect("supported");
        let disparity = Prediction::Disparity(filled(0.5));
        assert!(sequence.push(&disparity, &gt, &camera).is_err());
        let small = FrameCamera {
            intrinsics: camera_of(16, 12),
            ..camera
        };
        let err = sequence
            .push(&metric, &gt, &small)
            .expect_err("camera size");
        assert!(err.to_string().contains("16 x 12"), "{err}");
        let mut holes = vec![2.0; 32 * 24];
        holes[5] = f32::NAN;
        let holes = Prediction::Metric(DepthMap::new(32, 24, holes).expect("size"));
        let err = sequence.push(&holes, &gt, &camera).expect_err("NaN");
        assert!(err.to_string().contains("not finite at 1 of"), "{err}");
        // A constant disparity over the sequence cannot be aligned.
        let affine = Protocol {
            alignment: Alignment::Affine,
            ..protocol
        };
        let mut flat = SequenceTae::new(&affine).expect("supported");
        for _ in 0..2 {
            flat.push(&disparity, &gt, &camera).expect("pushes");
        }
        assert!(flat.finish().is_err());
    }

    fn camera_of(w: u32, h: u32) -> Intrinsics {
        camera(50.0, 7.5, 5.5, w, h)
    }

    #[test]
    fn the_streaming_fit_matches_the_two_pass_one() {
        let x: Vec<f32> = (0..10_000).map(|i| 0.3 + (i as f32 * 0.37).sin()).collect();
        let depth: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, d)| 1.0 / (0.7 * d + 1.9 + 0.01 * ((i * 7) % 13) as f32))
            .collect();
        let two_pass = anydepth_geometry::align::fit_least_squares(&x, &depth).expect("fits");
        let mut fit = LineFit::default();
        for (d, z) in x.iter().zip(&depth) {
            fit.add(f64::from(*d), 1.0 / f64::from(*z));
        }
        let streamed = fit.solve().expect("fits");
        assert!((streamed.scale - two_pass.scale).abs() < 1e-12 * two_pass.scale.abs());
        assert!((streamed.shift - two_pass.shift).abs() < 1e-12);
    }
}
