//! AdamW with parameter groups, as `torch.optim.AdamW` computes it, with its state
//! readable and writable so that a run resumes exactly.
//!
//! Written here rather than through LibTorch's C++ optimiser because tch exposes neither
//! that optimiser's state nor a way to save it.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// One trainable tensor, its group and its moments.
#[derive(Debug)]
struct Slot {
    param: Tensor,
    group: usize,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
}

/// AdamW over named parameters in groups with their own learning rates.
///
/// Per step `t` (from 1) and parameter `p` with gradient `g`, as PyTorch:
/// `p ← p·(1 − lr·wd)`, `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`,
/// `p ← p − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + ε)`. Parameters without a gradient are
/// left alone, weight decay included.
#[derive(Debug)]
pub struct AdamW {
    slots: BTreeMap<String, Slot>,
    lrs: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: i64,
}

impl AdamW {
    /// An optimiser for `params` (name, tensor, group index) with one learning rate per
    /// group, PyTorch's betas (0.9, 0.999) and epsilon (1e-8).
    ///
    /// # Errors
    /// When a parameter names a group without a learning rate.
    pub fn new(
        params: Vec<(String, Tensor, usize)>,
        lrs: Vec<f64>,
        weight_decay: f64,
    ) -> Result<Self> {
        let mut slots = BTreeMap::new();
        for (name, param, group) in params {
            if group >= lrs.len() {
                return Err(Error::Invalid(format!(
                    "parameter {name} is in group {group}, but there are {} groups",
                    lrs.len()
                )));
            }
            slots.insert(
                name,
                Slot {
                    param,
                    group,
                    exp_avg: None,
                    exp_avg_sq: None,
                },
            );
        }
        Ok(Self {
            slots,
            lrs,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
        })
    }

    /// Sets group `group`'s learning rate.
    pub fn set_lr(&mut self, group: usize, lr: f64) {
        if let Some(slot) = self.lrs.get_mut(group) {
            *slot = lr;
        }
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for slot in self.slots.values_mut() {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_();
                let _ = grad.zero_();
            }
        }
    }

    /// One update from the parameters' current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as f64;
        let bias1 = 1.0 - self.beta1.powf(t);
        let bias2_sqrt = (1.0 - self.beta2.powf(t)).sqrt();
        let (beta1, beta2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let _guard = tch::no_grad_guard();
        for slot in self.slots.values_mut() {
            let grad = slot.param.grad();
            if !grad.defined() {
                continue;
            }
            let lr = self.lrs[slot.group];
            let mut param = slot.param.shallow_clone();
            if wd != 0.0 {
                let _ = param.g_mul_scalar_(1.0 - lr * wd);
            }
            let exp_avg = slot
                .exp_avg
                .get_or_insert_with(|| Tensor::zeros_like(&param));
            let _ = exp_avg.lerp_(&grad, 1.0 - beta1);
            let exp_avg_sq = slot
                .exp_avg_sq
                .get_or_insert_with(|| Tensor::zeros_like(&param));
            // v + (1 - β2)(g² - v) = β2·v + (1 - β2)·g²
            let _ = exp_avg_sq.lerp_(&grad.square(), 1.0 - beta2);
            // p - lr/(1 - β1^t) · m / d = p + m / (d / (-lr/(1 - β1^t))): one temporary.
            let mut denom = exp_avg_sq.sqrt();
            let _ = denom.g_div_scalar_(bias2_sqrt);
            let _ = denom.g_add_scalar_(eps);
            let _ = denom.g_div_scalar_(-lr / bias1);
            let _ = param.addcdiv_(exp_avg, &denom);
        }
    }

    /// The state to save: the step and every parameter's moments (`exp_avg.NAME`,
    /// `exp_avg_sq.NAME`), on the CPU.
    pub fn state(&self) -> (i64, Vec<(String, Tensor)>) {
        let mut tensors = Vec::new();
        for (name, slot) in &self.slots {
            if let (Some(m), Some(v)) = (&slot.exp_avg, &slot.exp_avg_sq) {
                tensors.push((format!("exp_avg.{name}"), m.to_device(tch::Device::Cpu)));
                tensors.push((format!("exp_avg_sq.{name}"), v.to_device(tch::Device::Cpu)));
            }
        }
        (self.step, tensors)
    }

    /// Restores [`AdamW::state`].
    ///
    /// # Errors
    /// When a moment names no parameter or has another shape.
    pub fn load_state(&mut self, step: i64, tensors: Vec<(String, Tensor)>) -> Result<()> {
        for (key, tensor) in tensors {
            let (which, name) = key
                .split_once('.')
                .ok_or_else(|| Error::Invalid(format!("optimiser state {key}: no moment name")))?;
            let slot = self.slots.get_mut(name).ok_or_else(|| {
                Error::Invalid(format!("optimiser state {key}: the model has no {name}"))
            })?;
            if tensor.size() != slot.param.size() {
                return Err(Error::Invalid(format!(
                    "optimiser state {key} is {:?}, the parameter {:?}",
                    tensor.size(),
                    slot.param.size()
                )));
            }
            let tensor = tensor.to_device(slot.param.device()).to_kind(Kind::Float);
            match which {
                "exp_avg" => slot.exp_avg = Some(tensor),
                "exp_avg_sq" => slot.exp_avg_sq = Some(tensor),
                other => {
                    return Err(Error::Invalid(format!(
                        "optimiser state {key}: unknown moment {other}"
                    )))
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers `torch.optim.AdamW([p], lr=0.1, weight_decay=0.01)` gives for
    /// `p = [1, -2]`, loss `sum(p²)`, after two steps (computed by hand from its formula).
    #[test]
    fn matches_pytorch_formula_on_two_steps() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt =
            AdamW::new(vec![("p".into(), p.shallow_clone(), 0)], vec![0.1], 0.01).expect("opt");
        let mut expected = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            opt.step();
            for i in 0..2 {
                let g = 2.0 * expected[i];
                expected[i] *= 1.0 - 0.1 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mhat = m[i] / (1.0 - 0.9f64.powi(t));
                let denom = v[i].sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-8;
                expected[i] -= 0.1 * mhat / denom;
            }
        }
        let got: Vec<f64> = Vec::<f64>::try_from(p.to_kind(Kind::Double).detach()).expect("values");
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        let (step, state) = opt.state();
        assert_eq!(step, 2);
        assert_eq!(state.len(), 2);
    }
}
