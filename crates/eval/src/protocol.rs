//! Scoring depth predictions against ground truth, as the Depth Anything papers do.
//!
//! Per image: the prediction is brought to the ground truth's resolution ([`fit_to`]),
//! pixels are kept where the ground truth lies strictly inside the depth range and inside
//! the crop ([`Protocol`]), the prediction is turned into metres ([`Alignment`]) and
//! [`Metrics`] are computed over those pixels. A dataset's score is the **mean over
//! images** of the per-image metrics ([`mean`]), as the evaluation code of MiDaS,
//! ZoeDepth, Depth Anything and Marigold computes it (not a mean over all pixels).
//!
//! Relative models predict affine-invariant disparity. They are aligned by least squares
//! in disparity space over the valid pixels, `s, t = argmin |s * pred + t - 1 / gt|^2`
//! ([`anydepth_geometry::align::fit_least_squares`]), and turned into depth with the disparity capped
//! at the far end of the range: `depth = 1 / max(s * pred + t, 1 / max_depth)`.
//! Metric predictions are taken as they are (or scaled by the ratio of medians) and
//! clamped to the depth range.
//!
//! DA-2K's pairs of pixels ("which is closer") are scored by [`score_pairs`].
//!
//! ```
//! use anydepth_core::{DepthMap, Disparity, Metres, Prediction};
//! use anydepth_eval::protocol::{evaluate, Alignment, Crop, Protocol};
//!
//! let gt = DepthMap::<Metres>::new(3, 1, vec![1.0, 2.0, 4.0]).expect("3 x 1");
//! // Disparity of the same scene, under an unknown scale and shift.
//! let disparity: Vec<f32> = gt.data().iter().map(|z| 3.0 / z + 0.5).collect();
//! let prediction = Prediction::Disparity(DepthMap::new(3, 1, disparity).expect("3 x 1"));
//! let protocol = Protocol {
//!     min_depth_m: 0.001,
//!     max_depth_m: Some(10.0),
//!     crop: Crop::None,
//!     alignment: Alignment::Affine,
//! };
//! let result = evaluate(&prediction, &gt, &protocol).expect("valid pixels");
//! assert!(result.metrics.absrel < 1e-6 && result.metrics.delta1 == 1.0);
//! ```

use std::borrow::Cow;

use anydepth_core::{DepthMap, Metres, Prediction, ValueKind};

use crate::error::{Error, Result};
use anydepth_geometry::align::{self, Affine};

/// Threshold ratio of the delta accuracies: `delta_k` counts pixels with
/// `max(d / gt, gt / d) < 1.25^k`.
pub const DELTA_RATIO: f64 = 1.25;

/// Largest relative difference of aspect ratios for which [`fit_to`] resizes a prediction
/// to the ground truth's size (1%: rounding of a downscaled output).
pub const ASPECT_TOLERANCE: f64 = 0.01;

/// Where in the image pixels are evaluated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Crop {
    /// The whole image.
    None,
    /// Rows `top..bottom` and columns `left..right` (half-open, in pixels); the image must
    /// contain them.
    Pixels {
        /// First row, in pixels.
        top: u32,
        /// Row after the last, in pixels.
        bottom: u32,
        /// First column, in pixels.
        left: u32,
        /// Column after the last, in pixels.
        right: u32,
    },
    /// Rows `floor(top * h)..floor(bottom * h)` and columns `floor(left * w)..floor(right *
    /// w)`, as the KITTI crops are written in the evaluation code of monodepth and ZoeDepth.
    Fraction {
        /// First row, as a fraction of the height.
        top: f64,
        /// End of the rows (exclusive), as a fraction of the height.
        bottom: f64,
        /// First column, as a fraction of the width.
        left: f64,
        /// End of the columns (exclusive), as a fraction of the width.
        right: f64,
    },
}

impl Crop {
    /// Eigen et al.'s crop of the 640 x 480 NYU Depth V2 frames: rows 45..471, columns
    /// 41..601 (leaves out the white border of the undistorted images).
    pub const NYU_EIGEN: Crop = Crop::Pixels {
        top: 45,
        bottom: 471,
        left: 41,
        right: 601,
    };
    /// Garg et al.'s crop of KITTI frames (the lower part, where the LiDAR has returns), used
    /// by ZoeDepth's and Depth Anything's metric KITTI evaluation.
    pub const KITTI_GARG: Crop = Crop::Fraction {
        top: 0.408_108_11,
        bottom: 0.991_891_89,
        left: 0.035_947_71,
        right: 0.964_052_29,
    };
    /// Eigen et al.'s crop of KITTI frames.
    pub const KITTI_EIGEN: Crop = Crop::Fraction {
        top: 0.332_432_4,
        bottom: 0.913_513_51,
        left: 0.035_947_7,
        right: 0.964_052_29,
    };

    /// The [`CropName`] of this crop, if it is one of the named crops.
    pub fn named(&self) -> Option<CropName> {
        CropName::ALL.into_iter().find(|n| n.crop() == *self)
    }

    /// `"none"`, `"nyu-eigen"`, `"kitti-garg"` or `"kitti-eigen"`; `"custom"` for any other.
    pub fn name(&self) -> &'static str {
        self.named().map_or("custom", CropName::name)
    }

    /// The crop as `(top, bottom, left, right)` pixel bounds (half-open) of a `width` x
    /// `height` image.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the crop does not lie inside the image or is empty.
    pub fn bounds(&self, width: u32, height: u32) -> Result<(u32, u32, u32, u32)> {
        let (top, bottom, left, right) = match *self {
            Crop::None => (0, height, 0, width),
            Crop::Pixels {
                top,
                bottom,
                left,
                right,
            } => (top, bottom, left, right),
            Crop::Fraction {
                top,
                bottom,
                left,
                right,
            } => {
                let at =
                    |f: f64, n: u32| (f * f64::from(n)).floor().clamp(0.0, f64::from(n)) as u32;
                (
                    at(top, height),
                    at(bottom, height),
                    at(left, width),
                    at(right, width),
                )
            }
        };
        if top >= bottom || left >= right || bottom > height || right > width {
            return Err(Error::Invalid(format!(
                "the crop (rows {top}..{bottom}, columns {left}..{right}) does not fit a \
                 {width} x {height} image"
            )));
        }
        Ok((top, bottom, left, right))
    }
}

/// The named crops: what `anydepth eval --crop` takes and reports call a [`Crop`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CropName {
    /// The whole image ([`Crop::None`]).
    // No help text on the command line, where `none` speaks for itself.
    #[cfg_attr(feature = "clap", value(help = None::<&'static str>))]
    None,
    /// Rows 45..471, columns 41..601 of 640 x 480 frames.
    NyuEigen,
    /// Garg et al.'s KITTI crop (fractions of the frame).
    KittiGarg,
    /// Eigen et al.'s KITTI crop (fractions of the frame).
    KittiEigen,
}

impl CropName {
    /// Every named crop, in the order the command line lists them.
    pub const ALL: [CropName; 4] = [
        CropName::None,
        CropName::NyuEigen,
        CropName::KittiGarg,
        CropName::KittiEigen,
    ];

    /// The crop: [`Crop::None`], [`Crop::NYU_EIGEN`], [`Crop::KITTI_GARG`] or
    /// [`Crop::KITTI_EIGEN`].
    pub fn crop(self) -> Crop {
        match self {
            Self::None => Crop::None,
            Self::NyuEigen => Crop::NYU_EIGEN,
            Self::KittiGarg => Crop::KITTI_GARG,
            Self::KittiEigen => Crop::KITTI_EIGEN,
        }
    }

    /// The name on the command line and in reports: `none`, `nyu-eigen`, `kitti-garg`,
    /// `kitti-eigen`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::NyuEigen => "nyu-eigen",
            Self::KittiGarg => "kitti-garg",
            Self::KittiEigen => "kitti-eigen",
        }
    }
}

/// How a prediction becomes metres before it is compared with the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Metric predictions as they are (clamped to the depth range).
    None,
    /// Metric predictions times `median(gt) / median(prediction)` over the valid pixels
    /// (upper medians), then clamped to the depth range.
    Median,
    /// Least-squares scale and shift in disparity space (metric predictions are inverted
    /// first), with the disparity capped at `1 / max_depth`.
    Affine,
}

impl Alignment {
    /// `"none"`, `"median"` or `"affine"`.
    pub fn name(self) -> &'static str {
        match self {
            Alignment::None => "none",
            Alignment::Median => "median",
            Alignment::Affine => "affine",
        }
    }
}

/// Which pixels count and how predictions are aligned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Protocol {
    /// Ground truth must be larger than this (metres).
    pub min_depth_m: f32,
    /// Ground truth must be smaller than this (metres); predictions are capped at it. `None`:
    /// no upper bound on the ground truth, and each image's largest valid ground-truth depth
    /// caps the prediction.
    pub max_depth_m: Option<f32>,
    /// Where in the image pixels are evaluated.
    pub crop: Crop,
    /// How predictions become metres.
    pub alignment: Alignment,
}

impl Protocol {
    /// NYU Depth V2 (Eigen split): 0.001-10 m, Eigen crop, affine alignment.
    pub const NYU: Protocol = Protocol {
        min_depth_m: 1e-3,
        max_depth_m: Some(10.0),
        crop: Crop::NYU_EIGEN,
        alignment: Alignment::Affine,
    };
    /// KITTI (sparse LiDAR): 0.001-80 m, Garg crop, affine alignment.
    pub const KITTI: Protocol = Protocol {
        min_depth_m: 1e-3,
        max_depth_m: Some(80.0),
        crop: Crop::KITTI_GARG,
        alignment: Alignment::Affine,
    };

    /// Whether a ground-truth depth lies strictly inside the range.
    pub(crate) fn in_range(&self, gt: f32) -> bool {
        gt.is_finite() && gt > self.min_depth_m && self.max_depth_m.is_none_or(|max| gt < max)
    }
}

/// An `f32` range bound as the decimal it was written as (0.001, not 0.0010000000474974513).
pub(crate) fn decimal_metres(m: f32) -> f64 {
    (f64::from(m) * 1e6).round() / 1e6
}

/// The standard depth metrics of one image (or their mean over images).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean of `|d - gt| / gt`.
    pub absrel: f64,
    /// Share of pixels with `max(d / gt, gt / d) < 1.25`.
    pub delta1: f64,
    /// Same with `1.25^2`.
    pub delta2: f64,
    /// Same with `1.25^3`.
    pub delta3: f64,
    /// `sqrt(mean((d - gt)^2))`, metres.
    pub rmse: f64,
    /// `sqrt(mean((ln d - ln gt)^2))`.
    pub log_rmse: f64,
}

/// Metrics of paired depths (metres), accumulated in `f64`.
///
/// ```
/// use anydepth_eval::protocol::metrics;
///
/// let m = metrics(&[1.0, 3.0], &[1.0, 2.0]).expect("positive depths");
/// assert_eq!(m.absrel, 0.25); // (0 + 0.5) / 2
/// assert_eq!(m.delta1, 0.5); // 3 / 2 = 1.5 is not below 1.25
/// ```
///
/// # Errors
/// [`Error::Invalid`] when the slices differ in length or a depth is not finite and
/// positive; [`Error::NoValidPixels`] when they are empty.
pub fn metrics(depth_m: &[f32], gt_m: &[f32]) -> Result<Metrics> {
    if depth_m.len() != gt_m.len() {
        return Err(Error::Invalid(format!(
            "{} predicted depths but {} ground-truth depths",
            depth_m.len(),
            gt_m.len()
        )));
    }
    if depth_m.is_empty() {
        return Err(Error::NoValidPixels("no depths to compare".into()));
    }
    let positive = |v: &f32| v.is_finite() && *v > 0.0;
    if let Some(i) = depth_m.iter().position(|v| !positive(v)) {
        return Err(Error::Invalid(format!(
            "predicted depth {} at sample {i} is not finite and positive",
            depth_m[i]
        )));
    }
    if let Some(i) = gt_m.iter().position(|v| !positive(v)) {
        return Err(Error::Invalid(format!(
            "ground-truth depth {} at sample {i} is not finite and positive",
            gt_m[i]
        )));
    }
    let thresholds = [DELTA_RATIO, DELTA_RATIO.powi(2), DELTA_RATIO.powi(3)];
    let (mut absrel, mut squared, mut log_squared) = (0.0, 0.0, 0.0);
    let mut within = [0usize; 3];
    for (&d, &g) in depth_m.iter().zip(gt_m) {
        let (d, g) = (f64::from(d), f64::from(g));
        absrel += (d - g).abs() / g;
        squared += (d - g) * (d - g);
        let log_diff = d.ln() - g.ln();
        log_squared += log_diff * log_diff;
        let ratio = (d / g).max(g / d);
        for (count, threshold) in within.iter_mut().zip(thresholds) {
            if ratio < threshold {
                *count += 1;
            }
        }
    }
    let n = depth_m.len() as f64;
    Ok(Metrics {
        absrel: absrel / n,
        delta1: within[0] as f64 / n,
        delta2: within[1] as f64 / n,
        delta3: within[2] as f64 / n,
        rmse: (squared / n).sqrt(),
        log_rmse: (log_squared / n).sqrt(),
    })
}

/// Mean over images of per-image metrics; `None` for no images.
pub fn mean(per_image: &[Metrics]) -> Option<Metrics> {
    if per_image.is_empty() {
        return None;
    }
    let n = per_image.len() as f64;
    let sum = |f: fn(&Metrics) -> f64| per_image.iter().map(f).sum::<f64>() / n;
    Some(Metrics {
        absrel: sum(|m| m.absrel),
        delta1: sum(|m| m.delta1),
        delta2: sum(|m| m.delta2),
        delta3: sum(|m| m.delta3),
        rmse: sum(|m| m.rmse),
        log_rmse: sum(|m| m.log_rmse),
    })
}

/// What alignment found for one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fit {
    /// Nothing fitted: the metric prediction as it is.
    None,
    /// Metric prediction times `scale`.
    Median {
        /// `median(gt) / median(prediction)` over the valid pixels.
        scale: f64,
    },
    /// `1 / depth = scale * disparity + shift`.
    Affine(Affine),
}

/// The result for one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageEvaluation {
    /// The image's metrics over the compared pixels.
    pub metrics: Metrics,
    /// Pixels compared (valid ground truth inside the crop).
    pub pixels: usize,
    /// What alignment found (a median scale, or scale and shift in disparity space).
    pub fit: Fit,
    /// The prediction was resized (bilinear) to the ground truth's size.
    pub resized: bool,
}

/// Bilinear resampling of a map to `width` x `height` with pixel centres at half-integer
/// positions (PyTorch's `align_corners=False`, OpenCV's `INTER_LINEAR` when upscaling);
/// reads outside the map are clamped to the border. A non-finite neighbour makes the value
/// non-finite.
///
/// # Errors
/// [`Error::Invalid`] when either size is zero.
pub fn resize_bilinear<K: ValueKind>(
    map: &DepthMap<K>,
    width: u32,
    height: u32,
) -> Result<DepthMap<K>> {
    let (w, h) = (map.width(), map.height());
    if w == 0 || h == 0 || width == 0 || height == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w} x {h} map to {width} x {height}"
        )));
    }
    let taps = |n_src: u32, n_dst: u32| -> Vec<(usize, usize, f32)> {
        let scale = f64::from(n_src) / f64::from(n_dst);
        (0..n_dst)
            .map(|i| {
                let x = ((f64::from(i) + 0.5) * scale - 0.5).clamp(0.0, f64::from(n_src - 1));
                let x0 = x.floor() as usize;
                let x1 = (x0 + 1).min(n_src as usize - 1);
                (x0, x1, (x - x0 as f64) as f32)
            })
            .collect()
    };
    let (xs, ys) = (taps(w, width), taps(h, height));
    let src = map.data();
    let at = |x: usize, y: usize| src[y * w as usize + x];
    let lerp = |a: f32, b: f32, t: f32| if t == 0.0 { a } else { a + (b - a) * t };
    let mut data = Vec::with_capacity(width as usize * height as usize);
    for &(y0, y1, ty) in &ys {
        for &(x0, x1, tx) in &xs {
            let top = lerp(at(x0, y0), at(x1, y0), tx);
            let bottom = lerp(at(x0, y1), at(x1, y1), tx);
            data.push(lerp(top, bottom, ty));
        }
    }
    DepthMap::new(width, height, data).map_err(|e| Error::Invalid(e.to_string()))
}

/// The prediction at `width` x `height`: as it is when it has that size, else resized with
/// [`resize_bilinear`] when its aspect ratio is the same (within [`ASPECT_TOLERANCE`]).
/// Returns whether it was resized.
///
/// # Errors
/// [`Error::Invalid`] when the aspect ratios differ (a different crop or rotation: no
/// resizing could make the pixels correspond).
pub fn fit_to(
    prediction: &Prediction,
    width: u32,
    height: u32,
) -> Result<(Cow<'_, Prediction>, bool)> {
    let (pw, ph) = (prediction.width(), prediction.height());
    if (pw, ph) == (width, height) {
        return Ok((Cow::Borrowed(prediction), false));
    }
    let aspect = |w: u32, h: u32| f64::from(w) / f64::from(h.max(1));
    let (pa, ga) = (aspect(pw, ph), aspect(width, height));
    if ph == 0 || height == 0 || ((pa - ga) / ga).abs() > ASPECT_TOLERANCE {
        return Err(Error::Invalid(format!(
            "the prediction is {pw} x {ph} but the ground truth is {width} x {height}: \
             different aspect ratios, so no resize can make their pixels correspond"
        )));
    }
    let resized = match prediction {
        Prediction::Disparity(d) => Prediction::Disparity(resize_bilinear(d, width, height)?),
        Prediction::RelativeDepth(d) => {
            Prediction::RelativeDepth(resize_bilinear(d, width, height)?)
        }
        Prediction::Metric(d) => Prediction::Metric(resize_bilinear(d, width, height)?),
    };
    Ok((Cow::Owned(resized), true))
}

/// Scores one prediction (disparity or metres, any size of the same aspect ratio) against
/// metric ground truth (`0`, negative or non-finite = no measurement).
///
/// # Errors
/// - [`Error::Invalid`] when the sizes cannot be matched ([`fit_to`]), the crop does not
///   fit, the alignment does not suit the prediction (disparity needs
///   [`Alignment::Affine`]), the prediction is not finite at an evaluated pixel, or the
///   fit is degenerate (a constant prediction);
/// - [`Error::NoValidPixels`] when no ground-truth pixel inside the crop lies in the range.
pub fn evaluate(
    prediction: &Prediction,
    gt: &DepthMap<Metres>,
    protocol: &Protocol,
) -> Result<ImageEvaluation> {
    let (w, h) = (gt.width(), gt.height());
    let (prediction, resized) = fit_to(prediction, w, h)?;
    let (top, bottom, left, right) = protocol.crop.bounds(w, h)?;
    let mut indices = Vec::new();
    for y in top..bottom {
        let row = y as usize * w as usize;
        indices.extend(
            (left as usize + row..right as usize + row)
                .filter(|&i| protocol.in_range(gt.data()[i])),
        );
    }
    if indices.is_empty() {
        return Err(Error::NoValidPixels(format!(
            "no ground-truth depth in ({}, {}) m inside the crop (rows {top}..{bottom}, \
             columns {left}..{right})",
            protocol.min_depth_m,
            protocol
                .max_depth_m
                .map_or_else(|| "inf".to_string(), |m| m.to_string())
        )));
    }
    let gt_valid: Vec<f32> = indices.iter().map(|&i| gt.data()[i]).collect();
    let values = prediction.values();
    let non_finite = indices.iter().filter(|&&i| !values[i].is_finite()).count();
    if non_finite > 0 {
        return Err(Error::Invalid(format!(
            "the prediction is not finite at {non_finite} of the {} evaluated pixels",
            indices.len()
        )));
    }
    let pred_valid: Vec<f32> = indices.iter().map(|&i| values[i]).collect();
    // Upper end of the range: the protocol's, else this image's largest valid depth.
    let max_depth_m = protocol
        .max_depth_m
        .unwrap_or_else(|| gt_valid.iter().copied().fold(f32::MIN, f32::max));
    let clamp = |d: f64| d.clamp(f64::from(protocol.min_depth_m), f64::from(max_depth_m)) as f32;
    let (depth, fit) = match (prediction.as_ref(), protocol.alignment) {
        (Prediction::Disparity(_), Alignment::Affine) => {
            affine_depth(&pred_valid, &gt_valid, max_depth_m)?
        }
        (Prediction::Disparity(_), other) => {
            return Err(Error::Invalid(format!(
                "a relative model predicts disparity up to an unknown scale and shift: it needs \
                 affine alignment, not {:?}",
                other.name()
            )))
        }
        (Prediction::RelativeDepth(_), Alignment::None) => {
            return Err(Error::Invalid(
                "a relative model predicts depth up to an unknown scale: it needs median or \
                 affine alignment, not \"none\""
                    .into(),
            ))
        }
        (Prediction::Metric(_), Alignment::None) => (
            pred_valid.iter().map(|&d| clamp(f64::from(d))).collect(),
            Fit::None,
        ),
        (Prediction::Metric(_) | Prediction::RelativeDepth(_), Alignment::Median) => {
            let median_pred = align::median(pred_valid.iter().map(|&d| f64::from(d)).collect());
            let median_gt = align::median(gt_valid.iter().map(|&d| f64::from(d)).collect());
            let scale = median_gt / median_pred;
            if !(scale.is_finite() && scale > 0.0) {
                return Err(Error::Invalid(format!(
                    "median scaling is impossible: the median predicted depth is {median_pred}"
                )));
            }
            let depth = pred_valid
                .iter()
                .map(|&d| clamp(scale * f64::from(d)))
                .collect();
            (depth, Fit::Median { scale })
        }
        (Prediction::Metric(_) | Prediction::RelativeDepth(_), Alignment::Affine) => {
            // Metres to disparity; depths below the range count as the range's near end.
            let disparity: Vec<f32> = pred_valid
                .iter()
                .map(|&d| 1.0 / d.max(protocol.min_depth_m))
                .collect();
            affine_depth(&disparity, &gt_valid, max_depth_m)?
        }
    };
    Ok(ImageEvaluation {
        metrics: metrics(&depth, &gt_valid)?,
        pixels: indices.len(),
        fit,
        resized,
    })
}

/// Least-squares `s, t` of `s * disparity + t = 1 / gt`, then `1 / max(s * d + t, 1 / max)`.
fn affine_depth(disparity: &[f32], gt_m: &[f32], max_depth_m: f32) -> Result<(Vec<f32>, Fit)> {
    let affine = align::fit_least_squares(disparity, gt_m)?;
    let depth = disparity
        .iter()
        .map(|&d| capped_depth(&affine, d, max_depth_m))
        .collect();
    Ok((depth, Fit::Affine(affine)))
}

/// `1 / max(s * d + t, 1 / max_depth)`: disparity to depth, never beyond `max_depth_m`.
fn capped_depth(affine: &Affine, disparity: f32, max_depth_m: f32) -> f32 {
    let floor = 1.0 / f64::from(max_depth_m);
    (1.0 / affine.inverse_depth(disparity).max(floor)) as f32
}

/// Two pixels of one image, `(row, column)`, the first closer to the camera than the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderedPair {
    /// The closer pixel, `(row, column)`.
    pub closer: (u32, u32),
    /// The farther pixel, `(row, column)`.
    pub farther: (u32, u32),
}

/// Pairs ordered correctly out of all pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairScore {
    /// Pairs ordered correctly.
    pub correct: usize,
    /// Pairs scored.
    pub total: usize,
}

impl PairScore {
    /// Share of pairs ordered correctly (0 for no pairs).
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    /// Adds another image's counts.
    pub fn add(&mut self, other: PairScore) {
        self.correct += other.correct;
        self.total += other.total;
    }
}

/// Counts the pairs the prediction orders correctly: for disparity the closer pixel must
/// have the **larger** value, for metric depth the **smaller**. Equal or non-finite values
/// count as wrong.
///
/// ```
/// use anydepth_core::{DepthMap, Prediction};
/// use anydepth_eval::protocol::{score_pairs, OrderedPair};
///
/// let disparity = Prediction::Disparity(DepthMap::new(2, 1, vec![5.0, 1.0]).expect("2 x 1"));
/// let pair = OrderedPair { closer: (0, 0), farther: (0, 1) };
/// assert_eq!(score_pairs(&disparity, &[pair]).expect("inside").correct, 1);
/// ```
///
/// # Errors
/// [`Error::Invalid`] when a point lies outside the prediction.
pub fn score_pairs(prediction: &Prediction, pairs: &[OrderedPair]) -> Result<PairScore> {
    let (w, h) = (prediction.width(), prediction.height());
    let at = |(row, col): (u32, u32)| -> Result<f32> {
        if row >= h || col >= w {
            return Err(Error::Invalid(format!(
                "point (row {row}, column {col}) lies outside the {w} x {h} prediction"
            )));
        }
        Ok(prediction.values()[row as usize * w as usize + col as usize])
    };
    let mut score = PairScore {
        correct: 0,
        total: pairs.len(),
    };
    for pair in pairs {
        let (closer, farther) = (at(pair.closer)?, at(pair.farther)?);
        let ordered = match prediction {
            Prediction::Disparity(_) => closer > farther,
            Prediction::Metric(_) | Prediction::RelativeDepth(_) => closer < farther,
        };
        if ordered && closer.is_finite() && farther.is_finite() {
            score.correct += 1;
        }
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anydepth_core::Disparity;

    /// A 640 x 480 scene: a tilted plane from 1 to about 9 m, with holes (0 = no reading)
    /// and a few values out of the NYU range.
    fn scene() -> DepthMap<Metres> {
        let (w, h) = (640u32, 480u32);
        let data = (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    if (x * 7 + y * 13) % 29 == 0 {
                        0.0
                    } else if (x + y) % 97 == 0 {
                        12.0
                    } else {
                        1.0 + 8.0 * (x as f32 / w as f32) * (0.5 + 0.5 * y as f32 / h as f32)
                    }
                })
            })
            .collect();
        DepthMap::new(w, h, data).expect("640 x 480")
    }

    fn disparity_under(gt: &DepthMap<Metres>, scale: f64, shift: f64) -> Prediction {
        // 1 / gt = scale * d + shift  =>  d = (1 / gt - shift) / scale; holes get 0.
        let data = gt
            .data()
            .iter()
            .map(|&z| {
                if z > 0.0 {
                    ((1.0 / f64::from(z) - shift) / scale) as f32
                } else {
                    0.0
                }
            })
            .collect();
        Prediction::Disparity(DepthMap::new(gt.width(), gt.height(), data).expect("same size"))
    }

    #[test]
    fn ground_truth_against_itself_is_perfect() {
        let gt = scene();
        let metric = Prediction::Metric(gt.clone());
        let result = evaluate(
            &metric,
            &gt,
            &Protocol {
                alignment: Alignment::None,
                ..Protocol::NYU
            },
        )
        .expect("valid pixels");
        let m = result.metrics;
        assert_eq!((m.absrel, m.rmse, m.log_rmse), (0.0, 0.0, 0.0));
        assert_eq!((m.delta1, m.delta2, m.delta3), (1.0, 1.0, 1.0));
        assert!(!result.resized);
        // Inside the Eigen crop: 426 x 560 pixels less holes and out-of-range values.
        assert!(
            result.pixels < 426 * 560 && result.pixels > 400 * 500,
            "{}",
            result.pixels
        );
        // Median scaling of a perfect prediction finds scale 1.
        let median = evaluate(
            &metric,
            &gt,
            &Protocol {
                alignment: Alignment::Median,
                ..Protocol::NYU
            },
        )
        .expect("valid pixels");
        assert_eq!(median.fit, Fit::Median { scale: 1.0 });
        assert_eq!(median.metrics.absrel, 0.0);
    }

    #[test]
    fn affine_distorted_disparity_aligns_back() {
        let gt = scene();
        // f32 disparity carries ~1e-7 relative error; AbsRel stays far below 1e-5.
        for (scale, shift) in [(0.02, 0.3), (5.0, -0.05), (1e-3, 0.0)] {
            let prediction = disparity_under(&gt, scale, shift);
            let result = evaluate(&prediction, &gt, &Protocol::NYU).expect("valid pixels");
            let Fit::Affine(affine) = result.fit else {
                panic!("expected an affine fit, got {:?}", result.fit);
            };
            assert!((affine.scale / scale - 1.0).abs() < 1e-4, "{affine:?}");
            assert!((affine.shift - shift).abs() < 1e-4, "{affine:?}");
            let m = result.metrics;
            assert!(
                m.absrel < 1e-5 && m.rmse < 1e-4 && m.log_rmse < 1e-5,
                "{m:?}"
            );
            assert_eq!(m.delta1, 1.0);
        }
        // A metric prediction under an affine distortion of its inverse aligns back too.
        let distorted: Vec<f32> = gt
            .data()
            .iter()
            .map(|&z| if z > 0.0 { 1.0 / (0.5 / z + 0.1) } else { 0.0 })
            .collect();
        let metric = Prediction::Metric(DepthMap::new(640, 480, distorted).expect("same size"));
        let result = evaluate(&metric, &gt, &Protocol::NYU).expect("valid pixels");
        assert!(result.metrics.absrel < 1e-5, "{:?}", result.metrics);
    }

    #[test]
    fn hand_computed_example() {
        let gt = DepthMap::<Metres>::new(4, 1, vec![1.0, 2.0, 4.0, 5.0]).expect("4 x 1");
        let prediction =
            Prediction::Metric(DepthMap::new(4, 1, vec![1.0, 2.5, 2.0, 5.0]).expect("4 x 1"));
        let protocol = Protocol {
            min_depth_m: 1e-3,
            max_depth_m: Some(10.0),
            crop: Crop::None,
            alignment: Alignment::None,
        };
        let m = evaluate(&prediction, &gt, &protocol)
            .expect("valid")
            .metrics;
        // |d - gt| / gt = 0, 0.25, 0.5, 0; ratios 1, 1.25, 2, 1 (1.25 is not < 1.25).
        assert_eq!(m.absrel, 0.1875);
        assert_eq!((m.delta1, m.delta2, m.delta3), (0.5, 0.75, 0.75));
        // Squared errors 0, 0.25, 4, 0.
        assert!((m.rmse - 1.0625f64.sqrt()).abs() < 1e-12);
        let log_mse = (1.25f64.ln().powi(2) + 0.5f64.ln().powi(2)) / 4.0;
        assert!((m.log_rmse - log_mse.sqrt()).abs() < 1e-12, "{m:?}");
        // Predictions beyond the range are clamped to it before scoring.
        let far = Prediction::Metric(DepthMap::new(4, 1, vec![1.0, 2.0, 4.0, 50.0]).expect("4"));
        let m = evaluate(&far, &gt, &protocol).expect("valid").metrics;
        assert!((m.absrel - 0.25).abs() < 1e-12, "{m:?}"); // (10 - 5) / 5 / 4
    }

    #[test]
    fn aggregation_is_the_mean_of_per_image_metrics() {
        let a = Metrics {
            absrel: 0.1,
            delta1: 1.0,
            rmse: 2.0,
            ..Metrics::default()
        };
        let b = Metrics {
            absrel: 0.3,
            delta1: 0.5,
            rmse: 4.0,
            ..Metrics::default()
        };
        let m = mean(&[a, b]).expect("two images");
        assert!((m.absrel - 0.2).abs() < 1e-12);
        assert_eq!((m.delta1, m.rmse), (0.75, 3.0));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn disparity_is_capped_at_the_far_end_of_the_range() {
        // Points 1, 2 and 4 m fit exactly; the prediction of the last pixel (outside the
        // range, not fitted) maps to negative inverse depth and is capped at 10 m.
        let gt = DepthMap::<Metres>::new(4, 1, vec![1.0, 2.0, 4.0, 0.0]).expect("4 x 1");
        let d = [1.0f32, 0.5, 0.25, -3.0];
        let prediction = Prediction::Disparity(DepthMap::new(4, 1, d.to_vec()).expect("4 x 1"));
        let protocol = Protocol {
            crop: Crop::None,
            ..Protocol::NYU
        };
        let result = evaluate(&prediction, &gt, &protocol).expect("valid");
        assert_eq!(result.pixels, 3);
        assert!(result.metrics.absrel < 1e-6);
        let Fit::Affine(affine) = result.fit else {
            panic!("expected an affine fit, got {:?}", result.fit);
        };
        // Negative inverse depth (behind the camera) and the far end itself become 10 m.
        assert!((capped_depth(&affine, d[3], 10.0) - 10.0).abs() < 1e-4);
        assert!((capped_depth(&affine, 0.1, 10.0) - 10.0).abs() < 1e-4);
        assert!((capped_depth(&affine, 0.2, 10.0) - 5.0).abs() < 1e-4);
    }

    #[test]
    fn crop_names_round_trip() {
        for name in CropName::ALL {
            assert_eq!(name.crop().named(), Some(name));
            assert_eq!(name.crop().name(), name.name());
        }
        let custom = Crop::Pixels {
            top: 0,
            bottom: 1,
            left: 0,
            right: 1,
        };
        assert_eq!((custom.named(), custom.name()), (None, "custom"));
    }

    #[cfg(feature = "clap")]
    #[test]
    fn crop_names_are_the_command_line_values() {
        use clap::ValueEnum;
        assert_eq!(CropName::value_variants(), CropName::ALL);
        for name in CropName::ALL {
            let value = name.to_possible_value().expect("not skipped");
            assert_eq!(value.get_name(), name.name());
        }
    }

    #[test]
    fn crops_and_ranges_select_pixels() {
        assert_eq!(
            Crop::NYU_EIGEN.bounds(640, 480).expect("fits"),
            (45, 471, 41, 601)
        );
        assert!(Crop::NYU_EIGEN.bounds(320, 240).is_err());
        // KITTI's 1242 x 375 frames, as monodepth's `int(0.40810811 * h)`.
        assert_eq!(
            Crop::KITTI_GARG.bounds(1242, 375).expect("fits"),
            (153, 371, 44, 1197)
        );
        assert_eq!(
            Crop::KITTI_EIGEN.bounds(1242, 375).expect("fits"),
            (124, 342, 44, 1197)
        );
        assert_eq!(Crop::None.bounds(3, 2).expect("fits"), (0, 2, 0, 3));

        // Only ground truth strictly inside (min, max) counts.
        let gt = DepthMap::<Metres>::new(5, 1, vec![0.0, 0.001, 5.0, 10.0, f32::NAN]).expect("5");
        let prediction = Prediction::Metric(gt.clone());
        let protocol = Protocol {
            crop: Crop::None,
            alignment: Alignment::None,
            ..Protocol::NYU
        };
        assert_eq!(
            evaluate(&prediction, &gt, &protocol).expect("one").pixels,
            1
        );
        let empty = DepthMap::<Metres>::new(2, 1, vec![0.0, 11.0]).expect("2 x 1");
        let err = evaluate(&Prediction::Metric(empty.clone()), &empty, &protocol);
        assert!(matches!(err, Err(Error::NoValidPixels(_))), "{err:?}");
    }

    #[test]
    fn wrong_alignment_sizes_and_non_finite_predictions_are_errors() {
        let gt = scene();
        let disparity = disparity_under(&gt, 1.0, 0.0);
        for alignment in [Alignment::None, Alignment::Median] {
            let protocol = Protocol {
                alignment,
                ..Protocol::NYU
            };
            let err = evaluate(&disparity, &gt, &protocol).expect_err("disparity needs affine");
            assert!(err.to_string().contains("affine alignment"), "{err}");
        }
        let tall = Prediction::Metric(DepthMap::new(480, 640, vec![1.0; 480 * 640]).expect("s"));
        let err = evaluate(&tall, &gt, &Protocol::NYU).expect_err("aspect differs");
        assert!(err.to_string().contains("aspect"), "{err}");
        let mut holes = gt.data().to_vec();
        holes[240 * 640 + 320] = f32::NAN;
        let holes = Prediction::Metric(DepthMap::new(640, 480, holes).expect("same size"));
        let err = evaluate(&holes, &gt, &Protocol::NYU).expect_err("NaN inside");
        assert!(err.to_string().contains("not finite at 1 of"), "{err}");
        let flat = Prediction::Disparity(DepthMap::new(640, 480, vec![0.5; 640 * 480]).expect("s"));
        assert!(evaluate(&flat, &gt, &Protocol::NYU).is_err());
    }

    #[test]
    fn half_resolution_predictions_are_resized() {
        // A horizontal ramp is linear, so bilinear resizing reproduces it inside the
        // image (the border columns are clamped).
        let ramp = |w: u32, h: u32| {
            let data = (0..h)
                .flat_map(|_| (0..w).map(move |x| 1.0 + (x as f32 + 0.5) / w as f32))
                .collect();
            DepthMap::<Metres>::new(w, h, data).expect("sizes")
        };
        let (small, full) = (ramp(320, 240), ramp(640, 480));
        let resized = resize_bilinear(&small, 640, 480).expect("resizes");
        for x in 1..639 {
            assert!((resized.get(x, 100) - full.get(x, 100)).abs() < 1e-5, "{x}");
        }
        let result = evaluate(
            &Prediction::Metric(small),
            &full,
            &Protocol {
                alignment: Alignment::None,
                ..Protocol::NYU
            },
        )
        .expect("resizable");
        assert!(result.resized && result.metrics.absrel < 1e-6, "{result:?}");
        // Same-size maps come back unchanged.
        let same = resize_bilinear(&full, 640, 480).expect("resizes");
        assert_eq!(same, full);
        let d = DepthMap::<Disparity>::new(2, 2, vec![0.0, 1.0, 2.0, 3.0]).expect("2 x 2");
        assert!(resize_bilinear(&d, 0, 3).is_err());
    }

    #[test]
    fn pairs_with_a_known_number_ordered_wrongly() {
        // Depth grows to the right: column 0 is closest.
        let depth: Vec<f32> = (0..10)
            .flat_map(|_| (0..10).map(|x| 1.0 + x as f32))
            .collect();
        let metric = Prediction::Metric(DepthMap::new(10, 10, depth.clone()).expect("10 x 10"));
        let disparity = Prediction::Disparity(
            DepthMap::new(10, 10, depth.iter().map(|z| 1.0 / z).collect()).expect("10 x 10"),
        );
        // 20 pairs: the first 13 labelled right, the other 7 the wrong way round, one of
        // them a tie (same column), which counts as wrong whatever the label.
        let mut pairs: Vec<OrderedPair> = (0..13)
            .map(|i| OrderedPair {
                closer: (i % 10, i % 9),
                farther: ((i * 3) % 10, i % 9 + 1),
            })
            .collect();
        pairs.extend((0..6).map(|i| OrderedPair {
            closer: (i, 9),
            farther: (i + 1, 2 + i),
        }));
        pairs.push(OrderedPair {
            closer: (0, 4),
            farther: (9, 4),
        });
        for prediction in [&metric, &disparity] {
            let score = score_pairs(prediction, &pairs).expect("inside");
            assert_eq!(
                score,
                PairScore {
                    correct: 13,
                    total: 20
                }
            );
            assert!((score.accuracy() - 0.65).abs() < 1e-12);
        }
        let outside = [OrderedPair {
            closer: (10, 0),
            farther: (0, 0),
        }];
        let err = score_pairs(&metric, &outside).expect_err("row 10 of 10");
        assert!(err.to_string().contains("row 10"), "{err}");
    }
}
