//! Turning a photo into network input, exactly as the official `image2tensor` does.
//!
//! The official code (`depth_anything_v2/dpt.py`) reads the photo with `cv2.imread`,
//! divides the 8-bit RGB values by `255.0` (giving float64), resizes with
//! `cv2.resize(..., interpolation=cv2.INTER_CUBIC)` so that the shorter side becomes
//! `input_size` and both sides are multiples of 14, subtracts the ImageNet mean, divides
//! by the ImageNet standard deviation and casts to float32 in NCHW order.
//!
//! This module reproduces every step in plain Rust, including OpenCV's cubic kernel
//! (Keys, a = -0.75, f32 coefficients, replicated borders, no antialiasing when shrinking)
//! and numpy's round-half-to-even when choosing the size, so its output matches the
//! official tensor to float32 rounding (checked by `tests/preprocess_parity.rs`).
//!
//! ```
//! use anydepth_core::RgbImage;
//! use anydepth_torch::preprocess::{preprocess, target_size, DEFAULT_INPUT_SIZE};
//!
//! assert_eq!(target_size(1920, 1080, DEFAULT_INPUT_SIZE), (924, 518));
//! let photo = RgbImage::new(64, 48, vec![0.5; 64 * 48 * 3]).expect("64 x 48 x 3 values");
//! let input = preprocess(&photo, DEFAULT_INPUT_SIZE).expect("a valid image");
//! assert_eq!((input.width, input.height), (686, 518));
//! assert_eq!(input.data.len(), 3 * 686 * 518);
//! ```

use anydepth_core::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The official default of `input_size`: the shorter side of the network input.
pub const DEFAULT_INPUT_SIZE: u32 = 518;

/// Both sides of the network input are multiples of this (the ViT patch size).
pub const MULTIPLE_OF: u32 = 14;

/// ImageNet mean of R, G, B, subtracted after scaling to `[0, 1]`.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];

/// ImageNet standard deviation of R, G, B, divided by after subtracting the mean.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The largest resized image (in pixels) [`preprocess`] agrees to make, so that absurd
/// aspect ratios fail with an error instead of exhausting memory (2^26, e.g. 9464 x 7098).
pub const MAX_TARGET_PIXELS: u64 = 1 << 26;

/// A photo ready for the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessed {
    /// Width of the network input, a multiple of [`MULTIPLE_OF`].
    pub width: u32,
    /// Height of the network input, a multiple of [`MULTIPLE_OF`].
    pub height: u32,
    /// `3 * height * width` normalised values, channel-major (CHW; R plane first).
    pub data: Vec<f32>,
}

/// The size `(width, height)` the official code resizes a `width` x `height` photo to.
///
/// Reproduces `Resize.get_size` with `keep_aspect_ratio=True`,
/// `resize_method='lower_bound'` and `ensure_multiple_of=14`: both sides are scaled by
/// `max(input_size / width, input_size / height)`, rounded to a multiple of 14 with
/// round-half-to-even, and rounded up instead where that would fall below `input_size`.
/// So the shorter side becomes `input_size` rounded up to a multiple of 14.
///
/// Degenerate inputs (a zero side) give a zero side; [`preprocess`] rejects them first.
pub fn target_size(width: u32, height: u32, input_size: u32) -> (u32, u32) {
    let (width, height, size) = (f64::from(width), f64::from(height), f64::from(input_size));
    let mut scale_height = size / height;
    let mut scale_width = size / width;
    if scale_width > scale_height {
        scale_height = scale_width;
    } else {
        scale_width = scale_height;
    }
    let constrain = |x: f64| -> u32 {
        let m = f64::from(MULTIPLE_OF);
        let mut y = (x / m).round_ties_even() * m;
        if y < size {
            y = (x / m).ceil() * m;
        }
        // Saturating; sizes beyond u32 are rejected by `preprocess`.
        y as u32
    };
    (
        constrain(scale_width * width),
        constrain(scale_height * height),
    )
}

/// Resizes with OpenCV's `INTER_CUBIC` on float64 data, returning interleaved RGB
/// (`height * width * 3` values, row-major).
///
/// The input values are first widened to f64 as the reference would see them (see
/// [`preprocess`]). Same size in and out gives the input back unchanged, as
/// `cv2.resize` does.
///
/// # Errors
/// [`Error::Invalid`] when either image has a zero side or `img.data` does not hold
/// `width * height * 3` values.
///
/// # Performance
/// Separable, one pass over the output rows with a ring of four horizontally resized
/// source rows, so only source rows that are needed are touched.
pub fn resize_cubic(img: &RgbImage, width: u32, height: u32) -> Result<Vec<f64>> {
    check_image(img)?;
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    resize_cubic_rows(img, width, height, |_, row| out.extend_from_slice(row))?;
    Ok(out)
}

/// The official `image2tensor` for one photo: resize to [`target_size`] with cubic
/// interpolation, normalise with the ImageNet statistics, lay out as CHW float32.
///
/// Values that are exactly `k as f32 / 255.0` for an integer `k` (what
/// `anydepth_core::load_image` makes of 8-bit files) are treated as the 8-bit sample
/// `k`, i.e. as the float64 `k / 255.0` the reference computes; other values are used
/// as they are.
///
/// # Errors
/// [`Error::Invalid`] when `input_size < 14`, the image has a zero side or inconsistent
/// data, or the resized image would exceed [`MAX_TARGET_PIXELS`].
///
/// # Performance
/// About 18 ms for a 1920 x 1080 photo at 518 (release build, one core of a shared
/// 2-core machine).
pub fn preprocess(img: &RgbImage, input_size: u32) -> Result<Preprocessed> {
    let (width, height) = checked_target_size(img, input_size)?;
    let plane = width as usize * height as usize;
    let mut data = vec![0f32; 3 * plane];
    resize_cubic_rows(img, width, height, |y, row| {
        let start = y * width as usize;
        for (c, (mean, std)) in IMAGENET_MEAN.iter().zip(IMAGENET_STD).enumerate() {
            let dst = &mut data[c * plane + start..c * plane + start + width as usize];
            for (d, px) in dst.iter_mut().zip(row.chunks_exact(3)) {
                // float64 arithmetic, then the cast, as numpy does.
                *d = ((px[c] - mean) / std) as f32;
            }
        }
    })?;
    Ok(Preprocessed {
        width,
        height,
        data,
    })
}

/// [`target_size`] of a valid image, refusing sizes [`preprocess`] refuses.
///
/// # Errors
/// As [`preprocess`].
pub fn checked_target_size(img: &RgbImage, input_size: u32) -> Result<(u32, u32)> {
    if input_size < MULTIPLE_OF {
        return Err(Error::Invalid(format!(
            "input size must be at least {MULTIPLE_OF}, got {input_size}"
        )));
    }
    check_image(img)?;
    let (width, height) = target_size(img.width, img.height, input_size);
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_TARGET_PIXELS || width == u32::MAX || height == u32::MAX {
        return Err(Error::Invalid(format!(
            "a {} x {} image at input size {input_size} would be resized to {width} x \
             {height}, more than {MAX_TARGET_PIXELS} pixels",
            img.width, img.height
        )));
    }
    Ok((width, height))
}

/// Uploads a photo to `device` (from pinned host memory on a GPU, so that the copy does
/// not block the host) and returns it there as HWC, in the kind it travelled as
/// ([`in_unit_range`] makes float32 in `[0, 1]` of it).
///
/// A photo of 8-bit samples (every value `k / 255` for an integer `k`, as
/// `anydepth_core::load_image` makes of 8-bit files) travels as bytes, a quarter of the
/// float32 size; any other photo travels as float32.
pub fn upload(img: &RgbImage, device: Device) -> Tensor {
    let shape = [i64::from(img.height), i64::from(img.width), 3];
    let host = match as_bytes(&img.data) {
        Some(bytes) => Tensor::from_slice(&bytes).view(shape),
        None => Tensor::from_slice(&img.data).view(shape),
    };
    if device.is_cuda() {
        // `_pin_memory`: `pin_memory(device)`, all tch offers, warns that the device
        // argument is deprecated.
        host.internal_pin_memory(device)
            .to_device_(device, host.kind(), true, false)
    } else {
        host
    }
}

/// An [`upload`]ed photo as float32 in `[0, 1]`: bytes are divided by 255 where the photo
/// is (equal to the host's values up to float32 rounding: a GPU may multiply by 1/255
/// instead).
pub fn in_unit_range(photo: &Tensor) -> Tensor {
    if photo.kind() == Kind::Uint8 {
        photo.to_kind(Kind::Float) / 255.0
    } else {
        photo.shallow_clone()
    }
}

/// The 8-bit samples `values` hold, when every value is exactly `k as f32 / 255.0`.
fn as_bytes(values: &[f32]) -> Option<Vec<u8>> {
    values
        .iter()
        .map(|&v| {
            let k = (v * 255.0).round();
            ((0.0..=255.0).contains(&k) && k / 255.0 == v).then_some(k as u8)
        })
        .collect()
}

/// The network input for photos already on the device ([`upload`]), made there: brought to
/// `[0, 1]` ([`in_unit_range`]), resized to `(width, height)` with LibTorch's bicubic
/// interpolation (a = -0.75, half-pixel centres, replicated borders, as OpenCV's
/// `INTER_CUBIC` but in float32 and with LibTorch's rounding of coordinates), then
/// normalised with the ImageNet statistics, as a `N x 3 x height x width` float32 batch.
pub fn preprocess_on_device(photos: &[Tensor], (width, height): (u32, u32)) -> Tensor {
    let device = photos.first().map_or(Device::Cpu, Tensor::device);
    let size = [i64::from(height), i64::from(width)];
    let resized: Vec<Tensor> = photos
        .iter()
        .map(|photo| {
            let nchw = in_unit_range(photo).permute([2, 0, 1]).unsqueeze(0);
            if nchw.size()[2..] == size {
                nchw
            } else {
                nchw.upsample_bicubic2d(size, /* align_corners= */ false, None, None)
            }
        })
        .collect();
    let mean = Tensor::from_slice(&IMAGENET_MEAN.map(|m| m as f32))
        .view([1, 3, 1, 1])
        .to_device(device);
    let std = Tensor::from_slice(&IMAGENET_STD.map(|s| s as f32))
        .view([1, 3, 1, 1])
        .to_device(device);
    (Tensor::cat(&resized, 0) - mean) / std
}

fn check_image(img: &RgbImage) -> Result<()> {
    if img.width == 0 || img.height == 0 {
        return Err(Error::Invalid(format!(
            "cannot preprocess an empty image ({} x {})",
            img.width, img.height
        )));
    }
    let expected = img.width as usize * img.height as usize * 3;
    if img.data.len() != expected {
        return Err(Error::Invalid(format!(
            "image data holds {} values, expected {expected} for {} x {} RGB",
            img.data.len(),
            img.width,
            img.height
        )));
    }
    Ok(())
}

/// `k / 255.0` in f64 and `k as f32 / 255.0` in f32 for every 8-bit sample `k`.
const EIGHT_BIT: [(f64, f32); 256] = {
    let mut table = [(0.0, 0.0); 256];
    let mut k = 0;
    while k < 256 {
        table[k] = (k as f64 / 255.0, k as f32 / 255.0);
        k += 1;
    }
    table
};

/// The float64 the reference would hold for a sample: `k / 255.0` when the f32 is the
/// 8-bit sample `k` divided by 255, the value itself otherwise.
fn widen(v: f32) -> f64 {
    // The nearest k for v >= 0 (the cast saturates, NaN gives 0); `round` would be a
    // libm call on baseline x86-64. Any wrong guess fails the comparison below.
    let k = (v * 255.0 + 0.5) as usize;
    match EIGHT_BIT.get(k) {
        Some(&(wide, narrow)) if narrow == v => wide,
        _ => f64::from(v),
    }
}

/// OpenCV's `interpolateCubic`: the four Keys weights (a = -0.75) for a fractional
/// offset, in f32 and in OpenCV's order of operations.
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    let w3 = 1.0 - w0 - w1 - w2;
    [w0, w1, w2, w3]
}

/// For each destination index, the four source indices (clamped: replicated border)
/// and their weights, computed as `cv::resize` does: `src = (dst + 0.5) * scale - 0.5`
/// in double, cast to float, split into floor and fraction.
fn taps(src_len: u32, dst_len: u32) -> Vec<([usize; 4], [f64; 4])> {
    let scale = 1.0 / (f64::from(dst_len) / f64::from(src_len));
    let last = i64::from(src_len) - 1;
    (0..dst_len)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let weights = cubic_weights(f - s);
            let s = s as i64;
            let index = |k: i64| (s - 1 + k).clamp(0, last) as usize;
            (
                [index(0), index(1), index(2), index(3)],
                weights.map(f64::from),
            )
        })
        .collect()
}

/// Cubic resize of `img` (already validated) to `width` x `height`, handing each output
/// row (interleaved RGB, f64) to `emit` in order.
fn resize_cubic_rows(
    img: &RgbImage,
    width: u32,
    height: u32,
    mut emit: impl FnMut(usize, &[f64]),
) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize to an empty image ({width} x {height})"
        )));
    }
    let src_row_len = img.width as usize * 3;
    let dst_row_len = width as usize * 3;
    let src_row = |y: usize| &img.data[y * src_row_len..(y + 1) * src_row_len];

    if (width, height) == (img.width, img.height) {
        // cv2.resize copies when the size does not change.
        let mut row = vec![0f64; dst_row_len];
        for y in 0..height as usize {
            for (d, &s) in row.iter_mut().zip(src_row(y)) {
                *d = widen(s);
            }
            emit(y, &row);
        }
        return Ok(());
    }

    let x_taps = taps(img.width, width);
    let y_taps = taps(img.height, height);
    // Source row widened to f64, and a ring of horizontally resized rows.
    let mut wide = vec![0f64; src_row_len];
    let mut ring: [(Option<usize>, Vec<f64>); 4] =
        std::array::from_fn(|_| (None, vec![0f64; dst_row_len]));
    let mut out = vec![0f64; dst_row_len];

    for (dy, (rows, beta)) in y_taps.iter().enumerate() {
        let mut slots = [0usize; 4];
        for (k, &sy) in rows.iter().enumerate() {
            slots[k] = match ring.iter().position(|(row, _)| *row == Some(sy)) {
                Some(slot) => slot,
                None => {
                    // Rows are needed in increasing order: replace one that this output
                    // row does not use (there are four slots and at most four rows).
                    let slot = ring
                        .iter()
                        .position(|(row, _)| row.is_none_or(|r| !rows.contains(&r)))
                        .unwrap_or(k);
                    for (d, &s) in wide.iter_mut().zip(src_row(sy)) {
                        *d = widen(s);
                    }
                    resize_row(&wide, &x_taps, &mut ring[slot].1);
                    ring[slot].0 = Some(sy);
                    slot
                }
            };
        }
        let [s0, s1, s2, s3] = slots.map(|slot| ring[slot].1.as_slice());
        let [b0, b1, b2, b3] = *beta;
        for (i, o) in out.iter_mut().enumerate() {
            *o = s0[i] * b0 + s1[i] * b1 + s2[i] * b2 + s3[i] * b3;
        }
        emit(dy, &out);
    }
    Ok(())
}

/// Horizontal pass of one interleaved RGB row.
fn resize_row(src: &[f64], x_taps: &[([usize; 4], [f64; 4])], dst: &mut [f64]) {
    for (px, (cols, alpha)) in dst.chunks_exact_mut(3).zip(x_taps) {
        let [c0, c1, c2, c3] = cols.map(|c| c * 3);
        let [a0, a1, a2, a3] = *alpha;
        for (ch, v) in px.iter_mut().enumerate() {
            *v = src[c0 + ch] * a0 + src[c1 + ch] * a1 + src[c2 + ch] * a2 + src[c3 + ch] * a3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_photos_travel_as_bytes_and_arrive_unchanged() {
        let eight_bit: Vec<f32> = (0..=255u8).map(|k| f32::from(k) / 255.0).collect();
        assert_eq!(as_bytes(&eight_bit), Some((0..=255u8).collect()));
        assert_eq!(as_bytes(&[0.5]), None, "0.5 is no 8-bit sample");
        assert_eq!(as_bytes(&[1.5]), None, "out of range");

        for data in [eight_bit, vec![0.5; 256 * 3]] {
            let photo = RgbImage::new(256, 1, data.repeat(3)[..256 * 3].to_vec()).expect("photo");
            let uploaded = in_unit_range(&upload(&photo, Device::Cpu));
            assert_eq!(uploaded.kind(), Kind::Float);
            assert_eq!(uploaded.size(), [1, 256, 3]);
            let back = Vec::<f32>::try_from(uploaded.reshape([-1])).expect("f32");
            assert_eq!(back, photo.data);
        }
    }

    fn image(width: u32, height: u32, f: impl Fn(u32, u32, u32) -> f32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    data.push(f(x, y, c));
                }
            }
        }
        RgbImage::new(width, height, data).expect("sizes match")
    }

    #[test]
    fn target_sizes_follow_the_official_rounding() {
        // Landscape: 518 / 1080 * 1920 = 920.9 -> 924 (65.78 rounds to 66).
        assert_eq!(target_size(1920, 1080, 518), (924, 518));
        assert_eq!(target_size(1080, 1920, 518), (518, 924));
        assert_eq!(target_size(1000, 1000, 518), (518, 518));
        assert_eq!(target_size(640, 480, 518), (686, 518));
        // Images smaller than the input size are enlarged.
        assert_eq!(target_size(37, 23, 518), (840, 518));
        assert_eq!(target_size(1, 1, 518), (518, 518));
        // 518 is a multiple of 14; other sizes round the short side up.
        assert_eq!(target_size(500, 500, 500), (504, 504));
        assert_eq!(target_size(1920, 1080, 700), (1246, 700));
        // Exactly half-way cases round half to even (numpy), not half up:
        // 777 = 55.5 * 14 -> 56 * 14; 763 = 54.5 * 14 -> 54 * 14 (half up: 770).
        assert_eq!(target_size(777, 518, 518), (784, 518));
        assert_eq!(target_size(763, 518, 518), (756, 518));
        assert_eq!(target_size(735, 518, 518), (728, 518));
        // Values checked against depth_anything_v2.util.transform.Resize.get_size.
    }

    #[test]
    fn constant_images_stay_constant() {
        let value = 0.3137255f32;
        let img = image(37, 23, |_, _, _| value);
        for (w, h) in [(840, 518), (14, 14), (20, 9), (37, 518)] {
            let resized = resize_cubic(&img, w, h).expect("valid sizes");
            assert_eq!(resized.len(), (w * h * 3) as usize);
            let expected = widen(value);
            for v in resized {
                assert!(
                    (v - expected).abs() < 1e-12,
                    "{v} vs {expected} at {w} x {h}"
                );
            }
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = image(28, 14, |x, y, c| ((x * 7 + y * 3 + c) % 256) as f32 / 255.0);
        let resized = resize_cubic(&img, 28, 14).expect("valid sizes");
        let expected: Vec<f64> = img.data.iter().map(|&v| widen(v)).collect();
        assert_eq!(resized, expected);
        // And preprocessing such an image keeps its size.
        let out = preprocess(&img, 14).expect("valid");
        assert_eq!((out.width, out.height), (28, 14));
    }

    #[test]
    fn eight_bit_values_widen_exactly() {
        for k in 0..=255u32 {
            assert_eq!(widen(k as f32 / 255.0), f64::from(k) / 255.0);
        }
        assert_eq!(widen(0.123_456_7), f64::from(0.123_456_7f32));
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        for i in 0..=10 {
            let w = cubic_weights(i as f32 / 10.0);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn linear_ramps_are_reproduced_inside_the_image() {
        // Keys' cubic reproduces linear functions away from the borders.
        let img = image(64, 8, |x, _, _| x as f32 / 64.0);
        let resized = resize_cubic(&img, 32, 8).expect("valid sizes");
        for x in 2..30 {
            let source_x = (x as f64 + 0.5) * 2.0 - 0.5;
            let v = resized[x * 3];
            assert!((v - source_x / 64.0).abs() < 1e-6, "x {x}: {v}");
        }
    }

    #[test]
    fn normalisation_and_layout() {
        let img = image(14, 14, |_, _, c| [1.0, 0.5, 0.0][c as usize]);
        let out = preprocess(&img, 14).expect("valid");
        let plane = 14 * 14;
        for c in 0..3 {
            let expected =
                ((widen([1.0, 0.5, 0.0][c]) - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32;
            assert!(out.data[c * plane..(c + 1) * plane]
                .iter()
                .all(|&v| v == expected));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let img = image(4, 4, |_, _, _| 0.5);
        assert!(matches!(preprocess(&img, 13), Err(Error::Invalid(_))));
        assert!(matches!(preprocess(&img, 0), Err(Error::Invalid(_))));
        let empty = RgbImage {
            width: 0,
            height: 5,
            data: Vec::new(),
        };
        assert!(matches!(preprocess(&empty, 518), Err(Error::Invalid(_))));
        let inconsistent = RgbImage {
            width: 4,
            height: 4,
            data: vec![0.0; 5],
        };
        assert!(matches!(
            preprocess(&inconsistent, 518),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(resize_cubic(&img, 0, 3), Err(Error::Invalid(_))));
        // A sliver would be resized to 518 x 103 600 000 pixels.
        let sliver = image(1, 200_000, |_, _, _| 0.5);
        assert!(matches!(preprocess(&sliver, 518), Err(Error::Invalid(_))));
    }
}
