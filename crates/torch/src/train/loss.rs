//! Training losses, on `(b, h, w)` predictions with a boolean `(b, h, w)` mask of the
//! pixels that count.
//!
//! - [`silog`]: the scale-invariant log loss of the official metric fine-tuning
//!   (`metric_depth/util/loss.py`).
//! - [`affine_invariant`]: the loss of the Depth Anything papers for relative models. Each
//!   image's prediction and target are shifted by their median and divided by their mean
//!   absolute deviation from it, then compared by mean absolute difference (optionally
//!   ignoring each image's largest per-pixel losses), plus MiDaS's multi-scale
//!   gradient-matching term on the same normalised maps.
//! - [`feature_alignment`]: the student's encoder features against a frozen encoder's, by
//!   cosine similarity, pixels already above a margin left alone.
//!
//! Every reduction is over the pixels of the whole batch ("batch-based" in MiDaS's code).

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Smallest mean absolute deviation a normalised map is divided by.
const MIN_SCALE: f64 = 1e-6;

/// The scale-invariant log loss `sqrt(mean(g²) − λ·mean(g)²)`, `g = log(target) −
/// log(pred)`, over the pixels of `mask`; the official metric fine-tuning uses λ = 0.5.
///
/// # Errors
/// When the shapes differ or `mask` selects no pixel.
pub fn silog(pred: &Tensor, target: &Tensor, mask: &Tensor, lambda: f64) -> Result<Tensor> {
    check_shapes(pred, target, mask)?;
    let g = target.masked_select(mask).log() - pred.masked_select(mask).log();
    if g.numel() == 0 {
        return Err(Error::Invalid("no valid pixel in the batch".into()));
    }
    Ok((g.square().mean(Kind::Float) - lambda * g.mean(Kind::Float).square()).sqrt())
}

/// How [`affine_invariant`] weighs its terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineInvariant {
    /// The share of each image's largest per-pixel losses that is ignored (0.1 on
    /// pseudo-labels, 0 on ground truth).
    pub trim: f64,
    /// The weight of the gradient-matching term (0.5 in MiDaS and Depth Anything).
    pub gradient_weight: f64,
    /// Its number of scales, each half the resolution of the one before (4).
    pub gradient_scales: usize,
}

impl Default for AffineInvariant {
    fn default() -> Self {
        Self {
            trim: 0.0,
            gradient_weight: 0.5,
            gradient_scales: 4,
        }
    }
}

/// The affine-invariant loss of `pred` against `target` (both disparity) over `mask`.
///
/// Per image, both maps become `(d − median(d)) / mean|d − median(d)|` over the image's
/// valid pixels (the lower median, as `torch.median`; the deviation at least 1e-6). The
/// data term is the mean absolute difference over the batch's valid pixels; with a
/// `trim`, each image keeps only its `⌊n·(1 − trim)⌋` smallest differences. The gradient
/// term is MiDaS's, on the same normalised maps.
///
/// # Errors
/// When the shapes differ or no image has a valid pixel (images without one are left
/// out).
pub fn affine_invariant(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    weights: &AffineInvariant,
) -> Result<Tensor> {
    check_shapes(pred, target, mask)?;
    let pred_n = normalise(pred, mask);
    let target_n = normalise(target, mask);
    let mut kept_sum = Vec::new();
    let mut kept_count = 0i64;
    for i in 0..pred.size()[0] {
        let valid = mask.get(i);
        let diff = (pred_n.get(i) - target_n.get(i))
            .masked_select(&valid)
            .abs();
        let n = diff.numel() as i64;
        let keep = ((n as f64) * (1.0 - weights.trim)).floor() as i64;
        if keep <= 0 {
            continue;
        }
        let kept = if keep < n {
            diff.sort(0, false).0.narrow(0, 0, keep)
        } else {
            diff
        };
        kept_sum.push(kept.sum(Kind::Float));
        kept_count += keep;
    }
    if kept_count == 0 {
        return Err(Error::Invalid("no valid pixel in the batch".into()));
    }
    let data = Tensor::stack(&kept_sum, 0).sum(Kind::Float) / kept_count as f64;
    if weights.gradient_weight == 0.0 || weights.gradient_scales == 0 {
        return Ok(data);
    }
    let gradient = gradient_matching(&pred_n, &target_n, mask, weights.gradient_scales);
    Ok(data + weights.gradient_weight * gradient)
}

/// Each image shifted by its median and divided by its mean absolute deviation, over
/// its valid pixels; gradients flow through both. An image without a valid pixel is left
/// as zeros (its mask keeps it out of every term).
fn normalise(x: &Tensor, mask: &Tensor) -> Tensor {
    let images: Vec<Tensor> = (0..x.size()[0])
        .map(|i| {
            let image = x.get(i);
            let valid = image.masked_select(&mask.get(i));
            if valid.numel() == 0 {
                return image.zeros_like();
            }
            let median = valid.median();
            let scale = (&valid - &median)
                .abs()
                .mean(Kind::Float)
                .clamp_min(MIN_SCALE);
            (image - median) / scale
        })
        .collect();
    Tensor::stack(&images, 0)
}

/// MiDaS's gradient-matching term: at each scale (every `2^s`-th pixel), the absolute
/// horizontal and vertical differences of `pred − target` between neighbouring valid
/// pixels, summed over the batch and divided by its number of valid pixels at that
/// scale; the scales' terms are added.
fn gradient_matching(pred: &Tensor, target: &Tensor, mask: &Tensor, scales: usize) -> Tensor {
    let mut total = Tensor::zeros([], (Kind::Float, pred.device()));
    for scale in 0..scales {
        let step = 1i64 << scale;
        let sub = |t: &Tensor| {
            t.slice(1, 0, None::<i64>, step)
                .slice(2, 0, None::<i64>, step)
        };
        let mask = sub(mask).to_kind(Kind::Float);
        let diff = (sub(pred) - sub(target)) * &mask;
        let (h, w) = (diff.size()[1], diff.size()[2]);
        let mut image_sum = Tensor::zeros([], (Kind::Float, pred.device()));
        if w > 1 {
            let grad_x = (diff.narrow(2, 1, w - 1) - diff.narrow(2, 0, w - 1)).abs();
            let mask_x = mask.narrow(2, 1, w - 1) * mask.narrow(2, 0, w - 1);
            image_sum += (grad_x * mask_x).sum(Kind::Float);
        }
        if h > 1 {
            let grad_y = (diff.narrow(1, 1, h - 1) - diff.narrow(1, 0, h - 1)).abs();
            let mask_y = mask.narrow(1, 1, h - 1) * mask.narrow(1, 0, h - 1);
            image_sum += (grad_y * mask_y).sum(Kind::Float);
        }
        let count = mask.sum(Kind::Float);
        if count.double_value(&[]) > 0.0 {
            total += image_sum / count;
        }
    }
    total
}

/// The feature-alignment loss: `1 − cos(student, frozen)` per token, averaged over the
/// tokens whose similarity is still below `margin` (tokens already above it are not
/// pushed further); zero when every token is above it.
///
/// Both are `(b, n, c)` token features of the same shape.
///
/// # Errors
/// When the shapes differ.
pub fn feature_alignment(student: &Tensor, frozen: &Tensor, margin: f64) -> Result<Tensor> {
    if student.size() != frozen.size() {
        return Err(Error::Invalid(format!(
            "student features {:?} and frozen features {:?} differ in shape",
            student.size(),
            frozen.size()
        )));
    }
    let similarity = Tensor::cosine_similarity(student, &frozen.detach(), -1, 1e-8);
    let below = similarity.lt(margin);
    let count = below.sum(Kind::Int64).int64_value(&[]);
    if count == 0 {
        return Ok((similarity * 0.0).sum(Kind::Float));
    }
    let kept: Tensor = 1.0 - similarity.masked_select(&below);
    Ok(kept.mean(Kind::Float))
}

fn check_shapes(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<()> {
    let shape = pred.size();
    if shape.len() != 3 || target.size() != shape || mask.size() != shape {
        return Err(Error::Invalid(format!(
            "prediction {:?}, target {:?} and mask {:?} must be the same (b, h, w)",
            pred.size(),
            target.size(),
            mask.size()
        )));
    }
    if mask.kind() != Kind::Bool {
        return Err(Error::Invalid(format!(
            "the mask must be boolean, not {:?}",
            mask.kind()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32], shape: [i64; 3]) -> Tensor {
        Tensor::from_slice(values).reshape(shape)
    }

    #[test]
    fn silog_of_a_scaled_prediction_is_zero_with_lambda_one() {
        let pred = t(&[1.0, 2.0, 4.0, 8.0], [1, 2, 2]);
        let target = &pred * 3.0;
        let mask = pred.gt(0.0);
        let loss = silog(&pred, &target, &mask, 1.0).expect("loss");
        assert!(loss.double_value(&[]).abs() < 1e-3, "{loss}");
        let loss = silog(&pred, &target, &mask, 0.5).expect("loss");
        let expected = (3f64.ln().powi(2) * 0.5).sqrt();
        assert!((loss.double_value(&[]) - expected).abs() < 1e-5);
    }

    #[test]
    fn affine_invariant_ignores_scale_and_shift() {
        let pred = Tensor::arange(64, (Kind::Float, tch::Device::Cpu))
            .reshape([1, 8, 8])
            .sin();
        let target = &pred * 2.5 + 7.0;
        let mask = pred.gt(-2.0);
        let loss =
            affine_invariant(&pred, &target, &mask, &AffineInvariant::default()).expect("loss");
        assert!(loss.double_value(&[]).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn trimming_drops_the_largest_losses() {
        let pred = t(
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            [1, 1, 10],
        );
        let target = pred.copy();
        let _ = target.get(0).get(0).get(9).fill_(1000.0);
        let mask = pred.ge(0.0);
        let no_gradient = AffineInvariant {
            trim: 0.0,
            gradient_weight: 0.0,
            gradient_scales: 0,
        };
        let full = affine_invariant(&pred, &target, &mask, &no_gradient).expect("loss");
        let trimmed = affine_invariant(
            &pred,
            &target,
            &mask,
            &AffineInvariant {
                trim: 0.1,
                ..no_gradient
            },
        )
        .expect("loss");
        assert!(trimmed.double_value(&[]) < full.double_value(&[]));
    }

    #[test]
    fn an_empty_mask_is_an_error() {
        let pred = t(&[1.0, 2.0], [1, 1, 2]);
        let mask = pred.gt(10.0);
        assert!(silog(&pred, &pred, &mask, 0.5).is_err());
        assert!(affine_invariant(&pred, &pred, &mask, &AffineInvariant::default()).is_err());
    }
}
