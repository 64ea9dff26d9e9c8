//! Rotation metadata of videos as an [`Orientation`], and applying it to RGB8 frames.
//!
//! Phones store frames as the sensor saw them and put the rotation needed for display in
//! the container: a display matrix (MP4/MOV `tkhd`, exported by FFmpeg as the stream's
//! `AV_PKT_DATA_DISPLAYMATRIX` side data) or, from older demuxers, a `rotate` tag in
//! degrees clockwise. Both become one of the eight EXIF orientations, so a frame is
//! transformed exactly as a photo with that EXIF tag is by `anydepth_core::load_image`.

use anydepth_core::image::Orientation;

/// The orientation a display matrix asks for: nine native-endian `i32` (16.16 fixed point
/// for the 2 x 2 part), row-major `[a b u; c d v; x y w]`, mapping a stored pixel
/// `(x, y)` to `(a x + c y + x0, b x + d y + y0)` on the display.
///
/// `None` when the bytes are not a matrix or the matrix is not a multiple of 90 degrees,
/// possibly mirrored (such videos are decoded as stored).
pub(crate) fn from_display_matrix(bytes: &[u8]) -> Option<Orientation> {
    if bytes.len() < 36 {
        return None;
    }
    let entry = |i: usize| {
        let mut word = [0; 4];
        word.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
        i32::from_ne_bytes(word)
    };
    let (a, b, c, d) = (entry(0), entry(1), entry(3), entry(4));
    // Entries below a hundredth of 1.0 count as zero (rounding in the writer).
    let sign = |v: i32| match v {
        v if v > 655 => 1,
        v if v < -655 => -1,
        _ => 0,
    };
    Some(match (sign(a), sign(b), sign(c), sign(d)) {
        (1, 0, 0, 1) => Orientation::Normal,
        (-1, 0, 0, 1) => Orientation::FlipHorizontal,
        (-1, 0, 0, -1) => Orientation::Rotate180,
        (1, 0, 0, -1) => Orientation::FlipVertical,
        // x' = -y, y' = x: the top row becomes the right column.
        (0, 1, -1, 0) => Orientation::Rotate90,
        (0, -1, 1, 0) => Orientation::Rotate270,
        (0, 1, 1, 0) => Orientation::Transpose,
        (0, -1, -1, 0) => Orientation::Transverse,
        _ => return None,
    })
}

/// The orientation of a `rotate` tag (degrees clockwise); `None` for other values.
pub(crate) fn from_rotate_tag(value: &str) -> Option<Orientation> {
    let degrees: i64 = value.trim().parse().ok()?;
    Some(match degrees.rem_euclid(360) {
        0 => Orientation::Normal,
        90 => Orientation::Rotate90,
        180 => Orientation::Rotate180,
        270 => Orientation::Rotate270,
        _ => return None,
    })
}

/// Whether the orientation swaps width and height.
pub(crate) fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Transpose
            | Orientation::Rotate90
            | Orientation::Transverse
            | Orientation::Rotate270
    )
}

/// Applies `orientation` to `width` x `height` pixels in row order; returns the displayed
/// size and pixels. The same mapping as `anydepth_core`'s `Orientation::apply`, on bytes.
pub(crate) fn apply(
    orientation: Orientation,
    width: u32,
    height: u32,
    pixels: Vec<[u8; 3]>,
) -> (u32, u32, Vec<[u8; 3]>) {
    if orientation == Orientation::Normal {
        return (width, height, pixels);
    }
    let (w, h) = (width as usize, height as usize);
    let (out_w, out_h) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    // The source pixel of the displayed pixel (x, y).
    let source = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            Orientation::Normal => (x, y),
            Orientation::FlipHorizontal => (w - 1 - x, y),
            Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
            Orientation::FlipVertical => (x, h - 1 - y),
            Orientation::Transpose => (y, x),
            Orientation::Rotate90 => (y, h - 1 - x),
            Orientation::Transverse => (w - 1 - y, h - 1 - x),
            Orientation::Rotate270 => (w - 1 - y, x),
        }
    };
    let mut out = Vec::with_capacity(pixels.len());
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = source(x, y);
            out.push(pixels[sy * w + sx]);
        }
    }
    (out_w as u32, out_h as u32, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(a: i32, b: i32, c: i32, d: i32) -> Vec<u8> {
        [a, b, 0, c, d, 0, 0, 0, 1 << 30]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    const ONE: i32 = 1 << 16;

    #[test]
    fn display_matrices_of_the_four_rotations() {
        // What FFmpeg's MP4 muxer writes for `rotate` = 0, 90, 180, 270 (degrees clockwise).
        let cases = [
            (matrix(ONE, 0, 0, ONE), Orientation::Normal),
            (matrix(0, ONE, -ONE, 0), Orientation::Rotate90),
            (matrix(-ONE, 0, 0, -ONE), Orientation::Rotate180),
            (matrix(0, -ONE, ONE, 0), Orientation::Rotate270),
        ];
        for (bytes, expected) in cases {
            assert_eq!(from_display_matrix(&bytes), Some(expected));
        }
        // 45 degrees is not applied.
        assert_eq!(
            from_display_matrix(&matrix(46341, 46341, -46341, 46341)),
            None
        );
        assert_eq!(from_display_matrix(&[0; 8]), None);
    }

    #[test]
    fn rotate_tags() {
        assert_eq!(from_rotate_tag("90"), Some(Orientation::Rotate90));
        assert_eq!(from_rotate_tag("-90"), Some(Orientation::Rotate270));
        assert_eq!(from_rotate_tag("180"), Some(Orientation::Rotate180));
        assert_eq!(from_rotate_tag("45"), None);
        assert_eq!(from_rotate_tag("up"), None);
    }

    #[test]
    fn applying_agrees_with_core_on_every_orientation() {
        // A 3 x 2 image whose pixels are all different; core's f32 transform is the oracle.
        let pixels: Vec<[u8; 3]> = (0..6u8).map(|i| [i, 10 * i, 255 - i]).collect();
        let image = anydepth_core::RgbImage {
            width: 3,
            height: 2,
            data: pixels
                .iter()
                .flatten()
                .map(|&v| f32::from(v) / 255.0)
                .collect(),
        };
        for value in 1..=8 {
            let orientation = Orientation::from_exif(value).expect("EXIF 1..=8");
            let expected = orientation.apply(image.clone());
            let (w, h, out) = apply(orientation, 3, 2, pixels.clone());
            assert_eq!((w, h), (expected.width, expected.height), "{orientation:?}");
            assert_eq!(out, expected.to_rgb8(), "{orientation:?}");
        }
    }
}
