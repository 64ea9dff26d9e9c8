//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The project root (two levels above this crate).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// When `ANYDEPTH_REQUIRE_REFERENCES=1` (as in CI) a missing input fails the test;
/// otherwise the test says what is missing and passes without checking.
pub fn missing(what: &str) -> bool {
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
    false
}

/// Where `scripts/reference/make_references.py` wrote its files.
pub fn reference_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ANYDEPTH_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join(".cache/reference"));
    if dir.join("manifest.json").is_file() {
        Some(dir)
    } else {
        missing(&format!(
            "no reference outputs in {} (run .venv/bin/python scripts/reference/make_references.py)",
            dir.display()
        ));
        None
    }
}

/// Reads a little-endian float32 `.npy` (C order): (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "not an npy file: {}",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(header.contains("'descr': '<f4'"), "not float32: {header}");
    assert!(
        header.contains("'fortran_order': False"),
        "not C order: {header}"
    );
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape in header");
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("dimension"))
        .collect();
    let values: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>(), "npy size");
    (shape, values)
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
