//! End to end: `anydepth serve` with the random-weight V2 ViT-S checkpoint answers a photo
//! with the bytes `anydepth depth --formats npy` writes for it, and SIGTERM ends it with
//! exit code 0.
//!
//! Skips (with a message) when the reference checkpoint is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`; needs `anydepth-torch` beside `anydepth`
//! (`cargo build -p anydepth -p anydepth-torch-cli`).

use std::io::Read;
use std::time::Duration;

mod common;
use common::{anydepth, assert_ok, engine_binary, reference_file, s, small_photo, Service};

#[test]
fn serve_answers_what_depth_writes_and_ends_on_sigterm() {
    let Some(weights) = reference_file("v2-vits/depth_anything_v2_vits.pth") else {
        return;
    };
    engine_binary();
    let photo = small_photo();
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

    let service = Service::start(&[&["-q"][..], &model].concat());
    let address = &service.address;

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

    service.terminate();
}
