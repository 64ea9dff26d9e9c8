//! Helpers shared by the end-to-end tests: where the data and the reference files are,
//! and what a test does when they are absent.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

/// When `ANYDEPTH_REQUIRE_REFERENCES=1` a missing input fails the test; otherwise the test
/// says what is missing and passes without checking.
pub fn missing(what: &str) {
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
}

/// The shared data folder: `ANYDEPTH_DATA`, else `../shared/data` beside the project.
pub fn data_root() -> PathBuf {
    std::env::var_os("ANYDEPTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// `<data>/<name>` if it holds `marker` (a file or folder), else `None` after [`missing`].
pub fn dataset(name: &str, marker: &str) -> Option<PathBuf> {
    let dir = data_root().join(name);
    if dir.join(marker).exists() {
        return Some(dir);
    }
    missing(&format!("data folder not found: {}", dir.display()));
    None
}

/// A file of the folder `scripts/reference/make_references.py` writes
/// (`ANYDEPTH_REFERENCE_DIR`, else `.cache/reference`), or `None` after [`missing`].
pub fn reference_file(relative: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ANYDEPTH_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/reference"));
    let path = dir.join(relative);
    if path.is_file() {
        return Some(path);
    }
    missing(&format!(
        "no {} (run .venv/bin/python scripts/reference/make_references.py)",
        path.display()
    ));
    None
}
