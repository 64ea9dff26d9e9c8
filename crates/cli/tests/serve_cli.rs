//! End to end: `anydepth serve` with the random-weight V2 ViT-S checkpoint answers a photo
//! with the bytes `anydepth depth --formats npy`, `anydepth mesh` (GLB) and `anydepth
//! cloud` (PLY) write for it, and SIGTERM ends it with exit code 0.
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

    // A textured GLB mesh and a PLY cloud: the bytes `anydepth mesh` and `cloud` write
    // with the same camera and scale.
    let camera = ["--fov", "60", "--scale", "2", "--shift", "0.1"];
    for (command, query, file) in [
        (
            "mesh",
            "/v1/mesh?format=glb&fov=60&scale=2&shift=0.1&stride=2",
            "mesh.glb",
        ),
        (
            "cloud",
            "/v1/cloud?format=ply&fov=60&scale=2&shift=0.1",
            "cloud.ply",
        ),
    ] {
        let path = dir.path().join(file);
        let stride: &[&str] = if command == "mesh" {
            &["--stride", "2"]
        } else {
            &[]
        };
        let args = [
            &[command, s(&photo), "-o", s(&path), "-q"][..],
            &camera,
            stride,
            &model,
        ]
        .concat();
        assert_ok(&anydepth(&args));
        let mut got = Vec::new();
        agent
            .post(&service.url(query))
            .send_bytes(&body)
            .expect("answers")
            .into_reader()
            .read_to_end(&mut got)
            .expect("body");
        let written = std::fs::read(&path).expect("written");
        assert_eq!(got.len(), written.len(), "{query}");
        assert!(
            got == written,
            "{query}: the answer differs from {command}'s file"
        );
    }

    service.terminate();
}
