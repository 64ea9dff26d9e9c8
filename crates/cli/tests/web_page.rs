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

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{engine_binary, missing, reference_file, s, small_photo, Service};

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
    let service = Service::start(&[
        "-q",
        "--weights",
        s(&weights),
        "--device",
        "cpu",
        "--input-size",
        "140",
    ]);
    let url = service.url("/");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web_page");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let screenshot = shots.join("mesh.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = Command::new("node")
        .arg(node_scripts().join("web_check.mjs"))
        .args([url.as_str(), s(&small_photo()), s(&screenshot)])
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

    service.terminate();
}
