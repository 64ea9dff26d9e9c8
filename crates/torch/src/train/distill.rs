//! Distillation, the data engine of Depth Anything: a teacher labels unlabelled photos
//! once (cached on disk as fp16), and a student learns those labels with the
//! affine-invariant loss, ignoring each image's worst 10% of pixels, under strong
//! perturbations of its input, optionally keeping its encoder's features close to a
//! frozen copy of its initial encoder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tch::{nn, Device, Kind, Tensor};

use anydepth_core::image::load_image;
use anydepth_model::config::{Head, ModelConfig, Version};
use anydepth_model::train::{
    DistillPlan, DistillReport, LabelReport, Perturbations, Student, TrainObserver, Validation,
};
use anydepth_model::{EstimatorOptions, Precision, Preprocessing};

use crate::error::{Error, Result};
use crate::estimator::{resolve_device, DepthEstimator};
use crate::network::DepthAnything;
use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD};
use crate::train::data::{
    make_batch, prepare, prepare_labelled, step_positions, Batch, Crop, DepthRange, Loader,
    Prepared, SampleSet,
};
use crate::train::loss::{affine_invariant, feature_alignment, AffineInvariant};
use crate::train::trainer::{self, check_options, supervised_loss, Run, Trainable};
use crate::weights::{Checkpoint, CheckpointHints};

/// The share of each image's largest per-pixel losses ignored on pseudo-labels.
const LABEL_TRIM: f64 = 0.1;

/// Keeps the perturbations' random stream apart from the crops'.
const PERTURBATION_SALT: u64 = 0x5EED_F00D;

/// Keeps the labelled batches' crops apart from the unlabelled ones'.
const LABELLED_SALT: u64 = 0x1ABE_11ED;

/// Runs `plan`: labels what the cache lacks, then (unless the plan labels one shard)
/// trains the student.
///
/// # Errors
/// When teacher and student cannot be paired, no photo can be labelled, or labelling or
/// training fails; cached labels and written checkpoints stay intact.
pub fn distill(plan: &DistillPlan, observer: &mut dyn TrainObserver) -> Result<DistillReport> {
    check_options(&plan.options)?;
    let device = resolve_device(plan.options.device)?;
    let teacher_checkpoint = Checkpoint::read(&plan.teacher)?;
    let teacher_config = teacher_checkpoint.config(plan.teacher_spec)?;
    let from = plan.resume.as_deref();
    let (student_checkpoint, student_config) = student(plan, from)?;
    check_pairing(&teacher_config, &student_config)?;

    let cache = plan.label_cache.join(format!(
        "teacher-{}",
        teacher_key(&plan.teacher, plan.teacher_input_size)?
    ));
    let teacher = teacher_engine(plan, &teacher_checkpoint, teacher_config)?;
    drop(teacher_checkpoint);
    let shard = shard_of(&plan.images, plan.shard);
    let (labels, labels_report) = label_all(&teacher, &shard, &cache, observer)?;
    let validation_labels = match &plan.validation {
        Some(val) if plan.shard.is_none() => label_all(&teacher, val, &cache, observer)?.0,
        _ => Vec::new(),
    };
    drop(teacher);
    if plan.shard.is_some() {
        return Ok(DistillReport {
            labels: labels_report,
            training: None,
        });
    }

    let size = plan.options.input_size;
    let StudentData {
        photos,
        validation,
        labelled,
        skipped,
    } = student_data(plan, &labels, &validation_labels, observer)?;

    let trainable = Trainable::new(&student_checkpoint, student_config, device, &plan.options)?;
    let frozen = if plan.feature_alignment > 0.0 {
        // The student's encoder as it starts (the initial checkpoint's, also on resume).
        let init = match &plan.student {
            Student::Checkpoint(path) => Checkpoint::read(path)?,
            Student::Fresh(_) => fresh_weights(student_config, plan.options.seed)?,
        };
        Some(frozen_copy(&init, student_config, device)?)
    } else {
        None
    };
    drop(student_checkpoint);

    let crop = size as usize;
    let options = plan.options;
    let student_loss = StudentLoss {
        plan,
        photos: &photos,
        labelled: labelled.as_ref(),
        frozen: frozen.as_ref(),
        device,
    };
    let mut batch_loss =
        |trainable: &Trainable, step: usize, picks: &[(usize, Crop)], next: &[usize]| {
            student_loss.loss(trainable, step, picks, next)
        };
    let mut validate = |trainable: &Trainable, step: usize, _: &mut dyn TrainObserver| {
        if validation.is_empty() {
            return Ok(None);
        }
        let value = label_error(trainable, &validation, crop, device)?;
        Ok(Some(Validation {
            step,
            metrics: vec![("affine_error".into(), value)],
            key: "affine_error".into(),
            value,
        }))
    };
    let mut report = trainer::run(
        Run {
            options,
            config: student_config,
            out: &plan.out,
            resume: from,
            sizes: photos.sizes(),
            loss_name: "trimmed affine-invariant on the teacher's labels",
        },
        trainable,
        observer,
        &mut batch_loss,
        &mut validate,
    )?;
    report.skipped = labels_report.skipped.clone();
    report.skipped.extend(skipped);
    Ok(DistillReport {
        labels: labels_report,
        training: Some(report),
    })
}

/// The student's loss on one step's batch.
struct StudentLoss<'a> {
    plan: &'a DistillPlan,
    photos: &'a SampleSet,
    labelled: Option<&'a SampleSet>,
    frozen: Option<&'a DepthAnything>,
    device: Device,
}

impl StudentLoss<'_> {
    /// The labels' loss on the perturbed (and maybe CutMixed) crops `picks`, plus feature
    /// alignment and a labelled batch where the plan asks for them.
    fn loss(
        &self,
        trainable: &Trainable,
        step: usize,
        picks: &[(usize, Crop)],
        next: &[usize],
    ) -> Result<Tensor> {
        let options = &self.plan.options;
        let crop = options.input_size as usize;
        let batch = self.photos.batch(picks, next, crop, self.device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(
            options.seed ^ PERTURBATION_SALT ^ (step as u64).wrapping_mul(0x9E37_79B9),
        );
        let perturbations = &self.plan.perturbations;
        let input = perturb(&batch.input, perturbations, &mut rng);
        let weights = AffineInvariant {
            trim: LABEL_TRIM,
            gradient_weight: self.plan.gradient_weight,
            ..AffineInvariant::default()
        };
        let (loss, tokens, input) = cutmix_loss(
            trainable,
            &batch,
            input,
            &weights,
            perturbations.cutmix_probability,
            &mut rng,
        )?;
        let mut total = loss;
        if let Some(frozen) = self.frozen {
            let frozen_tokens = tch::no_grad(|| frozen.tokens(&input))?;
            total += self.plan.feature_alignment
                * feature_alignment(&tokens, &frozen_tokens, self.plan.feature_margin)?;
        }
        if let Some(labelled) = self.labelled {
            // Ground-truth samples in turn, cropped with their own random stream.
            let positions = |step: usize| {
                step_positions(step, options.batch)
                    .map(|position| (position, position as usize % labelled.len()))
            };
            let picks: Vec<(usize, Crop)> = positions(step)
                .map(|(position, index)| {
                    let crop = Crop::draw(
                        options.seed ^ LABELLED_SALT,
                        position,
                        labelled.sizes()[index],
                        crop,
                        options.flip_probability,
                    );
                    (index, crop)
                })
                .collect();
            let next: Vec<usize> = if step < options.steps {
                positions(step + 1).map(|(_, index)| index).collect()
            } else {
                Vec::new()
            };
            let batch = labelled.batch(&picks, &next, crop, self.device)?;
            let pred = trainable.network().forward(&batch.input)?;
            total += supervised_loss(Head::Relative, &pred, &batch)?;
        }
        Ok(total)
    }
}

/// What the student trains and validates on, resized for its crops.
struct StudentData {
    /// Photos with their labels.
    photos: SampleSet,
    /// Held-out photos with their labels (kept in memory).
    validation: Vec<Prepared>,
    /// Ground-truth samples mixed in, if any.
    labelled: Option<SampleSet>,
    /// Photos and samples left out, with why.
    skipped: Vec<(PathBuf, String)>,
}

/// Reads the labels and the labelled samples for crops of the plan's input size.
fn student_data(
    plan: &DistillPlan,
    labels: &[(PathBuf, PathBuf)],
    validation_labels: &[(PathBuf, PathBuf)],
    observer: &mut dyn TrainObserver,
) -> Result<StudentData> {
    let size = plan.options.input_size;
    let budget = plan.options.sample_memory;
    let with_label = move |(photo, label): &(PathBuf, PathBuf)| {
        read_label(label).and_then(|(v, w, h)| prepare_labelled(photo, &v, (w, h), size))
    };
    let pairs = labels.to_vec();
    let load: Arc<Loader> = Arc::new(move |i| with_label(&pairs[i]));
    let paths = labels.iter().map(|(photo, _)| photo.clone()).collect();
    let (photos, left_out) = SampleSet::read(paths, load, budget);
    let mut skipped = Vec::new();
    let mut skip = |path: &Path, why: String| {
        observer.skipped(path, &why);
        skipped.push((path.to_path_buf(), why));
    };
    for (i, why) in left_out {
        skip(&labels[i].0, why.reason("its label has no finite value"));
    }
    if photos.is_empty() {
        return Err(Error::Invalid("no photo could be labelled".into()));
    }
    // Held-out photos are left out the same way, and kept in memory.
    let read: Vec<Result<Prepared>> = validation_labels.par_iter().map(with_label).collect();
    let mut validation = Vec::new();
    for ((photo, _), result) in validation_labels.iter().zip(read) {
        match result {
            Ok(sample) if sample.valid > 0 => validation.push(sample),
            Ok(_) => skip(photo, "its label has no finite value".to_owned()),
            Err(e) => skip(photo, e.to_string()),
        }
    }

    let range = DepthRange {
        min: plan.options.min_depth_m,
        max: plan.options.max_depth_m.unwrap_or(f64::INFINITY),
    };
    let labelled = if plan.labelled.is_empty() {
        None
    } else {
        let samples = plan.labelled.clone();
        let load: Arc<Loader> = Arc::new(move |i| prepare(&samples[i], size, range));
        // One budget for the run: what the photos left.
        let budget = budget.saturating_sub(photos.memory());
        let paths = plan.labelled.iter().map(|s| s.rgb.clone()).collect();
        let (labelled, left_out) = SampleSet::read(paths, load, budget);
        let no_depth = format!("no depth between {} and {} m", range.min, range.max);
        for (i, why) in left_out {
            skip(&plan.labelled[i].rgb, why.reason(&no_depth));
        }
        if labelled.is_empty() {
            return Err(Error::Invalid(format!(
                "none of the {} labelled samples has a valid depth pixel (and can be read)",
                plan.labelled.len()
            )));
        }
        Some(labelled)
    };
    Ok(StudentData {
        photos,
        validation,
        labelled,
        skipped,
    })
}

/// The teacher as an inference engine at its input size, exact preprocessing.
fn teacher_engine(
    plan: &DistillPlan,
    checkpoint: &Checkpoint,
    config: ModelConfig,
) -> Result<DepthEstimator> {
    DepthEstimator::from_parts(
        checkpoint,
        config,
        EstimatorOptions {
            device: plan.options.device,
            precision: Precision::Fp32,
            input_size: plan.teacher_input_size,
            batch_size: 1,
            allow_tf32: false,
            preprocessing: Preprocessing::Exact,
            cuda_graphs: false,
        },
    )
}

/// The photos of shard `(index, count)` of the sorted, deduplicated `images` (all of
/// them without a shard): every `count`-th from the `index`-th.
fn shard_of(images: &[PathBuf], shard: Option<(usize, usize)>) -> Vec<PathBuf> {
    let mut images = images.to_vec();
    images.sort();
    images.dedup();
    match shard {
        Some((index, count)) => images
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % count == index)
            .map(|(_, p)| p)
            .collect(),
        None => images,
    }
}

/// The student's starting weights and model: its checkpoint (or the one resumed from),
/// or a freshly initialised model of the asked size.
fn student(plan: &DistillPlan, resume: Option<&Path>) -> Result<(Checkpoint, ModelConfig)> {
    if let Some(path) = resume {
        let checkpoint = Checkpoint::read(path)?;
        let config = checkpoint.config(trainer::resumed_spec(path, plan.student_spec)?)?;
        return Ok((checkpoint, config));
    }
    match &plan.student {
        Student::Checkpoint(path) => {
            let checkpoint = Checkpoint::read(path)?;
            let config = checkpoint.config(plan.student_spec)?;
            Ok((checkpoint, config))
        }
        Student::Fresh(encoder) => {
            let config = ModelConfig::new(
                plan.student_spec.version.unwrap_or(Version::V2),
                *encoder,
                plan.student_spec.head.unwrap_or(Head::Relative),
            );
            Ok((fresh_weights(config, plan.options.seed)?, config))
        }
    }
}

/// A teacher and a student that can be paired: both relative (the student learns the
/// teacher's disparity up to scale and shift).
fn check_pairing(teacher: &ModelConfig, student: &ModelConfig) -> Result<()> {
    let kind = |c: &ModelConfig| match c.head {
        Head::Relative => "relative".to_owned(),
        Head::Metric { max_depth_m } => format!("metric (max {max_depth_m} m)"),
    };
    if teacher.head != Head::Relative || student.head != Head::Relative {
        return Err(Error::Invalid(format!(
            "cannot pair a {} teacher with a {} student: distillation teaches relative \
             depth (disparity up to scale and shift), so both must be relative models; \
             fine-tune a metric head afterwards with `anydepth train`",
            kind(teacher),
            kind(student)
        )));
    }
    if teacher.vit.patch_size != student.vit.patch_size {
        return Err(Error::Invalid(format!(
            "the teacher's patches are {} pixels, the student's {}",
            teacher.vit.patch_size, student.vit.patch_size
        )));
    }
    Ok(())
}

/// Random weights for `config` as PyTorch initialises the official modules: linear and
/// convolution weights and biases uniform in ±1/sqrt(fan-in), LayerNorm 1 and 0,
/// LayerScale 1, class token and position embedding normal with std 0.02.
fn fresh_weights(config: ModelConfig, seed: u64) -> Result<Checkpoint> {
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = DepthAnything::new(&vs.root(), config);
    let mut named: Vec<(String, Tensor)> = Vec::new();
    let variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let t = &variables[name];
        let shape = t.size();
        let fan_in = |s: &[i64]| s.iter().skip(1).product::<i64>().max(1) as f64;
        let is_norm = name.contains("norm") && shape.len() == 1;
        let init = if name.ends_with("ls1.gamma")
            || name.ends_with("ls2.gamma")
            || (is_norm && name.ends_with(".weight"))
        {
            t.ones_like()
        } else if is_norm && name.ends_with(".bias") {
            t.zeros_like()
        } else if name.ends_with("cls_token")
            || name.ends_with("pos_embed")
            || name.ends_with("mask_token")
        {
            t.randn_like() * 0.02
        } else if name.ends_with(".weight") {
            // ConvTranspose weights are (in, out, k, k): PyTorch's fan-in is dim 1 there.
            let fan = if name.contains("resize_layers.0") || name.contains("resize_layers.1") {
                (shape[0] * shape[2..].iter().product::<i64>()) as f64
            } else {
                fan_in(&shape)
            };
            (t.rand_like() * 2.0 - 1.0) / fan.sqrt()
        } else {
            let weight = name.trim_end_matches(".bias").to_owned() + ".weight";
            let fan = variables.get(&weight).map_or(1.0, |w| {
                let s = w.size();
                if name.contains("resize_layers.0") || name.contains("resize_layers.1") {
                    (s[0] * s[2..].iter().product::<i64>()) as f64
                } else {
                    fan_in(&s)
                }
            });
            (t.rand_like() * 2.0 - 1.0) / fan.sqrt()
        };
        named.push((name.clone(), init));
    }
    Checkpoint::from_tensors(
        Path::new("(fresh student)"),
        named,
        CheckpointHints::default(),
    )
}

/// A frozen model holding `checkpoint`'s weights, for feature alignment.
fn frozen_copy(
    checkpoint: &Checkpoint,
    config: ModelConfig,
    device: Device,
) -> Result<DepthAnything> {
    let mut vs = nn::VarStore::new(device);
    let net = DepthAnything::new(&vs.root(), config);
    checkpoint.copy_into(&vs.variables(), &config.describe())?;
    vs.freeze();
    // The network holds its own references to the (now frozen) variables.
    Ok(net)
}

/// The cache key of a teacher at an input size: a hash of the file's length, its first
/// and last mebibyte, and the input size.
fn teacher_key(path: &Path, input_size: u32) -> Result<String> {
    let fail = |e: std::io::Error| Error::Invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    hasher.update(input_size.to_le_bytes());
    let mut head = vec![0u8; (len.min(1 << 20)) as usize];
    file.read_exact(&mut head).map_err(fail)?;
    hasher.update(&head);
    if len > 1 << 20 {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::End(-(1 << 20))).map_err(fail)?;
        file.read_exact(&mut head).map_err(fail)?;
        hasher.update(&head);
    }
    Ok(hex(&hasher.finalize()[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file of a photo's label.
fn label_path(cache: &Path, photo: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(photo).unwrap_or_else(|_| photo.to_path_buf());
    let digest = Sha256::digest(absolute.to_string_lossy().as_bytes());
    let stem = photo
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(40)
                .collect::<String>()
        })
        .unwrap_or_default();
    cache.join(format!("{stem}-{}.safetensors", hex(&digest[..8])))
}

/// Labels every photo whose label the cache lacks; returns `(photo, label file)` of the
/// photos that have one.
fn label_all(
    teacher: &DepthEstimator,
    photos: &[PathBuf],
    cache: &Path,
    observer: &mut dyn TrainObserver,
) -> Result<(Vec<(PathBuf, PathBuf)>, LabelReport)> {
    std::fs::create_dir_all(cache).map_err(|e| {
        Error::Invalid(format!(
            "cannot create the label cache {}: {e}",
            cache.display()
        ))
    })?;
    let mut report = LabelReport::default();
    let mut labels = Vec::new();
    for (i, photo) in photos.iter().enumerate() {
        observer.labelling(i, photos.len());
        let path = label_path(cache, photo);
        if path.is_file() {
            report.cached += 1;
            labels.push((photo.clone(), path));
            continue;
        }
        let label = load_image(photo).map_err(Error::from).and_then(|image| {
            let prediction = teacher.predict(&image)?;
            let (w, h) = (prediction.width(), prediction.height());
            Ok(Tensor::from_slice(prediction.values())
                .reshape([i64::from(h), i64::from(w)])
                .to_kind(Kind::Half))
        });
        match label {
            Ok(label) => {
                crate::export::write_safetensors(&path, &[("label".to_owned(), label)])?;
                report.labelled += 1;
                labels.push((photo.clone(), path));
            }
            Err(e) => {
                observer.skipped(photo, &e.to_string());
                report.skipped.push((photo.clone(), e.to_string()));
            }
        }
    }
    observer.labelling(photos.len(), photos.len());
    Ok((labels, report))
}

/// A cached label: values, width, height.
fn read_label(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| Error::Invalid(format!("cannot read the label {}: {e}", path.display())))?;
    let label = tensors
        .into_iter()
        .find(|(name, _)| name == "label")
        .map(|(_, t)| t)
        .ok_or_else(|| Error::Invalid(format!("{} holds no label", path.display())))?;
    let (h, w) = label.size2()?;
    let values = Vec::<f32>::try_from(label.to_kind(Kind::Float).flatten(0, -1))?;
    Ok((values, w as usize, h as usize))
}

/// Colour jitter and Gaussian blur (sigma 0.1 to 2 pixels at 518, scaled with the crop)
/// of a normalised `(b, 3, h, w)` batch, per image.
fn perturb(input: &Tensor, p: &Perturbations, rng: &mut ChaCha8Rng) -> Tensor {
    if p.color_jitter <= 0.0 && p.blur_probability <= 0.0 {
        return input.shallow_clone();
    }
    let device = input.device();
    let stats = |v: [f64; 3]| {
        Tensor::from_slice(&v.map(|x| x as f32))
            .reshape([1, 3, 1, 1])
            .to_device(device)
    };
    let (mean, std) = (stats(IMAGENET_MEAN), stats(IMAGENET_STD));
    let photos = input * &std + &mean;
    let b = input.size()[0];
    let mut out = Vec::with_capacity(b as usize);
    for i in 0..b {
        let mut x = photos.get(i).unsqueeze(0);
        if p.color_jitter > 0.0 {
            let mut factor = || 1.0 + p.color_jitter * (2.0 * rng.random::<f64>() - 1.0);
            let (brightness, contrast, saturation) = (factor(), factor(), factor());
            x = (x * brightness).clamp(0.0, 1.0);
            let mean_gray = gray(&x).mean(Kind::Float);
            x = ((x - &mean_gray) * contrast + &mean_gray).clamp(0.0, 1.0);
            let g = gray(&x);
            x = ((x - &g) * saturation + &g).clamp(0.0, 1.0);
        }
        if rng.random::<f64>() < p.blur_probability {
            // 0.1 to 2 pixels at the released models' 518, scaled with the crop.
            let sigma = (0.1 + 1.9 * rng.random::<f64>()) * input.size()[3] as f64 / 518.0;
            x = gaussian_blur(&x, sigma);
        }
        out.push(x);
    }
    (Tensor::cat(&out, 0) - mean) / std
}

/// ITU-R 601 luma of a `(1, 3, h, w)` image, `(1, 1, h, w)`.
fn gray(x: &Tensor) -> Tensor {
    x.narrow(1, 0, 1) * 0.299 + x.narrow(1, 1, 1) * 0.587 + x.narrow(1, 2, 1) * 0.114
}

/// Separable Gaussian blur with reflected borders.
fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let radius = radius.min(x.size()[2].min(x.size()[3]) - 1).max(1);
    let weights: Vec<f32> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = weights.iter().sum();
    let k = Tensor::from_slice(&weights.iter().map(|w| w / total).collect::<Vec<_>>())
        .to_device(x.device());
    let n = 2 * radius + 1;
    let horizontal = k.reshape([1, 1, 1, n]).repeat([3, 1, 1, 1]);
    let vertical = k.reshape([1, 1, n, 1]).repeat([3, 1, 1, 1]);
    let padded = x.reflection_pad2d([radius, radius, radius, radius]);
    padded
        .conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
        .conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
}

/// The student's loss on a labelled batch, CutMixed with probability `p`: each image
/// takes one box from the next image of the batch, and the box is scored against that
/// image's label, the rest against its own (each part normalised on its own, weighted
/// by its pixels). Returns the loss, the student's last tokens, and the input used.
fn cutmix_loss(
    trainable: &Trainable,
    batch: &Batch,
    input: Tensor,
    weights: &AffineInvariant,
    p: f64,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, Tensor, Tensor)> {
    let size = input.size();
    let (b, h, w) = (size[0], size[2], size[3]);
    if b < 2 || rng.random::<f64>() >= p {
        let (pred, tokens) = trainable.network().forward_with_tokens(&input)?;
        let loss = affine_invariant(&pred, &batch.target, &batch.mask, weights)?;
        return Ok((loss, tokens, input));
    }
    let cut = (1.0 - rng.random::<f64>()).sqrt();
    let (bw, bh) = (((w as f64) * cut) as i64, ((h as f64) * cut) as i64);
    let (cx, cy) = (rng.random_range(0..w), rng.random_range(0..h));
    let (x0, x1) = ((cx - bw / 2).max(0), (cx + bw / 2).min(w));
    let (y0, y1) = ((cy - bh / 2).max(0), (cy + bh / 2).min(h));
    let device = input.device();
    let inside = Tensor::zeros([h, w], (Kind::Bool, device));
    if x1 > x0 && y1 > y0 {
        let _ = inside
            .narrow(0, y0, y1 - y0)
            .narrow(1, x0, x1 - x0)
            .fill_(1);
    }
    let rolled = |t: &Tensor| t.roll([1], [0]);
    let mixed = input.where_self(&inside.logical_not().reshape([1, 1, h, w]), &rolled(&input));
    let (pred, tokens) = trainable.network().forward_with_tokens(&mixed)?;
    let out_mask = batch.mask.logical_and(&inside.logical_not().unsqueeze(0));
    let in_mask = rolled(&batch.mask).logical_and(&inside.unsqueeze(0));
    let n_out = out_mask.sum(Kind::Int64).int64_value(&[]) as f64;
    let n_in = in_mask.sum(Kind::Int64).int64_value(&[]) as f64;
    let mut loss = Tensor::zeros([], (Kind::Float, device));
    if n_out > 0.0 {
        loss +=
            affine_invariant(&pred, &batch.target, &out_mask, weights)? * (n_out / (n_out + n_in));
    }
    if n_in > 0.0 {
        loss += affine_invariant(&pred, &rolled(&batch.target), &in_mask, weights)?
            * (n_in / (n_out + n_in));
    }
    Ok((loss, tokens, mixed))
}

/// The student's mean affine-invariant error to the labels (no trim, no gradient term)
/// on the centre crop of every validation photo.
fn label_error(
    trainable: &Trainable,
    samples: &[Prepared],
    size: usize,
    device: Device,
) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let plain = AffineInvariant {
        trim: 0.0,
        gradient_weight: 0.0,
        gradient_scales: 0,
    };
    let mut total = 0.0;
    for sample in samples {
        let crop = Crop {
            x: (sample.width - size) / 2,
            y: (sample.height - size) / 2,
            flip: false,
        };
        let batch = make_batch(&[(sample, crop)], size, device)?;
        let pred = trainable.network().forward(&batch.input)?;
        total += affine_invariant(&pred, &batch.target, &batch.mask, &plain)?.double_value(&[]);
    }
    Ok(total / samples.len() as f64)
}
