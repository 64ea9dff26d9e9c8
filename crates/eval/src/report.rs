//! The results of an evaluation as data: what `anydepth eval --json` writes.
//!
//! Fields are declared in alphabetical order, so the JSON keys come out sorted, as in the
//! reports of earlier releases (which sorted them): files stay comparable across versions.

use serde::Serialize;

use crate::protocol::{Fit, ImageEvaluation, Metrics, PairScore};
use crate::temporal::TemporalScore;

/// The scores of a depth dataset (NYU, KITTI, a list).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DepthReport {
    /// Mean over images.
    pub absrel: f64,
    /// How the per-image metrics were combined.
    pub aggregation: String,
    /// How predictions were turned into metres (`none`, `median`, `affine`).
    pub alignment: String,
    /// Images in the dataset (after `--limit`).
    pub count: usize,
    /// The pixels evaluated (`none`, `nyu-eigen`, `kitti-garg`, `kitti-eigen`, `custom`).
    pub crop: String,
    /// The dataset's kind (`nyu`, `kitti`, `list`).
    pub dataset: String,
    /// Share of pixels with `max(d / gt, gt / d) < 1.25`, mean over images.
    pub delta1: f64,
    /// Same with `1.25^2`, mean over images.
    pub delta2: f64,
    /// Same with `1.25^3`, mean over images.
    pub delta3: f64,
    /// Per image.
    pub images: Vec<ImageRow>,
    /// RMSE of the log depths, mean over images.
    pub log_rmse: f64,
    /// Upper end of the ground-truth range, in metres (`None`: no upper bound).
    pub max_depth_m: Option<f64>,
    /// Lower end of the ground-truth range, in metres.
    pub min_depth_m: f64,
    /// The model, or where the predictions came from.
    pub model: String,
    /// The dataset's folder or file.
    pub path: String,
    /// Predictions resized (bilinear) to the ground truth's size.
    pub resized: usize,
    /// Root mean square error in metres, mean over images.
    pub rmse: f64,
    /// Temporal alignment error in percent, for a sequence with poses ([`TemporalReport`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tae: Option<f64>,
    /// How the temporal alignment error was computed, pair by pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporal: Option<Box<TemporalReport>>,
}

/// The temporal alignment error of a sequence ([`crate::temporal`]): how it was computed
/// and each pair of consecutive frames. Errors are AbsRel x 100, as the TAE itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TemporalReport {
    /// How the pairs' errors were combined.
    pub aggregation: String,
    /// How predictions became depth: one scale and shift for the whole sequence, or none.
    pub alignment: String,
    /// Predictions were clipped to this depth, in metres.
    pub max_depth_m: f64,
    /// Per pair of consecutive frames, in order.
    pub pairs: Vec<FramePairRow>,
    /// The camera poses' file.
    pub poses: String,
    /// The sequence's scale (affine alignment in disparity space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The sequence's shift (affine alignment in disparity space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
}

impl TemporalReport {
    /// The report of `score` for frames named `names` (in order) with poses from `poses`.
    pub fn new(score: &TemporalScore, names: &[&str], poses: &str) -> Self {
        let (scale, shift) = match score.fit {
            Fit::Affine(a) => (Some(a.scale), Some(a.shift)),
            Fit::None | Fit::Median { .. } => (None, None),
        };
        let name = |i: usize| {
            names
                .get(i)
                .map_or_else(|| format!("#{i}"), |n| (*n).to_owned())
        };
        let pairs = score
            .pairs
            .iter()
            .enumerate()
            .map(|(i, pair)| FramePairRow {
                backward: 100.0 * pair.backward.absrel,
                backward_pixels: pair.backward.pixels,
                first: name(i),
                forward: 100.0 * pair.forward.absrel,
                forward_pixels: pair.forward.pixels,
                second: name(i + 1),
                tae: pair.tae(),
            })
            .collect();
        Self {
            aggregation: "100 x mean of the forward and backward reprojection AbsRel over \
                          consecutive frame pairs"
                .into(),
            alignment: match score.fit {
                Fit::Affine(_) => "affine in disparity space, one scale and shift for the sequence",
                _ => "none",
            }
            .into(),
            max_depth_m: score.max_depth_m,
            pairs,
            poses: poses.to_owned(),
            scale,
            shift,
        }
    }
}

/// One pair of consecutive frames of a [`TemporalReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FramePairRow {
    /// The second frame reprojected into the first: AbsRel x 100.
    pub backward: f64,
    /// Pixels of the first frame compared.
    pub backward_pixels: usize,
    /// The first frame's name.
    pub first: String,
    /// The first frame reprojected into the second: AbsRel x 100.
    pub forward: f64,
    /// Pixels of the second frame compared.
    pub forward_pixels: usize,
    /// The second frame's name.
    pub second: String,
    /// The mean of both directions.
    pub tae: f64,
}

/// One image of a [`DepthReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageRow {
    /// Mean of `|d - gt| / gt`.
    pub absrel: f64,
    /// Share of pixels with `max(d / gt, gt / d) < 1.25`.
    pub delta1: f64,
    /// Same with `1.25^2`.
    pub delta2: f64,
    /// Same with `1.25^3`.
    pub delta3: f64,
    /// `sqrt(mean((ln d - ln gt)^2))`.
    pub log_rmse: f64,
    /// The image's name (its photo's file stem).
    pub name: String,
    /// Pixels compared.
    pub pixels: usize,
    /// `sqrt(mean((d - gt)^2))`, in metres.
    pub rmse: f64,
    /// The fitted scale (median scaling, or affine in disparity space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The fitted shift (affine in disparity space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
}

impl ImageRow {
    /// The row of image `name`.
    pub fn new(name: &str, result: &ImageEvaluation) -> Self {
        let m = &result.metrics;
        let (scale, shift) = match result.fit {
            Fit::None => (None, None),
            Fit::Median { scale } => (Some(scale), None),
            Fit::Affine(a) => (Some(a.scale), Some(a.shift)),
        };
        Self {
            absrel: m.absrel,
            delta1: m.delta1,
            delta2: m.delta2,
            delta3: m.delta3,
            log_rmse: m.log_rmse,
            name: name.to_owned(),
            pixels: result.pixels,
            rmse: m.rmse,
            scale,
            shift,
        }
    }

    /// The row's metrics.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            absrel: self.absrel,
            delta1: self.delta1,
            delta2: self.delta2,
            delta3: self.delta3,
            rmse: self.rmse,
            log_rmse: self.log_rmse,
        }
    }
}

/// The score of DA-2K: point pairs ordered correctly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairReport {
    /// Share of all pairs ordered correctly.
    pub accuracy: f64,
    /// How the images' counts were combined.
    pub aggregation: String,
    /// How predictions were aligned (always `none`: only the order counts).
    pub alignment: String,
    /// Pairs ordered correctly, over all images.
    pub correct: usize,
    /// Images in the dataset (after `--limit`).
    pub count: usize,
    /// The dataset's kind (`da2k`).
    pub dataset: String,
    /// Per image.
    pub images: Vec<PairRow>,
    /// The model, or where the predictions came from.
    pub model: String,
    /// Pairs scored, over all images.
    pub pairs: usize,
    /// The dataset's folder or file.
    pub path: String,
}

/// One image of a [`PairReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairRow {
    /// Share of the image's pairs ordered correctly.
    pub accuracy: f64,
    /// Pairs ordered correctly.
    pub correct: usize,
    /// The image's path as the annotations give it.
    pub name: String,
    /// Pairs scored.
    pub pairs: usize,
}

impl PairRow {
    /// The row of image `name`.
    pub fn new(name: &str, score: PairScore) -> Self {
        Self {
            accuracy: score.accuracy(),
            correct: score.correct,
            name: name.to_owned(),
            pairs: score.total,
        }
    }
}

/// The report of either kind of dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// Of a depth dataset (NYU, KITTI, a list).
    Depth(DepthReport),
    /// Of DA-2K's point pairs.
    Pairs(PairReport),
}

impl Report {
    /// Pretty-printed JSON with a final newline.
    ///
    /// # Errors
    /// Never for these types (serde_json's error is passed on).
    pub fn to_json(&self) -> serde_json::Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_sorted_and_fits_are_optional() {
        let row = ImageRow {
            absrel: 0.1,
            delta1: 0.9,
            delta2: 0.95,
            delta3: 0.99,
            log_rmse: 0.2,
            name: "rgb_00000".into(),
            pixels: 12,
            rmse: 0.3,
            scale: None,
            shift: None,
        };
        let text = serde_json::to_string(&row).expect("serialises");
        assert_eq!(
            text,
            r#"{"absrel":0.1,"delta1":0.9,"delta2":0.95,"delta3":0.99,"log_rmse":0.2,"name":"rgb_00000","pixels":12,"rmse":0.3}"#
        );
        let fitted = ImageRow {
            scale: Some(2.0),
            shift: Some(-0.5),
            ..row
        };
        let text = serde_json::to_string(&fitted).expect("serialises");
        assert!(
            text.ends_with(r#""rmse":0.3,"scale":2.0,"shift":-0.5}"#),
            "{text}"
        );
        let report = Report::Pairs(PairReport {
            accuracy: 0.5,
            aggregation: "share of all pairs ordered correctly".into(),
            alignment: "none".into(),
            correct: 1,
            count: 1,
            dataset: "da2k".into(),
            images: vec![PairRow::new(
                "a.jpg",
                PairScore {
                    correct: 1,
                    total: 2,
                },
            )],
            model: "m".into(),
            pairs: 2,
            path: "p".into(),
        });
        let json = report.to_json().expect("serialises");
        assert!(json.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        // serde_json's own map sorts its keys: writing it back gives the same text only
        // when ours were sorted.
        assert_eq!(
            serde_json::to_string_pretty(&value).expect("serialises") + "\n",
            json
        );
    }
}
