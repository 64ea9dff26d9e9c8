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

/// The repository's root folder.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// Runs the glTF-Validator on `paths`; asserts no errors and no warnings in any.
pub fn assert_valid_gltf(paths: &[&Path]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/node");
    if !root.join("node_modules/gltf-validator").is_dir() {
        missing("the glTF-Validator is not installed (run scripts/setup.sh)");
        return;
    }
    let out = Command::new("node")
        .arg(root.join("validate_gltf.mjs"))
        .args(paths)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            missing(&format!("node cannot run ({e}); run scripts/setup.sh"));
            return;
        }
    };
    let reports = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "glTF-Validator: {reports}\n{}",
        stderr(&out)
    );
    for line in reports.lines() {
        let report: serde_json::Value = serde_json::from_str(line).expect("a JSON report");
        assert_eq!(report["errors"], 0, "{line}");
        assert_eq!(report["warnings"], 0, "{line}");
    }
    assert_eq!(reports.lines().count(), paths.len(), "{reports}");
}

/// A photo of the shared data (640x425), else the project's example.
pub fn small_photo() -> PathBuf {
    let shared = data_root().join("photos/demo08.jpg");
    if shared.is_file() {
        return shared;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/example.png")
}

/// `anydepth serve` running on a free port of 127.0.0.1; killed if the test ends first.
pub struct Service {
    child: Option<std::process::Child>,
    /// `host:port` it listens on.
    pub address: String,
    drain: Option<std::thread::JoinHandle<String>>,
}

impl Service {
    /// Starts `anydepth serve --port 0 <args>` and waits (up to 2 minutes) until it says
    /// where it listens, which it does once the model is loaded; the rest of its stderr is
    /// drained so that it never blocks on it.
    pub fn start(args: &[&str]) -> Service {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;

        let mut child = command()
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("anydepth serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let drain = std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap_or_default();
                seen.push_str(&line);
                seen.push('\n');
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(address.to_owned());
                }
            }
            seen
        });
        let Ok(address) = rx.recv_timeout(std::time::Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!(
                "serve did not listen:\n{}",
                drain.join().unwrap_or_default()
            );
        };
        Service {
            child: Some(child),
            address,
            drain: Some(drain),
        }
    }

    /// `http://host:port<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends SIGTERM and asserts that the service ends with exit code 0.
    pub fn terminate(mut self) {
        let mut child = self.child.take().expect("running");
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        // A shutdown that stalls fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("serve's status") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not end within 60 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let log = self
            .drain
            .take()
            .map(|d| d.join().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(status.code(), Some(0), "serve ended with {status}:\n{log}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
