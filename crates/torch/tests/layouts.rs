//! Every model size, in both checkpoint layouts, matches our network tensor for tensor.
//!
//! The layouts (names and shapes of every tensor) were written by the reference code
//! (official Depth Anything V2 and `transformers`) into `../shared/data/checkpoint-layouts`;
//! building real-size random checkpoints of ViT-L and ViT-g here would take gigabytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anydepth_torch::weights::{Checkpoint, CheckpointHints};
use anydepth_torch::{DepthAnything, Encoder, ModelConfig};
use tch::{nn, Device, Kind, Tensor};

fn layouts_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ANYDEPTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("checkpoint-layouts");
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!("checkpoint layouts not found at {}", dir.display());
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_DATA").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("skipping: {msg} (set ANYDEPTH_DATA)");
    None
}

/// `{encoder: {name: shape}}`; tensors are allocated lazily (`empty`), never filled.
fn read_layout(path: &Path) -> HashMap<String, Vec<(String, Tensor)>> {
    let text = std::fs::read_to_string(path).expect("layout file readable");
    let json: serde_json::Value = serde_json::from_str(&text).expect("layout is JSON");
    let mut out = HashMap::new();
    for (encoder, tensors) in json.as_object().expect("object of encoders") {
        let tensors = tensors
            .as_object()
            .expect("object of tensors")
            .iter()
            .map(|(name, shape)| {
                let shape: Vec<i64> = shape
                    .as_array()
                    .expect("shape array")
                    .iter()
                    .map(|d| d.as_i64().expect("integer dim"))
                    .collect();
                (
                    name.clone(),
                    Tensor::empty(shape, (Kind::Float, Device::Cpu)),
                )
            })
            .collect();
        out.insert(encoder.clone(), tensors);
    }
    out
}

#[test]
fn official_and_hugging_face_layouts_match_the_network_for_every_size() {
    let Some(dir) = layouts_dir() else { return };
    for layout in ["official-v2.json", "hf-v2.json"] {
        let mut by_encoder = read_layout(&dir.join(layout));
        for encoder in Encoder::ALL {
            let raw = by_encoder
                .remove(encoder.name())
                .unwrap_or_else(|| panic!("{layout} lacks {encoder}"));
            let count = raw.len();
            let checkpoint =
                Checkpoint::from_tensors(Path::new(layout), raw, CheckpointHints::default())
                    .unwrap_or_else(|e| panic!("{layout} {encoder}: {e}"));
            assert_eq!(checkpoint.encoder, encoder, "{layout}: size recognised");
            // Zero-initialised network: ViT-g takes about 5 GB for a moment.
            let vs = nn::VarStore::new(Device::Cpu);
            let config = ModelConfig::v2(encoder);
            let _model = DepthAnything::new(&vs.root(), config);
            checkpoint
                .verify(&vs.variables(), &config.describe())
                .unwrap_or_else(|e| panic!("{layout} {encoder}: {e}"));
            eprintln!("{layout} {encoder}: {count} tensors match");
        }
    }
}

#[test]
fn mismatched_checkpoints_are_refused_naming_the_tensors() {
    let Some(dir) = layouts_dir() else { return };
    let mut layouts = read_layout(&dir.join("official-v2.json"));
    let mut raw = layouts.remove("vits").expect("vits layout");
    raw.retain(|(name, _)| name != "pretrained.norm.bias");
    raw.push((
        "depth_head.extra.weight".into(),
        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
    ));
    for (name, t) in raw.iter_mut() {
        if name == "depth_head.projects.0.weight" {
            *t = Tensor::zeros([7, 384, 1, 1], (Kind::Float, Device::Cpu));
        }
    }
    let checkpoint = Checkpoint::from_tensors(Path::new("broken.pth"), raw, Default::default())
        .expect("still recognisable");
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = DepthAnything::new(&vs.root(), ModelConfig::v2(Encoder::Vits));
    let err = checkpoint
        .verify(&vs.variables(), "vits")
        .expect_err("mismatch must be refused")
        .to_string();
    for needle in [
        "pretrained.norm.bias",
        "depth_head.extra.weight",
        "depth_head.projects.0.weight: file [7, 384, 1, 1], model [48, 384, 1, 1]",
        "broken.pth",
    ] {
        assert!(err.contains(needle), "error lacks {needle:?}:\n{err}");
    }
}
