//! The temporal alignment error against Video Depth Anything's own `eval_TAE`
//! (`benchmark/eval/eval_tae.py`), on the shared RGB-D sequences (Redwood living room,
//! Kinect office) with synthetic disparity: `scripts/reference/tae_reference.py` writes
//! the predictions and the script's numbers into `.cache/reference/tae`.
//!
//! The ground truth, poses and intrinsics are read here with the project's own readers.
//! Skips (with a message) when the data or the reference is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};

use anydepth_core::camera::Intrinsics;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::pose::read_trajectory;
use anydepth_core::{DepthMap, Disparity, Metres, Prediction};
use anydepth_eval::protocol::{Alignment, Crop, Fit, Protocol};
use anydepth_eval::temporal::{FrameCamera, SequenceTae, TemporalScore};
use serde_json::Value;

/// Relative tolerance on TAE and the fitted scale and shift. Both sides compute in f64 and
/// differ only in their inputs: the project's depth reader gives millimetres times
/// `f32(0.001)` (4.7e-8 above the decimal; NumPy divides in f64), and its pose reader makes
/// the rotations of Redwood's `.log` (printed to 6 digits, orthonormal to 2e-6) exactly
/// orthonormal, where the script inverts the matrices as printed. Measured: 2e-7 (Redwood)
/// and 4.5e-7 (Kinect) on TAE, 5e-8 on scale and shift. Fed the same inputs, the script
/// and this code agree on Kinect's TAE to 1e-11.
const TOLERANCE: f64 = 1e-5;

/// Relative tolerance on each direction of each pair: the input differences above move a
/// few projections across a half-pixel boundary (measured: at most 1.3e-5).
const PAIR_TOLERANCE: f64 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skip(what: &str) {
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
}

fn data() -> PathBuf {
    std::env::var_os("ANYDEPTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

fn reference() -> PathBuf {
    std::env::var_os("ANYDEPTH_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/reference"))
        .join("tae")
}

fn number(json: &Value, key: &str) -> f64 {
    json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key:?} in the manifest"))
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The TAE of one sequence of the manifest: its files read with the project's readers.
fn score_sequence(sequence: &Value, data: &Path, reference: &Path) -> TemporalScore {
    let strings = |key: &str| -> Vec<String> {
        sequence[key]
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().expect("a path").to_owned())
            .collect()
    };
    let (depth, predictions) = (strings("depth"), strings("predictions"));
    let k: Vec<f64> = sequence["intrinsics"]
        .as_array()
        .expect("fx fy cx cy")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let (width, height) = (
        number(sequence, "width") as u32,
        number(sequence, "height") as u32,
    );
    let intrinsics = Intrinsics::new(k[0], k[1], k[2], k[3], width, height).expect("valid");
    let poses_path = data.join(sequence["poses"].as_str().expect("poses"));
    let trajectory = read_trajectory(&poses_path, None).expect("reads the poses");
    let poses = trajectory
        .poses_for_frames(depth.len())
        .expect("a pose per frame");
    let protocol = Protocol {
        min_depth_m: number(sequence, "min_depth_m") as f32,
        max_depth_m: Some(number(sequence, "max_depth_m") as f32),
        crop: Crop::None,
        alignment: Alignment::Affine,
    };
    let mut tae = SequenceTae::new(&protocol).expect("affine");
    for ((depth, prediction), pose) in depth.iter().zip(&predictions).zip(&poses) {
        let gt: DepthMap<Metres> =
            read_depth_values(&data.join(depth), number(sequence, "depth_scale"))
                .expect("reads the ground truth");
        let disparity: DepthMap<Disparity> =
            read_depth_values(&reference.join(prediction), 1.0).expect("reads the .npy");
        let camera = FrameCamera {
            intrinsics,
            world_from_camera: pose.world_from_camera,
        };
        tae.push(&Prediction::Disparity(disparity), &gt, &camera)
            .expect("adds the frame");
    }
    tae.finish().expect("scores the sequence")
}

#[test]
fn tae_matches_the_official_script_on_real_sequences() {
    let (data, reference) = (data(), reference());
    let manifest = reference.join("manifest.json");
    if !manifest.is_file() {
        return skip(&format!(
            "no {} (run .venv/bin/python scripts/reference/make_references.py)",
            manifest.display()
        ));
    }
    let text = std::fs::read_to_string(&manifest).expect("reads the manifest");
    let manifest: Value = serde_json::from_str(&text).expect("valid JSON");
    let sequences = manifest["sequences"].as_array().expect("sequences");
    assert!(sequences.len() >= 2, "{manifest}");
    for sequence in sequences {
        let name = sequence["name"].as_str().expect("name");
        if !data.join(name).is_dir() {
            skip(&format!(
                "data folder not found: {}",
                data.join(name).display()
            ));
            continue;
        }
        let score = score_sequence(sequence, &data, &reference);
        let pixels = number(sequence, "width") * number(sequence, "height");

        let expected = number(sequence, "tae");
        eprintln!(
            "{name}: TAE {:.9} (official {expected:.9}), difference {:.3e}, relative {:.3e}",
            score.tae,
            score.tae - expected,
            relative(score.tae, expected)
        );
        let Fit::Affine(affine) = score.fit else {
            panic!("expected an affine fit, got {:?}", score.fit);
        };
        let (scale, shift) = (number(sequence, "scale"), number(sequence, "shift"));
        eprintln!(
            "  scale {} vs {scale} ({:.3e}), shift {} vs {shift} ({:.3e})",
            affine.scale,
            relative(affine.scale, scale),
            affine.shift,
            relative(affine.shift, shift)
        );
        assert!(relative(affine.scale, scale) < TOLERANCE);
        assert!(relative(affine.shift, shift) < TOLERANCE);
        let pairs = sequence["pairs"].as_array().expect("pairs");
        assert_eq!(score.pairs.len(), pairs.len());
        for (i, (ours, theirs)) in score.pairs.iter().zip(pairs).enumerate() {
            let (forward, backward) = (number(theirs, "forward"), number(theirs, "backward"));
            eprintln!(
                "  pair {i}: forward {:.9} vs {forward:.9} ({} px), backward {:.9} vs {backward:.9} ({} px)",
                ours.forward.absrel,
                ours.forward.pixels,
                ours.backward.absrel,
                ours.backward.pixels
            );
            assert!(relative(ours.forward.absrel, forward) < PAIR_TOLERANCE);
            assert!(relative(ours.backward.absrel, backward) < PAIR_TOLERANCE);
            // Consecutive frames overlap: a good share of the pixels is compared.
            assert!(ours.forward.pixels as f64 > pixels / 4.0);
            assert!(ours.backward.pixels as f64 > pixels / 4.0);
        }
        // A real spread: a test that any TAE near zero would pass proves nothing.
        assert!(expected > 1.0, "{expected}");
        assert!(relative(score.tae, expected) < TOLERANCE);
    }
}
