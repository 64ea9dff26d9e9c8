//! End-to-end tests of `anydepth eval`: predictions written from the ground truth of the
//! NYU and KITTI samples beside the project (so the scores are known), small generated
//! list and DA-2K datasets, the errors, and one run of a random-weight checkpoint of
//! `scripts/reference/make_references.py`.
//!
//! Tests skip (with a message) when their data or reference folder is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::Metres;
use serde_json::Value;

mod common;
use common::{anydepth, assert_code, reference_file, s, stderr};

/// `<data>/<name>` holding a `test_annotations.json`, or `None` when absent.
fn dataset(name: &str) -> Option<PathBuf> {
    common::dataset(name, "test_annotations.json")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn number(json: &Value, key: &str) -> f64 {
    json.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {key:?} in {json}"))
}

fn write_npy(path: &Path, w: u32, h: u32, values: &[f32]) {
    let bytes = anydepth_core::npy::encode_f32(values, &[h as usize, w as usize]);
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The dataset's `(rgb stem, depth path, depth scale)` from its `test_annotations.json`,
/// resolved as `anydepth eval` documents (leading folders dropped until the file exists).
fn entries(dir: &Path) -> Vec<(String, PathBuf, f64)> {
    let json = read_json(&dir.join("test_annotations.json"));
    let files = json["files"].as_array().expect("files");
    files
        .iter()
        .map(|f| {
            let rgb = Path::new(f["rgb"].as_str().expect("rgb"));
            let depth = Path::new(f["depth"].as_str().expect("depth"));
            let kind = depth
                .parent()
                .and_then(Path::file_name)
                .expect("depth folder");
            let depth = dir.join(kind).join(depth.file_name().expect("file name"));
            let stem = rgb
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            (stem, depth, f["depth_scale"].as_f64().expect("scale"))
        })
        .collect()
}

/// Writes `<rgb stem>.npy` for every frame: `f(ground-truth metres)` where there is ground
/// truth, 0 elsewhere.
fn predictions_from_ground_truth(dir: &Path, out: &Path, f: impl Fn(f32) -> f32) -> usize {
    let entries = entries(dir);
    for (stem, depth, scale) in &entries {
        let (w, h, values) = read_depth_values::<Metres>(depth, *scale)
            .expect("reads the depth PNG")
            .into_parts();
        let values: Vec<f32> = values
            .iter()
            .map(|&z| if z > 0.0 { f(z) } else { 0.0 })
            .collect();
        write_npy(&out.join(format!("{stem}.npy")), w, h, &values);
    }
    entries.len()
}

#[test]
fn nyu_ground_truth_as_disparity_scores_perfectly() {
    let Some(nyu) = dataset("nyu-samples") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let pred = tmp.path().join("pred");
    std::fs::create_dir(&pred).expect("mkdir");
    // Disparity under a scale and shift the alignment must undo: d = (1/z - 0.05) / 0.02.
    let n = predictions_from_ground_truth(&nyu, &pred, |z| (1.0 / z - 0.05) / 0.02);
    let json = tmp.path().join("out/nyu.json");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "nyu",
        s(&nyu),
        "--predictions",
        s(&pred),
        "--json",
        s(&json),
    ]);
    assert_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mean of 3 images"), "{stdout}");
    let report = read_json(&json);
    eprintln!("{stdout}");
    assert_eq!(report["dataset"], "nyu");
    assert_eq!(report["alignment"], "affine");
    assert_eq!(report["crop"], "nyu-eigen");
    assert_eq!(report["count"].as_u64(), Some(n as u64));
    // f32 predictions: AbsRel at rounding level.
    assert!(number(&report, "absrel") < 1e-5, "{report}");
    assert!(number(&report, "rmse") < 1e-4 && number(&report, "log_rmse") < 1e-5);
    for key in ["delta1", "delta2", "delta3"] {
        assert_eq!(number(&report, key), 1.0, "{key}");
    }
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 3);
    assert_eq!(images[0]["name"], "rgb_00000");
    for image in images {
        assert!((number(image, "scale") - 0.02).abs() < 1e-5, "{image}");
        assert!((number(image, "shift") - 0.05).abs() < 1e-5, "{image}");
        assert!(number(image, "absrel") < 1e-5);
        // The Eigen crop holds 426 x 560 pixels.
        assert!(number(image, "pixels") <= 426.0 * 560.0);
    }
}

#[test]
fn nyu_metric_predictions_with_and_without_median_scaling() {
    let Some(nyu) = dataset("nyu-samples") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    // 5% too far everywhere (the deepest NYU samples stay under the 10 m cap).
    predictions_from_ground_truth(&nyu, tmp.path(), |z| z * 1.05);
    let run = |align: &str| {
        let json = tmp.path().join(format!("{align}.json"));
        let out = anydepth(&[
            "eval",
            "--dataset",
            "nyu",
            s(&nyu),
            "--predictions",
            s(tmp.path()),
            "--metric",
            "indoor",
            "--align",
            align,
            "--json",
            s(&json),
            "--quiet",
        ]);
        assert_code(&out, 0);
        read_json(&json)
    };
    let none = run("none");
    assert_eq!(none["alignment"], "none");
    let absrel = number(&none, "absrel");
    assert!((absrel - 0.05).abs() < 1e-3, "{none}");
    assert_eq!(number(&none, "delta1"), 1.0);
    let median = run("median");
    assert!(number(&median, "absrel") < 1e-5, "{median}");
    // Relative predictions cannot be median-scaled.
    let out = anydepth(&[
        "eval",
        "--dataset",
        "nyu",
        s(&nyu),
        "--predictions",
        s(tmp.path()),
        "--align",
        "median",
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--align affine"), "{}", stderr(&out));
}

#[test]
fn kitti_sparse_ground_truth_scores_perfectly_and_limit_applies() {
    let Some(kitti) = dataset("kitti-samples") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    predictions_from_ground_truth(&kitti, tmp.path(), |z| 3.0 / z + 0.2);
    let json = tmp.path().join("kitti.json");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "kitti",
        s(&kitti),
        "--predictions",
        s(tmp.path()),
        "--limit",
        "2",
        "--json",
        s(&json),
    ]);
    assert_code(&out, 0);
    let report = read_json(&json);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["crop"], "kitti-garg");
    assert_eq!(number(&report, "max_depth_m"), 80.0);
    assert_eq!(report["count"].as_u64(), Some(2));
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    // The annotation file's order: 50, 100, 5.
    assert_eq!(images[0]["name"], "0000000050");
    assert!(number(&report, "absrel") < 1e-5, "{report}");
    assert_eq!(number(&report, "delta1"), 1.0);
    // Sparse: these frames hold depth at about 20% of the pixels (94,201 of 0000000050's
    // inside the Garg crop of 218 x 1153, less the few beyond 80 m).
    let pixels = number(&images[0], "pixels");
    assert!(pixels > 50_000.0 && pixels <= 94_201.0, "{pixels}");
}

#[test]
fn missing_files_sizes_and_empty_masks_are_named() {
    let Some(nyu) = dataset("nyu-samples") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    predictions_from_ground_truth(&nyu, tmp.path(), |z| 1.0 / z);
    std::fs::remove_file(tmp.path().join("rgb_00050.npy")).expect("remove");
    let args = |pred: &Path| {
        vec![
            "eval".to_string(),
            "--dataset".into(),
            "nyu".into(),
            s(&nyu).into(),
            "--predictions".into(),
            s(pred).into(),
        ]
    };
    let run = |args: Vec<String>| anydepth(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(tmp.path()));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("rgb_00050.npy"), "{}", stderr(&out));

    // A prediction of another aspect ratio cannot be resized onto the ground truth.
    write_npy(&tmp.path().join("rgb_00050.npy"), 100, 100, &[1.0; 10_000]);
    let out = run(args(tmp.path()));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("rgb_00050") && err.contains("aspect"), "{err}");

    // Half resolution is resized (and said so), and scores well on a smooth scene.
    let (w, h, gt) = read_depth_values::<Metres>(&nyu.join("depth/sync_depth_00050.png"), 1000.0)
        .expect("reads")
        .into_parts();
    let half: Vec<f32> = (0..h / 2)
        .flat_map(|y| (0..w / 2).map(move |x| (y * 2 * w + x * 2) as usize))
        .map(|i| if gt[i] > 0.0 { 1.0 / gt[i] } else { 0.0 })
        .collect();
    write_npy(&tmp.path().join("rgb_00050.npy"), w / 2, h / 2, &half);
    let mut with_json = args(tmp.path());
    let json = tmp.path().join("half.json");
    with_json.extend(["--json".into(), s(&json).into()]);
    let out = run(with_json);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("1 prediction(s) resized (bilinear)"),
        "{}",
        stderr(&out)
    );
    let report = read_json(&json);
    let absrel = number(&report["images"][1], "absrel");
    eprintln!("half-resolution prediction of rgb_00050: AbsRel {absrel}");
    assert!(absrel > 1e-4 && absrel < 0.1, "{absrel}");

    // A list dataset whose ground truth is all beyond --max-depth: the image is named.
    let list_dir = tmp.path().join("list");
    std::fs::create_dir(&list_dir).expect("mkdir");
    let depth =
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(8, 6, image::Luma([5000]));
    depth.save(list_dir.join("far.png")).expect("png");
    write_npy(&list_dir.join("far_rgb.npy"), 8, 6, &[1.0; 48]);
    std::fs::write(list_dir.join("list.txt"), "far_rgb.jpg far.png 1000\n").expect("write");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "list",
        s(&list_dir.join("list.txt")),
        "--predictions",
        s(&list_dir),
        "--max-depth",
        "3",
    ]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("far_rgb") && err.contains("no ground-truth depth"),
        "{err}"
    );
}

#[test]
fn da2k_pairs_with_a_known_number_ordered_wrongly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("DA-2K");
    let pred = tmp.path().join("pred");
    std::fs::create_dir_all(root.join("images/indoor")).expect("mkdir");
    std::fs::create_dir(&pred).expect("mkdir");
    let (w, h) = (40u32, 30u32);
    // Disparity grows downwards: lower rows are closer.
    let disparity: Vec<f32> = (0..h)
        .flat_map(|y| (0..w).map(move |_| 1.0 + y as f32))
        .collect();
    for name in ["a", "b"] {
        image::RgbImage::new(w, h)
            .save(root.join(format!("images/indoor/{name}.png")))
            .expect("png");
        write_npy(&pred.join(format!("{name}.npy")), w, h, &disparity);
    }
    // [row, col]: in "a" 3 pairs right, 1 wrong; in "b" 1 right, 2 wrong (one of them a
    // tie on the same row). A reader that swapped rows and columns would score otherwise.
    std::fs::write(
        root.join("annotations.json"),
        r#"{
  "images/indoor/a.png": [
    {"point1": [20, 1], "point2": [10, 35], "closer_point": "point1"},
    {"point1": [2, 39], "point2": [29, 0], "closer_point": "point2"},
    {"point1": [15, 5], "point2": [14, 30], "closer_point": "point1"},
    {"point1": [5, 30], "point2": [25, 2], "closer_point": "point1"}
  ],
  "images/indoor/b.png": [
    {"point1": [29, 39], "point2": [0, 0], "closer_point": "point1"},
    {"point1": [3, 3], "point2": [4, 3], "closer_point": "point1"},
    {"point1": [7, 0], "point2": [7, 39], "closer_point": "point2"}
  ]
}"#,
    )
    .expect("write");
    let json = tmp.path().join("da2k.json");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "da2k",
        s(&root),
        "--predictions",
        s(&pred),
        "--json",
        s(&json),
    ]);
    assert_code(&out, 0);
    let report = read_json(&json);
    assert_eq!(report["pairs"].as_u64(), Some(7));
    assert_eq!(report["correct"].as_u64(), Some(4));
    assert!((number(&report, "accuracy") - 4.0 / 7.0).abs() < 1e-12);
    assert_eq!(report["images"][0]["name"], "images/indoor/a.png");
    assert_eq!(report["images"][0]["correct"].as_u64(), Some(3));
    assert_eq!(report["images"][1]["correct"].as_u64(), Some(1));

    // As metric depth (smaller is closer) the same values order every pair the other way,
    // ties excepted.
    let out = anydepth(&[
        "eval",
        "--dataset",
        "da2k",
        s(&root),
        "--predictions",
        s(&pred),
        "--metric",
        "indoor",
        "--json",
        s(&json),
    ]);
    assert_code(&out, 0);
    assert_eq!(read_json(&json)["correct"].as_u64(), Some(2));
}

#[test]
fn random_weight_checkpoint_runs_and_writes_valid_json() {
    let (Some(nyu), Some(weights)) = (
        dataset("nyu-samples"),
        reference_file("v2-vits/depth_anything_v2_vits.pth"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let json = tmp.path().join("random.json");
    let out = anydepth(&[
        "eval",
        "--dataset",
        "nyu",
        s(&nyu),
        "--weights",
        s(&weights),
        "--device",
        "cpu",
        "--input-size",
        "140",
        "--limit",
        "2",
        "--json",
        s(&json),
    ]);
    assert_code(&out, 0);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let report = read_json(&json);
    assert_eq!(report["count"].as_u64(), Some(2));
    assert_eq!(report["alignment"], "affine");
    assert!(report["model"]
        .as_str()
        .is_some_and(|m| m.contains("Depth Anything V2 vits relative")));
    for key in ["absrel", "delta1", "delta2", "delta3", "rmse", "log_rmse"] {
        let v = number(&report, key);
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
        for image in report["images"].as_array().expect("images") {
            assert!(number(image, key).is_finite(), "{image}");
        }
    }
    assert!(number(&report, "delta1") <= 1.0);
}
