//! Helpers shared by the end-to-end tests: running the binary, checking how it ended,
//! where the data and the reference files are, and what a test does when they are absent.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `anydepth` binary with a clean environment: no `RUST_LOG` (tests read its output)
/// and no `CARGO_TARGET_DIR` (no viewer of a developer's build may be picked up instead of
/// the one on PATH).
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anydepth"));
    command
        .env_remove("RUST_LOG")
        .env_remove("CARGO_TARGET_DIR");
    command
}

/// `anydepth-torch`, which `anydepth` hands the commands that run a network: beside it,
/// built by `cargo test --workspace` (or `cargo build -p anydepth-torch-cli`).
pub fn engine_binary() -> PathBuf {
    let engine = Path::new(env!("CARGO_BIN_EXE_anydepth")).with_file_name("anydepth-torch");
    assert!(
        engine.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, or build it with \
         `cargo build -p anydepth-torch-cli`",
        engine.display()
    );
    engine
}

/// Runs `anydepth <args>` to the end.
pub fn anydepth(args: &[&str]) -> Output {
    command().args(args).output().expect("anydepth runs")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing stdout and stderr when it differs.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit code {code}; stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Asserts success, showing stderr otherwise; returns stderr.
pub fn assert_ok(out: &Output) -> String {
    let stderr = stderr(out);
    assert!(out.status.success(), "{stderr}");
    stderr
}

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
