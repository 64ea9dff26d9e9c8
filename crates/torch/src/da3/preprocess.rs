//! Depth Anything 3's input processing, as the official `InputProcessor` does it with
//! `upper_bound_resize`: the long side scaled to the processing resolution (504 by
//! default; `cv2.resize` on the 8-bit photo, `INTER_CUBIC` when enlarging, `INTER_AREA`
//! when shrinking, skipped when already that size), then each side to the nearest multiple
//! of 14 (ties up) by a second `cv2.resize` (cubic if a side grows, else area), then
//! `/ 255` and the ImageNet normalisation in float32. Views of slightly different
//! processed sizes are centre-cropped to the smallest, as the official code does.
//!
//! OpenCV's arithmetic on 8-bit images is reproduced as the reference's OpenCV (5.0)
//! computes it: cubic weights from double-precision positions, sums in float32; area
//! weights in float32; results rounded to nearest even. (OpenCV 4's fixed-point cubic
//! differs from it by one 8-bit step in about 3% of values.)
//!
//! ```
//! use anydepth_torch::da3::preprocess::processed_size;
//!
//! assert_eq!(processed_size(640, 480, 504), (504, 378));
//! assert_eq!(processed_size(320, 241, 504), (504, 378));
//! assert_eq!(processed_size(1242, 375, 504), (504, 154));
//! ```

use anydepth_core::RgbImage;

use crate::error::{Error, Result};
use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD, MULTIPLE_OF};

/// A processed photo: `3 x height x width` normalised float32 values, channel-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Processed {
    /// Width of the network input.
    pub width: u32,
    /// Height of the network input.
    pub height: u32,
    /// CHW values.
    pub data: Vec<f32>,
}

/// Python's `int(round(x))` (half to even).
fn round_even(x: f64) -> u32 {
    x.round_ties_even().max(0.0) as u32
}

/// The size after the long side is scaled to `process_res`.
fn upper_bound_size(width: u32, height: u32, process_res: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest == process_res {
        return (width, height);
    }
    let scale = f64::from(process_res) / f64::from(longest);
    (
        round_even(f64::from(width) * scale).max(1),
        round_even(f64::from(height) * scale).max(1),
    )
}

/// The nearest multiple of 14 (ties go up), at least 1 as in the official code (which
/// gives 0 for sides under 7).
fn nearest_multiple(x: u32) -> u32 {
    let down = x / MULTIPLE_OF * MULTIPLE_OF;
    let up = down + MULTIPLE_OF;
    let nearest = if up - x <= x - down { up } else { down };
    nearest.max(1)
}

/// The network input size `(width, height)` of a `width x height` photo at
/// `process_res`.
pub fn processed_size(width: u32, height: u32, process_res: u32) -> (u32, u32) {
    let (w, h) = upper_bound_size(width, height, process_res);
    (nearest_multiple(w), nearest_multiple(h))
}

/// Processes one photo (8-bit RGB, `width * height` pixels).
///
/// # Errors
/// When the photo is empty or `process_res` is below 14.
pub fn process(width: u32, height: u32, rgb: &[[u8; 3]], process_res: u32) -> Result<Processed> {
    if width == 0 || height == 0 || rgb.len() != width as usize * height as usize {
        return Err(Error::Invalid(format!(
            "expected a non-empty {width}x{height} photo with as many pixels, got {}",
            rgb.len()
        )));
    }
    if process_res < MULTIPLE_OF {
        return Err(Error::Invalid(format!(
            "the processing resolution must be at least {MULTIPLE_OF}, got {process_res}"
        )));
    }
    let (w1, h1) = upper_bound_size(width, height, process_res);
    let mut image = Plane {
        width,
        height,
        pixels: rgb.to_vec(),
    };
    if (w1, h1) != (width, height) {
        let enlarge = f64::from(process_res) / f64::from(width.max(height)) > 1.0;
        image = image.resize(w1, h1, enlarge);
    }
    let (w2, h2) = (nearest_multiple(w1), nearest_multiple(h1));
    if (w2, h2) != (w1, h1) {
        image = image.resize(w2, h2, w2 > w1 || h2 > h1);
    }
    Ok(image.normalise())
}

/// Processes one photo given as an [`RgbImage`] (values `k / 255` are the 8-bit sample `k`).
///
/// # Errors
/// As [`process`].
pub fn process_image(image: &RgbImage, process_res: u32) -> Result<Processed> {
    process(image.width, image.height, &image.to_rgb8(), process_res)
}

/// Centre-crops processed views to the smallest width and height among them, as the
/// official code does for views of different sizes; returns how many pixels were cut
/// from the left and the top of each view.
pub fn crop_to_common_size(views: &mut [Processed]) -> Vec<(u32, u32)> {
    let (Some(min_w), Some(min_h)) = (
        views.iter().map(|v| v.width).min(),
        views.iter().map(|v| v.height).min(),
    ) else {
        return Vec::new();
    };
    views
        .iter_mut()
        .map(|view| {
            if (view.width, view.height) == (min_w, min_h) {
                return (0, 0);
            }
            // torchvision's CenterCrop: top = int(round((h - th) / 2.0)).
            let left = round_even(f64::from(view.width - min_w) / 2.0);
            let top = round_even(f64::from(view.height - min_h) / 2.0);
            let plane = view.width as usize * view.height as usize;
            let mut data = Vec::with_capacity(3 * min_w as usize * min_h as usize);
            for c in 0..3 {
                for y in 0..min_h as usize {
                    let start =
                        c * plane + (y + top as usize) * view.width as usize + left as usize;
                    data.extend_from_slice(&view.data[start..start + min_w as usize]);
                }
            }
            *view = Processed {
                width: min_w,
                height: min_h,
                data,
            };
            (left, top)
        })
        .collect()
}

/// An 8-bit RGB image being resized.
struct Plane {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 3]>,
}

impl Plane {
    /// `cv2.resize` to `width x height`, cubic or area.
    fn resize(&self, width: u32, height: u32, cubic: bool) -> Plane {
        let pixels = if cubic {
            self.resize_cubic(width, height)
        } else {
            self.resize_area(width, height)
        };
        Plane {
            width,
            height,
            pixels,
        }
    }

    /// `cv2.resize(..., INTER_CUBIC)` on 8-bit data as OpenCV 5 computes it: source
    /// positions and Keys weights (a = -0.75) in double, the weights cast to float, rows
    /// then columns summed in float, rounded to nearest even and clamped.
    fn resize_cubic(&self, width: u32, height: u32) -> Vec<[u8; 3]> {
        let x_taps = cubic_taps(self.width, width);
        let y_taps = cubic_taps(self.height, height);
        let src_w = self.width as usize;
        let horizontal = |row: usize| -> Vec<[f32; 3]> {
            let src = &self.pixels[row * src_w..(row + 1) * src_w];
            x_taps
                .iter()
                .map(|(index, w)| {
                    let mut sum = [0f32; 3];
                    for (&i, &wk) in index.iter().zip(w) {
                        for (s, &v) in sum.iter_mut().zip(&src[i]) {
                            *s += f32::from(v) * wk;
                        }
                    }
                    sum
                })
                .collect()
        };
        let mut cache: Vec<Option<Vec<[f32; 3]>>> = vec![None; self.height as usize];
        let mut out = Vec::with_capacity(width as usize * height as usize);
        for (rows, weights) in &y_taps {
            for &r in rows {
                if cache[r].is_none() {
                    cache[r] = Some(horizontal(r));
                }
            }
            let source: Vec<&Vec<[f32; 3]>> =
                rows.iter().filter_map(|&r| cache[r].as_ref()).collect();
            for x in 0..width as usize {
                let mut pixel = [0u8; 3];
                for (c, p) in pixel.iter_mut().enumerate() {
                    let mut sum = 0f32;
                    for (row, &wk) in source.iter().zip(weights) {
                        sum += row[x][c] * wk;
                    }
                    *p = saturate_u8(sum);
                }
                out.push(pixel);
            }
        }
        out
    }

    /// OpenCV's `INTER_AREA` for shrinking: each destination pixel averages the source
    /// area it covers (partial pixels weighted by their covered fraction), in float32,
    /// rounded to nearest even. Integer factors average whole blocks, rounding halves up.
    fn resize_area(&self, width: u32, height: u32) -> Vec<[u8; 3]> {
        let scale_x = f64::from(self.width) / f64::from(width);
        let scale_y = f64::from(self.height) / f64::from(height);
        let (ix, iy) = (scale_x.round(), scale_y.round());
        if (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON {
            return self.resize_area_blocks(width, height, ix as usize, iy as usize);
        }
        let x_tab = area_table(self.width, width, scale_x);
        let y_tab = area_table(self.height, height, scale_y);
        let src_w = self.width as usize;
        let mut out = vec![[0u8; 3]; width as usize * height as usize];
        let mut sum = vec![[0f32; 3]; width as usize];
        let mut buf = vec![[0f32; 3]; width as usize];
        let mut current = y_tab.first().map_or(0, |t| t.0);
        for &(dy, sy, beta) in &y_tab {
            buf.iter_mut().for_each(|b| *b = [0.0; 3]);
            let src = &self.pixels[sy * src_w..(sy + 1) * src_w];
            for &(dx, sx, alpha) in &x_tab {
                for c in 0..3 {
                    buf[dx][c] += f32::from(src[sx][c]) * alpha;
                }
            }
            if dy != current {
                let row = &mut out[current * width as usize..(current + 1) * width as usize];
                for ((o, s), b) in row.iter_mut().zip(sum.iter_mut()).zip(&buf) {
                    for c in 0..3 {
                        o[c] = saturate_u8(s[c]);
                        s[c] = beta * b[c];
                    }
                }
                current = dy;
            } else {
                for (s, b) in sum.iter_mut().zip(&buf) {
                    for c in 0..3 {
                        s[c] += beta * b[c];
                    }
                }
            }
        }
        let row = &mut out[current * width as usize..(current + 1) * width as usize];
        for (o, s) in row.iter_mut().zip(&sum) {
            for c in 0..3 {
                o[c] = saturate_u8(s[c]);
            }
        }
        out
    }

    /// Area resize by whole blocks of `fx x fy` pixels.
    fn resize_area_blocks(&self, width: u32, height: u32, fx: usize, fy: usize) -> Vec<[u8; 3]> {
        let area = (fx * fy) as u32;
        let src_w = self.width as usize;
        let mut out = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height as usize {
            for x in 0..width as usize {
                let mut sum = [0u32; 3];
                for by in 0..fy {
                    for bx in 0..fx {
                        let p = self.pixels[(y * fy + by) * src_w + x * fx + bx];
                        for c in 0..3 {
                            sum[c] += u32::from(p[c]);
                        }
                    }
                }
                out.push(sum.map(|s| ((s + area / 2) / area).min(255) as u8));
            }
        }
        out
    }

    /// `ToTensor` (/ 255) and the ImageNet normalisation, in float32, CHW.
    fn normalise(&self) -> Processed {
        let plane = self.width as usize * self.height as usize;
        let mut data = vec![0f32; 3 * plane];
        for c in 0..3 {
            let (mean, std) = (IMAGENET_MEAN[c] as f32, IMAGENET_STD[c] as f32);
            for (d, p) in data[c * plane..(c + 1) * plane]
                .iter_mut()
                .zip(&self.pixels)
            {
                *d = (f32::from(p[c]) / 255.0 - mean) / std;
            }
        }
        Processed {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// For each destination index, the four source indices (clamped: replicated border) and
/// their weights: `src = (dst + 0.5) * scale - 0.5` and the Keys weights (a = -0.75) in
/// double, the weights then cast to float.
fn cubic_taps(src_len: u32, dst_len: u32) -> Vec<([usize; 4], [f32; 4])> {
    const A: f64 = -0.75;
    let scale = 1.0 / (f64::from(dst_len) / f64::from(src_len));
    let last = i64::from(src_len) - 1;
    (0..dst_len)
        .map(|d| {
            let f = (f64::from(d) + 0.5) * scale - 0.5;
            let s = f.floor();
            let x = f - s;
            let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
            let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
            let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
            let w3 = 1.0 - w0 - w1 - w2;
            let s = s as i64;
            let index = |k: i64| (s - 1 + k).clamp(0, last) as usize;
            (
                [index(0), index(1), index(2), index(3)],
                [w0 as f32, w1 as f32, w2 as f32, w3 as f32],
            )
        })
        .collect()
}

/// `saturate_cast<uchar>(float)`: round to nearest even, clamp.
fn saturate_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// OpenCV's `computeResizeAreaTab`: `(destination, source, weight)` entries in order.
fn area_table(src_len: u32, dst_len: u32, scale: f64) -> Vec<(usize, usize, f32)> {
    let src = f64::from(src_len);
    let mut tab = Vec::new();
    for dx in 0..dst_len as usize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(src - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let sx2 = (fsx2.floor() as i64).min(i64::from(src_len) - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push((
                dx,
                (sx1 - 1) as usize,
                ((sx1 as f64 - fsx1) / cell_width) as f32,
            ));
        }
        for sx in sx1..sx2 {
            tab.push((dx, sx as usize, (1.0 / cell_width) as f32));
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push((
                dx,
                sx2 as usize,
                ((fsx2 - sx2 as f64).min(1.0).min(cell_width) / cell_width) as f32,
            ));
        }
    }
    tab
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_official_rules() {
        assert_eq!(processed_size(504, 378, 504), (504, 378));
        assert_eq!(processed_size(640, 480, 336), (336, 252));
        // 320x241 -> 504x380 (x1.575) -> 504x378.
        assert_eq!(upper_bound_size(320, 241, 504), (504, 380));
        assert_eq!(nearest_multiple(7), 14);
        assert_eq!(nearest_multiple(21), 28);
        assert_eq!(nearest_multiple(20), 14);
    }

    #[test]
    fn a_flat_photo_stays_flat() {
        let rgb = vec![[200u8, 100, 50]; 90 * 60];
        for res in [28, 56, 504] {
            let p = process(90, 60, &rgb, res).expect("valid photo");
            let plane = (p.width * p.height) as usize;
            let expected = (200.0f32 / 255.0 - 0.485) / 0.229;
            assert!(p.data[..plane].iter().all(|&v| v == expected), "res {res}");
        }
    }

    #[test]
    fn area_averages_blocks() {
        let plane = Plane {
            width: 4,
            height: 2,
            pixels: vec![[0, 0, 0], [10, 10, 10], [1, 1, 1], [2, 2, 2]]
                .into_iter()
                .cycle()
                .take(8)
                .collect(),
        };
        let out = plane.resize_area(2, 1);
        assert_eq!(out, vec![[5, 5, 5], [2, 2, 2]]);
    }

    #[test]
    fn crop_keeps_the_centre() {
        let mut views = vec![
            Processed {
                width: 4,
                height: 2,
                data: (0..24).map(|v| v as f32).collect(),
            },
            Processed {
                width: 2,
                height: 2,
                data: vec![0.0; 12],
            },
        ];
        let cuts = crop_to_common_size(&mut views);
        assert_eq!(cuts, vec![(1, 0), (0, 0)]);
        assert_eq!(&views[0].data[..4], &[1.0, 2.0, 5.0, 6.0]);
    }
}
