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

/// Reads a `.npy` written by the reference scripts.
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    anydepth_core::npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
