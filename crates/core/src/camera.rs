//! Pinhole camera intrinsics: where they come from (a field of view, EXIF, a JSON file, a
//! guess) and what they do (the matrix `K`, unprojecting a pixel to a point).
//!
//! # Pixel convention
//! Pixel `(i, j)` (column `i`, row `j`) has its **centre at `(u, v) = (i, j)`**, so the image
//! covers `[-0.5, W - 0.5] x [-0.5, H - 0.5]` and its centre is `((W - 1) / 2, (H - 1) / 2)`.
//! This is Open3D's convention (its PrimeSense default is `cx = 319.5` for 640 pixels), the
//! one of the datasets under `shared/data` (Redwood, ICL-NUIM), and it lets a depth map be
//! unprojected with integer column and row indices directly. Every constructor below that
//! places the principal point itself ([`Intrinsics::from_fov`], [`Intrinsics::from_exif`],
//! [`Intrinsics::default_guess`]) puts it at that centre, and [`Intrinsics::scaled`] keeps
//! the convention when an image is resized.
//!
//! Camera coordinates are metres, x right, y down, z forward.
//!
//! ```
//! use anydepth_core::camera::Intrinsics;
//!
//! let camera = Intrinsics::from_fov(640, 480, 90.0).expect("valid field of view");
//! assert!((camera.fx - 320.0).abs() < 1e-9);
//! assert_eq!((camera.cx, camera.cy), (319.5, 239.5));
//! // The centre pixel at 2 m lies on the optical axis.
//! let p = camera.unproject(319.5, 239.5, 2.0);
//! assert_eq!((p.x, p.y, p.z), (0.0, 0.0, 2.0));
//! ```

use std::io::Cursor;
use std::path::Path;

use nalgebra::{Matrix3, Point3};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Horizontal field of view (across the longer image side) assumed by
/// [`Intrinsics::default_guess`], in degrees.
pub const DEFAULT_FOV_DEG: f64 = 60.0;

/// Diagonal of a 36 x 24 mm film frame, in millimetres.
const FILM_35MM_DIAGONAL_MM: f64 = 43.266_615_305_567_87;

/// Pinhole intrinsics of a `width x height` image, in pixels.
///
/// `u = fx * x / z + cx`, `v = fy * y / z + cy`, pixel centres at integer coordinates (see
/// the [module docs](self)). Fields are public plain data; every constructor, the JSON
/// readers and serde deserialization check them with [`Intrinsics::validate`].
///
/// Serializes as `{"width", "height", "fx", "fy", "cx", "cy"}`; deserializes from that or
/// from Open3D's layout `{"width", "height", "intrinsic_matrix": [9 values, column-major]}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "IntrinsicsJson")]
pub struct Intrinsics {
    /// Image width, in pixels.
    pub width: u32,
    /// Image height, in pixels.
    pub height: u32,
    /// Focal length along x, in pixels.
    pub fx: f64,
    /// Focal length along y, in pixels.
    pub fy: f64,
    /// Principal point, column.
    pub cx: f64,
    /// Principal point, row.
    pub cy: f64,
}

/// The JSON layouts accepted when reading.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntrinsicsJson {
    Plain {
        width: u32,
        height: u32,
        fx: f64,
        fy: f64,
        cx: f64,
        cy: f64,
    },
    Open3d {
        width: u32,
        height: u32,
        intrinsic_matrix: [f64; 9],
    },
}

impl TryFrom<IntrinsicsJson> for Intrinsics {
    type Error = Error;

    fn try_from(json: IntrinsicsJson) -> Result<Self> {
        match json {
            IntrinsicsJson::Plain {
                width,
                height,
                fx,
                fy,
                cx,
                cy,
            } => Self::new(fx, fy, cx, cy, width, height),
            IntrinsicsJson::Open3d {
                width,
                height,
                intrinsic_matrix: m,
            } => {
                // Column-major: [fx, 0, 0, skew, fy, 0, cx, cy, 1].
                if m[1] != 0.0 || m[2] != 0.0 || m[3] != 0.0 || m[5] != 0.0 || m[8] != 1.0 {
                    return Err(Error::Intrinsics(format!(
                        "intrinsic_matrix {m:?} is not a pinhole matrix without skew \
                         (expected column-major [fx, 0, 0, 0, fy, 0, cx, cy, 1])"
                    )));
                }
                Self::new(m[0], m[4], m[6], m[7], width, height)
            }
        }
    }
}

impl Intrinsics {
    /// Intrinsics from focal lengths and principal point in pixels.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let camera = Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid");
    /// assert_eq!(camera.matrix()[(0, 2)], 319.5);
    /// assert!(Intrinsics::new(0.0, 525.0, 319.5, 239.5, 640, 480).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::Intrinsics`] when a focal length is not positive and finite, the principal
    /// point is not finite, or the image is empty.
    pub fn new(fx: f64, fy: f64, cx: f64, cy: f64, width: u32, height: u32) -> Result<Self> {
        let camera = Self {
            width,
            height,
            fx,
            fy,
            cx,
            cy,
        };
        camera.validate()?;
        Ok(camera)
    }

    /// Checks what [`Intrinsics::new`] checks, for values built or edited field by field.
    ///
    /// # Errors
    /// [`Error::Intrinsics`] saying which value is wrong.
    pub fn validate(&self) -> Result<()> {
        for (name, f) in [("fx", self.fx), ("fy", self.fy)] {
            if !(f.is_finite() && f > 0.0) {
                return Err(Error::Intrinsics(format!(
                    "focal length {name} = {f} must be positive and finite"
                )));
            }
        }
        for (name, c) in [("cx", self.cx), ("cy", self.cy)] {
            if !c.is_finite() {
                return Err(Error::Intrinsics(format!(
                    "principal point {name} = {c} must be finite"
                )));
            }
        }
        if self.width == 0 || self.height == 0 {
            return Err(Error::Intrinsics(format!(
                "image size {} x {} must be positive",
                self.width, self.height
            )));
        }
        Ok(())
    }

    /// Square pixels, principal point at the image centre `((W - 1) / 2, (H - 1) / 2)`, and
    /// `f = 0.5 * W / tan(fov_x / 2)`, `fov_x_deg` being the field of view across the width.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let camera = Intrinsics::from_fov(1000, 500, 90.0).expect("valid");
    /// assert!((camera.fx - 500.0).abs() < 1e-9 && camera.fx == camera.fy);
    /// assert_eq!((camera.cx, camera.cy), (499.5, 249.5));
    /// ```
    ///
    /// # Errors
    /// [`Error::Intrinsics`] when `fov_x_deg` is not in `(0, 180)` or the image is empty.
    pub fn from_fov(width: u32, height: u32, fov_x_deg: f64) -> Result<Self> {
        if !(fov_x_deg > 0.0 && fov_x_deg < 180.0) {
            return Err(Error::Intrinsics(format!(
                "horizontal field of view {fov_x_deg} degrees must lie in (0, 180)"
            )));
        }
        let f = 0.5 * f64::from(width) / (0.5 * fov_x_deg.to_radians()).tan();
        Self::centred(f, width, height)
    }

    /// A guess for photos of unknown origin: [`DEFAULT_FOV_DEG`] (60 degrees) across the
    /// **longer** side, square pixels, principal point at the centre.
    ///
    /// 60 degrees is near the 55-70 degrees of phone main cameras and of the usual fallbacks;
    /// taking the longer side gives a portrait photo the same focal length as the same
    /// camera's landscape one. For landscape images this is a 60 degree horizontal FoV.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let landscape = Intrinsics::default_guess(640, 480).expect("valid");
    /// let portrait = Intrinsics::default_guess(480, 640).expect("valid");
    /// assert_eq!(landscape.fx, portrait.fx);
    /// ```
    ///
    /// # Errors
    /// [`Error::Intrinsics`] when the image is empty.
    pub fn default_guess(width: u32, height: u32) -> Result<Self> {
        let long_side = f64::from(width.max(height));
        let f = 0.5 * long_side / (0.5 * DEFAULT_FOV_DEG.to_radians()).tan();
        Self::centred(f, width, height)
    }

    /// Focal length from the EXIF block of an image file's bytes (JPEG, TIFF, PNG, WebP,
    /// HEIF), for that image shown at `width x height` pixels; principal point at the centre.
    ///
    /// Uses, in this order:
    /// 1. `FocalLengthIn35mmFilm`: `f_px = f35 * sqrt(W^2 + H^2) / sqrt(36^2 + 24^2)`
    ///    (independent of rotation and resizing);
    /// 2. `FocalLength` in mm with `FocalPlaneXResolution` / `FocalPlaneResolutionUnit`:
    ///    `f_px = f_mm * pixels_per_mm`, for the resolution the camera wrote; when
    ///    `PixelXDimension` / `PixelYDimension` are present the result is rescaled by the
    ///    ratio of image diagonals, so resized or rotated copies still work.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// // A file format without EXIF (here, a few bytes of PNM) gives no intrinsics.
    /// assert_eq!(Intrinsics::from_exif(b"P6\n1 1\n255\n\0\0\0", 1, 1).expect("no EXIF"), None);
    /// ```
    ///
    /// # Errors
    /// [`Error::Format`] when the file has an EXIF block that cannot be parsed (or a container
    /// that is truncated before it), [`Error::Intrinsics`] when the image is empty.
    /// `Ok(None)` when there is no EXIF block or it holds no usable focal length.
    pub fn from_exif(bytes: &[u8], width: u32, height: u32) -> Result<Option<Self>> {
        if width == 0 || height == 0 {
            return Err(Error::Intrinsics(format!(
                "image size {width} x {height} must be positive"
            )));
        }
        if !may_carry_exif(bytes) {
            return Ok(None);
        }
        let exif = match exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) {
            Ok(exif) => exif,
            Err(exif::Error::NotFound(_)) => return Ok(None),
            Err(e) => {
                return Err(Error::Format {
                    what: "EXIF",
                    reason: e.to_string(),
                })
            }
        };
        let Some(f_px) = focal_px_from_exif(&exif, width, height) else {
            return Ok(None);
        };
        Self::centred(f_px, width, height).map(Some)
    }

    /// [`Intrinsics::from_exif`] on the bytes of the file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, otherwise as [`Intrinsics::from_exif`].
    pub fn from_exif_file(path: &Path, width: u32, height: u32) -> Result<Option<Self>> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            reason: format!("cannot read image for its EXIF: {e}"),
            path: path.to_path_buf(),
        })?;
        Self::from_exif(&bytes, width, height)
    }

    /// Reads intrinsics from JSON (this type's layout or Open3D's `intrinsic_matrix` one).
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let json = r#"{"width": 640, "height": 480,
    ///               "intrinsic_matrix": [525, 0, 0, 0, 525, 0, 319.5, 239.5, 1]}"#;
    /// let camera = Intrinsics::from_json_str(json).expect("Open3D layout");
    /// assert_eq!((camera.fx, camera.cy), (525.0, 239.5));
    /// ```
    ///
    /// # Errors
    /// [`Error::Format`] for JSON of neither layout or values that fail
    /// [`Intrinsics::validate`].
    pub fn from_json_str(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Format {
            what: "camera intrinsics JSON",
            reason: e.to_string(),
        })
    }

    /// Reads intrinsics from a JSON file, see [`Intrinsics::from_json_str`].
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::FileFormat`] when its content is
    /// not valid intrinsics.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            reason: format!("cannot read camera intrinsics: {e}"),
            path: path.to_path_buf(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::FileFormat {
            what: "camera intrinsics JSON",
            reason: e.to_string(),
            path: path.to_path_buf(),
        })
    }

    /// Pretty JSON in this type's layout `{"width", "height", "fx", "fy", "cx", "cy"}`.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let camera = Intrinsics::default_guess(640, 480).expect("valid");
    /// let back = Intrinsics::from_json_str(&camera.to_json_string()).expect("round trip");
    /// assert_eq!(back, camera);
    /// ```
    pub fn to_json_string(&self) -> String {
        // Six numbers in a struct always serialize; fall back to `null` rather than panic.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "null".to_owned())
    }

    /// Intrinsics of this camera's image resized to `new_width x new_height`.
    ///
    /// With pixel centres at integer coordinates, a resize by `s = new / old` maps
    /// `u -> (u + 0.5) * s - 0.5`, so `fx' = fx * sx` and `cx' = (cx + 0.5) * sx - 0.5`
    /// (the same for y). The image centre stays the image centre.
    ///
    /// ```
    /// use anydepth_core::camera::Intrinsics;
    ///
    /// let camera = Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid");
    /// let half = camera.scaled(320, 240).expect("valid");
    /// assert_eq!((half.fx, half.cx, half.cy), (262.5, 159.5, 119.5));
    /// ```
    ///
    /// # Errors
    /// [`Error::Intrinsics`] when the new size is empty.
    pub fn scaled(&self, new_width: u32, new_height: u32) -> Result<Self> {
        let sx = f64::from(new_width) / f64::from(self.width);
        let sy = f64::from(new_height) / f64::from(self.height);
        Self::new(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            new_width,
            new_height,
        )
    }

    /// The matrix `K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`.
    pub fn matrix(&self) -> Matrix3<f64> {
        Matrix3::new(
            self.fx, 0.0, self.cx, //
            0.0, self.fy, self.cy, //
            0.0, 0.0, 1.0,
        )
    }

    /// The point in camera coordinates seen at pixel `(u, v)` with depth `z` along the
    /// optical axis (not along the ray): `((u - cx) * z / fx, (v - cy) * z / fy, z)`.
    pub fn unproject(&self, u: f64, v: f64, z: f64) -> Point3<f64> {
        Point3::new((u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z)
    }

    /// The pixel `(u, v)` where a point in camera coordinates appears; `None` when it is not
    /// in front of the camera (`z <= 0` or not finite). The pixel may lie outside the image.
    pub fn project(&self, p_in_camera: &Point3<f64>) -> Option<(f64, f64)> {
        let z = p_in_camera.z;
        if !(z.is_finite() && z > 0.0) {
            return None;
        }
        Some((
            self.fx * p_in_camera.x / z + self.cx,
            self.fy * p_in_camera.y / z + self.cy,
        ))
    }

    /// Horizontal field of view across the whole width, in degrees.
    pub fn fov_x_deg(&self) -> f64 {
        (2.0 * (0.5 * f64::from(self.width) / self.fx).atan()).to_degrees()
    }

    /// Square pixels of focal length `f`, principal point at the image centre.
    fn centred(f: f64, width: u32, height: u32) -> Result<Self> {
        Self::new(
            f,
            f,
            0.5 * (f64::from(width) - 1.0),
            0.5 * (f64::from(height) - 1.0),
            width,
            height,
        )
    }
}

/// Whether `bytes` start like one of the containers `kamadak-exif` reads (TIFF, JPEG, PNG,
/// WebP, HEIF); other formats (BMP, PNM, ...) have no EXIF block to read.
fn may_carry_exif(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(&[0xff, 0xd8])
        || bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || (bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"))
        || bytes.get(4..8) == Some(b"ftyp")
}

/// The focal length in pixels of a `width x height` image from EXIF, if it says enough.
fn focal_px_from_exif(exif: &exif::Exif, width: u32, height: u32) -> Option<f64> {
    let diagonal_px = f64::from(width).hypot(f64::from(height));
    let field = |tag| exif.get_field(tag, exif::In::PRIMARY).map(|f| &f.value);
    let positive = |x: f64| (x.is_finite() && x > 0.0).then_some(x);

    // 0 means "unknown" for FocalLengthIn35mmFilm.
    if let Some(f35) = field(exif::Tag::FocalLengthIn35mmFilm)
        .and_then(|v| v.get_uint(0))
        .and_then(|f| positive(f64::from(f)))
    {
        return Some(f35 * diagonal_px / FILM_35MM_DIAGONAL_MM);
    }

    let f_mm = field(exif::Tag::FocalLength)
        .and_then(rational)
        .and_then(positive)?;
    let res_x = field(exif::Tag::FocalPlaneXResolution)
        .and_then(rational)
        .and_then(positive)?;
    // Default unit is the inch (2); 4 (mm) and 5 (um) are DNG extensions.
    let unit_mm = match field(exif::Tag::FocalPlaneResolutionUnit).and_then(|v| v.get_uint(0)) {
        None | Some(2) => 25.4,
        Some(3) => 10.0,
        Some(4) => 1.0,
        Some(5) => 0.001,
        Some(_) => return None,
    };
    let f_px_original = f_mm * res_x / unit_mm;
    let original = |tag| {
        field(tag)
            .and_then(|v| v.get_uint(0))
            .and_then(|n| positive(f64::from(n)))
    };
    let scale = match (
        original(exif::Tag::PixelXDimension),
        original(exif::Tag::PixelYDimension),
    ) {
        (Some(w), Some(h)) => diagonal_px / w.hypot(h),
        _ => 1.0,
    };
    positive(f_px_original * scale)
}

/// The first value of an unsigned rational field, as `f64`.
fn rational(value: &exif::Value) -> Option<f64> {
    match value {
        exif::Value::Rational(v) => v.first().map(|r| r.to_f64()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use exif::experimental::Writer;
    use exif::{Field, In, Rational, Tag, Value};

    const PRIMESENSE: &str = "../../../shared/data/redwood-livingroom/camera_primesense.json";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    /// A little-endian TIFF holding only `fields`.
    fn tiff_with(fields: &[Field]) -> Vec<u8> {
        let mut writer = Writer::new();
        for field in fields {
            writer.push_field(field);
        }
        let mut out = Cursor::new(Vec::new());
        writer.write(&mut out, true).expect("writes EXIF");
        out.into_inner()
    }

    /// A JPEG-looking file: SOI, an APP1 EXIF segment holding `tiff`, EOI.
    fn jpeg_with(tiff: &[u8]) -> Vec<u8> {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(tiff);
        let mut out = vec![0xff, 0xd8, 0xff, 0xe1];
        out.extend_from_slice(&u16::try_from(app1.len() + 2).expect("small").to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&[0xff, 0xd9]);
        out
    }

    fn short(tag: Tag, value: u16) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![value]),
        }
    }

    fn long(tag: Tag, value: u32) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Long(vec![value]),
        }
    }

    fn rational_field(tag: Tag, num: u32, denom: u32) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![Rational { num, denom }]),
        }
    }

    #[test]
    fn new_validates_without_panicking() {
        assert!(Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).is_ok());
        for (fx, fy, cx, w, h) in [
            (0.0, 1.0, 0.0, 1, 1),
            (-1.0, 1.0, 0.0, 1, 1),
            (1.0, f64::NAN, 0.0, 1, 1),
            (f64::INFINITY, 1.0, 0.0, 1, 1),
            (1.0, 1.0, f64::NAN, 1, 1),
            (1.0, 1.0, 0.0, 0, 1),
            (1.0, 1.0, 0.0, 1, 0),
        ] {
            let result = Intrinsics::new(fx, fy, cx, 0.0, w, h);
            assert!(
                matches!(result, Err(Error::Intrinsics(_))),
                "{fx} {fy} {cx} {w} {h}: {result:?}"
            );
        }
    }

    #[test]
    fn from_fov_matches_the_formula_and_its_inverse() {
        let camera = Intrinsics::from_fov(640, 480, 60.0).expect("valid");
        let f = 320.0 / 30f64.to_radians().tan();
        assert!(close(camera.fx, f) && close(camera.fy, f));
        assert_eq!((camera.cx, camera.cy), (319.5, 239.5));
        assert!(close(camera.fov_x_deg(), 60.0));
        // The edge of the image (u = -0.5) is seen at half the field of view.
        let edge = camera.unproject(-0.5, camera.cy, 1.0);
        assert!(close((-edge.x).atan().to_degrees(), 30.0));
        for fov in [0.0, -5.0, 180.0, 200.0, f64::NAN] {
            assert!(Intrinsics::from_fov(640, 480, fov).is_err(), "{fov}");
        }
        assert!(Intrinsics::from_fov(0, 480, 60.0).is_err());
    }

    #[test]
    fn default_guess_is_60_degrees_across_the_longer_side() {
        let landscape = Intrinsics::default_guess(1920, 1080).expect("valid");
        assert!(close(landscape.fov_x_deg(), DEFAULT_FOV_DEG));
        let portrait = Intrinsics::default_guess(1080, 1920).expect("valid");
        assert!(close(portrait.fx, landscape.fx));
        assert_eq!((portrait.cx, portrait.cy), (539.5, 959.5));
        assert!(Intrinsics::default_guess(0, 0).is_err());
    }

    #[test]
    fn json_round_trip_and_primesense_file() {
        let camera =
            Intrinsics::new(518.8579, 519.46961, 325.58245, 253.73617, 640, 480).expect("valid");
        let json = camera.to_json_string();
        assert!(json.contains("\"fx\""), "{json}");
        assert_eq!(Intrinsics::from_json_str(&json).expect("reads"), camera);

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("camera.json");
        std::fs::write(&path, &json).expect("writes");
        assert_eq!(Intrinsics::from_json_file(&path).expect("reads"), camera);

        let primesense = Path::new(env!("CARGO_MANIFEST_DIR")).join(PRIMESENSE);
        if primesense.exists() {
            let camera = Intrinsics::from_json_file(&primesense).expect("Open3D layout");
            assert_eq!(
                camera,
                Intrinsics::new(525.0, 525.0, 319.5, 239.5, 640, 480).expect("valid")
            );
        } else {
            eprintln!("skipped: {} is absent", primesense.display());
        }
    }

    #[test]
    fn json_errors_are_reported() {
        let invalid = r#"{"width": 640, "height": 480, "fx": -1, "fy": 1, "cx": 0, "cy": 0}"#;
        let message = Intrinsics::from_json_str(invalid)
            .expect_err("negative focal length")
            .to_string();
        assert!(message.contains("fx"), "{message}");
        let skewed = r#"{"width": 2, "height": 2, "intrinsic_matrix": [1,0,0,0.5,1,0,1,1,1]}"#;
        assert!(Intrinsics::from_json_str(skewed).is_err());
        assert!(Intrinsics::from_json_str(r#"{"width": 640}"#).is_err());
        assert!(Intrinsics::from_json_str("not json").is_err());

        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            Intrinsics::from_json_file(&missing),
            Err(Error::Io { .. })
        ));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").expect("writes");
        match Intrinsics::from_json_file(&bad) {
            Err(Error::FileFormat { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected FileFormat, got {other:?}"),
        }
    }

    #[test]
    fn scaled_keeps_the_image_centre_and_field_of_view() {
        let camera = Intrinsics::from_fov(640, 480, 70.0).expect("valid");
        let small = camera.scaled(160, 120).expect("valid");
        assert_eq!((small.cx, small.cy), (79.5, 59.5));
        assert!(close(small.fov_x_deg(), 70.0));
        // A point projects to the same place relative to the image, whatever its size.
        let p = Point3::new(0.3, -0.2, 2.0);
        let (u, v) = camera.project(&p).expect("in front");
        let (us, vs) = small.project(&p).expect("in front");
        assert!(close((u + 0.5) / 640.0, (us + 0.5) / 160.0));
        assert!(close((v + 0.5) / 480.0, (vs + 0.5) / 120.0));
        // Off-centre principal points move with the pixel grid.
        let odd = Intrinsics::new(500.0, 400.0, 300.0, 200.0, 640, 480).expect("valid");
        let double = odd.scaled(1280, 960).expect("valid");
        assert_eq!(
            (double.fx, double.fy, double.cx, double.cy),
            (1000.0, 800.0, 600.5, 400.5)
        );
        assert!(camera.scaled(0, 120).is_err());
    }

    #[test]
    fn matrix_unproject_and_project_agree() {
        let camera = Intrinsics::new(525.0, 520.0, 319.5, 239.5, 640, 480).expect("valid");
        let k = camera.matrix();
        let p = camera.unproject(100.0, 400.0, 2.5);
        let uvw = k * p.coords;
        assert!(close(uvw.x / uvw.z, 100.0) && close(uvw.y / uvw.z, 400.0));
        assert!(close(p.z, 2.5));
        let (u, v) = camera.project(&p).expect("in front");
        assert!(close(u, 100.0) && close(v, 400.0));
        assert_eq!(camera.project(&Point3::new(1.0, 1.0, 0.0)), None);
        assert_eq!(k[(2, 2)], 1.0);
        assert_eq!((k[(0, 0)], k[(1, 1)], k[(1, 2)]), (525.0, 520.0, 239.5));
    }

    #[test]
    fn exif_35mm_equivalent_focal_length() {
        let tiff = tiff_with(&[short(Tag::FocalLengthIn35mmFilm, 26)]);
        let expected = 26.0 * 4000f64.hypot(3000.0) / 36f64.hypot(24.0);
        for bytes in [tiff.clone(), jpeg_with(&tiff)] {
            let camera = Intrinsics::from_exif(&bytes, 4000, 3000)
                .expect("readable")
                .expect("has a focal length");
            assert!(close(camera.fx, expected) && close(camera.fy, expected));
            assert_eq!((camera.cx, camera.cy), (1999.5, 1499.5));
        }
        // Rotation does not change it.
        let rotated = Intrinsics::from_exif(&tiff, 3000, 4000)
            .expect("readable")
            .expect("has a focal length");
        assert!(close(rotated.fx, expected));
    }

    #[test]
    fn exif_focal_length_and_focal_plane_resolution() {
        // 4.25 mm lens, 1000 pixels per cm on the sensor, written for a 4000 x 3000 image.
        let fields = [
            rational_field(Tag::FocalLength, 425, 100),
            rational_field(Tag::FocalPlaneXResolution, 1000, 1),
            short(Tag::FocalPlaneResolutionUnit, 3),
            long(Tag::PixelXDimension, 4000),
            long(Tag::PixelYDimension, 3000),
        ];
        let jpeg = jpeg_with(&tiff_with(&fields));
        let full = Intrinsics::from_exif(&jpeg, 4000, 3000)
            .expect("readable")
            .expect("has a focal length");
        assert!(close(full.fx, 425.0), "{}", full.fx);
        let half = Intrinsics::from_exif(&jpeg, 2000, 1500)
            .expect("readable")
            .expect("has a focal length");
        assert!(close(half.fx, 212.5), "{}", half.fx);
        // The 35 mm equivalent wins when both are present.
        let mut both = fields.to_vec();
        both.push(short(Tag::FocalLengthIn35mmFilm, 50));
        let camera = Intrinsics::from_exif(&tiff_with(&both), 4000, 3000)
            .expect("readable")
            .expect("has a focal length");
        assert!(close(camera.fx, 50.0 * 5000.0 / 36f64.hypot(24.0)));
        // Inches are the default unit.
        let inches = [
            rational_field(Tag::FocalLength, 4, 1),
            rational_field(Tag::FocalPlaneXResolution, 2540, 1),
        ];
        let camera = Intrinsics::from_exif(&tiff_with(&inches), 100, 100)
            .expect("readable")
            .expect("has a focal length");
        assert!(close(camera.fx, 400.0), "{}", camera.fx);
    }

    #[test]
    fn exif_without_a_focal_length_gives_none() {
        let orientation_only = jpeg_with(&tiff_with(&[short(Tag::Orientation, 1)]));
        assert_eq!(
            Intrinsics::from_exif(&orientation_only, 64, 48).expect("ok"),
            None
        );
        let unknown_35mm = tiff_with(&[short(Tag::FocalLengthIn35mmFilm, 0)]);
        assert_eq!(
            Intrinsics::from_exif(&unknown_35mm, 64, 48).expect("ok"),
            None
        );
        let no_resolution = tiff_with(&[rational_field(Tag::FocalLength, 4, 1)]);
        assert_eq!(
            Intrinsics::from_exif(&no_resolution, 64, 48).expect("ok"),
            None
        );
        // A JPEG without any APP1 segment, and a format that has no EXIF.
        let bare_jpeg = [0xff, 0xd8, 0xff, 0xd9];
        assert_eq!(Intrinsics::from_exif(&bare_jpeg, 64, 48).expect("ok"), None);
        assert_eq!(Intrinsics::from_exif(b"BM\0\0", 64, 48).expect("ok"), None);
    }

    #[test]
    fn photos_without_exif_give_none() {
        let photo =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/photos/demo01.jpg");
        if !photo.exists() {
            eprintln!("skipped: {} is absent", photo.display());
            return;
        }
        assert_eq!(
            Intrinsics::from_exif_file(&photo, 100, 100).expect("readable"),
            None
        );
        let missing = photo.with_file_name("missing.jpg");
        assert!(matches!(
            Intrinsics::from_exif_file(&missing, 100, 100),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn corrupt_exif_is_an_error() {
        let tiff = tiff_with(&[short(Tag::FocalLengthIn35mmFilm, 26)]);
        // An IFD offset pointing past the end of the block.
        let mut corrupt = tiff.clone();
        corrupt[4..8].copy_from_slice(&0xffffu32.to_le_bytes());
        for bytes in [corrupt.clone(), jpeg_with(&corrupt), jpeg_with(b"II*\0")] {
            let result = Intrinsics::from_exif(&bytes, 64, 48);
            assert!(
                matches!(result, Err(Error::Format { what: "EXIF", .. })),
                "{result:?}"
            );
        }
        // A JPEG cut inside its APP1 segment.
        let jpeg = jpeg_with(&tiff);
        assert!(Intrinsics::from_exif(&jpeg[..12], 64, 48).is_err());
        assert!(Intrinsics::from_exif(&jpeg, 0, 48).is_err());
    }
}
