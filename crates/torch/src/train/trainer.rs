//! The fine-tuning loop: a [`TrainPlan`] run to its end with checkpoints, logs,
//! validation and exact resumption.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};

use anydepth_model::config::{Head, ModelConfig, Version};
use anydepth_model::train::{
    StepRecord, TrainObserver, TrainOptions, TrainOutputs, TrainPlan, TrainReport, TrainStart,
    Validation,
};
use anydepth_model::{EstimatorOptions, ModelSpec, Precision, Preprocessing};

use crate::error::{Error, Result};
use crate::estimator::{prepare_device, synchronize, DepthEstimator};
use crate::network::DepthAnything;
use crate::train::adamw::AdamW;
use crate::train::data::{prepare, Batch, Crop, DepthRange, LeftOut, Loader, SampleSet, Schedule};
use crate::train::log::TrainLog;
use crate::train::loss::{affine_invariant, silog, AffineInvariant};
use crate::weights::{Checkpoint, CheckpointHints};

/// SiLog's λ in the official metric fine-tuning.
const SILOG_LAMBDA: f64 = 0.5;

/// A network whose weights train, with the optimiser over them.
#[derive(Debug)]
pub struct Trainable {
    vs: nn::VarStore,
    net: DepthAnything,
    optimizer: AdamW,
    device: Device,
}

impl Trainable {
    /// `checkpoint` as `config` on `device`, with AdamW over every variable: the encoder
    /// (`pretrained.*`) in group 0, the rest in group 1.
    ///
    /// # Errors
    /// When the checkpoint does not match the model.
    pub fn new(
        checkpoint: &Checkpoint,
        config: ModelConfig,
        device: Device,
        options: &TrainOptions,
    ) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = DepthAnything::new(&vs.root(), config);
        checkpoint.copy_into(&vs.variables(), &config.describe())?;
        let params = vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| {
                let group = usize::from(!name.starts_with("pretrained."));
                (name, tensor, group)
            })
            .collect();
        let optimizer = AdamW::new(
            params,
            vec![options.lr, options.lr * options.decoder_lr_factor],
            options.weight_decay,
        )?;
        Ok(Self {
            vs,
            net,
            optimizer,
            device,
        })
    }

    /// The network.
    pub fn network(&self) -> &DepthAnything {
        &self.net
    }

    /// The trainable tensors by official name (their gradients after a backward pass).
    pub fn parameters(&self) -> HashMap<String, Tensor> {
        self.vs.variables()
    }

    /// The device it trains on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The weights under their official names, on the CPU, detached.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().to_device(Device::Cpu)))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// A fingerprint of the weights (the sum of every value, in f64), to check that a
    /// saved optimiser state belongs to the weights beside it.
    pub fn fingerprint(&self) -> f64 {
        fingerprint(&self.weights())
    }

    /// A frozen copy that runs inference, for validation.
    ///
    /// # Errors
    /// When the copy cannot be built.
    pub fn snapshot(&self, input_size: u32) -> Result<DepthEstimator> {
        let checkpoint = Checkpoint::from_tensors(
            Path::new("(training)"),
            self.weights(),
            CheckpointHints::default(),
        )?;
        DepthEstimator::from_parts(
            &checkpoint,
            *self.net.config(),
            EstimatorOptions {
                device: device_choice(self.device),
                precision: Precision::Fp32,
                input_size,
                batch_size: 1,
                allow_tf32: false,
                preprocessing: Preprocessing::Exact,
                cuda_graphs: false,
            },
        )
    }

    /// Sets the learning rates of step `step` (from 1) of `steps`: the polynomial decay
    /// `lr · (1 − (step − 1)/steps)^power`, the decoder's `factor` times the encoder's.
    /// Returns the encoder's.
    pub fn schedule(&mut self, options: &TrainOptions, step: usize) -> f64 {
        let progress = (step - 1) as f64 / options.steps as f64;
        let lr = options.lr * (1.0 - progress).powf(options.poly_power);
        self.optimizer.set_lr(0, lr);
        self.optimizer.set_lr(1, lr * options.decoder_lr_factor);
        lr
    }

    /// One optimiser step on `loss`; refuses a non-finite loss before touching the
    /// weights. Returns once the device has finished the step (on a GPU too).
    ///
    /// # Errors
    /// When the loss is not finite.
    pub fn step(&mut self, loss: &Tensor, step: usize) -> Result<f64> {
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss is {value} at step {step}: training stopped, the last checkpoint \
                 written is kept (a lower --lr may help)"
            )));
        }
        self.optimizer.zero_grad();
        loss.backward();
        self.optimizer.step();
        // CUDA queues the backward pass and the update: wait for them, so that a step's
        // time (its images per second) holds its own backward pass, not the one before.
        synchronize(self.device);
        Ok(value)
    }
}

/// Sum of every value, in f64.
fn fingerprint(weights: &[(String, Tensor)]) -> f64 {
    weights
        .iter()
        .map(|(_, t)| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]))
        .sum()
}

fn device_choice(device: Device) -> anydepth_model::DeviceChoice {
    match device {
        Device::Cuda(i) => anydepth_model::DeviceChoice::Cuda(i),
        _ => anydepth_model::DeviceChoice::Cpu,
    }
}

/// The loss of a batch for a model with `head`: SiLog on metres for a metric head, the
/// affine-invariant loss on disparity for a relative one.
///
/// # Errors
/// When the batch has no valid pixel (an image of it, for the relative loss).
pub fn supervised_loss(head: Head, pred: &Tensor, batch: &Batch) -> Result<Tensor> {
    match head {
        Head::Metric { .. } => silog(pred, &batch.target, &batch.mask, SILOG_LAMBDA),
        Head::Relative => affine_invariant(
            pred,
            &disparity(&batch.target, &batch.mask),
            &batch.mask,
            &AffineInvariant::default(),
        ),
    }
}

/// `1 / metres` where `mask` holds, 0 elsewhere.
pub fn disparity(metres: &Tensor, mask: &Tensor) -> Tensor {
    metres.where_self(mask, &metres.ones_like()).reciprocal() * mask.to_kind(Kind::Float)
}

/// Checks options before any work.
///
/// # Errors
/// When a count is zero, the input size is not a multiple of 14, or the rate is not
/// positive.
pub fn check_options(options: &TrainOptions) -> Result<()> {
    let bad = |what: String| Err(Error::Invalid(what));
    if options.steps == 0 {
        return bad("--steps must be at least 1".into());
    }
    if options.batch == 0 {
        return bad("--batch must be at least 1".into());
    }
    if options.input_size < 14 || !options.input_size.is_multiple_of(14) {
        return bad(format!(
            "--input-size must be a positive multiple of 14 (the patch size), got {}",
            options.input_size
        ));
    }
    if !(options.lr.is_finite() && options.lr > 0.0) {
        return bad(format!("--lr must be positive, got {}", options.lr));
    }
    Ok(())
}

/// The depth range that counts for `head`.
fn depth_range(head: Head, options: &TrainOptions) -> DepthRange {
    let head_max = match head {
        Head::Metric { max_depth_m } => max_depth_m,
        Head::Relative => f64::INFINITY,
    };
    DepthRange {
        min: options.min_depth_m,
        max: options.max_depth_m.unwrap_or(head_max),
    }
}

/// Samples left out, with why.
type Skipped = Vec<(PathBuf, String)>;

/// The training samples, read and resized once; unreadable ones and those without a
/// valid pixel are reported and left out.
fn read_samples(
    plan: &TrainPlan,
    range: DepthRange,
    observer: &mut dyn TrainObserver,
) -> Result<(SampleSet, Skipped)> {
    let sources = plan.samples.clone();
    let size = plan.options.input_size;
    let load: Arc<Loader> = Arc::new(move |i| prepare(&sources[i], size, range));
    let paths = plan.samples.iter().map(|s| s.rgb.clone()).collect();
    let (samples, left_out) = SampleSet::read(paths, load, plan.options.sample_memory);
    let mut skipped = Vec::new();
    let no_depth = format!("no depth between {} and {} m", range.min, range.max);
    for (i, why) in left_out {
        let sample = &plan.samples[i];
        let path = match why {
            LeftOut::NoValidPixel => &sample.depth,
            LeftOut::Unreadable(_) => &sample.rgb,
        };
        let why = why.reason(&no_depth);
        observer.skipped(path, &why);
        skipped.push((path.clone(), why));
    }
    if samples.is_empty() {
        return Err(Error::Invalid(format!(
            "none of the {} training samples has a valid depth pixel between {} and {} m \
             (and that can be read)",
            plan.samples.len(),
            range.min,
            range.max
        )));
    }
    Ok((samples, skipped))
}

/// Writes the weights as `path`'s format asks: Hugging Face safetensors (with
/// `config.json`) for `.safetensors`, else an official `.pth`.
///
/// # Errors
/// When the file cannot be written; an earlier file at `path` is then left intact.
pub fn write_weights(
    path: &Path,
    weights: &[(String, Tensor)],
    config: &ModelConfig,
) -> Result<()> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        crate::export::write_hf_safetensors(path, weights, config)
    } else {
        crate::export::write_pth(path, weights)
    }
}

/// The optimiser state beside a checkpoint: the step, the seed, the weights' fingerprint
/// and the moments, in one safetensors file written atomically.
fn write_state(
    path: &Path,
    trainable: &Trainable,
    weights: &[(String, Tensor)],
    seed: u64,
) -> Result<()> {
    let (step, mut tensors) = trainable.optimizer.state();
    tensors.push(("meta.step".into(), Tensor::from_slice(&[step])));
    tensors.push(("meta.seed".into(), Tensor::from_slice(&[seed as i64])));
    tensors.push((
        "meta.fingerprint".into(),
        Tensor::from_slice(&[fingerprint(weights)]),
    ));
    // The model, which a `.pth` does not record: a resumed run trains the same head.
    let config = trainable.network().config();
    let version: i64 = match config.version {
        Version::V1 => 1,
        Version::V2 => 2,
    };
    let max_depth = match config.head {
        Head::Relative => 0.0,
        Head::Metric { max_depth_m } => max_depth_m,
    };
    tensors.push(("meta.version".into(), Tensor::from_slice(&[version])));
    tensors.push(("meta.max_depth_m".into(), Tensor::from_slice(&[max_depth])));
    crate::export::write_safetensors(path, &tensors)
}

/// The model a run resumed from `resume` trains: what its state recorded (the `.pth`
/// beside it does not say), over what `spec` says.
///
/// # Errors
/// When the state cannot be read.
pub fn resumed_spec(resume: &Path, spec: ModelSpec) -> Result<ModelSpec> {
    let state = TrainOutputs::for_checkpoint(resume).state;
    let invalid =
        |why: String| Error::Invalid(format!("cannot resume from {}: {why}", state.display()));
    let tensors = Tensor::read_safetensors(&state).map_err(|e| invalid(e.to_string()))?;
    let meta = |key: &str| {
        tensors
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, t)| t.shallow_clone())
            .ok_or_else(|| invalid(format!("no {key} in the state")))
    };
    let version = match meta("meta.version")?.int64_value(&[0]) {
        1 => Version::V1,
        _ => Version::V2,
    };
    let max_depth = meta("meta.max_depth_m")?.double_value(&[0]);
    let head = if max_depth > 0.0 {
        Head::Metric {
            max_depth_m: max_depth,
        }
    } else {
        Head::Relative
    };
    Ok(ModelSpec {
        encoder: spec.encoder,
        version: Some(version),
        head: Some(head),
    })
}

/// Reads [`write_state`]'s file into `trainable`'s optimiser; returns the step.
fn read_state(path: &Path, trainable: &mut Trainable, seed: u64) -> Result<usize> {
    let invalid =
        |why: String| Error::Invalid(format!("cannot resume from {}: {why}", path.display()));
    let tensors = Tensor::read_safetensors(path).map_err(|e| invalid(e.to_string()))?;
    let mut meta = HashMap::new();
    let mut moments = Vec::new();
    for (name, tensor) in tensors {
        match name.strip_prefix("meta.") {
            Some(key) => {
                meta.insert(key.to_string(), tensor);
            }
            None => moments.push((name, tensor)),
        }
    }
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| invalid(format!("no {key} in the state")))
    };
    let step = get("step")?.int64_value(&[0]);
    let saved_seed = get("seed")?.int64_value(&[0]) as u64;
    if saved_seed != seed {
        return Err(invalid(format!(
            "it was trained with --seed {saved_seed}, not {seed}"
        )));
    }
    let saved_fingerprint = get("fingerprint")?.double_value(&[0]);
    if saved_fingerprint != trainable.fingerprint() {
        return Err(invalid(
            "the state belongs to other weights than the checkpoint beside it".into(),
        ));
    }
    trainable.optimizer.load_state(step, moments)?;
    usize::try_from(step).map_err(|_| invalid(format!("step {step}")))
}

/// Runs `plan` to its end, or until `observer` asks to stop.
///
/// # Errors
/// When the plan is unusable (no readable sample with a valid pixel, bad options, a
/// checkpoint that does not match), training fails (a non-finite loss) or a file cannot
/// be written; files written before stay intact.
pub fn train(plan: &TrainPlan, observer: &mut dyn TrainObserver) -> Result<TrainReport> {
    let options = plan.options;
    check_options(&options)?;
    let from = plan.resume.as_deref().unwrap_or(&plan.init);
    let checkpoint = Checkpoint::read(from)?;
    let spec = match &plan.resume {
        Some(resume) => resumed_spec(resume, plan.spec)?,
        None => plan.spec,
    };
    let config = checkpoint.config(spec)?;
    // TensorFloat-32 off, as the validation snapshots set it (a process-wide setting), so
    // every step runs the same float32 arithmetic.
    let device = prepare_device(&EstimatorOptions {
        device: options.device,
        ..Default::default()
    })?;
    let range = depth_range(config.head, &options);
    let (samples, skipped) = read_samples(plan, range, observer)?;
    let trainable = Trainable::new(&checkpoint, config, device, &options)?;
    drop(checkpoint);
    let size = options.input_size as usize;
    let mut batch_loss =
        |trainable: &Trainable, _step: usize, picks: &[(usize, Crop)], next: &[usize]| {
            let batch = samples.batch(picks, next, size, device)?;
            let pred = trainable.network().forward(&batch.input)?;
            supervised_loss(config.head, &pred, &batch)
        };
    let mut validate = |trainable: &Trainable, step: usize, observer: &mut dyn TrainObserver| {
        let engine = trainable.snapshot(options.val_input_size)?;
        Ok(observer.validate(step, Box::new(engine))?)
    };
    let mut report = run(
        Run {
            options,
            config,
            out: &plan.out,
            resume: plan.resume.as_deref(),
            sizes: samples.sizes(),
            loss_name: match config.head {
                Head::Metric { .. } => "SiLog",
                Head::Relative => "affine-invariant + gradient matching",
            },
        },
        trainable,
        observer,
        &mut batch_loss,
        &mut validate,
    )?;
    report.skipped = skipped;
    Ok(report)
}

/// What the loop needs besides the model: options, where it writes, the samples' sizes.
pub struct Run<'a> {
    /// How training runs.
    pub options: TrainOptions,
    /// The model being trained (written into Hugging Face configs).
    pub config: ModelConfig,
    /// The checkpoint to write.
    pub out: &'a Path,
    /// The checkpoint resumed from, whose state sits beside it.
    pub resume: Option<&'a Path>,
    /// `(width, height)` of every sample after the resize: crops are drawn in them.
    pub sizes: &'a [(usize, usize)],
    /// The loss the batches are scored with, for messages.
    pub loss_name: &'static str,
}

/// The loss of one step's batch: the step, its `(sample index, crop)` picks, and the
/// sample indices of the next step (to read ahead).
pub type BatchLoss<'a> =
    dyn FnMut(&Trainable, usize, &[(usize, Crop)], &[usize]) -> Result<Tensor> + 'a;

/// A validation of the current model after a step (0: before the first).
pub type Validate<'a> =
    dyn FnMut(&Trainable, usize, &mut dyn TrainObserver) -> Result<Option<Validation>> + 'a;

/// The optimisation loop shared by fine-tuning and distillation: schedule, sample order,
/// crops, steps, validation and the best checkpoint, periodic and final checkpoints, logs,
/// resumption and stopping.
///
/// # Errors
/// When a step, a validation or a write fails; files written before stay intact.
#[allow(clippy::too_many_lines)]
pub fn run(
    setup: Run<'_>,
    mut trainable: Trainable,
    observer: &mut dyn TrainObserver,
    batch_loss: &mut BatchLoss<'_>,
    validate: &mut Validate<'_>,
) -> Result<TrainReport> {
    let Run {
        options,
        config,
        out,
        resume,
        sizes,
        loss_name,
    } = setup;
    let outputs = TrainOutputs::for_checkpoint(out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Invalid(format!("cannot create the folder {}: {e}", dir.display()))
        })?;
    }
    let mut log = TrainLog::new(&outputs);
    let first_step = match resume {
        Some(resume) => {
            let state = TrainOutputs::for_checkpoint(resume).state;
            let step = read_state(&state, &mut trainable, options.seed)?;
            log.resume(step)?;
            step + 1
        }
        None => 1,
    };
    let device = trainable.device();
    observer.started(&TrainStart {
        first_step,
        steps: options.steps,
        samples: sizes.len(),
        device: format!("{device:?}"),
        model: config.describe(),
        loss: loss_name,
    });
    let mut best: Option<Validation> = log.best().cloned();
    let mut check = |trainable: &Trainable,
                     step: usize,
                     log: &mut TrainLog,
                     best: &mut Option<Validation>,
                     observer: &mut dyn TrainObserver|
     -> Result<()> {
        let Some(validation) = validate(trainable, step, observer)? else {
            return Ok(());
        };
        observer.validated(&validation);
        log.validation(validation.clone());
        if best.as_ref().is_none_or(|b| validation.value < b.value) {
            write_weights(&outputs.best, &trainable.weights(), &config)?;
            observer.saved(&outputs.best);
            *best = Some(validation);
        }
        Ok(())
    };
    if resume.is_none() {
        check(&trainable, 0, &mut log, &mut best, observer)?;
    }
    let save =
        |trainable: &Trainable, log: &TrainLog, observer: &mut dyn TrainObserver| -> Result<()> {
            let weights = trainable.weights();
            write_weights(&outputs.last, &weights, &config)?;
            write_state(&outputs.state, trainable, &weights, options.seed)?;
            log.write_json()?;
            observer.saved(&outputs.last);
            Ok(())
        };
    let mut schedule = Schedule::new(
        options.seed,
        options.batch,
        options.input_size as usize,
        options.flip_probability,
        sizes,
    );
    let mut last_loss = None;
    let mut interrupted = false;
    let mut step = first_step - 1;
    let run_started = Instant::now();
    let mut images = 0usize;
    for s in first_step..=options.steps {
        if observer.stop_requested() {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        let lr = trainable.schedule(&options, s);
        let picks = schedule.picks(s);
        let next = if s < options.steps {
            schedule.indices(s + 1)
        } else {
            Vec::new()
        };
        tracing::debug!(step = s, ?picks, "batch");
        let loss = batch_loss(&trainable, s, &picks, &next)?;
        let value = trainable.step(&loss, s)?;
        step = s;
        last_loss = Some(value);
        images += options.batch;
        let record = StepRecord {
            step: s,
            loss: value,
            lr,
            images_per_second: options.batch as f64 / started.elapsed().as_secs_f64(),
        };
        log.push(record)?;
        observer.step(&record);
        if options.val_every > 0 && s % options.val_every == 0 || s == options.steps {
            check(&trainable, s, &mut log, &mut best, observer)?;
        }
        if options.save_every > 0 && s % options.save_every == 0 && s != options.steps {
            save(&trainable, &log, observer)?;
        }
    }
    save(&trainable, &log, observer)?;
    let elapsed = run_started.elapsed().as_secs_f64();
    Ok(TrainReport {
        step,
        steps: options.steps,
        interrupted,
        last_loss,
        best,
        outputs,
        skipped: Vec::new(),
        images_per_second: if elapsed > 0.0 {
            images as f64 / elapsed
        } else {
            0.0
        },
        head: config.head,
    })
}
