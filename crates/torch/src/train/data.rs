//! Training samples to network input: the official recipe's lower-bound resize (cubic for
//! photos, nearest for depth), a random square crop and a random horizontal flip.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Tensor};

use anydepth_core::depth::Metres;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::image::load_image;
use anydepth_core::RgbImage;
use anydepth_model::train::TrainSample;

use crate::error::{Error, Result};
use crate::preprocess::preprocess;

/// A sample resized so that its shorter side is the crop size: photo normalised (CHW),
/// target (metres or a teacher's label) with NaN where it does not count.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Width after the resize.
    pub width: usize,
    /// Height after the resize.
    pub height: usize,
    /// `3 * height * width` normalised values, channel-major.
    pub image: Vec<f32>,
    /// `height * width` target values; NaN where they do not count.
    pub target: Vec<f32>,
    /// How many target values count.
    pub valid: usize,
}

/// Which depths count: finite, above `min` and below `max` metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthRange {
    /// Depths at or below this do not count.
    pub min: f64,
    /// Depths at or above this do not count.
    pub max: f64,
}

impl DepthRange {
    fn contains(&self, d: f32) -> bool {
        d.is_finite() && f64::from(d) > self.min && f64::from(d) < self.max
    }
}

/// Reads one sample and resizes it for crops of `size`.
///
/// # Errors
/// When the photo or depth cannot be read or their sizes differ.
pub fn prepare(sample: &TrainSample, size: u32, range: DepthRange) -> Result<Prepared> {
    let photo = load_image(&sample.rgb)?;
    let depth = read_depth_values::<Metres>(&sample.depth, sample.depth_scale)?;
    if (depth.width(), depth.height()) != (photo.width, photo.height) {
        return Err(Error::Invalid(format!(
            "the photo is {}x{} but its depth {} is {}x{}",
            photo.width,
            photo.height,
            sample.depth.display(),
            depth.width(),
            depth.height()
        )));
    }
    let (w, h) = (depth.width() as usize, depth.height() as usize);
    with_target(&photo, size, depth.data(), (w, h), |d| range.contains(d))
}

/// Reads a photo and pairs it with a teacher's `label` (`width x height` values, the
/// photo's size), resized for crops of `size`; non-finite label values do not count.
///
/// # Errors
/// When the photo cannot be read or is not the label's size.
pub fn prepare_labelled(
    photo: &Path,
    label: &[f32],
    (width, height): (usize, usize),
    size: u32,
) -> Result<Prepared> {
    let photo = load_image(photo)?;
    if (photo.width as usize, photo.height as usize) != (width, height) {
        return Err(Error::Invalid(format!(
            "the photo is {}x{} but its label is {width}x{height}",
            photo.width, photo.height
        )));
    }
    with_target(&photo, size, label, (width, height), f32::is_finite)
}

/// The photo resized (cubic, normalised) and `target` resized (nearest) to the
/// lower-bound size for crops of `size`; values failing `counts` become NaN.
fn with_target(
    photo: &RgbImage,
    size: u32,
    target: &[f32],
    (src_w, src_h): (usize, usize),
    counts: impl Fn(f32) -> bool,
) -> Result<Prepared> {
    let resized = preprocess(photo, size)?;
    let (width, height) = (resized.width as usize, resized.height as usize);
    let mut values = Vec::with_capacity(width * height);
    let mut valid = 0;
    for y in 0..height {
        let sy = nearest(y, height, src_h);
        for x in 0..width {
            let d = target[sy * src_w + nearest(x, width, src_w)];
            if counts(d) {
                values.push(d);
                valid += 1;
            } else {
                values.push(f32::NAN);
            }
        }
    }
    Ok(Prepared {
        width,
        height,
        image: resized.data,
        target: values,
        valid,
    })
}

/// OpenCV's `INTER_NEAREST` source index: `floor(dst · src / dst_len)`, clamped.
fn nearest(dst: usize, dst_len: usize, src_len: usize) -> usize {
    ((dst as f64 * src_len as f64 / dst_len as f64).floor() as usize).min(src_len - 1)
}

/// Where a sample is cut and whether it is flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// Left column of the crop.
    pub x: usize,
    /// Top row of the crop.
    pub y: usize,
    /// Mirrored left to right.
    pub flip: bool,
}

impl Crop {
    /// The crop of a `width x height` sample for the sample at global position
    /// `position` of a run seeded with `seed`: the same for the same three, so a resumed
    /// run cuts what the uninterrupted one would have.
    pub fn draw(
        seed: u64,
        position: u64,
        (width, height): (usize, usize),
        size: usize,
        flip_p: f64,
    ) -> Self {
        let mut rng = sample_rng(seed, position);
        let x = rng.random_range(0..=width.saturating_sub(size));
        let y = rng.random_range(0..=height.saturating_sub(size));
        let flip = rng.random::<f64>() < flip_p;
        Self { x, y, flip }
    }
}

/// The random stream of one sample position of a seeded run.
pub fn sample_rng(seed: u64, position: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ position.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The order samples are visited in during epoch `epoch` of a run seeded with `seed`.
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.rotate_left(17) ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// A batch on the device: `(b, 3, s, s)` input, `(b, s, s)` target, `(b, s, s)` mask.
#[derive(Debug)]
pub struct Batch {
    /// Normalised photos.
    pub input: Tensor,
    /// Ground truth in metres, or a teacher's labels (0 where it does not count).
    pub target: Tensor,
    /// The pixels that count.
    pub mask: Tensor,
}

/// Cuts `crops` out of `samples` and stacks them on `device`.
///
/// # Errors
/// When a sample is smaller than the crop.
pub fn make_batch(samples: &[(&Prepared, Crop)], size: usize, device: Device) -> Result<Batch> {
    let cut: Vec<(Vec<f32>, Vec<f32>)> = samples
        .par_iter()
        .map(|(p, crop)| cut(p, *crop, size))
        .collect::<Result<_>>()?;
    let b = cut.len() as i64;
    let s = size as i64;
    let mut images = Vec::with_capacity(cut.len() * 3 * size * size);
    let mut targets = Vec::with_capacity(cut.len() * size * size);
    for (image, target) in cut {
        images.extend_from_slice(&image);
        targets.extend_from_slice(&target);
    }
    let input = Tensor::from_slice(&images)
        .reshape([b, 3, s, s])
        .to_device(device);
    let target = Tensor::from_slice(&targets)
        .reshape([b, s, s])
        .to_device(device);
    let mask = target.isfinite();
    let target = target.nan_to_num(0.0, 0.0, 0.0);
    Ok(Batch {
        input,
        target,
        mask,
    })
}

fn cut(p: &Prepared, crop: Crop, size: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    if crop.x + size > p.width || crop.y + size > p.height {
        return Err(Error::Invalid(format!(
            "a {size}x{size} crop at ({}, {}) does not fit a {}x{} sample",
            crop.x, crop.y, p.width, p.height
        )));
    }
    let column = |x: usize| {
        if crop.flip {
            crop.x + size - 1 - x
        } else {
            crop.x + x
        }
    };
    let plane = p.width * p.height;
    let mut image = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            let row = c * plane + (crop.y + y) * p.width;
            image.extend((0..size).map(|x| p.image[row + column(x)]));
        }
    }
    let mut target = Vec::with_capacity(size * size);
    for y in 0..size {
        let row = (crop.y + y) * p.width;
        target.extend((0..size).map(|x| p.target[row + column(x)]));
    }
    Ok((image, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_opencv() {
        // cv2.resize(np.arange(5), (1, 3), interpolation=cv2.INTER_NEAREST) -> 0, 1, 3
        let picks: Vec<usize> = (0..3).map(|i| nearest(i, 3, 5)).collect();
        assert_eq!(picks, [0, 1, 3]);
    }

    #[test]
    fn epoch_order_is_a_permutation_and_seeded() {
        let a = epoch_order(7, 0, 10);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(7, 0, 10));
        assert_ne!(a, epoch_order(7, 1, 10));
    }

    #[test]
    fn a_flipped_crop_mirrors_columns() {
        let p = Prepared {
            width: 3,
            height: 2,
            image: (0..18).map(|v| v as f32).collect(),
            target: (0..6).map(|v| v as f32 + 1.0).collect(),
            valid: 6,
        };
        let (image, depth) = cut(
            &p,
            Crop {
                x: 1,
                y: 0,
                flip: true,
            },
            2,
        )
        .expect("fits");
        assert_eq!(depth, [3.0, 2.0, 6.0, 5.0]);
        assert_eq!(&image[..4], &[2.0, 1.0, 5.0, 4.0]);
        assert!(cut(
            &p,
            Crop {
                x: 2,
                y: 0,
                flip: false
            },
            2
        )
        .is_err());
    }
}
