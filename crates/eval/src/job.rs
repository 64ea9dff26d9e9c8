//! Scoring a whole dataset: predictions from a depth engine or from `.npy` files, each
//! image scored with the protocol, and the report.

use std::path::{Path, PathBuf};

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{image_size, load_image, DepthMap, Metres, Prediction};
use anydepth_model::{DepthEngine, Head};
use anydepth_pipeline::sources::stem;

use crate::datasets::{DepthSample, PairSample};
use anydepth_pipeline::Context;

use crate::error::{bail, Result};
use crate::protocol::{self, decimal_metres, ImageEvaluation, PairScore, Protocol};
use crate::report::{DepthReport, ImageRow, PairReport, PairRow, TemporalReport};
use crate::temporal::{FrameCamera, SequenceTae};

/// Where predictions come from.
pub enum Source {
    /// A depth engine, loaded from `weights`.
    Model {
        /// The loaded network.
        engine: Box<dyn DepthEngine>,
        /// The checkpoint file it was loaded from, for reports.
        weights: PathBuf,
    },
    /// `<image stem>.npy` files in `dir` (disparity, or metres when `metric`).
    Files {
        /// The folder of the `.npy` files.
        dir: PathBuf,
        /// Whether the files hold depth in metres (else disparity).
        metric: bool,
    },
}

impl Source {
    /// Whether predictions are in metres.
    pub fn is_metric(&self) -> bool {
        match self {
            Source::Model { engine, .. } => matches!(engine.config().head, Head::Metric { .. }),
            Source::Files { metric, .. } => *metric,
        }
    }

    /// The model or folder, for reports.
    pub fn describe(&self) -> String {
        match self {
            Source::Model { engine, weights } => {
                format!("{} ({})", engine.config().describe(), weights.display())
            }
            Source::Files { dir, metric } => format!(
                "predictions in {} ({})",
                dir.display(),
                if *metric { "metres" } else { "disparity" }
            ),
        }
    }

    /// The file of the prediction named `name` in `dir`: `<name>.npy`, as `anydepth depth`
    /// writes it.
    pub fn prediction_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.npy"))
    }

    /// The prediction for `rgb`, named `name`.
    fn predict(&self, name: &str, rgb: &Path) -> Result<Prediction> {
        match self {
            Source::Model { engine, .. } => {
                let image = load_image(rgb)?;
                Ok(engine.predict(&image)?)
            }
            Source::Files { dir, metric } => {
                let path = Self::prediction_path(dir, name);
                Ok(if *metric {
                    Prediction::Metric(read_depth_values(&path, 1.0)?)
                } else {
                    Prediction::Disparity(read_depth_values(&path, 1.0)?)
                })
            }
        }
    }
}

/// What every report names: the dataset, where it is, and the source of predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportHeader {
    /// The dataset's kind, as [`crate::datasets::DatasetKind::name`] gives it.
    pub dataset: String,
    /// Where the dataset is: its folder, or its annotation or list file.
    pub path: String,
    /// The source of predictions, as [`Source::describe`] gives it.
    pub model: String,
    /// Images in the dataset.
    pub count: usize,
}

/// Hears of an evaluation's progress.
pub trait EvalObserver {
    /// The image about to be scored.
    fn item(&self, _name: &str) {}

    /// One image is scored.
    fn advance(&self) {}
}

/// The frames of a video: with their cameras, [`evaluate_sequence`] also scores the
/// temporal alignment error ([`crate::temporal`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// Per sample, in order, its camera.
    pub cameras: Vec<FrameCamera>,
    /// Where the poses came from, for reports.
    pub poses: String,
}

/// Scores every sample with `protocol`; the mean over images is the dataset's score.
///
/// # Errors
/// When a file cannot be read, an image cannot be scored (the error names it), or no
/// image was evaluated.
pub fn evaluate_depth(
    samples: &[DepthSample],
    source: &Source,
    protocol: &Protocol,
    header: ReportHeader,
    observer: &dyn EvalObserver,
) -> Result<DepthReport> {
    score_depth(samples, source, protocol, None, header, observer)
}

/// Scores the frames of a video as [`evaluate_depth`] does, and their temporal alignment
/// error (TAE, [`crate::temporal`]): `protocol`'s range and crop, its alignment applied
/// once to the whole sequence.
///
/// # Errors
/// As [`evaluate_depth`]; also when `sequence` has not one camera per sample, the
/// alignment is median scaling, or the TAE cannot be computed (fewer than 2 frames,
/// frames of different sizes, a camera of another size than its frame).
pub fn evaluate_sequence(
    samples: &[DepthSample],
    source: &Source,
    protocol: &Protocol,
    sequence: &Sequence,
    header: ReportHeader,
    observer: &dyn EvalObserver,
) -> Result<DepthReport> {
    if sequence.cameras.len() != samples.len() {
        bail!(
            "{} cameras for {} frames",
            sequence.cameras.len(),
            samples.len()
        );
    }
    score_depth(samples, source, protocol, Some(sequence), header, observer)
}

fn score_depth(
    samples: &[DepthSample],
    source: &Source,
    protocol: &Protocol,
    sequence: Option<&Sequence>,
    header: ReportHeader,
    observer: &dyn EvalObserver,
) -> Result<DepthReport> {
    let mut per_image = Vec::new();
    let mut rows = Vec::new();
    let mut resized = 0usize;
    let mut tae = sequence.map(|_| SequenceTae::new(protocol)).transpose()?;
    for (i, sample) in samples.iter().enumerate() {
        observer.item(&sample.name);
        let frame = match (&mut tae, sequence) {
            (Some(tae), Some(s)) => s.cameras.get(i).map(|camera| (tae, camera)),
            _ => None,
        };
        let result = evaluate_one(sample, source, protocol, frame)
            .with_context(|| format!("image {}", sample.name))?;
        resized += usize::from(result.resized);
        rows.push(ImageRow::new(&sample.name, &result));
        per_image.push(result.metrics);
        observer.advance();
    }
    let Some(mean) = protocol::mean(&per_image) else {
        bail!("no image was evaluated");
    };
    let temporal = match (tae, sequence) {
        (Some(tae), Some(sequence)) => {
            let score = tae
                .finish()
                .context("the temporal alignment error of the sequence")?;
            let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
            Some((
                score.tae,
                Box::new(TemporalReport::new(&score, &names, &sequence.poses)),
            ))
        }
        _ => None,
    };
    let (tae, temporal) = temporal.unzip();
    Ok(DepthReport {
        absrel: mean.absrel,
        aggregation: "mean over images of the per-image metrics".into(),
        alignment: protocol.alignment.name().into(),
        count: header.count,
        crop: protocol.crop.name().into(),
        dataset: header.dataset,
        delta1: mean.delta1,
        delta2: mean.delta2,
        delta3: mean.delta3,
        images: rows,
        log_rmse: mean.log_rmse,
        max_depth_m: protocol.max_depth_m.map(decimal_metres),
        min_depth_m: decimal_metres(protocol.min_depth_m),
        model: header.model,
        path: header.path,
        resized,
        rmse: mean.rmse,
        tae,
        temporal,
    })
}

/// Scores one image; with a sequence, also adds it as the sequence's next frame.
fn evaluate_one(
    sample: &DepthSample,
    source: &Source,
    protocol: &Protocol,
    frame: Option<(&mut SequenceTae, &FrameCamera)>,
) -> Result<ImageEvaluation> {
    let gt: DepthMap<Metres> = read_depth_values(&sample.depth, sample.depth_scale)?;
    let prediction = source.predict(&sample.name, &sample.rgb)?;
    let result = protocol::evaluate(&prediction, &gt, protocol)?;
    if let Some((tae, camera)) = frame {
        tae.push(&prediction, &gt, camera)?;
    }
    Ok(result)
}

/// Scores DA-2K's point pairs: the share of all pairs ordered correctly.
///
/// # Errors
/// When a file cannot be read or an image cannot be scored (the error names it).
pub fn evaluate_pairs(
    samples: &[PairSample],
    source: &Source,
    header: ReportHeader,
    observer: &dyn EvalObserver,
) -> Result<PairReport> {
    let mut total = PairScore::default();
    let mut rows = Vec::new();
    for sample in samples {
        observer.item(&sample.name);
        let score = score_one(sample, source).with_context(|| format!("image {}", sample.name))?;
        total.add(score);
        rows.push(PairRow::new(&sample.name, score));
        observer.advance();
    }
    Ok(PairReport {
        accuracy: total.accuracy(),
        aggregation: "share of all pairs ordered correctly".into(),
        alignment: "none".into(),
        correct: total.correct,
        count: header.count,
        dataset: header.dataset,
        images: rows,
        model: header.model,
        pairs: total.total,
        path: header.path,
    })
}

fn score_one(sample: &PairSample, source: &Source) -> Result<PairScore> {
    let name = stem(&sample.rgb);
    let prediction = source.predict(&name, &sample.rgb)?;
    let prediction = match source {
        // A model predicts at the photo's size; files may be smaller.
        Source::Model { .. } => prediction,
        Source::Files { .. } => {
            let (width, height) = image_size(&sample.rgb)?;
            protocol::fit_to(&prediction, width, height)?.0.into_owned()
        }
    };
    protocol::score_pairs(&prediction, &sample.pairs)
}

/// Scores `engine` on `samples` with `kind`'s protocol (disparity aligned for a relative
/// model, metres as they are for a metric one), as a training run's validation after
/// `step`: AbsRel ranks checkpoints.
///
/// # Errors
/// As [`evaluate_depth`].
pub fn validate_training(
    step: usize,
    engine: Box<dyn DepthEngine>,
    samples: &[DepthSample],
    kind: crate::datasets::DatasetKind,
) -> Result<anydepth_model::train::Validation> {
    struct Quiet;
    impl EvalObserver for Quiet {}
    let mut protocol = kind.default_protocol();
    if matches!(engine.config().head, Head::Metric { .. }) {
        protocol.alignment = protocol::Alignment::None;
    }
    let source = Source::Model {
        engine,
        weights: PathBuf::from(format!("step {step}")),
    };
    let header = ReportHeader {
        dataset: kind.name().to_owned(),
        path: String::new(),
        model: source.describe(),
        count: samples.len(),
    };
    let report = evaluate_depth(samples, &source, &protocol, header, &Quiet)?;
    Ok(anydepth_model::train::Validation {
        step,
        metrics: vec![
            ("abs_rel".into(), report.absrel),
            ("delta1".into(), report.delta1),
            ("rmse".into(), report.rmse),
            ("log_rmse".into(), report.log_rmse),
        ],
        key: "abs_rel".into(),
        value: report.absrel,
    })
}
