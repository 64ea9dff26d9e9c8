//! Reading safetensors files one tensor at a time: the header (names, kinds, shapes and
//! byte ranges) is read when the file is opened, each tensor's bytes when it is wanted, so
//! a caller can copy each where it belongs before the next is read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tch::{Kind, Tensor};

use crate::file_read::{ascending_once, read_into};

/// The largest header accepted (the format's own readers refuse more than 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor of a safetensors file lies.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsEntry {
    kind: Kind,
    size: Vec<i64>,
    /// Its bytes, from the start of the data (after the header).
    begin: u64,
    end: u64,
}

impl SafetensorsEntry {
    /// The tensor's shape.
    pub fn size(&self) -> &[i64] {
        &self.size
    }
}

/// A safetensors file's index, read from its header. It keeps the file open, so the
/// tensors are read from the file that was indexed even if another is saved under its name
/// meanwhile.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// The file, read by one caller at a time.
    file: Mutex<File>,
    /// Where the data starts: after the 8-byte header length and the header.
    data_start: u64,
    /// In the order of their bytes in the file.
    entries: Vec<(String, SafetensorsEntry)>,
}

impl SafetensorsFile {
    /// Reads the header of a safetensors file and checks that every tensor's byte range
    /// lies within the file and holds exactly its elements (ranges may overlap or leave
    /// gaps: each tensor is read from its own).
    ///
    /// # Errors
    /// When the file cannot be read or its header is not a safetensors header: not JSON, an
    /// unknown dtype, a range outside the file or of the wrong length.
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let file_bytes = file.metadata().map_err(|e| e.to_string())?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length)
            .map_err(|e| format!("no safetensors header length: {e}"))?;
        let header_bytes = u64::from_le_bytes(length);
        if header_bytes > MAX_HEADER_BYTES || header_bytes > file_bytes.saturating_sub(8) {
            return Err(format!(
                "a header of {header_bytes} bytes in a file of {file_bytes}: not safetensors"
            ));
        }
        let mut header = vec![0u8; header_bytes as usize];
        file.read_exact(&mut header)
            .map_err(|e| format!("safetensors header: {e}"))?;
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| format!("the safetensors header is not a JSON object: {e}"))?;
        let data_start = 8 + header_bytes;
        let data_bytes = file_bytes - data_start;
        let mut entries = Vec::new();
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&info).map_err(|e| format!("{name}: {e}"))?;
            if entry.end > data_bytes {
                return Err(format!(
                    "{name}: bytes {}..{} lie beyond the file's {data_bytes} bytes of data",
                    entry.begin, entry.end
                ));
            }
            entries.push((name, entry));
        }
        if entries.is_empty() {
            return Err("no tensors in the safetensors file".into());
        }
        entries.sort_by_key(|(_, entry)| (entry.begin, entry.end));
        Ok(Self {
            file: Mutex::new(file),
            data_start,
            entries,
        })
    }

    /// The tensors' names and places, in the order of their bytes in the file.
    pub fn entries(&self) -> &[(String, SafetensorsEntry)] {
        &self.entries
    }

    /// Reads the entries `wanted` (indices into [`SafetensorsFile::entries`]) in file order
    /// and hands `f` each tensor (on the CPU) with its index. One tensor is read at a time,
    /// beside what `f` keeps.
    ///
    /// # Errors
    /// When the file cannot be read (or has shrunk since it was opened), or `f` fails.
    pub fn for_each_tensor(
        &self,
        wanted: impl IntoIterator<Item = usize>,
        mut f: impl FnMut(usize, Tensor) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let mut bytes = Vec::new();
        for i in ascending_once(wanted) {
            let (name, entry) = self
                .entries
                .get(i)
                .ok_or_else(|| format!("no tensor {i} in the safetensors file"))?;
            file.seek(SeekFrom::Start(self.data_start + entry.begin))
                .map_err(|e| e.to_string())
                .and_then(|_| read_into(&mut bytes, &mut *file, entry.end - entry.begin))
                .map_err(|e| format!("{name}: {e}"))?;
            let tensor = Tensor::f_from_data_size(&bytes, &entry.size, entry.kind)
                .map_err(|e| format!("{name}: {e}"))?;
            f(i, tensor)?;
        }
        Ok(())
    }
}

/// One tensor's `{"dtype", "shape", "data_offsets"}`, checked to hold its elements exactly.
fn parse_entry(info: &serde_json::Value) -> Result<SafetensorsEntry, String> {
    let dtype = info["dtype"].as_str().ok_or("no dtype")?;
    let kind = dtype_kind(dtype).ok_or_else(|| format!("unsupported dtype {dtype}"))?;
    let size = info["shape"]
        .as_array()
        .ok_or("no shape")?
        .iter()
        .map(|n| n.as_u64().and_then(|n| i64::try_from(n).ok()))
        .collect::<Option<Vec<i64>>>()
        .ok_or("a shape of other than whole numbers")?;
    let offsets = info["data_offsets"].as_array().ok_or("no data_offsets")?;
    let (Some(begin), Some(end)) = (
        offsets.first().and_then(serde_json::Value::as_u64),
        offsets.get(1).and_then(serde_json::Value::as_u64),
    ) else {
        return Err("data_offsets is not two byte offsets".into());
    };
    let expected = size
        .iter()
        .try_fold(kind.elt_size_in_bytes() as u64, |bytes, &n| {
            bytes.checked_mul(n as u64)
        })
        .ok_or("the shape overflows")?;
    if offsets.len() != 2 || end < begin || end - begin != expected {
        return Err(format!(
            "bytes {begin}..{end} for a {dtype} tensor of shape {size:?} ({expected} bytes)"
        ));
    }
    Ok(SafetensorsEntry {
        kind,
        size,
        begin,
        end,
    })
}

/// The LibTorch kind of a safetensors dtype.
fn dtype_kind(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F64" => Kind::Double,
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens a file of `header` (its length first) and `data` bytes.
    fn open_with(header: &str, data: usize) -> Result<SafetensorsFile, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("t.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data, 0);
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        SafetensorsFile::open(&path)
    }

    #[test]
    fn headers_are_checked_against_their_tensors_and_the_file() {
        let two_floats = r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        let file = open_with(
            &format!(r#"{{"__metadata__":{{"format":"pt"}},{two_floats}}}"#),
            8,
        )
        .expect("metadata is skipped");
        assert_eq!(file.entries().len(), 1);
        assert_eq!(file.entries()[0].1.size(), [2]);

        for (header, data, expected) in [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                8,
                "a: bytes 0..4 for a F32 tensor of shape [2] (8 bytes)",
            ),
            (
                r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                "a: unsupported dtype Q4",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                4,
                "a: bytes 0..8 lie beyond the file's 4 bytes of data",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2]}}"#,
                8,
                "a: no data_offsets",
            ),
            (r#"["a"]"#, 0, "not a JSON object"),
            (r#"{}"#, 0, "no tensors"),
        ] {
            let err = open_with(header, data).expect_err(header);
            assert!(err.contains(expected), "{header}: {err}");
        }
    }

    #[test]
    fn a_header_longer_than_the_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.safetensors");
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).expect("writes");
        let err = SafetensorsFile::open(&path).expect_err("too long a header");
        assert!(err.contains("not safetensors"), "{err}");
    }
}
