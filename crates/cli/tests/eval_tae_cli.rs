//! End-to-end tests of `anydepth eval --poses`: a list of frames with camera poses is a
//! video, and the report carries its temporal alignment error (TAE) beside AbsRel and
//! delta1. Predictions are written from the shared Redwood sequence's ground truth (so the
//! alignment is known), and the official script's numbers of
//! `scripts/reference/tae_reference.py` are reproduced through the command line.
//!
//! Tests skip (with a message) when their data or reference folder is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};

use anydepth::Cli;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::Metres;
use clap::Parser;
use serde_json::Value;

mod common;
use common::{anydepth, assert_code, reference_file, s, stderr};

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn number(json: &Value, key: &str) -> f64 {
    json.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {key:?} in {json}"))
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The Redwood frames' depth files, in order.
fn redwood_depths(redwood: &Path) -> Vec<PathBuf> {
    (0..5)
        .map(|i| redwood.join(format!("depth/{i:05}.png")))
        .collect()
}

/// A list of `rgb depth 1000` lines in `dir` for these depth files (each frame named after
/// its depth file's stem, which the predictions share).
fn write_list(dir: &Path, depths: &[PathBuf]) -> PathBuf {
    let lines: String = depths
        .iter()
        .map(|d| format!("{} {} 1000\n", s(d), s(d)))
        .collect();
    let list = dir.join("video.txt");
    std::fs::write(&list, lines).expect("writes the list");
    list
}

/// Writes `<stem>.npy` per frame: `f(frame, metres)`, with the ground truth's holes at 2 m.
fn write_predictions(out: &Path, depths: &[PathBuf], f: impl Fn(usize, f32) -> f32) {
    std::fs::create_dir_all(out).expect("mkdir");
    for (i, depth) in depths.iter().enumerate() {
        let (w, h, values) = read_depth_values::<Metres>(depth, 1000.0)
            .expect("reads the depth PNG")
            .into_parts();
        let values: Vec<f32> = values
            .iter()
            .map(|&z| f(i, if z > 0.0 { z } else { 2.0 }))
            .collect();
        let stem = depth.file_stem().expect("stem").to_string_lossy();
        let bytes = anydepth_core::npy::encode_f32(&values, &[h as usize, w as usize]);
        std::fs::write(out.join(format!("{stem}.npy")), bytes).expect("writes the .npy");
    }
}

#[test]
fn redwood_video_scores_tae_beside_absrel() {
    let Some(redwood) = common::dataset("redwood-livingroom", "odometry.log") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let depths = redwood_depths(&redwood);
    let list = write_list(tmp.path(), &depths);
    let poses = redwood.join("odometry.log");
    let camera = redwood.join("camera_primesense.json");
    let run = |pred: &Path, extra: &[&str]| -> Value {
        let json = pred.join("report.json");
        let mut args = vec![
            "eval",
            "--dataset",
            "list",
            s(&list),
            "--predictions",
            s(pred),
            "--poses",
            s(&poses),
            "--max-depth",
            "10",
            "--json",
            s(&json),
        ];
        args.extend_from_slice(extra);
        // Files on disk: the command runs here, without the engine binary.
        let cli = Cli::try_parse_from(std::iter::once("anydepth").chain(args.iter().copied()))
            .expect("parses");
        assert!(!cli.needs_engine());
        let out = anydepth(&args);
        assert_code(&out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}");
        assert!(stdout.contains("TAE over 4 pairs"), "{stdout}");
        assert!(stdout.contains("00000 -> 00001"), "{stdout}");
        read_json(&json)
    };

    // Disparity under one scale and shift for the whole video: 1/z = 0.02 d + 0.05.
    let affine = tmp.path().join("affine");
    write_predictions(&affine, &depths, |_, z| (1.0 / z - 0.05) / 0.02);
    let report = run(&affine, &["--intrinsics", s(&camera)]);
    assert_eq!(report["count"].as_u64(), Some(5));
    assert!(number(&report, "absrel") < 1e-5, "{report}");
    assert_eq!(number(&report, "delta1"), 1.0);
    let tae = number(&report, "tae");
    let temporal = &report["temporal"];
    assert!(
        (number(temporal, "scale") / 0.02 - 1.0).abs() < 1e-4,
        "{temporal}"
    );
    assert!(
        (number(temporal, "shift") - 0.05).abs() < 1e-5,
        "{temporal}"
    );
    assert_eq!(number(temporal, "max_depth_m"), 10.0);
    assert_eq!(temporal["poses"].as_str(), Some(s(&poses)));
    let pairs = temporal["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 4);
    assert_eq!(
        (pairs[0]["first"].as_str(), pairs[0]["second"].as_str()),
        (Some("00000"), Some("00001"))
    );
    let mean: f64 = pairs.iter().map(|p| number(p, "tae")).sum::<f64>() / 4.0;
    assert!(relative(mean, tae) < 1e-12, "{mean} vs {tae}");
    for pair in pairs {
        let both = 0.5 * (number(pair, "forward") + number(pair, "backward"));
        assert!(relative(both, number(pair, "tae")) < 1e-12, "{pair}");
        assert!(
            number(pair, "forward_pixels") > 640.0 * 480.0 * 0.5,
            "{pair}"
        );
    }
    // The ground truth is consistent to millimetres (its holes filled with 2 m are not):
    // a small TAE, but not zero.
    assert!(tae > 0.01 && tae < 10.0, "{tae}");

    // The same depth as metres, taken as it is, with the camera as numbers: the same TAE
    // up to the f32 rounding of the disparity above.
    let metric = tmp.path().join("metric");
    write_predictions(&metric, &depths, |_, z| z);
    let report = run(
        &metric,
        &[
            "--metric",
            "indoor",
            "--align",
            "none",
            "--intrinsics",
            "525,525,319.5,239.5",
        ],
    );
    assert_eq!(report["temporal"]["alignment"], "none");
    assert!(report["temporal"].get("scale").is_none());
    let metric_tae = number(&report, "tae");
    eprintln!("TAE: disparity aligned {tae}, metres as they are {metric_tae}");
    assert!(relative(metric_tae, tae) < 1e-3, "{metric_tae} vs {tae}");

    // One frame 20% off in disparity: AbsRel aligns each image and hardly notices, TAE does.
    let flicker = tmp.path().join("flicker");
    write_predictions(&flicker, &depths, |i, z| {
        (1.0 / z - 0.05) / 0.02 * if i == 2 { 1.2 } else { 1.0 }
    });
    let report = run(&flicker, &["--intrinsics", s(&camera)]);
    assert!(number(&report, "absrel") < 1e-5, "{report}");
    let flicker_tae = number(&report, "tae");
    eprintln!("TAE with frame 2 off: {flicker_tae}");
    assert!(flicker_tae > tae + 1.0, "{flicker_tae} vs {tae}");
}

#[test]
fn poses_are_refused_where_they_cannot_apply() {
    let Some(redwood) = common::dataset("redwood-livingroom", "odometry.log") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let depths = redwood_depths(&redwood);
    let list = write_list(tmp.path(), &depths);
    write_predictions(tmp.path(), &depths, |_, z| 1.0 / z);
    let poses = redwood.join("odometry.log");
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--dataset",
            "list",
            s(&list),
            "--predictions",
            s(tmp.path()),
            "--poses",
            s(&poses),
        ];
        args.extend_from_slice(extra);
        let out = anydepth(&args);
        assert_code(&out, 2);
        stderr(&out)
    };
    let err = eval(&[]);
    assert!(err.contains("--intrinsics"), "{err}");
    let err = eval(&["--intrinsics", "525,525,319.5"]);
    assert!(err.contains("fx,fy,cx,cy"), "{err}");
    let err = eval(&["--intrinsics", "525,525,319.5,239.5", "--limit", "1"]);
    assert!(err.contains("consecutive frames"), "{err}");
    let err = eval(&[
        "--intrinsics",
        "525,525,319.5,239.5",
        "--metric",
        "indoor",
        "--align",
        "median",
    ]);
    assert!(err.contains("--align median"), "{err}");
    // A camera for frames of another size.
    let small = tmp.path().join("small.json");
    std::fs::write(
        &small,
        r#"{"width": 320, "height": 240, "fx": 262.5, "fy": 262.5, "cx": 159.5, "cy": 119.5}"#,
    )
    .expect("writes");
    let err = eval(&["--intrinsics", s(&small)]);
    assert!(err.contains("320 x 240") && err.contains("00000"), "{err}");
    // Too few poses for the frames: the file is named.
    let short = tmp.path().join("short.log");
    let log = std::fs::read_to_string(&poses).expect("reads");
    std::fs::write(&short, log.lines().take(10).collect::<Vec<_>>().join("\n")).expect("writes");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "list",
        s(&list),
        "--predictions",
        s(tmp.path()),
        "--poses",
        s(&short),
        "--intrinsics",
        "525,525,319.5,239.5",
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("short.log"), "{}", stderr(&out));
}

#[test]
fn tae_through_the_command_line_matches_the_official_script() {
    let Some(manifest) = reference_file("tae/manifest.json") else {
        return;
    };
    let reference = manifest
        .parent()
        .expect("the reference folder")
        .to_path_buf();
    let manifest = read_json(&manifest);
    let data = common::data_root();
    let tmp = tempfile::tempdir().expect("temp dir");
    for sequence in manifest["sequences"].as_array().expect("sequences") {
        let name = sequence["name"].as_str().expect("name");
        let Some(root) = common::dataset(name, ".") else {
            continue;
        };
        let depths: Vec<PathBuf> = sequence["depth"]
            .as_array()
            .expect("depth files")
            .iter()
            .map(|d| data.join(d.as_str().expect("a path")))
            .collect();
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        let list = write_list(&dir, &depths);
        let k: Vec<String> = sequence["intrinsics"]
            .as_array()
            .expect("fx fy cx cy")
            .iter()
            .map(|v| v.as_f64().expect("a number").to_string())
            .collect();
        let poses = data.join(sequence["poses"].as_str().expect("poses"));
        assert!(poses.starts_with(&root));
        let json = dir.join("report.json");
        let out = anydepth(&[
            "eval",
            "--dataset",
            "list",
            s(&list),
            "--predictions",
            s(&reference.join(name)),
            "--poses",
            s(&poses),
            "--intrinsics",
            &k.join(","),
            "--max-depth",
            &number(sequence, "max_depth_m").to_string(),
            "--json",
            s(&json),
            "--quiet",
        ]);
        assert_code(&out, 0);
        let (ours, official) = (number(&read_json(&json), "tae"), number(sequence, "tae"));
        eprintln!(
            "{name}: TAE {ours} (official {official}, relative {:.2e})",
            relative(ours, official)
        );
        // As in crates/eval/tests/tae_parity.rs, which says where the 5e-7 come from.
        assert!(relative(ours, official) < 1e-5, "{ours} vs {official}");
    }
}
