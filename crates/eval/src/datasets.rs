//! Evaluation datasets on disk: what `anydepth eval` reads.
//!
//! - `list`: a text file of `rgb_path depth_path [depth_scale]` lines, paths relative to the
//!   file (`#` comments and blank lines allowed; no spaces inside paths); the scale is units
//!   per metre (default 1000 for images, 1 for `.npy`/`.pfm`/`.exr`).
//! - `nyu`, `kitti`: a folder with `test_annotations.json` (the layout of Metric3D's demo
//!   data): `{"files": [{"rgb": ..., "depth": ..., "depth_scale": ..., "cam_in": [...]}]}`.
//!   Paths are relative to the folder; where such a file is missing, leading folders of
//!   the path are dropped until one exists (the shipped files keep Metric3D's
//!   `data/nyu_demo/` prefix). The intrinsics are not needed for the metrics.
//! - `da2k`: a folder with `annotations.json` mapping image paths (relative to the folder)
//!   to lists of `{"point1": [row, col], "point2": [row, col], "closer_point": "point1"}`
//!   (the order is (vertical, horizontal), as in DA-2K's README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use anydepth_pipeline::Context;

use crate::error::{bail, Result};
use crate::protocol::{Alignment, Crop, OrderedPair, Protocol};
use anydepth_pipeline::scene::default_scale;
use anydepth_pipeline::sources::stem;

/// The layout of the dataset given to `anydepth eval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DatasetKind {
    /// NYU Depth V2: `test_annotations.json` (0.001-10 m, Eigen crop).
    Nyu,
    /// KITTI: `test_annotations.json` (sparse LiDAR, 0.001-80 m, Garg crop).
    Kitti,
    /// A list file of `rgb depth [scale]` lines.
    List,
    /// DA-2K: images and `annotations.json` of point pairs, the closer point marked.
    Da2k,
}

impl DatasetKind {
    /// The name on the command line and in reports: `nyu`, `kitti`, `list`, `da2k`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nyu => "nyu",
            Self::Kitti => "kitti",
            Self::List => "list",
            Self::Da2k => "da2k",
        }
    }

    /// The papers' protocol for this dataset: NYU 0.001-10 m with Eigen's crop, KITTI
    /// 0.001-80 m with Garg's crop, lists from 0.001 m uncropped; disparity aligned
    /// (affine) until the model is known to be metric.
    pub fn default_protocol(self) -> Protocol {
        match self {
            Self::Nyu => Protocol::NYU,
            Self::Kitti => Protocol::KITTI,
            Self::List | Self::Da2k => Protocol {
                min_depth_m: 1e-3,
                max_depth_m: None,
                crop: Crop::None,
                alignment: Alignment::Affine,
            },
        }
    }
}

/// One photo with metric ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthSample {
    /// The photo's file stem: the name in reports and of `<name>.npy` predictions.
    pub name: String,
    /// The photo, resolved against the dataset's folder.
    pub rgb: PathBuf,
    /// The ground-truth depth file, resolved against the dataset's folder.
    pub depth: PathBuf,
    /// Units of the depth file per metre.
    pub depth_scale: f64,
}

impl DepthSample {
    /// A sample named after its photo's file stem.
    fn new(rgb: PathBuf, depth: PathBuf, depth_scale: f64) -> Self {
        Self {
            name: stem(&rgb),
            rgb,
            depth,
            depth_scale,
        }
    }
}

/// `scale` when it can be a depth scale (units per metre): positive and finite.
fn valid_scale(scale: f64) -> Option<f64> {
    (scale.is_finite() && scale > 0.0).then_some(scale)
}

/// One photo with DA-2K point pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct PairSample {
    /// The image path as the annotations give it.
    pub name: String,
    /// The photo, resolved against the dataset's folder.
    pub rgb: PathBuf,
    /// The annotated point pairs, each with its closer point.
    pub pairs: Vec<OrderedPair>,
}

/// What a dataset holds.
#[derive(Debug)]
pub enum Dataset {
    /// Photos with metric ground truth (NYU, KITTI, lists).
    Depth(Vec<DepthSample>),
    /// Photos with ordered point pairs (DA-2K).
    Pairs(Vec<PairSample>),
}

impl Dataset {
    /// Whether the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images in the dataset.
    pub fn len(&self) -> usize {
        match self {
            Self::Depth(s) => s.len(),
            Self::Pairs(s) => s.len(),
        }
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        match self {
            Self::Depth(s) => s.truncate(n),
            Self::Pairs(s) => s.truncate(n),
        }
    }
}

/// Reads the dataset at `path` (its folder, or its annotation or list file).
///
/// # Errors
/// When the file cannot be read or parsed (the message names the file and the line or
/// entry), or when it lists no image.
pub fn load(kind: DatasetKind, path: &Path) -> Result<Dataset> {
    let file = |default: &str| {
        if path.is_dir() {
            path.join(default)
        } else {
            path.to_path_buf()
        }
    };
    let dataset = match kind {
        DatasetKind::List => Dataset::Depth(read_list(&file("list.txt"))?),
        DatasetKind::Nyu | DatasetKind::Kitti => {
            Dataset::Depth(read_test_annotations(&file("test_annotations.json"))?)
        }
        DatasetKind::Da2k => Dataset::Pairs(read_da2k(&file("annotations.json"))?),
    };
    if dataset.is_empty() {
        bail!("the dataset lists no image: {}", path.display());
    }
    Ok(dataset)
}

fn folder_of(file: &Path) -> PathBuf {
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn read_text(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)
}

/// `rgb depth [scale]` per line.
fn read_list(path: &Path) -> Result<Vec<DepthSample>> {
    let root = folder_of(path);
    let mut samples = Vec::new();
    for (i, line) in read_text(path)?.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (rgb, depth, scale) = match fields[..] {
            [rgb, depth] => (rgb, depth, None),
            [rgb, depth, scale] => (rgb, depth, Some(scale)),
            _ => bail!(
                "line {}: expected `rgb_path depth_path [depth_scale]`, got {} fields: {}",
                i + 1,
                fields.len(),
                path.display()
            ),
        };
        let depth = root.join(depth);
        let depth_scale = match scale {
            Some(s) => s.parse::<f64>().ok().and_then(valid_scale),
            None => Some(default_scale(&depth)),
        };
        let Some(depth_scale) = depth_scale else {
            bail!(
                "line {}: the depth scale must be a positive number of units per metre: {}",
                i + 1,
                path.display()
            );
        };
        samples.push(DepthSample::new(root.join(rgb), depth, depth_scale));
    }
    Ok(samples)
}

/// `root/relative`, or, when that does not exist, `root/` plus `relative` less its leading
/// folders, the first that exists; `root/relative` when none does (reported as missing
/// later).
fn resolve(root: &Path, relative: &str) -> PathBuf {
    let relative = Path::new(relative);
    let direct = root.join(relative);
    if direct.exists() || relative.is_absolute() {
        return direct;
    }
    let parts: Vec<_> = relative.components().collect();
    (1..parts.len())
        .map(|skip| root.join(parts[skip..].iter().collect::<PathBuf>()))
        .find(|p| p.exists())
        .unwrap_or(direct)
}

/// Metric3D's `test_annotations.json`.
fn read_test_annotations(path: &Path) -> Result<Vec<DepthSample>> {
    let root = folder_of(path);
    let json: Value = serde_json::from_str(&read_text(path)?)
        .with_context(|| format!("invalid JSON: {}", path.display()))?;
    let Some(files) = json.get("files").and_then(Value::as_array) else {
        bail!(
            "expected {{\"files\": [{{\"rgb\": ..., \"depth\": ..., \"depth_scale\": ...}}, ...]}}: {}",
            path.display()
        );
    };
    let mut samples = Vec::new();
    for (i, entry) in files.iter().enumerate() {
        let text = |key: &str| entry.get(key).and_then(Value::as_str);
        let (Some(rgb), Some(depth)) = (text("rgb"), text("depth")) else {
            bail!(
                "files[{i}] lacks the \"rgb\" or \"depth\" path: {}",
                path.display()
            );
        };
        let depth = resolve(&root, depth);
        let depth_scale = match entry.get("depth_scale") {
            None => default_scale(&depth),
            Some(v) => match v.as_f64().and_then(valid_scale) {
                Some(s) => s,
                None => bail!(
                    "files[{i}]: \"depth_scale\" must be a positive number, got {v}: {}",
                    path.display()
                ),
            },
        };
        samples.push(DepthSample::new(resolve(&root, rgb), depth, depth_scale));
    }
    Ok(samples)
}

/// DA-2K's `annotations.json`, images in the order of their paths.
fn read_da2k(path: &Path) -> Result<Vec<PairSample>> {
    let root = folder_of(path);
    let json: BTreeMap<String, Vec<Value>> =
        serde_json::from_str(&read_text(path)?).with_context(|| {
            format!(
                "expected a JSON object of image path -> list of point pairs: {}",
                path.display()
            )
        })?;
    let mut samples = Vec::new();
    for (image, annotations) in json {
        let mut pairs = Vec::new();
        for (i, a) in annotations.iter().enumerate() {
            let point = |key: &str| -> Result<(u32, u32)> {
                let coords: Option<Vec<f64>> = a
                    .get(key)
                    .and_then(Value::as_array)
                    .and_then(|v| v.iter().map(Value::as_f64).collect());
                match coords.as_deref() {
                    Some(&[row, col]) if row >= 0.0 && col >= 0.0 => {
                        Ok((row.round() as u32, col.round() as u32))
                    }
                    _ => bail!(
                        "{image:?}[{i}]: \"{key}\" must be [row, col] with non-negative numbers: {}",
                        path.display()
                    ),
                }
            };
            let (p1, p2) = (point("point1")?, point("point2")?);
            let pair = match a.get("closer_point").and_then(Value::as_str) {
                Some("point1") => OrderedPair {
                    closer: p1,
                    farther: p2,
                },
                Some("point2") => OrderedPair {
                    closer: p2,
                    farther: p1,
                },
                _ => bail!(
                    "{image:?}[{i}]: \"closer_point\" must be \"point1\" or \"point2\": {}",
                    path.display()
                ),
            };
            pairs.push(pair);
        }
        samples.push(PairSample {
            rgb: root.join(&image),
            name: image,
            pairs,
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_resolve_paths_and_scales() {
        let dir = tempfile::tempdir().expect("temp dir");
        let list = dir.path().join("split.txt");
        std::fs::write(
            &list,
            "# rgb depth scale\n\nrgb/a.jpg depth/a.png 256\nrgb/b.jpg depth/b.npy\n",
        )
        .expect("write");
        let Dataset::Depth(samples) = load(DatasetKind::List, &list).expect("reads") else {
            panic!("a depth dataset");
        };
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "a");
        assert_eq!(samples[0].rgb, dir.path().join("rgb/a.jpg"));
        assert_eq!(samples[0].depth_scale, 256.0);
        assert_eq!(samples[1].depth_scale, 1.0);
        std::fs::write(&list, "a.jpg\n").expect("write");
        let err = load(DatasetKind::List, &list).expect_err("one field");
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        std::fs::write(&list, "a.jpg a.png -3\n").expect("write");
        assert!(load(DatasetKind::List, &list).is_err());
    }

    #[test]
    fn test_annotations_drop_missing_leading_folders() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("depth")).expect("mkdir");
        std::fs::write(dir.path().join("depth/d0.png"), b"").expect("write");
        std::fs::write(
            dir.path().join("test_annotations.json"),
            r#"{"files": [{"cam_in": [1, 1, 0, 0], "rgb": "data/x/rgb/r0.jpg",
                "depth": "data/x/depth/d0.png", "depth_scale": 256.0}]}"#,
        )
        .expect("write");
        let Dataset::Depth(samples) = load(DatasetKind::Kitti, dir.path()).expect("reads") else {
            panic!("a depth dataset");
        };
        assert_eq!(samples[0].depth, dir.path().join("depth/d0.png"));
        // Missing everywhere: kept as written, for the missing-file report.
        assert_eq!(samples[0].rgb, dir.path().join("data/x/rgb/r0.jpg"));
        assert_eq!(
            (samples[0].name.as_str(), samples[0].depth_scale),
            ("r0", 256.0)
        );
    }

    #[test]
    fn da2k_points_are_row_column_and_the_closer_one_is_marked() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("annotations.json"),
            r#"{"images/outdoor/b.jpg": [{"point1": [10, 20], "point2": [30, 40], "closer_point": "point1"}],
                "images/indoor/a.jpg": [{"point1": [1, 2], "point2": [3, 4], "closer_point": "point2"},
                                        {"point1": [5.4, 6.6], "point2": [7, 8], "closer_point": "point1"}]}"#,
        )
        .expect("write");
        let Dataset::Pairs(samples) = load(DatasetKind::Da2k, dir.path()).expect("reads") else {
            panic!("a pairs dataset");
        };
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "images/indoor/a.jpg");
        assert_eq!(samples[0].rgb, dir.path().join("images/indoor/a.jpg"));
        assert_eq!(
            samples[0].pairs,
            vec![
                OrderedPair {
                    closer: (3, 4),
                    farther: (1, 2)
                },
                OrderedPair {
                    closer: (5, 7),
                    farther: (7, 8)
                }
            ]
        );
        std::fs::write(
            dir.path().join("annotations.json"),
            r#"{"a.jpg": [{"point1": [1, 2], "point2": [3, 4], "closer_point": "both"}]}"#,
        )
        .expect("write");
        let err = load(DatasetKind::Da2k, dir.path()).expect_err("bad label");
        assert!(format!("{err:#}").contains("closer_point"), "{err:#}");
    }
}
