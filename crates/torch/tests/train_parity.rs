//! Gradient parity of training: for one batch, the loss and the gradient of every
//! parameter must match `scripts/reference/train_reference.py` (the same losses in
//! PyTorch, on the official model with the same weights and inputs) within 1e-4 relative.
//!
//! Needs the reference checkpoints (`scripts/reference/make_references.py`) and the
//! project's virtual environment.

mod common;

use std::process::Command;

use anydepth_model::train::TrainOptions;
use anydepth_model::ModelSpec;
use anydepth_torch::train::data::Batch;
use anydepth_torch::train::loss::{affine_invariant, AffineInvariant};
use anydepth_torch::train::trainer::disparity;
use anydepth_torch::train::{supervised_loss, Trainable};
use anydepth_torch::Checkpoint;
use tch::{Device, Kind, Tensor};

/// The largest relative error allowed, against the largest magnitude of each reference
/// tensor.
const TOLERANCE: f64 = 1e-4;

enum Loss {
    Supervised,
    Trimmed(f64),
}

fn check(case: &str, checkpoint: &str, args: &[&str], loss_kind: Loss) {
    let Some(refs) = common::reference_dir() else {
        return;
    };
    let root = common::project_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        common::missing(&format!("no virtual environment at {}", python.display()));
        return;
    }
    let checkpoint = refs.join(checkpoint);
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("reference.safetensors");
    let status = Command::new(&python)
        .arg(root.join("scripts/reference/train_reference.py"))
        .arg(&checkpoint)
        .arg(&out)
        .args(args)
        .status()
        .expect("runs the reference");
    assert!(status.success(), "{case}: the reference failed: {status}");
    let reference: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .expect("reads the reference")
        .into_iter()
        .collect();
    let get = |name: &str| {
        reference
            .get(name)
            .unwrap_or_else(|| panic!("{case}: no {name} in the reference"))
            .shallow_clone()
    };
    // A model whose output is constant would pass whatever the code does.
    assert!(
        get("pred_std").double_value(&[0]) > 1e-3,
        "{case}: degenerate reference"
    );

    let ckpt = Checkpoint::read(&checkpoint).expect("reads the checkpoint");
    let config = ckpt.config(ModelSpec::default()).expect("config");
    let mut trainable = Trainable::new(&ckpt, config, Device::Cpu, &TrainOptions::default())
        .expect("trainable model");
    let batch = Batch {
        input: get("input"),
        target: get("depth"),
        mask: get("mask").to_kind(Kind::Bool),
    };
    let pred = trainable.network().forward(&batch.input).expect("forward");
    let loss = match loss_kind {
        Loss::Supervised => supervised_loss(config.head, &pred, &batch).expect("loss"),
        Loss::Trimmed(trim) => {
            let disparity = disparity(&batch.target, &batch.mask);
            let weights = AffineInvariant {
                trim,
                ..AffineInvariant::default()
            };
            affine_invariant(&pred, &disparity, &batch.mask, &weights).expect("loss")
        }
    };
    let got = loss.double_value(&[]);
    let want = get("loss").double_value(&[0]);
    let loss_error = (got - want).abs() / want.abs();
    println!("{case}: loss {got:.6} vs {want:.6} (relative error {loss_error:.2e})");
    assert!(
        loss_error <= TOLERANCE,
        "{case}: loss {got} vs reference {want}"
    );

    loss.backward();
    let grads: std::collections::HashMap<String, Tensor> = trainable_grads(&mut trainable);
    let mut worst = (0.0f64, String::new());
    let mut compared = 0;
    for (name, tensor) in &reference {
        let Some(param) = name.strip_prefix("grad.") else {
            continue;
        };
        let ours = grads
            .get(param)
            .unwrap_or_else(|| panic!("{case}: no gradient for {param}"));
        let scale = tensor.abs().max().double_value(&[]);
        let diff = (ours - tensor).abs().max().double_value(&[]);
        let error = if scale > 0.0 { diff / scale } else { diff };
        if error > worst.0 {
            worst = (error, param.to_string());
        }
        compared += 1;
        assert!(
            error <= TOLERANCE,
            "{case}: gradient of {param} differs by {diff:e} (largest magnitude {scale:e}, \
             relative {error:e})"
        );
    }
    // Parameters the reference leaves without a gradient must get none here either.
    for (name, grad) in &grads {
        if !reference.contains_key(&format!("grad.{name}")) {
            assert!(
                grad.abs().max().double_value(&[]) == 0.0,
                "{case}: {name} has a gradient the reference does not"
            );
        }
    }
    println!(
        "{case}: {compared} gradients, worst relative error {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(compared > 200, "{case}: only {compared} gradients compared");
}

/// Every parameter's gradient (zeros where none was computed), by official name.
fn trainable_grads(trainable: &mut Trainable) -> std::collections::HashMap<String, Tensor> {
    trainable
        .parameters()
        .into_iter()
        .map(|(name, param)| {
            let grad = param.grad();
            let grad = if grad.defined() {
                grad
            } else {
                param.zeros_like()
            };
            (name, grad)
        })
        .collect()
}

#[test]
fn silog_on_a_metric_model_matches_pytorch() {
    check(
        "silog, V2-S metric indoor",
        "v2-vits-metric-indoor/model.safetensors",
        &["--loss", "silog", "--metric", "20"],
        Loss::Supervised,
    );
}

#[test]
fn affine_invariant_on_a_relative_model_matches_pytorch() {
    check(
        "affine-invariant, V2-S",
        "v2-vits/depth_anything_v2_vits.pth",
        &["--loss", "affine", "--seed", "1"],
        Loss::Supervised,
    );
}

#[test]
fn trimmed_affine_invariant_matches_pytorch() {
    check(
        "affine-invariant trimmed 10%, V2-S",
        "v2-vits/depth_anything_v2_vits.pth",
        &["--loss", "affine", "--trim", "0.1", "--seed", "2"],
        Loss::Trimmed(0.1),
    );
}
