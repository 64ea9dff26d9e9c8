//! NumPy `.npy` arrays: writing float32 maps exactly as `np.save` does, and reading the
//! numeric arrays depth files come in (converted to `f32`).
//!
//! ```
//! use anydepth_core::npy;
//!
//! let bytes = npy::encode_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
//! let (shape, values) = npy::decode_f32(&bytes).expect("valid npy");
//! assert_eq!(shape, [2, 3]);
//! assert_eq!(values[5], 6.0);
//! ```

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Format 1.0: magic, version, little-endian `u16` header length, a Python dict literal
/// padded with spaces and ending in `\n` so the data starts at a multiple of 64 bytes (as
/// `np.save` does), then the `<f4` values in C order.
pub fn encode_f32(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n'
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    let padding = unpadded.next_multiple_of(64) - unpadded;
    let header = format!("{dict}{}\n", " ".repeat(padding));
    // A handful of dimensions is far below the 65535-byte limit of format 1.0.
    let header_len = u16::try_from(header.len()).unwrap_or(u16::MAX);

    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * values.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Format {
        what: "npy",
        reason: reason.into(),
    }
}

/// Decodes an array of little-endian floats or integers (`f4`, `f8`, `u1`, `u2`, `i2`,
/// `i4`) in C order into `(shape, values as f32)`.
///
/// # Errors
/// When the bytes are not such an array.
pub fn decode_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a NumPy .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let rest = header.split(&format!("'{key}':")).nth(1)?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("no dtype in header"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            "Fortran-ordered arrays are not supported; save with C order",
        ));
    }
    let shape: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape in header"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad dimension {s:?}")))
        })
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("shape too large"))?;
    let data = &bytes[start + header_len..];
    let (size, convert): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "|u1" | "<u1" => (1, |b| b[0] as f32),
        "<u2" => (2, |b| u16::from_le_bytes([b[0], b[1]]) as f32),
        "<i2" => (2, |b| i16::from_le_bytes([b[0], b[1]]) as f32),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        other => return Err(bad(format!("unsupported dtype {other:?}"))),
    };
    if data.len() != count * size {
        return Err(bad(format!(
            "{} data bytes for shape {shape:?} of {descr} (expected {})",
            data.len(),
            count * size
        )));
    }
    Ok((shape, data.chunks_exact(size).map(convert).collect()))
}

/// Reads a `.npy` file with [`decode_f32`].
///
/// # Errors
/// When the file cannot be read or is not a supported array; the message names the file.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        reason: e.to_string(),
        path: path.to_path_buf(),
    })?;
    decode_f32(&bytes).map_err(|e| Error::Io {
        reason: e.to_string(),
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.5).collect();
        let bytes = encode_f32(&values, &[3, 4]);
        assert_eq!(
            (bytes.len() - 48) % 64,
            0,
            "data starts at a multiple of 64"
        );
        assert_eq!(decode_f32(&bytes).expect("decodes"), (vec![3, 4], values));
        let one = encode_f32(&[1.0], &[1]);
        assert_eq!(decode_f32(&one).expect("1-d").0, vec![1]);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(decode_f32(b"").is_err());
        assert!(decode_f32(b"\x93NUMPY\x01\x00\xff\xff{").is_err());
        let mut bytes = encode_f32(&[1.0, 2.0], &[2]);
        bytes.pop();
        assert!(decode_f32(&bytes).is_err());
    }
}
