//! OpenEXR depth maps: reading the depth channel of a float EXR (as Blender, OpenCV and
//! renderers write them) and writing a map as a single-channel `f32` EXR.
//!
//! The depth channel is the first one named `Z` or `depth`, else `Y`, else `R` (depth
//! written as RGB(A) repeats it in every colour channel); names compare case-insensitively
//! and by their last `.`-separated part, so Blender's `ViewLayer.Depth.Z` counts as `Z`. A
//! file with a single channel gives that channel whatever its name. `f16` and `f32`
//! samples are read; values are returned as stored (no scale, non-finite and negative
//! values included: they mean "no measurement" downstream, as in `.npy` and `.pfm`).
//!
//! ```
//! use anydepth_core::openexr;
//!
//! let bytes = openexr::encode_f32(&[1.0, 2.5], 2, 1).expect("encodes");
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let path = dir.path().join("depth.exr");
//! std::fs::write(&path, bytes).expect("written");
//! assert_eq!(openexr::read_depth(&path).expect("reads"), (2, 1, vec![1.0, 2.5]));
//! ```

use std::io::Cursor;
use std::path::Path;

use ::exr::meta::attribute::{ChannelDescription, SampleType};
use ::exr::meta::header::Header;
use ::exr::meta::MetaData;
use ::exr::prelude::traits::{ReadChannels, ReadLayers, ReadSpecificChannel, WritableImage};
use ::exr::prelude::{
    read, AnyChannel, AnyChannels, Encoding, FlatSamples, Image, Layer, LayerAttributes, Vec2,
};

use crate::error::{Error, Result};

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::FileFormat {
        what: "OpenEXR depth",
        reason: reason.into(),
        path: path.to_path_buf(),
    }
}

/// How well a channel name fits depth: lower is better, `None` is not a depth name.
fn depth_rank(full_name: &str) -> Option<u8> {
    let name = full_name.rsplit('.').next().unwrap_or(full_name);
    if name.eq_ignore_ascii_case("z") || name.eq_ignore_ascii_case("depth") {
        Some(0)
    } else if name.eq_ignore_ascii_case("y") {
        Some(1)
    } else if name.eq_ignore_ascii_case("r") {
        Some(2)
    } else {
        None
    }
}

/// Data or display windows larger than this many pixels (16384 x 16384) are refused: a
/// corrupt header must not make the reader ask for memory the machine does not have.
pub const MAX_PIXELS: usize = 1 << 28;

/// Reads the depth channel of an EXR file into `(width, height, values)`, row-major over
/// the display window. Where the data window does not cover the display window the
/// uncovered pixels are 0 (no measurement); data outside it is cut off. Scan-line and
/// tiled files, any compression and multi-part files are read; of mip or rip maps the
/// largest level.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::FileFormat`] naming the file when
/// it cannot be decoded (truncated, corrupt, deep data, unsupported features), when no
/// channel is a depth channel (see the module documentation), when that channel holds
/// integer or subsampled samples, or when a window exceeds [`MAX_PIXELS`].
// Reads the header, picks the channel and decodes it in one place so every refusal names
// the file the same way; worth splitting when another EXR reader joins it.
#[allow(clippy::too_many_lines)]
pub fn read_depth(path: &Path) -> Result<(u32, u32, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        reason: format!("cannot read depth ({e})"),
        path: path.to_path_buf(),
    })?;
    let decode_error = |e: ::exr::error::Error| {
        use ::exr::error::Error as Exr;
        let reason = match e {
            Exr::Invalid(why) => format!("corrupt or truncated file ({why})"),
            Exr::NotSupported(what) => format!("unsupported file ({what})"),
            other => other.to_string(),
        };
        invalid(path, reason)
    };

    // The headers first: the channel is chosen and the sizes checked before any pixel
    // memory is allocated.
    let meta = MetaData::read_from_buffered(Cursor::new(&bytes), false).map_err(decode_error)?;
    for header in &meta.headers {
        let data = header.layer_size;
        let display = header.shared_attributes.display_window.size;
        for (what, size) in [("data", data), ("display", display)] {
            if size
                .width()
                .checked_mul(size.height())
                .is_none_or(|n| n > MAX_PIXELS)
            {
                return Err(invalid(
                    path,
                    format!(
                        "{what} window of {} x {} pixels is larger than {MAX_PIXELS} pixels",
                        size.width(),
                        size.height()
                    ),
                ));
            }
        }
    }
    let channels: Vec<(&Header, &ChannelDescription)> = meta
        .headers
        .iter()
        .flat_map(|header| header.channels.list.iter().map(move |c| (header, c)))
        .collect();
    let chosen = match channels[..] {
        [only] => Some(only),
        _ => channels
            .iter()
            .filter_map(|&(header, channel)| {
                depth_rank(&channel.name.to_string()).map(|rank| (rank, (header, channel)))
            })
            // `min_by_key` keeps the first of equals: file order breaks ties, as
            // `first_valid_layer` below does.
            .min_by_key(|&(rank, _)| rank)
            .map(|(_, found)| found),
    };
    let Some((header, channel)) = chosen else {
        let names: Vec<String> = channels.iter().map(|(_, c)| c.name.to_string()).collect();
        return Err(invalid(
            path,
            format!(
                "no depth channel (Z, depth, Y or R) among [{}]",
                names.join(", ")
            ),
        ));
    };
    let name = channel.name.to_string();
    if header.deep {
        return Err(invalid(
            path,
            format!("channel {name} holds deep data; depth must be flat"),
        ));
    }
    if channel.sample_type == SampleType::U32 {
        return Err(invalid(
            path,
            format!("channel {name} holds integers; depth must be f16 or f32"),
        ));
    }
    if channel.sampling != Vec2(1, 1) {
        return Err(invalid(
            path,
            format!("channel {name} is subsampled; depth needs one sample per pixel"),
        ));
    }

    // Only that channel is decoded (f16 widened to f32), of the first part holding it.
    let image = read()
        .no_deep_data()
        .largest_resolution_level()
        .specific_channels()
        .required::<f32>(channel.name.clone())
        .collect_pixels(
            |size, _| (size.width(), vec![0.0f32; size.area()]),
            |(width, values): &mut (usize, Vec<f32>), position, (z,): (f32,)| {
                if let Some(slot) = values.get_mut(position.y() * *width + position.x()) {
                    *slot = z;
                }
            },
        )
        .first_valid_layer()
        .all_attributes()
        .from_buffered(Cursor::new(&bytes))
        .map_err(decode_error)?;
    let display = image.attributes.display_window;
    let layer = image.layer_data;
    let (data_w, samples) = layer.channel_data.pixels;
    let data_w = data_w.max(1);

    // Place the data window into the display window; both are in the file's pixel space.
    let (w, h) = (display.size.width(), display.size.height());
    let (width, height) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(width), Ok(height)) if width > 0 && height > 0 => (width, height),
        _ => return Err(invalid(path, format!("display window of {w} x {h} pixels"))),
    };
    let data_origin = layer.attributes.layer_position;
    if data_origin == display.position && layer.size == display.size {
        return Ok((width, height, samples));
    }
    let mut values = vec![0.0f32; w * h];
    // Offsets in i64: positions are i32 and sizes at most MAX_PIXELS.
    let dx = i64::from(data_origin.x()) - i64::from(display.position.x());
    let dy = i64::from(data_origin.y()) - i64::from(display.position.y());
    for (row, line) in samples.chunks_exact(data_w).enumerate() {
        let y = dy + row as i64;
        if !(0..h as i64).contains(&y) {
            continue;
        }
        for (col, &v) in line.iter().enumerate() {
            let x = dx + col as i64;
            if (0..w as i64).contains(&x) {
                values[y as usize * w + x as usize] = v;
            }
        }
    }
    Ok((width, height, values))
}

/// The bytes of a single-channel `f32` EXR (channel `Y`, which OpenCV reads as a grey
/// image, lossless ZIP compression) holding `width x height` row-major `values`.
///
/// # Errors
/// [`Error::Size`] when `values.len() != width * height` or the map is empty;
/// [`Error::Format`] when encoding fails.
pub fn encode_f32(values: &[f32], width: u32, height: u32) -> Result<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    if values.len() != w * h || values.is_empty() {
        return Err(Error::Size {
            what: "EXR depth map",
            width,
            height,
            expected: w * h,
            actual: values.len(),
        });
    }
    let channel = AnyChannel::new("Y", FlatSamples::F32(values.to_vec()));
    let layer = Layer::new(
        (w, h),
        LayerAttributes::default(),
        Encoding::SMALL_LOSSLESS,
        AnyChannels::sort(std::iter::once(channel).collect()),
    );
    let mut bytes = Cursor::new(Vec::new());
    Image::from_layer(layer)
        .write()
        .to_buffered(&mut bytes)
        .map_err(|e| Error::Format {
            what: "EXR",
            reason: e.to_string(),
        })?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::exr::prelude::f16;

    /// Writes a one-layer EXR whose channels are `(name, samples)`.
    fn write(path: &Path, size: (usize, usize), channels: Vec<(&str, FlatSamples)>) {
        let list = channels
            .into_iter()
            .map(|(name, samples)| AnyChannel::new(name, samples))
            .collect();
        Image::from_channels(size, AnyChannels::sort(list))
            .write()
            .to_file(path)
            .expect("write EXR");
    }

    #[test]
    fn f32_f16_and_rgb_channels_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        // 3 x 2, values name their position: row + column / 10.
        let values = vec![1.0f32, 1.1, 1.2, 2.0, 2.1, 2.2];

        let y = dir.path().join("y.exr");
        write(&y, (3, 2), vec![("Y", FlatSamples::F32(values.clone()))]);
        assert_eq!(read_depth(&y).expect("Y"), (3, 2, values.clone()));

        let half = dir.path().join("half.exr");
        let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
        write(
            &half,
            (3, 2),
            vec![("depth", FlatSamples::F16(halves.clone()))],
        );
        let (w, h, read) = read_depth(&half).expect("f16");
        assert_eq!((w, h), (3, 2));
        let expected: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
        assert_eq!(read, expected, "f16 widened exactly");
        // f16 holds 11 significant bits: within 2^-11 relative.
        assert!(read
            .iter()
            .zip(&values)
            .all(|(a, b)| (a - b).abs() <= b * 1e-3));

        // Depth repeated in RGBA, with a different value in G, B and A to tell them apart.
        let rgba = dir.path().join("rgba.exr");
        let other = FlatSamples::F32(vec![9.0; 6]);
        write(
            &rgba,
            (3, 2),
            vec![
                ("A", other.clone()),
                ("B", other.clone()),
                ("G", other),
                ("R", FlatSamples::F32(values.clone())),
            ],
        );
        assert_eq!(read_depth(&rgba).expect("RGBA").2, values);

        // Blender multilayer: Z wins over the colour channels, whatever the order.
        let blender = dir.path().join("blender.exr");
        write(
            &blender,
            (3, 2),
            vec![
                ("ViewLayer.Combined.R", FlatSamples::F32(vec![9.0; 6])),
                ("ViewLayer.Depth.Z", FlatSamples::F32(values.clone())),
            ],
        );
        assert_eq!(read_depth(&blender).expect("multilayer").2, values);

        // A single channel is depth whatever its name; invalid values pass through.
        let single = dir.path().join("single.exr");
        let odd = vec![f32::NAN, -1.0, f32::INFINITY, 0.0, 1.0, 2.0];
        write(&single, (3, 2), vec![("V", FlatSamples::F32(odd.clone()))]);
        let read = read_depth(&single).expect("single").2;
        assert!(read[0].is_nan());
        assert_eq!(read[1..], odd[1..]);
    }

    /// Files written by the reference OpenEXR library (`assets/exr/make_exr_fixtures.py`):
    /// Blender's multilayer layout, tiles, PIZ, RLE, DWAA, a data window inside the display
    /// window. All hold z = 1 + 0.25 i, exact in f16 and f32, so they compare exactly.
    #[test]
    fn files_of_the_reference_library_read() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/exr");
        let z: Vec<f32> = (0..48).map(|i| 1.0 + 0.25 * i as f32).collect();
        for name in ["blender", "tiled_piz", "rgb_half", "dwaa"] {
            let path = dir.join(format!("{name}.exr"));
            assert_eq!(read_depth(&path).expect(name), (8, 6, z.clone()), "{name}");
        }
        let (w, h, values) = read_depth(&dir.join("window.exr")).expect("window");
        assert_eq!((w, h), (9, 7));
        for (i, &v) in values.iter().enumerate() {
            let (x, y) = (i % 9, i / 9);
            let expected = if x == 0 || y == 0 {
                0.0
            } else {
                z[(y - 1) * 8 + x - 1]
            };
            assert_eq!(v, expected, "pixel ({x}, {y})");
        }
    }

    #[test]
    fn encoded_maps_read_back_exactly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, h) = (37u32, 21u32);
        let values: Vec<f32> = (0..w * h).map(|i| (i as f32).sqrt() * 0.37 - 1.0).collect();
        let path = dir.path().join("d.exr");
        std::fs::write(&path, encode_f32(&values, w, h).expect("encode")).expect("write");
        assert_eq!(read_depth(&path).expect("read"), (w, h, values));
        assert!(encode_f32(&[1.0; 3], 2, 2).is_err());
        assert!(encode_f32(&[], 0, 0).is_err());
    }

    #[test]
    fn a_data_window_inside_the_display_window_is_placed_in_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("window.exr");
        let mut layer = Layer::new(
            (2, 1),
            LayerAttributes::default(),
            Encoding::UNCOMPRESSED,
            AnyChannels::sort(
                std::iter::once(AnyChannel::new("Z", FlatSamples::F32(vec![5.0, 6.0]))).collect(),
            ),
        );
        layer.attributes.layer_position = ::exr::math::Vec2(1, 1);
        let mut image = Image::from_layer(layer);
        image.attributes.display_window = ::exr::meta::attribute::IntegerBounds::new(
            ::exr::math::Vec2(0, 0),
            ::exr::math::Vec2(4, 3),
        );
        image.write().to_file(&path).expect("write EXR");
        let (w, h, values) = read_depth(&path).expect("read");
        assert_eq!((w, h), (4, 3));
        let mut expected = vec![0.0; 12];
        expected[5] = 5.0;
        expected[6] = 6.0;
        assert_eq!(values, expected);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("good.exr");
        let values: Vec<f32> = (0..64 * 48).map(|i| i as f32 * 1e-3).collect();
        std::fs::write(&good, encode_f32(&values, 64, 48).expect("encode")).expect("write");
        let bytes = std::fs::read(&good).expect("read");

        let cut = dir.path().join("cut.exr");
        for len in [
            0,
            3,
            8,
            40,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            std::fs::write(&cut, &bytes[..len]).expect("write");
            let err = read_depth(&cut).expect_err("truncated file");
            let err = err.to_string();
            assert!(
                err.contains("truncated") && err.contains("cut.exr"),
                "{len} bytes: {err}"
            );
        }

        // Bytes changed anywhere, most often in the header: an image or an error, never a
        // panic or an abort on a huge allocation (a corrupt data window once asked for
        // 167 GB). Deterministic xorshift positions and values.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let changed = dir.path().join("changed.exr");
        for round in 0..400 {
            let mut copy = bytes.clone();
            let span = if round % 4 == 0 {
                copy.len()
            } else {
                400.min(copy.len())
            };
            for _ in 0..1 + next() % 3 {
                let at = next() % span;
                copy[at] = next() as u8;
            }
            std::fs::write(&changed, &copy).expect("write");
            if let Err(err) = read_depth(&changed) {
                assert!(err.to_string().contains("changed.exr"), "{err}");
            }
        }

        // A header claiming a 100000 x 100000 data window is refused before decoding.
        let mut huge = bytes.clone();
        let key = b"dataWindow\0box2i\0";
        let at = huge
            .windows(key.len())
            .position(|w| w == key)
            .expect("dataWindow attribute")
            + key.len()
            + 4; // attribute size, then xMin, yMin, xMax, yMax
        huge[at + 8..at + 16].copy_from_slice(&[&99_999i32.to_le_bytes()[..]; 2].concat());
        let huge_path = dir.path().join("huge.exr");
        std::fs::write(&huge_path, &huge).expect("write");
        let err = read_depth(&huge_path).expect_err("huge window").to_string();
        assert!(
            err.contains("100000 x 100000") && err.contains("huge.exr"),
            "{err}"
        );

        let missing = dir.path().join("missing.exr");
        let err = read_depth(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing.exr"), "{err}");

        let colour = dir.path().join("gb.exr");
        write(
            &colour,
            (2, 1),
            vec![
                ("B", FlatSamples::F32(vec![1.0; 2])),
                ("G", FlatSamples::F32(vec![1.0; 2])),
            ],
        );
        let err = read_depth(&colour)
            .expect_err("no depth channel")
            .to_string();
        assert!(
            err.contains("no depth channel") && err.contains("gb.exr"),
            "{err}"
        );

        let ids = dir.path().join("ids.exr");
        write(&ids, (2, 1), vec![("Z", FlatSamples::U32(vec![1, 2]))]);
        let err = read_depth(&ids).expect_err("integer samples").to_string();
        assert!(err.contains("integers") && err.contains("ids.exr"), "{err}");
    }
}
