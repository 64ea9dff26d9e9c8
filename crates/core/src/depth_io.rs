//! Reading depth maps from files: 16-bit PNG or PGM with a scale (sensor depth), `.npy`
//! (float or integer arrays, as `anydepth depth` writes them), `.pfm` and `.exr` (see
//! [`crate::openexr`] for which channel is depth).
//!
//! ```no_run
//! use anydepth_core::depth_io::read_depth_values;
//! use anydepth_core::{DepthMap, Metres};
//!
//! // A TUM RGB-D depth frame: 5000 units per metre.
//! let depth: DepthMap<Metres> = read_depth_values("depth.png".as_ref(), 5000.0)?;
//! println!("{} x {}", depth.width(), depth.height());
//! # Ok::<(), anydepth_core::Error>(())
//! ```

use std::path::Path;

use crate::depth::{DepthMap, ValueKind};
use crate::error::{Error, Result};
use crate::npy;
use crate::openexr;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Io {
        reason: reason.into(),
        path: path.to_path_buf(),
    }
}

/// Reads a depth file into a map of `values / units_per_metre`, typed by what the caller
/// knows it holds (metres, or disparity). Images (16-bit or
/// 8-bit PNG, PGM, TIFF) and integer `.npy` arrays are divided by `units_per_metre`; the
/// float formats (float `.npy`, `.pfm`, `.exr`) are divided by it too, so they are taken as
/// they are with `units_per_metre` 1. Zero stays zero; non-finite and negative values are
/// kept as stored (both mean "no measurement" to the geometry).
///
/// # Errors
/// When the file cannot be read, is not a single-channel map, or the scale is not positive.
pub fn read_depth_values<K: ValueKind>(path: &Path, units_per_metre: f64) -> Result<DepthMap<K>> {
    let (width, height, values) = read_values(path, units_per_metre)?;
    DepthMap::new(width, height, values)
}

/// [`read_depth_values`] as `(width, height, values)`.
fn read_values(path: &Path, units_per_metre: f64) -> Result<(u32, u32, Vec<f32>)> {
    if !(units_per_metre.is_finite() && units_per_metre > 0.0) {
        return Err(bad(
            path,
            format!("depth scale must be positive, got {units_per_metre}"),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let scale = (1.0 / units_per_metre) as f32;
    let (w, h, mut values) = match ext.as_str() {
        "npy" => {
            let (shape, values) = npy::read_f32(path)?;
            let [h, w] = shape[..] else {
                return Err(bad(
                    path,
                    format!("expected a 2-d array, got shape {shape:?}"),
                ));
            };
            (w as u32, h as u32, values)
        }
        "pfm" => read_pfm(path)?,
        "exr" => openexr::read_depth(path)?,
        _ => {
            let img = image::open(path)
                .map_err(|e| bad(path, format!("cannot read depth image: {e}")))?;
            let (w, h) = (img.width(), img.height());
            let values: Vec<f32> = match img {
                image::DynamicImage::ImageLuma16(buf) => {
                    buf.into_raw().into_iter().map(f32::from).collect()
                }
                image::DynamicImage::ImageLuma8(buf) => {
                    buf.into_raw().into_iter().map(f32::from).collect()
                }
                other => {
                    return Err(bad(
                        path,
                        format!(
                            "a depth image must have one channel, this one is {:?}",
                            other.color()
                        ),
                    ))
                }
            };
            (w, h, values)
        }
    };
    if w == 0 || h == 0 {
        return Err(bad(path, "empty depth map"));
    }
    if scale != 1.0 {
        values.iter_mut().for_each(|v| *v *= scale);
    }
    Ok((w, h, values))
}

/// Greyscale PFM (`Pf`), either byte order, rows stored bottom to top.
fn read_pfm(path: &Path) -> Result<(u32, u32, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 && pos < bytes.len() {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    pos += 1; // the single whitespace byte before the data
    let parse = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| bad(path, "malformed PFM header"))
    };
    if fields.len() < 4 || fields[0] != "Pf" {
        return Err(bad(path, "not a greyscale PFM (Pf) file"));
    }
    let (w, h, scale) = (
        parse(&fields[1])? as u32,
        parse(&fields[2])? as u32,
        parse(&fields[3])?,
    );
    let n = w as usize * h as usize;
    let data = bytes
        .get(pos..pos + 4 * n)
        .ok_or_else(|| bad(path, "PFM data is truncated"))?;
    let mut values = vec![0f32; n];
    for (i, c) in data.chunks_exact(4).enumerate() {
        let b = [c[0], c[1], c[2], c[3]];
        let v = if scale < 0.0 {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        };
        let (row, col) = (i / w as usize, i % w as usize);
        values[(h as usize - 1 - row) * w as usize + col] = v;
    }
    Ok((w, h, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depth::Metres;

    /// The file as `(width, height, values)`.
    fn read_depth_values(path: &Path, units_per_metre: f64) -> Result<(u32, u32, Vec<f32>)> {
        Ok(super::read_depth_values::<Metres>(path, units_per_metre)?.into_parts())
    }

    #[test]
    fn png16_npy_and_pfm_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let png = dir.path().join("d.png");
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(2, 1, vec![1000, 0])
            .expect("buffer")
            .save(&png)
            .expect("png");
        assert_eq!(
            read_depth_values(&png, 1000.0).expect("png").2,
            vec![1.0, 0.0]
        );

        let npy_path = dir.path().join("d.npy");
        std::fs::write(
            &npy_path,
            npy::encode_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]),
        )
        .expect("npy");
        let (w, h, v) = read_depth_values(&npy_path, 1.0).expect("npy");
        assert_eq!((w, h, v[5]), (3, 2, 6.0));

        // 2 x 2, bottom row first in the file.
        let pfm = dir.path().join("d.pfm");
        let mut bytes = b"Pf\n2 2\n-1.0\n".to_vec();
        for v in [3.0f32, 4.0, 1.0, 2.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&pfm, bytes).expect("pfm");
        assert_eq!(
            read_depth_values(&pfm, 1.0).expect("pfm").2,
            vec![1.0, 2.0, 3.0, 4.0]
        );

        assert!(read_depth_values(&png, 0.0).is_err());
        std::fs::write(dir.path().join("bad.pfm"), b"Pf\n2 2\n-1.0\n").expect("write");
        assert!(read_depth_values(&dir.path().join("bad.pfm"), 1.0).is_err());
    }

    #[test]
    fn sensor_frames_in_shared_data_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        let pgm = root.join("kinect-office/depth/1.pgm");
        if !pgm.exists() {
            eprintln!("skipping: {} not found", pgm.display());
            return;
        }
        let (w, h, v) = read_depth_values(&pgm, 1000.0).expect("16-bit PGM");
        assert_eq!((w, h), (640, 480));
        let valid: Vec<f32> = v.into_iter().filter(|&d| d > 0.0).collect();
        assert!(
            !valid.is_empty() && valid.iter().all(|&d| d < 10.0),
            "metres in range"
        );
    }
}
