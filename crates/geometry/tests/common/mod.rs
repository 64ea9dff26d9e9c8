//! Shared by the tests that compare with Open3D on `../shared/data`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The data root: `ANYDEPTH_DATA`, else `<root>/../shared/data`.
pub fn data() -> PathBuf {
    std::env::var_os("ANYDEPTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

/// Fails under `ANYDEPTH_REQUIRE_REFERENCES=1`, else says what is missing and returns.
pub fn skip(what: &str) {
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
}

/// The project's Python when it exists and imports open3d (after [`skip`] otherwise).
pub fn open3d_python() -> Option<PathBuf> {
    let python = root().join(".venv/bin/python");
    let importable = Command::new(&python)
        .args(["-c", "import open3d"])
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        Some(python)
    } else {
        skip(&format!(
            "{} cannot import open3d (scripts/setup.sh installs it)",
            python.display()
        ));
        None
    }
}
