//! Decoding photos into RGB in `[0, 1]`.
//!
//! [`load_image`] is meant to give the same pixels as the reference pipeline's
//! `cv2.imread(path)[..., ::-1]`:
//!
//! - JPEG is decoded with libjpeg-turbo's code (through the `mozjpeg` crate: accurate
//!   integer IDCT, fancy upsampling), which is byte-identical to OpenCV's decoder. The
//!   `image` crate's JPEG decoder (zune-jpeg) differs by up to 5 levels on ordinary
//!   photos.
//! - The EXIF orientation tag (all 8 values) is applied, as `cv2.imread` does.
//! - Alpha is dropped (not composited), grey is replicated into R, G and B.
//!
//! 8-bit samples `k` become `k / 255` and 16-bit samples `k / 65535` (OpenCV would
//! reduce 16-bit files to 8 bits first; we keep the precision).

use std::io::{BufRead, Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::{DynamicImage, ImageFormat};

use crate::error::{Error, Result};

/// An RGB image, interleaved, row-major, values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` values: r, g, b of the first pixel, then the next.
    pub data: Vec<f32>,
}

impl RgbImage {
    /// Wraps interleaved RGB values.
    ///
    /// # Errors
    /// When `data.len() != width * height * 3`.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Result<Self> {
        let expected = width as usize * height as usize * 3;
        if data.len() != expected {
            return Err(Error::Size {
                what: "rgb image",
                width,
                height,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// 8-bit RGB per pixel: each value times 255, rounded, clamped to `0..=255`.
    ///
    /// ```
    /// let image = anydepth_core::RgbImage::new(1, 1, vec![0.0, 0.5, 1.2]).expect("1 x 1");
    /// assert_eq!(image.to_rgb8(), vec![[0, 128, 255]]);
    /// ```
    pub fn to_rgb8(&self) -> Vec<[u8; 3]> {
        let byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
        self.data
            .chunks_exact(3)
            .map(|c| [byte(c[0]), byte(c[1]), byte(c[2])])
            .collect()
    }
}

/// How the stored pixels must be transformed for display, from the EXIF `Orientation`
/// tag (values 1 to 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orientation {
    /// 1: as stored.
    Normal,
    /// 2: mirrored left to right.
    FlipHorizontal,
    /// 3: rotated by 180 degrees.
    Rotate180,
    /// 4: mirrored top to bottom.
    FlipVertical,
    /// 5: mirrored along the main diagonal (x and y swapped).
    Transpose,
    /// 6: rotated by 90 degrees clockwise.
    Rotate90,
    /// 7: mirrored along the anti-diagonal.
    Transverse,
    /// 8: rotated by 270 degrees clockwise (90 counter-clockwise).
    Rotate270,
}

impl Orientation {
    /// Maps an EXIF `Orientation` value; `None` for values outside 1..=8.
    pub fn from_exif(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Normal,
            2 => Self::FlipHorizontal,
            3 => Self::Rotate180,
            4 => Self::FlipVertical,
            5 => Self::Transpose,
            6 => Self::Rotate90,
            7 => Self::Transverse,
            8 => Self::Rotate270,
            _ => return None,
        })
    }

    /// Reads the orientation from the EXIF block of a JPEG, PNG, TIFF, WebP or HEIF file;
    /// [`Orientation::Normal`] when there is none or it cannot be parsed.
    pub fn from_file_bytes(bytes: &[u8]) -> Self {
        let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
            return Self::Normal;
        };
        exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|field| field.value.get_uint(0))
            .and_then(Self::from_exif)
            .unwrap_or(Self::Normal)
    }

    /// Applies the transform, giving the image as it is meant to be displayed.
    pub fn apply(self, img: RgbImage) -> RgbImage {
        if self == Self::Normal {
            return img;
        }
        let (w, h) = (img.width, img.height);
        let mut data = Vec::with_capacity(img.data.len());
        let (out_w, out_h) = self.for_each_source(w, h, |i| {
            data.extend_from_slice(&img.data[i * 3..i * 3 + 3]);
        });
        RgbImage {
            width: out_w,
            height: out_h,
            data,
        }
    }

    /// Applies the transform to `width` x `height` pixels in row order.
    fn apply_to_pixels<P: Copy>(
        self,
        width: u32,
        height: u32,
        pixels: Vec<P>,
    ) -> (u32, u32, Vec<P>) {
        if self == Self::Normal {
            return (width, height, pixels);
        }
        let mut out = Vec::with_capacity(pixels.len());
        let (out_w, out_h) = self.for_each_source(width, height, |i| out.push(pixels[i]));
        (out_w, out_h, out)
    }

    /// Calls `take` with the index of the source pixel of every output pixel, in the
    /// output's row order; returns the output's size.
    fn for_each_source(self, width: u32, height: u32, mut take: impl FnMut(usize)) -> (u32, u32) {
        let (w, h) = (width as usize, height as usize);
        let swaps = matches!(
            self,
            Self::Transpose | Self::Rotate90 | Self::Transverse | Self::Rotate270
        );
        let (out_w, out_h) = if swaps { (h, w) } else { (w, h) };
        // Source pixel of the output pixel (x, y).
        let source = |x: usize, y: usize| -> (usize, usize) {
            match self {
                Self::Normal => (x, y),
                Self::FlipHorizontal => (w - 1 - x, y),
                Self::Rotate180 => (w - 1 - x, h - 1 - y),
                Self::FlipVertical => (x, h - 1 - y),
                Self::Transpose => (y, x),
                Self::Rotate90 => (y, h - 1 - x),
                Self::Transverse => (w - 1 - y, h - 1 - x),
                Self::Rotate270 => (w - 1 - y, x),
            }
        };
        for y in 0..out_h {
            for x in 0..out_w {
                let (sx, sy) = source(x, y);
                take(sy * w + sx);
            }
        }
        (out_w as u32, out_h as u32)
    }
}

/// Decodes an image file into RGB, applying its EXIF orientation.
///
/// Accepts PNG, JPEG, TIFF, BMP, WebP and PNM with 8 or 16 bits per sample, grey, grey +
/// alpha, RGB or RGBA (alpha is dropped). See the [module docs](self) for how this
/// matches OpenCV.
///
/// # Errors
/// [`Error::Image`] when the file cannot be read, is empty, is not an image of a
/// supported format, or is truncated or corrupt.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let fail = |reason: String| Error::Image {
        reason,
        path: path.to_path_buf(),
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    decode_image(&bytes).map_err(fail)
}

/// The most pixels [`decode_image_bytes`] decodes (100 megapixels, e.g. 12 000 x 8 000):
/// bytes from the network must not make us allocate gigabytes from a forged header.
pub const MAX_DECODE_PIXELS: u64 = 100_000_000;

/// Decodes the bytes of an image file as [`load_image`] decodes a file (the same
/// pixels, EXIF orientation applied), for bytes that did not come from a file (an HTTP
/// request's body). Images larger than [`MAX_DECODE_PIXELS`] are refused from their
/// header, before any pixel is decoded (decompression bombs); below that, the `image`
/// crate's default [`image::Limits`] (512 MiB per allocation) still hold for the formats
/// it decodes.
///
/// # Errors
/// [`Error::Format`] when the bytes are empty, not an image of a supported format,
/// truncated or corrupt, or larger than [`MAX_DECODE_PIXELS`].
pub fn decode_image_bytes(bytes: &[u8]) -> Result<RgbImage> {
    let fail = |reason: String| Error::Format {
        what: "image",
        reason,
    };
    if let Ok(format) = image::guess_format(bytes) {
        let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| fail(format!("cannot read the image header: {e}")))?;
        if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS {
            return Err(fail(format!(
                "the image is {width} x {height} pixels, more than {MAX_DECODE_PIXELS} allowed"
            )));
        }
    }
    decode_image(bytes).map_err(fail)
}

/// The size of an image as [`load_image`] would return it (EXIF orientation applied),
/// from the file's header alone, without decoding the pixels.
///
/// # Errors
/// When the file cannot be read or its header is not that of a supported image.
pub fn image_size(path: &Path) -> Result<(u32, u32)> {
    let fail = |reason: String| Error::Image {
        reason,
        path: path.to_path_buf(),
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let (width, height) = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?
        .into_dimensions()
        .map_err(|e| fail(e.to_string()))?;
    let swaps = matches!(
        Orientation::from_file_bytes(&bytes),
        Orientation::Transpose
            | Orientation::Rotate90
            | Orientation::Transverse
            | Orientation::Rotate270
    );
    Ok(if swaps {
        (height, width)
    } else {
        (width, height)
    })
}

/// Decodes an image file into 8-bit RGB pixels, applying its EXIF orientation: the same
/// pixels as `load_image(path)?.to_rgb8()`, bit for bit.
///
/// # Performance
/// 8-bit files (JPEG, most PNGs) go straight to bytes, without the `f32` image in between
/// (a quarter of the memory, and no conversion back); other files go through
/// [`load_image`].
///
/// # Errors
/// As [`load_image`].
pub fn load_rgb8(path: &Path) -> Result<(u32, u32, Vec<[u8; 3]>)> {
    let fail = |reason: String| Error::Image {
        reason,
        path: path.to_path_buf(),
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let eight_bit = decode_catching(|| match image::guess_format(&bytes) {
        Ok(ImageFormat::Jpeg) => decode_jpeg_rgb8(&bytes),
        Ok(format @ (ImageFormat::Png | ImageFormat::Bmp | ImageFormat::Pnm)) => {
            decode_rgb8_with_image_crate(&bytes, format)
        }
        _ => Ok(None),
    })
    .map_err(fail)?;
    let Some((width, height, pixels)) = eight_bit else {
        let image = decode_image(&bytes).map_err(fail)?;
        return Ok((image.width, image.height, image.to_rgb8()));
    };
    if width == 0 || height == 0 {
        return Err(fail(format!(
            "the image has no pixels ({width} x {height})"
        )));
    }
    Ok(Orientation::from_file_bytes(&bytes).apply_to_pixels(width, height, pixels))
}

/// Width, height and 8-bit RGB pixels in row order.
type Rgb8Pixels = (u32, u32, Vec<[u8; 3]>);

/// 8-bit RGB of a JPEG that libjpeg converts to RGB itself; `None` for CMYK files.
fn decode_jpeg_rgb8(bytes: &[u8]) -> Result<Option<Rgb8Pixels>, String> {
    let jpeg_error = |e: std::io::Error| format!("invalid JPEG: {e}");
    let decompress =
        mozjpeg::Decompress::new_reader(NoEofReader { bytes, pos: 0 }).map_err(jpeg_error)?;
    if matches!(
        decompress.color_space(),
        mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
    ) {
        return Ok(None);
    }
    let (width, height) = decompress.size();
    if width as u64 * height as u64 > MAX_JPEG_PIXELS {
        return Err(format!(
            "the JPEG is {width} x {height} pixels, more than {MAX_JPEG_PIXELS} allowed"
        ));
    }
    let mut started = decompress.rgb().map_err(jpeg_error)?;
    let (width, height) = (started.width(), started.height());
    let rgb: Vec<[u8; 3]> = started.read_scanlines().map_err(jpeg_error)?;
    started.finish().map_err(jpeg_error)?;
    if rgb.len() != width * height {
        return Err(format!(
            "the decoder returned {} pixels for {width} x {height}",
            rgb.len()
        ));
    }
    Ok(Some((to_u32(width)?, to_u32(height)?, rgb)))
}

/// 8-bit RGB of an 8-bit image (grey, grey + alpha, RGB, RGBA); `None` for other depths.
fn decode_rgb8_with_image_crate(
    bytes: &[u8],
    format: ImageFormat,
) -> Result<Option<Rgb8Pixels>, String> {
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())?;
    let (width, height) = (img.width(), img.height());
    let pixels: Vec<[u8; 3]> = match &img {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).map(|p| [p[0]; 3]).collect(),
        DynamicImage::ImageRgb8(b) => b
            .as_raw()
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2]])
            .collect(),
        _ => return Ok(None),
    };
    if pixels.len() != width as usize * height as usize {
        return Err(format!(
            "the decoder returned {} pixels for {width} x {height}",
            pixels.len()
        ));
    }
    Ok(Some((width, height, pixels)))
}

/// Runs a decoder, turning a panic (how libjpeg reports errors through `mozjpeg`) into an
/// error message.
fn decode_catching<T>(decode: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(result) => result,
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the decoder failed".to_owned())),
    }
}

/// Decodes the bytes of an image file; see [`load_image`].
fn decode_image(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_owned());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not an image in a supported format (PNG, JPEG, TIFF, BMP, WebP, PNM)")?;
    // libjpeg reports errors by unwinding (that is how the `mozjpeg` crate works); the
    // `image` decoders should not panic, but a corrupt file must never bring us down.
    let img = decode_catching(|| match format {
        ImageFormat::Jpeg => decode_jpeg(bytes),
        _ => decode_with_image_crate(bytes, format),
    })?;
    if img.width == 0 || img.height == 0 {
        return Err(format!(
            "the image has no pixels ({} x {})",
            img.width, img.height
        ));
    }
    Ok(Orientation::from_file_bytes(bytes).apply(img))
}

/// A reader over the file's bytes that fails instead of reporting the end of the data.
///
/// libjpeg only asks for more input when a file ends before its end-of-image marker; it
/// would then warn, pad the image with grey and carry on. We want an error instead.
struct NoEofReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Read for NoEofReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for NoEofReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self.bytes.get(self.pos..) {
            Some(rest) if !rest.is_empty() => Ok(rest),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the JPEG data ends before its end-of-image marker (truncated file)",
            )),
        }
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.bytes.len());
    }
}

/// The largest JPEG we decode (2^27 pixels, e.g. 13 000 x 10 000), so that a corrupt or
/// hostile header cannot make us allocate gigabytes (the other formats are limited by
/// the `image` crate's default limits).
const MAX_JPEG_PIXELS: u64 = 1 << 27;

/// Decodes a JPEG with libjpeg-turbo's algorithms (what OpenCV uses).
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    match decode_jpeg_rgb8(bytes)? {
        Some((width, height, rgb)) => rgb_from_samples(width, height, rgb.as_flattened(), 3, 255.0),
        // libjpeg cannot convert CMYK to RGB; these are rare (print workflows).
        None => decode_with_image_crate(bytes, ImageFormat::Jpeg),
    }
}

fn to_u32(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("the image is too large ({n} pixels wide or high)"))
}

/// Decodes any other format with the `image` crate.
fn decode_with_image_crate(bytes: &[u8], format: ImageFormat) -> Result<RgbImage, String> {
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())?;
    let (width, height) = (img.width(), img.height());
    match &img {
        DynamicImage::ImageLuma8(b) => rgb_from_samples(width, height, b.as_raw(), 1, 255.0),
        DynamicImage::ImageLumaA8(b) => rgb_from_samples(width, height, b.as_raw(), 2, 255.0),
        DynamicImage::ImageRgb8(b) => rgb_from_samples(width, height, b.as_raw(), 3, 255.0),
        DynamicImage::ImageRgba8(b) => rgb_from_samples(width, height, b.as_raw(), 4, 255.0),
        DynamicImage::ImageLuma16(b) => rgb_from_samples(width, height, b.as_raw(), 1, 65535.0),
        DynamicImage::ImageLumaA16(b) => rgb_from_samples(width, height, b.as_raw(), 2, 65535.0),
        DynamicImage::ImageRgb16(b) => rgb_from_samples(width, height, b.as_raw(), 3, 65535.0),
        DynamicImage::ImageRgba16(b) => rgb_from_samples(width, height, b.as_raw(), 4, 65535.0),
        DynamicImage::ImageRgba32F(b) => rgb_from_samples(width, height, b.as_raw(), 4, 1.0),
        // Rgb32F and any layout added to `image` later.
        other => rgb_from_samples(width, height, other.to_rgb32f().as_raw(), 3, 1.0),
    }
}

/// Converts interleaved samples with `channels` = 1 (grey), 2 (grey + alpha), 3 (RGB) or
/// 4 (RGBA) per pixel into RGB, dividing by `max` (255 or 65535; 1 for float samples).
fn rgb_from_samples<T: Copy + Into<f64>>(
    width: u32,
    height: u32,
    samples: &[T],
    channels: usize,
    max: f32,
) -> Result<RgbImage, String> {
    let pixels = width as usize * height as usize;
    if samples.len() != pixels * channels {
        return Err(format!(
            "the decoder returned {} samples for {width} x {height} x {channels}",
            samples.len()
        ));
    }
    // `k as f32 / 255.0` is the f32 nearest to k / 255, so callers can recover k exactly.
    let scale = |v: T| (v.into() as f32) / max;
    let mut data = Vec::with_capacity(pixels * 3);
    for px in samples.chunks_exact(channels) {
        match channels {
            1 | 2 => {
                let v = scale(px[0]);
                data.extend_from_slice(&[v, v, v]);
            }
            _ => data.extend_from_slice(&[scale(px[0]), scale(px[1]), scale(px[2])]),
        }
    }
    RgbImage::new(width, height, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    /// A 5 x 3 image with a distinct value in every sample.
    fn ramp(width: u32, height: u32) -> RgbImage {
        let n = (width * height * 3) as usize;
        let data = (0..n).map(|i| i as f32 / n as f32).collect();
        RgbImage::new(width, height, data).expect("sizes match")
    }

    /// The `image` crate's implementation of the EXIF transforms, as an oracle.
    fn oriented_by_image_crate(img: &RgbImage, exif_value: u8) -> RgbImage {
        let buffer = ImageBuffer::<Rgb<f32>, _>::from_raw(img.width, img.height, img.data.clone())
            .expect("sizes match");
        let mut dynamic = DynamicImage::ImageRgb32F(buffer);
        dynamic.apply_orientation(
            image::metadata::Orientation::from_exif(exif_value).expect("valid value"),
        );
        let rgb = dynamic.to_rgb32f();
        RgbImage::new(rgb.width(), rgb.height(), rgb.into_raw()).expect("sizes match")
    }

    /// Inserts an APP1 EXIF segment holding only an orientation tag after the SOI marker.
    fn with_exif_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&value.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]); // padding of the value field
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).expect("encodes");
        bytes.into_inner()
    }

    fn load_bytes(bytes: &[u8]) -> Result<RgbImage> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("image");
        std::fs::write(&path, bytes).expect("writes");
        load_image(&path)
    }

    fn assert_image_error(result: Result<RgbImage>, what: &str) {
        match result {
            Err(Error::Image { reason, .. }) => assert!(!reason.is_empty(), "{what}"),
            Err(other) => panic!("{what}: expected Error::Image, got {other}"),
            Ok(img) => panic!("{what}: decoded {} x {}", img.width, img.height),
        }
    }

    fn jpeg_photo() -> Vec<u8> {
        let img = ImageBuffer::from_fn(40, 24, |x, y| Rgb([(x * 6) as u8, (y * 10) as u8, 128]));
        encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
    }

    /// `load_rgb8` gives `load_image(..).to_rgb8()` bit for bit: every 8-bit value comes
    /// back from its `f32`, and every layout, depth, format and orientation agrees.
    #[test]
    fn rgb8_equals_the_f32_image_rounded() {
        for k in 0..=255u8 {
            let image = RgbImage::new(1, 1, vec![f32::from(k) / 255.0; 3]).expect("1 x 1");
            assert_eq!(image.to_rgb8(), vec![[k; 3]], "{k}");
        }
        let (w, h) = (7u32, 5u32);
        let v8 = |x: u32, y: u32, c: u32| (x * 37 + y * 59 + c * 91) as u8;
        let v16 = |x: u32, y: u32, c: u32| (x * 9_001 + y * 7_919 + c * 3_001) as u16;
        let images = [
            DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| Luma([v8(x, y, 0)]))),
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| LumaA([v8(x, y, 0), 9]))),
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([v8(x, y, 0), v8(x, y, 1), v8(x, y, 2)])
            })),
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([v8(x, y, 0), v8(x, y, 1), v8(x, y, 2), 200])
            })),
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| Luma([v16(x, y, 0)]))),
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([v16(x, y, 0), v16(x, y, 1), v16(x, y, 2)])
            })),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = Vec::new();
        for (i, image) in images.iter().enumerate() {
            files.push((encode(image, ImageFormat::Png), format!("{i}.png")));
            if matches!(
                image,
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_)
            ) {
                files.push((encode(image, ImageFormat::Bmp), format!("{i}.bmp")));
                files.push((encode(image, ImageFormat::Tiff), format!("{i}.tif")));
            }
        }
        for value in 1..=8u16 {
            files.push((
                with_exif_orientation(&jpeg_photo(), value),
                format!("o{value}.jpg"),
            ));
        }
        for (bytes, name) in files {
            let path = dir.path().join(&name);
            std::fs::write(&path, bytes).expect("writes");
            let expected = load_image(&path).expect("decodes");
            let (width, height, pixels) = load_rgb8(&path).expect("decodes");
            assert_eq!((width, height), (expected.width, expected.height), "{name}");
            assert_eq!(
                image_size(&path).expect("header"),
                (width, height),
                "{name}"
            );
            assert_eq!(pixels, expected.to_rgb8(), "{name}");
        }
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").expect("writes");
        assert!(load_rgb8(&empty).is_err());
        assert!(image_size(&empty).is_err());
    }

    #[test]
    fn orientations_match_the_image_crate() {
        let img = ramp(5, 3);
        for value in 1..=8u8 {
            let ours = Orientation::from_exif(u32::from(value))
                .expect("valid value")
                .apply(img.clone());
            assert_eq!(
                ours,
                oriented_by_image_crate(&img, value),
                "orientation {value}"
            );
        }
        assert_eq!(Orientation::from_exif(0), None);
        assert_eq!(Orientation::from_exif(9), None);
    }

    #[test]
    fn jpeg_exif_orientation_is_applied() {
        let plain = jpeg_photo();
        let stored = load_bytes(&plain).expect("decodes");
        assert_eq!((stored.width, stored.height), (40, 24));
        for value in 1..=8u16 {
            let loaded = load_bytes(&with_exif_orientation(&plain, value)).expect("decodes");
            assert_eq!(
                loaded,
                oriented_by_image_crate(&stored, value as u8),
                "orientation {value}"
            );
        }
    }

    #[test]
    fn all_layouts_and_depths_decode_to_rgb() {
        let (w, h) = (3u32, 2u32);
        fn v8(x: u32, y: u32) -> u8 {
            (x * 40 + y * 100) as u8
        }
        fn v16(x: u32, y: u32) -> u16 {
            (x * 10_000 + y * 30_000) as u16
        }
        type Expected = Box<dyn Fn(u32, u32) -> [f32; 3]>;
        let cases: Vec<(DynamicImage, Expected)> = vec![
            (
                DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| Luma([v8(x, y)]))),
                Box::new(|x, y| [f32::from(v8(x, y)) / 255.0; 3]),
            ),
            (
                DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| LumaA([v8(x, y), 7]))),
                Box::new(|x, y| [f32::from(v8(x, y)) / 255.0; 3]),
            ),
            (
                DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| Rgb([v8(x, y), 1, 254]))),
                Box::new(|x, y| [f32::from(v8(x, y)) / 255.0, 1.0 / 255.0, 254.0 / 255.0]),
            ),
            (
                DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                    Rgba([v8(x, y), 1, 254, 0])
                })),
                Box::new(|x, y| [f32::from(v8(x, y)) / 255.0, 1.0 / 255.0, 254.0 / 255.0]),
            ),
            (
                DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| Luma([v16(x, y)]))),
                Box::new(|x, y| [f32::from(v16(x, y)) / 65535.0; 3]),
            ),
            (
                DynamicImage::ImageLumaA16(ImageBuffer::from_fn(w, h, |x, y| {
                    LumaA([v16(x, y), 9])
                })),
                Box::new(|x, y| [f32::from(v16(x, y)) / 65535.0; 3]),
            ),
            (
                DynamicImage::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                    Rgb([v16(x, y), 65535, 1])
                })),
                Box::new(|x, y| [f32::from(v16(x, y)) / 65535.0, 1.0, 1.0 / 65535.0]),
            ),
            (
                DynamicImage::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                    Rgba([v16(x, y), 65535, 1, 0])
                })),
                Box::new(|x, y| [f32::from(v16(x, y)) / 65535.0, 1.0, 1.0 / 65535.0]),
            ),
        ];
        let formats = [
            ImageFormat::Png,
            ImageFormat::Tiff,
            ImageFormat::Bmp,
            ImageFormat::WebP,
            ImageFormat::Pnm,
        ];
        let mut decoded = 0;
        for (img, expected) in &cases {
            for format in formats {
                let what = format!("{:?} {format:?}", img.color());
                let mut bytes = Cursor::new(Vec::new());
                let is_16 = matches!(
                    img,
                    DynamicImage::ImageLuma16(_)
                        | DynamicImage::ImageLumaA16(_)
                        | DynamicImage::ImageRgb16(_)
                        | DynamicImage::ImageRgba16(_)
                );
                if is_16 && matches!(format, ImageFormat::Bmp | ImageFormat::WebP) {
                    continue; // these encoders reduce to 8 bits
                }
                if img.write_to(&mut bytes, format).is_err() {
                    // Not every encoder takes every layout (e.g. no 16-bit BMP).
                    assert_ne!(format, ImageFormat::Png, "{what}");
                    continue;
                }
                let loaded = load_bytes(bytes.get_ref()).expect(&what);
                assert_eq!((loaded.width, loaded.height), (w, h), "{what}");
                for y in 0..h {
                    for x in 0..w {
                        let i = ((y * w + x) * 3) as usize;
                        assert_eq!(loaded.data[i..i + 3], expected(x, y), "{what} at {x},{y}");
                    }
                }
                decoded += 1;
            }
        }
        // PNG for all 8 layouts plus what the other encoders accept.
        assert!(decoded >= 16, "only {decoded} combinations decoded");
    }

    /// A small PNG announcing `width` x `height` RGB pixels: a decompression bomb's header
    /// (signature, IHDR, a little IDAT, IEND).
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut header = width.to_be_bytes().to_vec();
        header.extend_from_slice(&height.to_be_bytes());
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        // A zlib stream of a few zero bytes: the rows a real bomb would inflate to.
        let data = [0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01];
        for (kind, body) in [
            (b"IHDR", &header[..]),
            (b"IDAT", &data[..]),
            (b"IEND", &[][..]),
        ] {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(body);
            png.extend_from_slice(&(body.len() as u32).to_be_bytes());
            png.extend_from_slice(&chunk);
            png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
        }
        png
    }

    #[test]
    fn bytes_decode_as_files_and_bombs_are_refused() {
        let jpeg = with_exif_orientation(&jpeg_photo(), 6);
        let from_bytes = decode_image_bytes(&jpeg).expect("decodes");
        assert_eq!(from_bytes, load_bytes(&jpeg).expect("decodes"));
        assert_eq!((from_bytes.width, from_bytes.height), (24, 40));

        let bomb = decode_image_bytes(&png_header(100_000, 100_000)).expect_err("a bomb");
        assert!(bomb.to_string().contains("more than"), "{bomb}");
        let whole = jpeg_photo();
        let cut = decode_image_bytes(&whole[..whole.len() / 2]).expect_err("truncated");
        assert!(matches!(cut, Error::Format { .. }), "{cut}");
        assert!(decode_image_bytes(b"").is_err());
        assert!(decode_image_bytes(b"GIF89a not really").is_err());
    }

    #[test]
    fn bad_files_give_image_errors() {
        assert_image_error(load_bytes(b""), "empty");
        assert_image_error(load_bytes(b"just some text, not an image"), "text");
        assert_image_error(
            load_image(Path::new("/definitely/not/here.png")),
            "missing file",
        );
        let jpeg = jpeg_photo();
        for keep in [2, 20, jpeg.len() / 2, jpeg.len() - 2] {
            assert_image_error(load_bytes(&jpeg[..keep]), &format!("JPEG cut at {keep}"));
        }
        let mut corrupt = jpeg.clone();
        for b in &mut corrupt[4..40] {
            *b = 0xff;
        }
        assert_image_error(load_bytes(&corrupt), "JPEG with garbage header");
        // Noise, so that the pixel data fills almost all of the file.
        let noise = ImageBuffer::from_fn(30, 20, |x, y| {
            let v = (x * 7919 + y * 104_729).wrapping_mul(2_654_435_761) >> 24;
            Rgb([v as u8, (v >> 3) as u8, (v * 5) as u8])
        });
        let png = encode(&DynamicImage::ImageRgb8(noise), ImageFormat::Png);
        // (A file that only lacks its IEND chunk has all its pixels and is accepted.)
        for keep in [8, 30, png.len() / 2, png.len() - 40] {
            assert_image_error(load_bytes(&png[..keep]), &format!("PNG cut at {keep}"));
        }
        let mut corrupt = png.clone();
        let n = corrupt.len();
        for b in &mut corrupt[40..n - 20] {
            *b ^= 0x5a;
        }
        assert_image_error(load_bytes(&corrupt), "PNG with flipped bits");
    }
}
