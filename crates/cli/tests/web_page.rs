//! End to end: the web page of `anydepth serve` in headless Chromium. With the random-weight
//! metric V2 ViT-S checkpoint, `scripts/node/web_check.mjs` opens the page, uploads a photo
//! through its file input, waits for the colour-mapped depth and for the 3D view to draw
//! the GLB (mesh, then point cloud), and counts the screenshot's pixels that differ from
//! the view's background. The screenshots are kept in
//! `target/tmp/web_page/{mesh,mesh-points}.png`.
//!
//! Skips (with a message) when the checkpoint, Node.js, `scripts/node/node_modules`
//! (`scripts/setup.sh`) or Chromium (`$CHROMIUM`, else `/usr/bin/chromium`) is missing,
//! unless `ANYDEPTH_REQUIRE_REFERENCES=1`; needs `anydepth-torch` beside `anydepth`
//! (`cargo build -p anydepth -p anydepth-torch-cli`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{command, data_root, engine_binary, missing, reference_file, s};

/// A small photo of the shared data (640x425), else the project's example.
fn photo() -> PathBuf {
    let shared = data_root().join("photos/demo08.jpg");
    if shared.is_file() {
        return shared;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/example.png")
}

/// `scripts/node`, where `scripts/setup.sh` installs puppeteer-core and three.js.
fn node_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/node")
}

/// What the check needs besides the checkpoint, or `None` after [`missing`].
fn browser_tools() -> Option<PathBuf> {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = node_scripts().join("node_modules");
    let absent = if !node {
        "node (Node.js) is not on PATH (scripts/setup.sh installs it)".to_owned()
    } else if !modules.join("puppeteer-core").is_dir() || !modules.join("three").is_dir() {
        format!(
            "no puppeteer-core or three in {} (run scripts/setup.sh)",
            modules.display()
        )
    } else if !chromium.is_file() {
        format!(
            "no Chromium at {} (scripts/setup.sh installs Debian's chromium; or set CHROMIUM)",
            chromium.display()
        )
    } else {
        return Some(chromium);
    };
    missing(&absent);
    None
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
fn web_page_shows_depth_and_draws_the_glb_in_headless_chromium() {
    let Some(weights) = reference_file("v2-vits-metric-indoor/model.safetensors") else {
        return;
    };
    let Some(chromium) = browser_tools() else {
        return;
    };
    engine_binary();

    // A metric model needs no scale and shift; a small network input keeps it fast.
    let mut serve = command();
    serve
        .args(["serve", "--port", "0", "-q", "--weights", s(&weights)])
        .args(["--device", "cpu", "--input-size", "140"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut service = Service(Some(serve.spawn().expect("anydepth serve starts")));
    let child = service.0.as_mut().expect("running");
    let stderr = child.stderr.take().expect("stderr");
    // The address is printed once the model is loaded; the rest of stderr is drained so
    // the service never blocks on it.
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
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
    let url = format!("http://{address}/");

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let start = Instant::now();
    while agent.get(&format!("{url}healthz")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/healthz did not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web_page");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let screenshot = shots.join("mesh.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = Command::new("node")
        .arg(node_scripts().join("web_check.mjs"))
        .args([url.as_str(), s(&photo()), s(&screenshot)])
        .args(["--timeout-ms", "60000"])
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!("{report}");
    assert!(check.status.success(), "web_check failed:\n{report}");
    assert!(report.contains("web_check: ok"), "{report}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );

    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let mut child = service.0.take().expect("running");
    let status = child.wait().expect("serve ends");
    let log = drain.join().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "serve ended with {status}:\n{log}");
}
