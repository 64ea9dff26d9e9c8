//! Parity of Video Depth Anything with the official code, on CPU in fp32 (and bf16).
//!
//! `scripts/reference/video_reference.py` writes a random-weight checkpoint in the official
//! layout, with the motion modules' zero-initialised output projections re-initialised so
//! the temporal path changes the output (it checks that it does), a 50-frame clip as PNGs,
//! and the official outputs: `infer_video_depth` (relative: three windows aligned by scale
//! and shift and blended; metric: not aligned) and the streaming class frame by frame.
//! Every frame must agree within 1e-3 of the reference's range (1e-2 in bf16).

mod common;

use std::path::{Path, PathBuf};

use anydepth_core::{load_image, Prediction, RgbImage};
use anydepth_torch::video::{
    clip_input_size, is_video_checkpoint, video_config, VideoDepthModel, VideoDepthNetwork,
};
use anydepth_torch::weights::{Checkpoint, CheckpointHints};
use anydepth_torch::{
    DeviceChoice, Encoder, EstimatorOptions, ModelSpec, Precision, Preprocessing, VideoConfig,
};
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f32 = 1e-3; // of the reference's range
/// In bf16 (the encoder's linear layers as autocast runs them, the heads in fp32) against
/// the official fp32 output.
const BF16_TOLERANCE: f32 = 1e-2;

struct Reference {
    dir: PathBuf,
    manifest: serde_json::Value,
    frames: Vec<RgbImage>,
}

fn reference() -> Option<Reference> {
    let dir = std::env::var_os("ANYDEPTH_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::project_root().join(".cache/reference"))
        .join("video");
    let manifest_path = dir.join("manifest.json");
    if !manifest_path.is_file() {
        common::missing(&format!(
            "no video references in {} (run .venv/bin/python scripts/reference/video_reference.py)",
            dir.display()
        ));
        return None;
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("manifest reads"))
            .expect("manifest parses");
    let count = manifest["frames"].as_u64().expect("frames") as usize;
    let frames = (0..count)
        .map(|i| load_image(&dir.join(format!("frames/{i:06}.png"))).expect("frame decodes"))
        .collect();
    Some(Reference {
        dir,
        manifest,
        frames,
    })
}

fn options(input_size: u32, precision: Precision) -> EstimatorOptions {
    EstimatorOptions {
        device: DeviceChoice::Cpu,
        precision,
        input_size,
        batch_size: 1,
        allow_tf32: false,
        preprocessing: Preprocessing::Exact,
        cuda_graphs: false,
    }
}

fn load(reference: &Reference, metric: bool) -> VideoDepthModel {
    load_in(reference, metric, Precision::Fp32)
}

fn load_in(reference: &Reference, metric: bool, precision: Precision) -> VideoDepthModel {
    let weights = reference
        .dir
        .join(reference.manifest["weights"].as_str().expect("weights"));
    let checkpoint = Checkpoint::read(&weights).expect("checkpoint reads");
    assert!(is_video_checkpoint(&checkpoint));
    let config = video_config(&checkpoint, ModelSpec::default(), Some(metric)).expect("config");
    let input_size = reference.manifest["input_size"]
        .as_u64()
        .expect("input size") as u32;
    VideoDepthModel::from_parts(&checkpoint, config, options(input_size, precision))
        .expect("model builds")
}

/// Compares predictions with the reference `(frames, h, w)` array within [`TOLERANCE`];
/// returns the worst difference relative to the reference's range.
fn compare(name: &str, dir: &Path, predictions: &[Prediction]) -> f32 {
    compare_within(name, dir, predictions, TOLERANCE)
}

fn compare_within(name: &str, dir: &Path, predictions: &[Prediction], tolerance: f32) -> f32 {
    let (shape, expected) = common::read_npy_f32(&dir.join(format!("{name}.npy")));
    assert_eq!(predictions.len(), shape[0], "{name}: frame count");
    let plane = shape[1] * shape[2];
    let (lo, hi) = expected
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = hi - lo;
    assert!(range > 0.0, "{name}: flat reference");
    let mut worst = 0.0f32;
    for (i, prediction) in predictions.iter().enumerate() {
        let (width, height, values) =
            (prediction.width(), prediction.height(), prediction.values());
        assert_eq!((height as usize, width as usize), (shape[1], shape[2]));
        let diff = common::max_abs_diff(values, &expected[i * plane..(i + 1) * plane]) / range;
        assert!(
            diff <= tolerance,
            "{name}: frame {i} differs by {diff:.2e} of the range"
        );
        worst = worst.max(diff);
    }
    eprintln!("{name}: worst frame differs by {worst:.2e} of the range ({range:.3})");
    worst
}

fn windowed(model: &VideoDepthModel, frames: &[RgbImage]) -> Vec<Prediction> {
    let mut clip = model.windowed();
    let mut out = Vec::new();
    for (pushed, frame) in (1..).zip(frames) {
        out.extend(clip.push(frame).expect("frame runs"));
        // Frames come out at most a window and a blend behind the input.
        assert!(
            out.len() + 32 + 8 >= pushed,
            "{} out after {pushed} in",
            out.len()
        );
    }
    out.extend(clip.finish().expect("clip finishes"));
    out
}

#[test]
fn windowed_inference_matches_the_official_code() {
    let Some(reference) = reference() else {
        return;
    };
    let share = reference.manifest["temporal_share"]
        .as_f64()
        .expect("share");
    assert!(
        share > 0.05,
        "the temporal path must matter in the reference"
    );
    let model = load(&reference, false);
    let depth = windowed(&model, &reference.frames);
    assert!(matches!(depth[0], Prediction::Disparity(_)));
    compare("windowed", &reference.dir, &depth);
}

#[test]
fn windowed_inference_in_bf16_stays_within_1e2() {
    let Some(reference) = reference() else {
        return;
    };
    let model = load_in(&reference, false, Precision::Bf16);
    let depth = windowed(&model, &reference.frames);
    compare_within("windowed", &reference.dir, &depth, BF16_TOLERANCE);
}

#[test]
fn metric_windows_are_not_aligned() {
    let Some(reference) = reference() else {
        return;
    };
    let model = load(&reference, true);
    let depth = windowed(&model, &reference.frames);
    assert!(matches!(depth[0], Prediction::Metric(_)));
    compare("windowed_metric", &reference.dir, &depth);
}

#[test]
fn streaming_matches_the_official_streaming_class() {
    let Some(reference) = reference() else {
        return;
    };
    let model = load(&reference, false);
    let mut stream = model.streaming();
    let depth: Vec<Prediction> = reference
        .frames
        .iter()
        .map(|f| stream.push(f).expect("frame runs"))
        .collect();
    compare("streaming", &reference.dir, &depth);
}

#[test]
fn clips_shorter_than_a_window_and_frames_of_another_size() {
    let Some(reference) = reference() else {
        return;
    };
    let model = load(&reference, false);
    // Shorter than a window: padded with the last frame, every frame comes out once.
    for count in [1, 5, 22, 23, 32] {
        let depth = windowed(&model, &reference.frames[..count]);
        assert_eq!(depth.len(), count, "{count} frames in, one depth each out");
    }
    let mut clip = model.windowed();
    clip.push(&reference.frames[0]).expect("first frame");
    let other = RgbImage::new(16, 16, vec![0.5; 16 * 16 * 3]).expect("image");
    let err = clip
        .push(&other)
        .expect_err("a frame of another size is refused");
    assert!(err.to_string().contains("frame 1"), "{err}");
    assert!(
        model.windowed().finish().is_err(),
        "an empty clip is an error"
    );
}

#[test]
fn wide_frames_use_a_smaller_input_as_the_official_code() {
    // 16:9 keeps the input size; wider frames reduce it.
    assert_eq!(clip_input_size(1920, 1080, 518), 518);
    assert_eq!(clip_input_size(1080, 1920, 518), 518);
    // ratio 2.4: int(518 * 1.777 / 2.4) = 383 -> round(383 / 14) * 14 = 378
    assert_eq!(clip_input_size(2400, 1000, 518), 378);
}

/// The official model's tensors of `encoder`, as empty tensors of their shapes.
fn layout(layouts: &serde_json::Value, encoder: Encoder) -> Vec<(String, Tensor)> {
    layouts[encoder.name()]
        .as_object()
        .expect("tensors")
        .iter()
        .map(|(name, shape)| {
            let shape: Vec<i64> = shape
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect();
            (
                name.clone(),
                Tensor::empty(shape, (Kind::Float, Device::Cpu)),
            )
        })
        .collect()
}

#[test]
fn every_released_size_matches_the_official_layout() {
    let Some(reference) = reference() else {
        return;
    };
    let text = std::fs::read_to_string(reference.dir.join("layouts.json")).expect("layouts");
    let layouts: serde_json::Value = serde_json::from_str(&text).expect("layouts parse");
    for encoder in [Encoder::Vits, Encoder::Vitb, Encoder::Vitl] {
        let tensors = layout(&layouts, encoder);
        let count = tensors.len();
        let name = format!("video_depth_anything_{}.pth", encoder.name());
        let checkpoint =
            Checkpoint::from_tensors(Path::new(&name), tensors, CheckpointHints::default())
                .expect("recognised");
        assert_eq!(checkpoint.encoder, encoder);
        assert!(is_video_checkpoint(&checkpoint));
        let config = video_config(&checkpoint, ModelSpec::default(), None).expect("config");
        assert_eq!(config, VideoConfig::new(encoder, false));
        let vs = nn::VarStore::new(Device::Cpu);
        let _network = VideoDepthNetwork::new(&vs.root(), config);
        checkpoint
            .verify(&vs.variables(), &config.describe())
            .unwrap_or_else(|e| panic!("{encoder}: {e}"));
        eprintln!("{encoder}: {count} tensors match");
    }
    // The metric releases are told by their file names, or by the caller.
    let metric = Checkpoint::from_tensors(
        Path::new("metric_video_depth_anything_vits.pth"),
        layout(&layouts, Encoder::Vits),
        CheckpointHints::default(),
    )
    .expect("recognised");
    let config = video_config(&metric, ModelSpec::default(), None).expect("config");
    assert!(config.metric);
    let config = video_config(&metric, ModelSpec::default(), Some(false)).expect("config");
    assert!(!config.metric);
    let wrong = ModelSpec {
        encoder: Some(Encoder::Vitb),
        ..Default::default()
    };
    assert!(
        video_config(&metric, wrong, None).is_err(),
        "a size the file contradicts"
    );
}
