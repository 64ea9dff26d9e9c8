//! End to end: `anydepth serve` with the random-weight V2 ViT-S checkpoint answers a photo
//! with the bytes `anydepth depth --formats npy` writes for it, and SIGTERM ends it with
//! exit code 0.
//!
//! Skips (with a message) when the reference checkpoint is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`; needs `anydepth-torch` beside `anydepth`
//! (`cargo build -p anydepth -p anydepth-torch-cli`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{anydepth, assert_ok, command, data_root, engine_binary, reference_file, s};

/// A photo of the shared data, else the project's example.
fn photo() -> PathBuf {
    let shared = data_root().join("photos/demo08.jpg");
    if shared.is_file() {
        return shared;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/example.png")
}

/// Kills the service if the test fails before it ended.
struct Service(Option<Child>);

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn serve_answers_what_depth_writes_and_ends_on_sigterm() {
    let Some(weights) = reference_file("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    engine_binary();
    let photo = photo();
    let model = ["--weights", s(&weights), "--device", "cpu"];

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("depth");
    let mut args = vec![
        "depth",
        s(&photo),
        "--out",
        s(&out),
        "--formats",
        "npy",
        "-q",
    ];
    args.extend(model);
    assert_ok(&anydepth(&args));
    let stem = photo.file_stem().expect("stem").to_string_lossy();
    let expected = std::fs::read(out.join(format!("{stem}.npy"))).expect("depth wrote npy");

    let mut serve = command();
    serve
        .args(["serve", "--port", "0", "-q"])
        .args(model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut service = Service(Some(serve.spawn().expect("anydepth serve starts")));
    let child = service.0.as_mut().expect("running");
    let stderr = child.stderr.take().expect("stderr");
    // The address is printed once the model is loaded; the rest of stderr is drained so
    // the service never blocks on it.
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(address);
            }
        }
        seen
    });
    let Ok(address) = rx.recv_timeout(Duration::from_secs(120)) else {
        let _ = child.kill();
        panic!(
            "serve did not listen:\n{}",
            drain.join().unwrap_or_default()
        );
    };

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let health: serde_json::Value = serde_json::from_str(
        &agent
            .get(&format!("http://{address}/healthz"))
            .call()
            .expect("healthz answers")
            .into_string()
            .expect("text"),
    )
    .expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["device"], "Cpu");

    let body = std::fs::read(&photo).expect("photo");
    let response = agent
        .post(&format!("http://{address}/v1/depth?format=npy"))
        .send_bytes(&body)
        .expect("depth answers");
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    let mut got = Vec::new();
    response.into_reader().read_to_end(&mut got).expect("body");
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the served npy differs from the one depth wrote"
    );

    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let mut child = service.0.take().expect("running");
    let status = child.wait().expect("serve ends");
    let log = drain.join().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "serve ended with {status}:\n{log}");
}
