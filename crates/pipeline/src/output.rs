//! Every output encoder: depth maps as raw values (`.npy`, `.pfm`, `.exr`), normalised
//! 16-bit PNG, and colour images like the official Depth Anything `run.py`; point cloud
//! and mesh files (PLY, OBJ and GLB, encoded by [`crate::shape`] and `anydepth-geometry`).
//!
//! Every write is atomic: the bytes go to a temporary file in the target directory, which
//! is flushed, synced and then renamed over the final path, so a crash or an error never
//! leaves a half-written file there. Existing files are only replaced with `force`.

use std::path::{Path, PathBuf};

use anydepth_core::colormap::Colormap;
use anydepth_core::depth::finite_range;
use anydepth_core::RgbImage;
pub use anydepth_geometry::io::{obj, ply};
use image::codecs::png::PngEncoder;
use image::{ImageBuffer, Luma, Rgb};

use crate::error::{bail, ensure, Context, Result};
use crate::shape::{self, ShapeFormat, TexturedMesh, ViewCamera};

/// A point cloud or mesh file to write: `.ply` (binary unless `ascii`), `.glb` or, for a
/// mesh, `.obj`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FileOutput {
    /// Output file: .ply (binary unless --ascii), .glb (glTF binary) or, for a mesh, .obj.
    #[cfg_attr(
        feature = "clap",
        arg(short = 'o', long = "output", id = "output", value_name = "FILE")
    )]
    pub path: PathBuf,

    /// Write ASCII PLY instead of binary.
    #[cfg_attr(feature = "clap", arg(long))]
    pub ascii: bool,

    /// In a .glb output, add each view's camera (position, orientation and field of view)
    /// with its frustum drawn as lines.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cameras: bool,

    /// Replace existing outputs.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
}

impl FileOutput {
    /// Refuses an existing file unless `force` (`what` names it in the message), a format
    /// the options do not fit (`--ascii` for other than PLY, `--cameras` for other than
    /// GLB).
    ///
    /// # Errors
    /// As described.
    pub fn check(&self, what: &str) -> Result<()> {
        let format = self.format()?;
        if self.cameras && !format.carries_cameras() {
            bail!("--cameras needs a glTF output: give a file ending in .glb");
        }
        if self.path.exists() && !self.force {
            bail!(
                "refusing to overwrite an existing {what} (pass --force to replace it): {}",
                self.path.display()
            );
        }
        Ok(())
    }

    /// [`FileOutput::check`], and that the format holds points (not OBJ).
    ///
    /// # Errors
    /// As [`FileOutput::check`], and for an OBJ file.
    pub fn check_cloud(&self, what: &str) -> Result<()> {
        self.check(what)?;
        if self.format()? == ShapeFormat::Obj {
            bail!("OBJ holds meshes: write a point cloud as .ply or .glb");
        }
        Ok(())
    }

    /// The file's format, by its extension.
    ///
    /// # Errors
    /// When `--ascii` is given for other than PLY.
    pub fn format(&self) -> Result<ShapeFormat> {
        ShapeFormat::from_path(&self.path, self.ascii)
    }

    /// Writes `cloud` (and `cameras`, when [`FileOutput::cameras`] asks for them),
    /// atomically.
    ///
    /// # Errors
    /// When the cloud is invalid, the format cannot hold it, or the file cannot be
    /// written.
    pub fn write_cloud(
        &self,
        cloud: &anydepth_geometry::PointCloud,
        cameras: &[ViewCamera],
    ) -> Result<()> {
        match self.format()? {
            // PLY streams to the file without a copy of the encoded cloud in memory.
            ShapeFormat::Ply => {
                ply::write_point_cloud(&self.path, cloud, ply::PlyEncoding::BinaryLittleEndian)?
            }
            ShapeFormat::PlyAscii => {
                ply::write_point_cloud(&self.path, cloud, ply::PlyEncoding::Ascii)?
            }
            format => {
                let bytes = shape::encode_cloud(cloud, format, self.cameras_to_write(cameras))?;
                self.write_bytes(&bytes)?;
            }
        }
        Ok(())
    }

    /// Writes `mesh` (and `cameras`, when [`FileOutput::cameras`] asks for them),
    /// atomically.
    ///
    /// # Errors
    /// When the mesh is invalid or the file cannot be written.
    pub fn write_mesh(&self, mesh: &TexturedMesh, cameras: &[ViewCamera]) -> Result<()> {
        match self.format()? {
            ShapeFormat::Ply => {
                ply::write_mesh(&self.path, &mesh.mesh, ply::PlyEncoding::BinaryLittleEndian)?
            }
            ShapeFormat::PlyAscii => {
                ply::write_mesh(&self.path, &mesh.mesh, ply::PlyEncoding::Ascii)?
            }
            ShapeFormat::Obj => obj::write_obj(&self.path, &mesh.mesh)?,
            ShapeFormat::Glb => {
                let bytes =
                    shape::encode_mesh(mesh, ShapeFormat::Glb, self.cameras_to_write(cameras))?;
                self.write_bytes(&bytes)?;
            }
        }
        Ok(())
    }

    fn cameras_to_write<'a>(&self, cameras: &'a [ViewCamera]) -> &'a [ViewCamera] {
        if self.cameras {
            cameras
        } else {
            &[]
        }
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<()> {
        Ok(anydepth_core::fs::write_atomically(
            &self.path,
            /* overwrite= */ true,
            |out| out.write_all(bytes),
        )?)
    }
}

/// Width in pixels of the white gap between the photo and the depth colours in
/// [`Format::SideBySide`], as in the official `run.py`.
pub const SIDE_BY_SIDE_GAP_PX: u32 = 50;

/// The formats `anydepth depth` writes when none are asked for.
pub const DEFAULT_FORMATS: [Format; 2] = [Format::Npy, Format::Color];

/// What to write for each depth map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// The raw `f32` values as a NumPy `.npy` array of shape `(height, width)`.
    #[cfg_attr(feature = "clap", value(name = "npy"))]
    Npy,
    /// Min-max normalised to a 16-bit greyscale PNG (`0` = min, `65535` = max).
    #[cfg_attr(feature = "clap", value(name = "png16"))]
    Png16,
    /// The raw `f32` values as a little-endian greyscale PFM (`Pf`).
    #[cfg_attr(feature = "clap", value(name = "pfm"))]
    Pfm,
    /// The raw `f32` values as a single-channel (`Y`) OpenEXR image, ZIP compressed.
    #[cfg_attr(feature = "clap", value(name = "exr"))]
    Exr,
    /// An 8-bit RGB PNG coloured with the chosen colormap.
    #[cfg_attr(feature = "clap", value(name = "color"))]
    Color,
    /// The input photo, a 50 px white gap and the coloured depth, side by side (8-bit PNG).
    #[cfg_attr(feature = "clap", value(name = "side-by-side"))]
    SideBySide,
    /// Clips only: the coloured depth as an H.264 video with the clip's frames and rate.
    #[cfg_attr(feature = "clap", value(name = "mp4"))]
    Mp4,
    /// Clips only: the frame and its coloured depth side by side, as an H.264 video.
    #[cfg_attr(feature = "clap", value(name = "side-by-side-mp4"))]
    SideBySideMp4,
}

impl Format {
    /// Every format, in the order of the command line's help.
    pub const ALL: [Format; 8] = [
        Self::Npy,
        Self::Png16,
        Self::Pfm,
        Self::Exr,
        Self::Color,
        Self::SideBySide,
        Self::Mp4,
        Self::SideBySideMp4,
    ];

    /// Whether this is a video of a whole clip rather than a file per depth map.
    pub fn is_video(self) -> bool {
        matches!(self, Self::Mp4 | Self::SideBySideMp4)
    }

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Npy => "npy",
            Self::Png16 => "png16",
            Self::Pfm => "pfm",
            Self::Exr => "exr",
            Self::Color => "color",
            Self::SideBySide => "side-by-side",
            Self::Mp4 => "mp4",
            Self::SideBySideMp4 => "side-by-side-mp4",
        }
    }

    /// What follows the input's file stem in the output's file name.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Npy => ".npy",
            Self::Png16 => "_depth16.png",
            Self::Pfm => ".pfm",
            Self::Exr => ".exr",
            Self::Color => "_depth.png",
            Self::SideBySide => "_side.png",
            Self::Mp4 => "_depth.mp4",
            Self::SideBySideMp4 => "_side.mp4",
        }
    }
}

/// The file `format` writes for the input named `stem` into `out_dir`:
/// `<stem>.npy`, `<stem>_depth16.png`, `<stem>.pfm`, `<stem>.exr`, `<stem>_depth.png` or
/// `<stem>_side.png`.
pub fn output_path(out_dir: &Path, stem: &str, format: Format) -> PathBuf {
    out_dir.join(format!("{stem}{}", format.suffix()))
}

/// Writes one depth map (`width x height` row-major `values`) to `path` as `format`,
/// atomically.
///
/// `image` is the photo the map was predicted from; only [`Format::SideBySide`] needs it
/// and it must have the map's size. `colormap` is used by [`Format::Color`] and
/// [`Format::SideBySide`]. Missing parent directories are created.
///
/// # Errors
/// When `values.len() != width * height`, when side-by-side output lacks a photo of the
/// map's size, when `path` exists and `force` is false (the file is left untouched), or on
/// any I/O or encoding failure (nothing is left at `path` then).
// The argument list is the one the CLI asked for; each argument is a distinct input.
#[allow(clippy::too_many_arguments)]
pub fn write_output(
    path: &Path,
    format: Format,
    values: &[f32],
    width: u32,
    height: u32,
    image: Option<&RgbImage>,
    colormap: Colormap,
    force: bool,
) -> Result<()> {
    let pixels = width as usize * height as usize;
    ensure!(
        values.len() == pixels,
        "depth map has {} values, expected {width} x {height} = {pixels}",
        values.len()
    );
    if !force && path.exists() {
        bail!(
            "refusing to overwrite an existing output (pass --force to replace it): {}",
            path.display()
        );
    }
    let bytes = encode_depth(format, values, width, height, image, colormap)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    Ok(anydepth_core::fs::write_atomically(path, force, |out| {
        out.write_all(&bytes)
    })?)
}

/// Writes `prediction` in each of `formats` as `<dir>/<stem><suffix>` ([`output_path`]),
/// with [`write_output`]; `image` is the photo it was predicted from.
///
/// # Errors
/// As [`write_output`], for the first format that fails.
pub fn write_prediction(
    dir: &Path,
    stem: &str,
    formats: &[Format],
    prediction: &anydepth_core::Prediction,
    image: Option<&RgbImage>,
    colormap: Colormap,
    force: bool,
) -> Result<()> {
    for &format in formats {
        write_output(
            &output_path(dir, stem, format),
            format,
            prediction.values(),
            prediction.width(),
            prediction.height(),
            image,
            colormap,
            force,
        )?;
    }
    Ok(())
}

/// Encodes a depth map (`width x height` row-major `values`) into the bytes of a
/// `format` file: exactly what [`write_output`] writes. `image` and `colormap` as there.
///
/// # Errors
/// When `values.len() != width * height`, when side-by-side output lacks a photo of the
/// map's size, for a video format, or when encoding fails.
pub fn encode_depth(
    format: Format,
    values: &[f32],
    width: u32,
    height: u32,
    image: Option<&RgbImage>,
    colormap: Colormap,
) -> Result<Vec<u8>> {
    let pixels = width as usize * height as usize;
    ensure!(
        values.len() == pixels,
        "depth map has {} values, expected {width} x {height} = {pixels}",
        values.len()
    );
    match format {
        Format::Npy => Ok(anydepth_core::npy::encode_f32(
            values,
            &[height as usize, width as usize],
        )),
        Format::Pfm => Ok(encode_pfm(values, width, height)),
        Format::Exr => Ok(anydepth_core::openexr::encode_f32(values, width, height)?),
        Format::Png16 => {
            let buffer: ImageBuffer<Luma<u16>, _> =
                ImageBuffer::from_raw(width, height, normalize_to_u16(values))
                    .context("16-bit buffer size mismatch")?;
            encode_png(&buffer)
        }
        Format::Color => {
            let buffer: ImageBuffer<Rgb<u8>, _> =
                ImageBuffer::from_raw(width, height, colormap.apply(values))
                    .context("colour buffer size mismatch")?;
            encode_png(&buffer)
        }
        Format::SideBySide => {
            let Some(image) = image else {
                bail!("side-by-side output needs the input image");
            };
            ensure!(
                (image.width, image.height) == (width, height),
                "input image is {} x {} but the depth map is {width} x {height}",
                image.width,
                image.height
            );
            let photo = image.to_rgb8().into_flattened();
            let buffer = side_by_side(&photo, width, height, &colormap.apply(values))?;
            encode_png(&buffer)
        }
        Format::Mp4 | Format::SideBySideMp4 => bail!(
            "--formats {} is a video of a whole clip, not a file per depth map",
            format.name()
        ),
    }
}

/// The frame (`photo_rgb8`, interleaved 8-bit RGB of `width x height`, as
/// [`RgbImage::to_rgb8`] rounds it), a [`SIDE_BY_SIDE_GAP_PX`] white gap and the coloured
/// depth (`depth_rgb`, of the same size and layout), side by side: the pixels of
/// [`Format::SideBySide`], as interleaved 8-bit RGB.
///
/// # Errors
/// When `photo_rgb8` or `depth_rgb` is not of that size.
pub fn side_by_side_rgb(
    photo_rgb8: &[u8],
    width: u32,
    height: u32,
    depth_rgb: &[u8],
) -> Result<Vec<u8>> {
    Ok(side_by_side(photo_rgb8, width, height, depth_rgb)?.into_raw())
}

/// PNG bytes of an image buffer.
fn encode_png<P>(buffer: &ImageBuffer<P, Vec<P::Subpixel>>) -> Result<Vec<u8>>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = Vec::new();
    buffer
        .write_with_encoder(PngEncoder::new(&mut bytes))
        .context("cannot encode PNG")?;
    Ok(bytes)
}

/// Greyscale PFM: `Pf`, size, a negative scale for little-endian, then rows from the
/// bottom of the image to the top.
fn encode_pfm(values: &[f32], width: u32, height: u32) -> Vec<u8> {
    let header = format!("Pf\n{width} {height}\n-1.0\n");
    let mut bytes = Vec::with_capacity(header.len() + 4 * values.len());
    bytes.extend_from_slice(header.as_bytes());
    // `max(1)` keeps `rchunks` valid for a 0-wide map, which has no values anyway.
    for row in values.rchunks(width.max(1) as usize) {
        for v in row {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

/// `round((v - min) / (max - min) * 65535)` over the finite range; non-finite values and
/// constant maps give 0.
fn normalize_to_u16(values: &[f32]) -> Vec<u16> {
    let Some((lo, hi)) = finite_range(values).filter(|(lo, hi)| hi > lo) else {
        return vec![0; values.len()];
    };
    let (lo, span) = (f64::from(lo), f64::from(hi) - f64::from(lo));
    values
        .iter()
        .map(|&v| {
            if v.is_finite() {
                ((f64::from(v) - lo) / span * 65535.0).round() as u16
            } else {
                0
            }
        })
        .collect()
}

/// The photo (8-bit RGB), a white gap and the coloured depth, left to right.
fn side_by_side(
    photo_rgb8: &[u8],
    width: u32,
    height: u32,
    depth_rgb: &[u8],
) -> Result<ImageBuffer<Rgb<u8>, Vec<u8>>> {
    let (w, h) = (width as usize, height as usize);
    let gap = SIDE_BY_SIDE_GAP_PX as usize;
    ensure!(
        photo_rgb8.len() == w * h * 3 && depth_rgb.len() == w * h * 3,
        "image and depth colours must both hold {w} x {h} RGB pixels"
    );
    let out_w = 2 * w + gap;
    let mut out = Vec::with_capacity(out_w * h * 3);
    for (photo_row, depth_row) in photo_rgb8
        .chunks_exact(w.max(1) * 3)
        .zip(depth_rgb.chunks_exact(w.max(1) * 3))
    {
        out.extend_from_slice(photo_row);
        out.extend(std::iter::repeat_n(255u8, gap * 3));
        out.extend_from_slice(depth_row);
    }
    if w == 0 {
        // No rows came out of `chunks_exact` on empty data: the result is all gap.
        out = vec![255; out_w * h * 3];
    }
    let out_w = u32::try_from(out_w).context("side-by-side image too wide")?;
    ImageBuffer::from_raw(out_w, height, out).context("side-by-side buffer size mismatch")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A 3 x 2 map whose values name their position: row * 10 + column.
    fn positional() -> Vec<f32> {
        vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    }

    /// Parses a `.npy` file written by `encode_npy`, independently of it: returns the
    /// header dict text, the shape and the values.
    fn parse_npy(bytes: &[u8]) -> (String, (usize, usize), Vec<f32>) {
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let data_start = 10 + header_len;
        assert_eq!(data_start % 64, 0, "data must start 64-byte aligned");
        let header = std::str::from_utf8(&bytes[10..data_start]).expect("ASCII header");
        assert!(header.ends_with('\n'));
        let shape_text = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("shape in header");
        let dims: Vec<usize> = shape_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("integer dimension"))
            .collect();
        assert_eq!(dims.len(), 2);
        let values: Vec<f32> = bytes[data_start..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values.len(), dims[0] * dims[1]);
        (header.trim_end().to_owned(), (dims[0], dims[1]), values)
    }

    fn write(dir: &Path, format: Format, values: &[f32], w: u32, h: u32) -> PathBuf {
        let path = output_path(dir, "img", format);
        write_output(
            &path,
            format,
            values,
            w,
            h,
            None,
            Colormap::SpectralR,
            false,
        )
        .expect("write succeeds");
        path
    }

    #[test]
    fn output_names() {
        let dir = Path::new("out");
        let names: Vec<PathBuf> = Format::ALL
            .iter()
            .map(|&f| output_path(dir, "photo", f))
            .collect();
        assert_eq!(
            names,
            [
                "out/photo.npy",
                "out/photo_depth16.png",
                "out/photo.pfm",
                "out/photo.exr",
                "out/photo_depth.png",
                "out/photo_side.png",
                "out/photo_depth.mp4",
                "out/photo_side.mp4"
            ]
            .map(PathBuf::from)
        );
        let cli: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            cli,
            [
                "npy",
                "png16",
                "pfm",
                "exr",
                "color",
                "side-by-side",
                "mp4",
                "side-by-side-mp4"
            ]
        );
    }

    #[test]
    fn npy_round_trip_and_exact_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let values = vec![0.0, -1.5, f32::NAN, 1e-30, f32::INFINITY, 3.25];
        let path = write(dir.path(), Format::Npy, &values, 3, 2);
        let bytes = fs::read(&path).expect("read npy");
        let (header, shape, read) = parse_npy(&bytes);
        // What numpy 1.x/2.x `np.save` writes for a float32 C-order (2, 3) array.
        assert_eq!(
            header,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert_eq!(shape, (2, 3));
        assert_eq!(bytes.len(), 128 + 6 * 4);
        // Bit-exact, NaN included.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&read), bits(&values));
    }

    /// numpy loads our file and saves the same array to identical bytes; it also
    /// reproduces [`anydepth_core::colormap::normalize_to_indices`] with the official app's
    /// expression. Skips when the project venv is missing.
    #[test]
    fn npy_matches_numpy() {
        let python = Path::new("/work/main/.venv/bin/python");
        if !python.exists() {
            eprintln!("skipping npy_matches_numpy: {} not found", python.display());
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // Irregular values so float32 rounding in the normalisation matters.
        let (w, h) = (7u32, 5u32);
        let values: Vec<f32> = (0..w * h)
            .map(|i| ((i as f32 * 0.731).sin() * 3.7 + (i as f32) / 9.0).exp() - 1.3)
            .collect();
        let path = write(dir.path(), Format::Npy, &values, w, h);
        let script = r#"
import sys, io, numpy as np
d = np.load(sys.argv[1])
assert d.dtype == np.float32 and d.shape == (5, 7) and d.flags.c_contiguous
buf = io.BytesIO(); np.save(buf, d)
assert buf.getvalue() == open(sys.argv[1], 'rb').read(), 'bytes differ from np.save'
v = ((d - d.min()) / (d.max() - d.min()) * 255.0).astype(np.uint8)
print(' '.join(str(x) for x in v.ravel()))
print(' '.join(repr(float(x)) for x in d.ravel()))
"#;
        let out = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let mut lines = stdout.lines();
        let indices: Vec<u8> = lines
            .next()
            .expect("indices line")
            .split(' ')
            .map(|s| s.parse().expect("u8"))
            .collect();
        let loaded: Vec<f32> = lines
            .next()
            .expect("values line")
            .split(' ')
            .map(|s| s.parse::<f64>().expect("float") as f32)
            .collect();
        assert_eq!(loaded, values);
        assert_eq!(
            indices,
            anydepth_core::colormap::normalize_to_indices(&values)
        );
    }

    #[test]
    fn pfm_layout_is_bottom_row_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), Format::Pfm, &positional(), 3, 2);
        let bytes = fs::read(&path).expect("read pfm");
        let header = b"Pf\n3 2\n-1.0\n";
        assert_eq!(&bytes[..header.len()], header);
        let read: Vec<f32> = bytes[header.len()..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // The bottom row (10, 11, 12) comes first.
        assert_eq!(read, [10.0, 11.0, 12.0, 0.0, 1.0, 2.0]);
    }

    /// OpenCV's PFM reader (which flips rows back) sees the map the right way up.
    /// Skips when the project venv is missing.
    #[test]
    fn pfm_matches_opencv() {
        let python = Path::new("/work/main/.venv/bin/python");
        if !python.exists() {
            eprintln!(
                "skipping pfm_matches_opencv: {} not found",
                python.display()
            );
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), Format::Pfm, &positional(), 3, 2);
        let script = "import sys, cv2; d = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED); \
                      print(d.dtype, d.shape, d.ravel().tolist())";
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "float32 (2, 3) [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]"
        );
    }

    #[test]
    fn exr_round_trip_keeps_every_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let values = vec![0.0, -1.5, f32::NAN, 1e-30, f32::INFINITY, 3.25];
        let path = write(dir.path(), Format::Exr, &values, 3, 2);
        let (w, h, read) =
            anydepth_core::depth_io::read_depth_values::<anydepth_core::Metres>(&path, 1.0)
                .expect("read exr")
                .into_parts();
        assert_eq!((w, h), (3, 2));
        assert!(read[2].is_nan());
        assert_eq!(
            [&read[..2], &read[3..]].concat(),
            [&values[..2], &values[3..]].concat()
        );
    }

    #[test]
    fn png16_spans_full_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let values = [5.0, f32::NAN, -3.0, 1.0, 5.0, f32::NEG_INFINITY];
        let path = write(dir.path(), Format::Png16, &values, 3, 2);
        let img = image::open(&path).expect("decode png16").into_luma16();
        assert_eq!(img.dimensions(), (3, 2));
        // (1 - -3) / 8 * 65535 = 32767.5, rounded half away from zero.
        assert_eq!(img.into_raw(), [65535, 0, 0, 32768, 65535, 0]);
    }

    #[test]
    fn color_png_uses_the_colormap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = output_path(dir.path(), "img", Format::Color);
        write_output(
            &path,
            Format::Color,
            &[0.0, 2.0],
            2,
            1,
            None,
            Colormap::Turbo,
            false,
        )
        .expect("write color");
        let img = image::open(&path).expect("decode color");
        assert_eq!(img.color(), image::ColorType::Rgb8);
        assert_eq!(img.into_rgb8().into_raw(), [48, 18, 59, 122, 4, 2]);
    }

    #[test]
    fn constant_and_nan_maps_write_without_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (i, values) in [[7.0f32; 4], [f32::NAN; 4]].iter().enumerate() {
            for format in Format::ALL.into_iter().filter(|f| !f.is_video()) {
                let path = output_path(dir.path(), &format!("m{i}"), format);
                let photo = RgbImage::new(2, 2, vec![0.5; 12]).expect("photo");
                write_output(
                    &path,
                    format,
                    values,
                    2,
                    2,
                    Some(&photo),
                    Colormap::Gray,
                    false,
                )
                .expect("write succeeds");
            }
            let png16 = image::open(output_path(dir.path(), &format!("m{i}"), Format::Png16))
                .expect("decode")
                .into_luma16();
            assert!(png16.into_raw().iter().all(|&v| v == 0));
        }
    }

    #[test]
    fn empty_maps_do_not_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (w, h) in [(0, 0), (0, 3), (3, 0)] {
            let photo = RgbImage::new(w, h, Vec::new()).expect("empty photo");
            for format in Format::ALL {
                let path = output_path(dir.path(), &format!("e{w}x{h}"), format);
                // PNG cannot hold an empty image, so some formats fail: with an error.
                let _ = write_output(&path, format, &[], w, h, Some(&photo), Colormap::Gray, true);
            }
        }
    }

    #[test]
    fn side_by_side_layout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, h) = (4u32, 3u32);
        let photo = RgbImage::new(w, h, vec![0.2; (w * h * 3) as usize]).expect("photo");
        let values: Vec<f32> = (0..w * h).map(|i| i as f32).collect();
        let path = output_path(dir.path(), "img", Format::SideBySide);
        write_output(
            &path,
            Format::SideBySide,
            &values,
            w,
            h,
            Some(&photo),
            Colormap::SpectralR,
            false,
        )
        .expect("write side-by-side");
        let img = image::open(&path).expect("decode").into_rgb8();
        assert_eq!(img.dimensions(), (2 * w + SIDE_BY_SIDE_GAP_PX, h));
        // 0.2 * 255 = 51.
        assert_eq!(img.get_pixel(0, 0).0, [51, 51, 51]);
        assert_eq!(img.get_pixel(w, 1).0, [255, 255, 255]);
        assert_eq!(
            img.get_pixel(w + SIDE_BY_SIDE_GAP_PX - 1, 2).0,
            [255, 255, 255]
        );
        // First depth pixel is the minimum, last the maximum.
        assert_eq!(img.get_pixel(w + SIDE_BY_SIDE_GAP_PX, 0).0, [94, 79, 162]);
        assert_eq!(
            img.get_pixel(2 * w + SIDE_BY_SIDE_GAP_PX - 1, h - 1).0,
            [158, 1, 66]
        );

        // Missing or mis-sized photos are errors.
        let other = output_path(dir.path(), "other", Format::SideBySide);
        let small = RgbImage::new(1, 1, vec![0.0; 3]).expect("photo");
        for photo in [None, Some(&small)] {
            let result = write_output(
                &other,
                Format::SideBySide,
                &values,
                w,
                h,
                photo,
                Colormap::Gray,
                false,
            );
            assert!(result.is_err());
        }
        assert!(!other.exists());
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = output_path(dir.path(), "img", Format::Npy);
        fs::write(&path, b"precious").expect("seed file");
        let err = write_output(
            &path,
            Format::Npy,
            &[1.0],
            1,
            1,
            None,
            Colormap::Gray,
            false,
        )
        .expect_err("must refuse");
        let message = format!("{err:#}");
        assert!(message.contains("--force"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(fs::read(&path).expect("read back"), b"precious");
        // No temporary file is left behind either.
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);

        write_output(&path, Format::Npy, &[1.0], 1, 1, None, Colormap::Gray, true)
            .expect("force replaces");
        let (_, shape, values) = parse_npy(&fs::read(&path).expect("read back"));
        assert_eq!((shape, values), ((1, 1), vec![1.0]));
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn size_mismatch_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("a/b");
        for format in Format::ALL {
            let path = output_path(&nested, "img", format);
            let result = write_output(&path, format, &[1.0; 5], 3, 2, None, Colormap::Gray, true);
            assert!(result.is_err(), "{format:?}");
            assert!(!path.exists());
        }
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("x/y/z");
        let path = write(&nested, Format::Pfm, &positional(), 3, 2);
        assert!(path.is_file());
        assert_eq!(fs::read_dir(&nested).expect("list").count(), 1);
    }

    /// The final file has the permissions of an ordinary new file (`0666 & !umask`), not
    /// the `0600` of a temporary file. Linux only: the umask is read from `/proc`.
    #[cfg(target_os = "linux")]
    #[test]
    fn written_files_get_umask_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let Some(umask) = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        else {
            eprintln!("skipping: no Umask line in /proc/self/status");
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), Format::Npy, &[1.0], 1, 1);
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "{mode:o}");
    }
}
