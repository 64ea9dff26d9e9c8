//! Decoding photos into RGB in `[0, 1]`.

use std::path::Path;

use crate::error::{Error, Result};

/// An RGB image, interleaved, row-major, values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
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
}

/// Decodes an image file into RGB.
///
/// # Errors
/// When the file cannot be read or decoded.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let img = image::open(path).map_err(|e| Error::Image {
        reason: e.to_string(),
        path: path.to_path_buf(),
    })?;
    let rgb = img.to_rgb32f();
    let (width, height) = rgb.dimensions();
    RgbImage::new(width, height, rgb.into_raw())
}
