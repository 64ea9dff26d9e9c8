//! Camera trajectories from the files people already have, in one convention.
//!
//! Every reader returns `world_from_camera` rigid transforms ([`Isometry3<f64>`]), so
//! `p_in_world = world_from_camera * p_in_camera`, with **OpenCV camera axes**: x right,
//! y down, z forward (the axes of [`Intrinsics`]). The world frame is the file's own.
//!
//! | [`PoseFormat`] | file | stored as | key |
//! |---|---|---|---|
//! | `Tum` | `timestamp tx ty tz qx qy qz qw` per line (TUM RGB-D) | camera-to-world, OpenCV axes | [`PoseKey::Timestamp`] |
//! | `Plain` | `tx ty tz qx qy qz qw` per line, one per frame | camera-to-world, OpenCV axes | [`PoseKey::Index`] |
//! | `Log` | Open3D / Redwood `.log`: a line `i i i+1`, then 4 rows of a 4x4 matrix | camera-to-world, OpenCV axes | [`PoseKey::Index`] |
//! | `Colmap` | COLMAP text model: `images.txt` (+ `cameras.txt` beside it) | **world-to-camera**, quaternion `qw qx qy qz`; inverted here | [`PoseKey::Name`] |
//! | `Nerf` | `transforms.json` (Blender, instant-ngp, nerfstudio) | camera-to-world, **OpenGL axes** (x right, y up, z backward); y and z flipped here | [`PoseKey::Name`] (`file_path`) |
//!
//! # Intrinsics and the half-pixel shift
//! COLMAP, instant-ngp and nerfstudio put the image's top-left *corner* at `(0, 0)`, so the
//! centre of the first pixel is `(0.5, 0.5)` and the image centre is `(W / 2, H / 2)`.
//! [`Intrinsics`] puts pixel centres at integer coordinates (see [`crate::camera`]), so
//! reading shifts the principal point by half a pixel: `cx = cx_file - 0.5`,
//! `cy = cy_file - 0.5`; focal lengths are unchanged. Distortion coefficients (COLMAP's
//! `SIMPLE_RADIAL`, `RADIAL`, `OPENCV`, `FULL_OPENCV`; nerfstudio's `k1`.. `p2`) are
//! ignored with a warning (`tracing`), and fisheye models give no intrinsics.
//!
//! # Validation
//! Numbers must be finite; quaternions must have a norm within 1e-2 of 1 (then they are
//! normalised: a norm further off usually means another column order); 4x4 matrices must be
//! rigid (last row `0 0 0 1` within 1e-6, `R^T R` within 1e-4 of the identity, `det R > 0`).
//! Errors name the file and the 1-based line ([`Error::FileLine`]).
//!
//! ```
//! use anydepth_core::pose::{read_trajectory, PoseFormat};
//! use nalgebra::Point3;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("groundtruth.txt");
//! // TUM: timestamp tx ty tz qx qy qz qw; the second camera stands 0.1 m along world x.
//! std::fs::write(&path, "# TUM\n1.0 0 0 1 0 0 0 1\n1.1 0.1 0 1 0 0 0 1\n")?;
//! let trajectory = read_trajectory(&path, None)?;
//! assert_eq!(trajectory.format, PoseFormat::Tum);
//! let poses = trajectory.poses_for_timestamps(&[1.105], 0.02)?;
//! // 2 m in front of that camera (z forward).
//! let p_in_world = poses[0].world_from_camera * Point3::new(0.0, 0.0, 2.0);
//! assert!((p_in_world - Point3::new(0.1, 0.0, 3.0)).norm() < 1e-12);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nalgebra::{
    Isometry3, Matrix3, Matrix4, Point3, Quaternion, Rotation3, Translation3, UnitQuaternion,
    Vector3,
};
use serde::{de, Deserialize, Deserializer};

use crate::camera::Intrinsics;
use crate::error::{Error, Result};

/// Tolerance for matching frame timestamps to TUM poses, in seconds (TUM's own
/// `associate.py` uses the same 0.02 s).
pub const DEFAULT_TIME_TOLERANCE_S: f64 = 0.02;

/// How far a quaternion's norm may be from 1 before it is refused rather than normalised.
const QUATERNION_NORM_TOLERANCE: f64 = 1e-2;
/// How far the last row of a 4x4 matrix may be from `0 0 0 1`.
const LAST_ROW_TOLERANCE: f64 = 1e-6;
/// How far `R^T R` may be from the identity (element-wise): Redwood's `.log` files print six
/// significant digits, which leaves about 2e-6.
const ORTHONORMAL_TOLERANCE: f64 = 1e-4;

/// A camera trajectory file format.
///
/// Parses (case-insensitively) from its [`name`](PoseFormat::name) or an alias
/// (`open3d`/`redwood` for `log`, `instant-ngp`/`nerfstudio`/`transforms` for `nerf`), so it
/// works as a clap `value_parser`.
///
/// ```
/// use anydepth_core::pose::PoseFormat;
///
/// assert_eq!("COLMAP".parse::<PoseFormat>().expect("known"), PoseFormat::Colmap);
/// assert_eq!("open3d".parse::<PoseFormat>().expect("alias"), PoseFormat::Log);
/// assert_eq!(PoseFormat::Tum.to_string(), "tum");
/// assert!("ply".parse::<PoseFormat>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoseFormat {
    /// TUM RGB-D: `timestamp tx ty tz qx qy qz qw`, camera-to-world.
    Tum,
    /// `tx ty tz qx qy qz qw` per frame in order, camera-to-world.
    Plain,
    /// Open3D / Redwood `.log`: `i i i+1`, then a 4x4 camera-to-world matrix.
    Log,
    /// COLMAP text model (`images.txt`, `cameras.txt`), world-to-camera.
    Colmap,
    /// NeRF `transforms.json`, camera-to-world with OpenGL camera axes.
    Nerf,
}

impl PoseFormat {
    /// Every format, in the order of [`PoseFormat::NAMES`].
    pub const ALL: [Self; 5] = [Self::Tum, Self::Plain, Self::Log, Self::Colmap, Self::Nerf];
    /// The names [`PoseFormat::name`] gives and [`FromStr`] reads.
    pub const NAMES: [&'static str; 5] = ["tum", "plain", "log", "colmap", "nerf"];

    /// The short name: `tum`, `plain`, `log`, `colmap`, `nerf`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tum => "tum",
            Self::Plain => "plain",
            Self::Log => "log",
            Self::Colmap => "colmap",
            Self::Nerf => "nerf",
        }
    }

    /// What a file of this format is called in error messages.
    fn what(self) -> &'static str {
        match self {
            Self::Tum => "TUM trajectory",
            Self::Plain => "pose list (tx ty tz qx qy qz qw)",
            Self::Log => "Open3D .log trajectory",
            Self::Colmap => "COLMAP images.txt",
            Self::Nerf => "NeRF transforms.json",
        }
    }
}

impl fmt::Display for PoseFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PoseFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tum" => Ok(Self::Tum),
            "plain" => Ok(Self::Plain),
            "log" | "open3d" | "redwood" => Ok(Self::Log),
            "colmap" => Ok(Self::Colmap),
            "nerf" | "instant-ngp" | "nerfstudio" | "transforms" => Ok(Self::Nerf),
            _ => Err(Error::Format {
                what: "pose format",
                reason: format!(
                    "unknown format `{s}`, expected one of {}",
                    Self::NAMES.join(", ")
                ),
            }),
        }
    }
}

/// What identifies a pose in its file.
#[derive(Clone, Debug, PartialEq)]
pub enum PoseKey {
    /// Position in the file, from 0 (plain lists and `.log` files).
    Index(usize),
    /// Time in seconds (TUM).
    Timestamp(f64),
    /// Image name or path as the file writes it (COLMAP `NAME`, NeRF `file_path`).
    Name(String),
}

impl fmt::Display for PoseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(i) => write!(f, "#{i}"),
            Self::Timestamp(t) => write!(f, "t = {t} s"),
            Self::Name(name) => write!(f, "`{name}`"),
        }
    }
}

/// One camera of a trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseEntry {
    /// What identifies it in the file.
    pub key: PoseKey,
    /// `p_in_world = world_from_camera * p_in_camera`, OpenCV camera axes.
    pub world_from_camera: Isometry3<f64>,
    /// The camera's intrinsics when the file gives them (COLMAP, NeRF), in the convention of
    /// [`Intrinsics`] (pixel centres at integer coordinates).
    pub intrinsics: Option<Intrinsics>,
}

/// The cameras read from one trajectory file, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// The format it was read as.
    pub format: PoseFormat,
    /// The file read (`images.txt` for a COLMAP model); errors name it.
    pub path: PathBuf,
    /// The poses, in file order; never empty.
    pub poses: Vec<PoseEntry>,
}

/// Reads a camera trajectory as `world_from_camera` poses with OpenCV camera axes.
///
/// `format` `None` recognises the format (see [`detect_format`]). For COLMAP, `path` is the
/// model's folder, its `images.txt` or its `cameras.txt`; intrinsics come from the
/// `cameras.txt` beside `images.txt` when there is one. See the [module docs](self) for the
/// conventions of each format.
///
/// ```
/// use anydepth_core::pose::{read_trajectory, PoseFormat, PoseKey};
/// use nalgebra::{Point3, Vector3};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("trajectory.log");
/// // Open3D: metadata, then the camera-to-world matrix (here a camera at (1, 2, 3)).
/// std::fs::write(&path, "0 0 1\n1 0 0 1\n0 1 0 2\n0 0 1 3\n0 0 0 1\n")?;
/// let trajectory = read_trajectory(&path, Some(PoseFormat::Log))?;
/// let camera = &trajectory.poses[0];
/// assert_eq!(camera.key, PoseKey::Index(0));
/// assert_eq!(camera.world_from_camera * Point3::origin(), Point3::new(1.0, 2.0, 3.0));
/// assert_eq!(trajectory.poses_for_frames(1)?.len(), 1);
/// assert!(trajectory.poses_for_frames(2).is_err());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// - [`Error::Io`] when the file (or COLMAP's `images.txt`) cannot be read;
/// - [`Error::FileLine`] naming the file and line for a line that is not valid: a wrong count
///   of values, a value that is not a finite number, a quaternion of zero norm or a norm far
///   from 1, a matrix that is not rigid, JSON that does not parse, a COLMAP image whose camera
///   is missing from `cameras.txt`, and when `format` is `None` and the first line fits no
///   format;
/// - [`Error::FileFormat`] when the file holds no poses.
pub fn read_trajectory(path: &Path, format: Option<PoseFormat>) -> Result<Trajectory> {
    if format == Some(PoseFormat::Colmap) || (format.is_none() && is_colmap_path(path)) {
        return read_colmap(path);
    }
    let text = read_text(path, "camera trajectory")?;
    let format = match format {
        Some(format) => format,
        None => detect_in_text(path, &text)?,
    };
    let src = Source {
        what: format.what(),
        path,
    };
    let poses = match format {
        PoseFormat::Tum => parse_tum(&text, &src)?,
        PoseFormat::Plain => parse_plain(&text, &src)?,
        PoseFormat::Log => parse_log(&text, &src)?,
        PoseFormat::Colmap => return read_colmap(path),
        PoseFormat::Nerf => parse_nerf(&text, &src)?,
    };
    if poses.is_empty() {
        return Err(src.whole("no poses (the file is empty or holds only comments)"));
    }
    Ok(Trajectory {
        format,
        path: path.to_path_buf(),
        poses,
    })
}

/// Recognises a trajectory file's format from its name and content.
///
/// A folder, `images.txt` or `cameras.txt` is COLMAP; a `.json` file or one that starts
/// with `{` is NeRF; otherwise the first line that is not blank or a `#` comment decides:
/// 3 integers followed by a line of 4 numbers is an Open3D `.log`, `ID QW QX QY QZ TX TY TZ
/// CAMERA_ID NAME` is COLMAP's `images.txt`, 8 numbers TUM, 7 numbers a plain list.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::FileFormat`] when it holds no
/// poses, [`Error::FileLine`] naming the first line when it fits no format.
pub fn detect_format(path: &Path) -> Result<PoseFormat> {
    if is_colmap_path(path) {
        return Ok(PoseFormat::Colmap);
    }
    detect_in_text(path, &read_text(path, "camera trajectory")?)
}

impl Trajectory {
    /// The intrinsics all poses share, if every pose has the same.
    pub fn intrinsics(&self) -> Option<Intrinsics> {
        let first = self.poses.first()?.intrinsics?;
        self.poses
            .iter()
            .all(|entry| entry.intrinsics == Some(first))
            .then_some(first)
    }

    /// The first `frame_count` poses, for frames taken in the trajectory's order.
    ///
    /// # Errors
    /// [`Error::TooFewPoses`] giving both counts when the trajectory is shorter.
    pub fn poses_for_frames(&self, frame_count: usize) -> Result<Vec<&PoseEntry>> {
        if self.poses.len() < frame_count {
            return Err(Error::TooFewPoses {
                poses: self.poses.len(),
                frames: frame_count,
                path: self.path.clone(),
            });
        }
        if self.poses.len() > frame_count {
            tracing::debug!(
                "{} poses for {frame_count} frames; using the first {frame_count}: {}",
                self.poses.len(),
                self.path.display()
            );
        }
        Ok(self.poses.iter().take(frame_count).collect())
    }

    /// For each time (seconds), the pose with the nearest [`PoseKey::Timestamp`], which must
    /// be at most `tolerance_s` away (see [`DEFAULT_TIME_TOLERANCE_S`]).
    ///
    /// # Errors
    /// [`Error::NoPose`] when the trajectory has no timestamps, a time is not finite, or no
    /// pose lies within `tolerance_s`; [`Error::Format`] when `tolerance_s` is negative or
    /// not finite.
    pub fn poses_for_timestamps(
        &self,
        timestamps_s: &[f64],
        tolerance_s: f64,
    ) -> Result<Vec<&PoseEntry>> {
        if !(tolerance_s.is_finite() && tolerance_s >= 0.0) {
            return Err(Error::Format {
                what: "time tolerance",
                reason: format!("{tolerance_s} s must be finite and not negative"),
            });
        }
        let mut timed: Vec<(f64, &PoseEntry)> = self
            .poses
            .iter()
            .filter_map(|entry| match entry.key {
                PoseKey::Timestamp(t) => Some((t, entry)),
                _ => None,
            })
            .collect();
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        timestamps_s
            .iter()
            .map(|&t| {
                let no_pose = |reason: String| Error::NoPose {
                    frame: format!("at t = {t} s"),
                    reason,
                    path: self.path.clone(),
                };
                if timed.is_empty() {
                    return Err(no_pose(format!(
                        "a {} file has no timestamps; match frames by order or by name",
                        self.format
                    )));
                }
                if !t.is_finite() {
                    return Err(no_pose("the time is not finite".to_owned()));
                }
                let after = timed.partition_point(|(s, _)| *s < t);
                let nearest = [after.checked_sub(1), Some(after)]
                    .into_iter()
                    .flatten()
                    .filter_map(|i| timed.get(i))
                    .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()));
                match nearest {
                    Some(&(s, entry)) if (s - t).abs() <= tolerance_s => Ok(entry),
                    Some(&(s, _)) => Err(no_pose(format!(
                        "the nearest pose (t = {s} s) is {:.4} s away, more than {tolerance_s} s",
                        (s - t).abs()
                    ))),
                    None => Err(no_pose("the trajectory is empty".to_owned())),
                }
            })
            .collect()
    }

    /// For each frame file, its pose by name (COLMAP, NeRF) or by timestamp (TUM).
    ///
    /// Names match when the file names are equal or equal without their extensions
    /// (`images/0001.jpg` matches `depth/0001.png`, NeRF's `./train/r_0` matches `r_0.png`);
    /// when several poses match, the one sharing the most trailing folder names wins. For
    /// TUM, a file's stem is read as its time (`1305031102.175304.png`) and matched within
    /// [`DEFAULT_TIME_TOLERANCE_S`].
    ///
    /// # Errors
    /// [`Error::NoPose`] when a frame has no pose, matches several equally well, or the
    /// trajectory keys poses by order only (use [`Trajectory::poses_for_frames`]).
    pub fn poses_for_files<P: AsRef<Path>>(&self, frames: &[P]) -> Result<Vec<&PoseEntry>> {
        let has = |kind: fn(&PoseKey) -> bool| self.poses.iter().any(|e| kind(&e.key));
        if has(|k| matches!(k, PoseKey::Name(_))) {
            self.poses_by_name(frames)
        } else if has(|k| matches!(k, PoseKey::Timestamp(_))) {
            let times = frames
                .iter()
                .map(|frame| {
                    let frame = frame.as_ref();
                    let stem = frame.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    stem.parse::<f64>().map_err(|_| Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "the trajectory is keyed by time and `{stem}` is not a time"
                        ),
                        path: self.path.clone(),
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            self.poses_for_timestamps(&times, DEFAULT_TIME_TOLERANCE_S)
        } else {
            Err(Error::NoPose {
                frame: frames
                    .first()
                    .map_or_else(String::new, |f| f.as_ref().display().to_string()),
                reason: format!(
                    "a {} file gives poses in order, without names; match frames by order",
                    self.format
                ),
                path: self.path.clone(),
            })
        }
    }

    fn poses_by_name<P: AsRef<Path>>(&self, frames: &[P]) -> Result<Vec<&PoseEntry>> {
        // Each pose under its last path component and under that component's stem.
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, entry) in self.poses.iter().enumerate() {
            if let PoseKey::Name(name) = &entry.key {
                let last = name_components(name).last().copied().unwrap_or("");
                for key in [last, stem(last)] {
                    let list = by_name.entry(key).or_default();
                    if list.last() != Some(&index) {
                        list.push(index);
                    }
                }
            }
        }
        frames
            .iter()
            .map(|frame| {
                let frame = frame.as_ref();
                let text = frame.to_string_lossy();
                let frame_parts = name_components(&text);
                let last = frame_parts.last().copied().unwrap_or("");
                let mut candidates: Vec<usize> = [last, stem(last)]
                    .iter()
                    .filter_map(|key| by_name.get(key))
                    .flatten()
                    .copied()
                    .collect();
                candidates.sort_unstable();
                candidates.dedup();
                // Score: trailing folder names in common, then an exact file name.
                let score = |index: usize| {
                    let PoseKey::Name(name) = &self.poses[index].key else {
                        return (0, false);
                    };
                    let parts = name_components(name);
                    let (name_last, name_dirs) = parts.split_last().unwrap_or((&"", &[]));
                    let frame_dirs = frame_parts.split_last().map_or(&[][..], |(_, d)| d);
                    let common = name_dirs
                        .iter()
                        .rev()
                        .zip(frame_dirs.iter().rev())
                        .take_while(|(a, b)| a == b)
                        .count();
                    (common, *name_last == last)
                };
                let best = candidates.iter().map(|&i| score(i)).max();
                let winners: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| Some(score(i)) == best)
                    .collect();
                match winners.as_slice() {
                    [one] => Ok(&self.poses[*one]),
                    [] => Err(Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "no pose is named like `{last}` (the trajectory's first name is {})",
                            self.poses[0].key
                        ),
                        path: self.path.clone(),
                    }),
                    several => Err(Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "{} poses match equally well: {}",
                            several.len(),
                            several
                                .iter()
                                .map(|&i| self.poses[i].key.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        path: self.path.clone(),
                    }),
                }
            })
            .collect()
    }
}

/// Path components of a name as written in a trajectory (`/` or `\` separated), without
/// empty and `.` components.
fn name_components(name: &str) -> Vec<&str> {
    name.split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect()
}

/// A file name without its extension (`a.b.png` -> `a.b`; `.hidden` and `r_0` unchanged).
fn stem(file_name: &str) -> &str {
    match file_name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file_name,
    }
}

/// The file a trajectory is read from, for error messages.
struct Source<'a> {
    what: &'static str,
    path: &'a Path,
}

impl Source<'_> {
    /// An error at `line` (1-based).
    fn at(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::FileLine {
            what: self.what,
            line,
            reason: reason.into(),
            path: self.path.to_path_buf(),
        }
    }

    /// An error about the whole file.
    fn whole(&self, reason: impl Into<String>) -> Error {
        Error::FileFormat {
            what: self.what,
            reason: reason.into(),
            path: self.path.to_path_buf(),
        }
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        reason: format!("cannot read {what}: {e}"),
        path: path.to_path_buf(),
    })
}

/// The lines that hold data: `(1-based line number, whitespace-separated tokens)`, without
/// blank lines and `#` comments.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        (!line.is_empty() && !line.starts_with('#'))
            .then(|| (i + 1, line.split_whitespace().collect()))
    })
}

fn parse_number(token: &str) -> Result<f64, String> {
    let value: f64 = token
        .parse()
        .map_err(|_| format!("`{token}` is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("`{token}` is not a finite number"))
    }
}

/// Exactly `N` finite numbers laid out as `layout`.
fn parse_numbers<const N: usize>(tokens: &[&str], layout: &str) -> Result<[f64; N], String> {
    if tokens.len() != N {
        return Err(format!(
            "expected {N} numbers ({layout}), found {} values",
            tokens.len()
        ));
    }
    let mut values = [0.0; N];
    for (value, token) in values.iter_mut().zip(tokens) {
        *value = parse_number(token)?;
    }
    Ok(values)
}

fn parse_integer<T: FromStr>(token: &str, what: &str) -> Result<T, String> {
    token
        .parse()
        .map_err(|_| format!("{what} `{token}` is not a non-negative integer"))
}

/// A rotation from a quaternion `w + xi + yj + zk`, normalised when its norm is near 1.
fn unit_quaternion(w: f64, x: f64, y: f64, z: f64) -> Result<UnitQuaternion<f64>, String> {
    let q = Quaternion::new(w, x, y, z);
    let norm = q.norm();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(format!("the quaternion has norm {norm}"));
    }
    if (norm - 1.0).abs() > QUATERNION_NORM_TOLERANCE {
        return Err(format!(
            "the quaternion has norm {norm:.6}, far from 1 (are its values in another order?)"
        ));
    }
    Ok(UnitQuaternion::from_quaternion(q))
}

/// Why a 4x4 matrix is not rigid, and the row (0..4) to blame.
struct NotRigid {
    row: usize,
    reason: String,
}

/// A rigid transform from a 4x4 matrix, checked for rigidity.
fn rigid_from_matrix(m: &Matrix4<f64>) -> Result<Isometry3<f64>, NotRigid> {
    let last = [m[(3, 0)], m[(3, 1)], m[(3, 2)], m[(3, 3)]];
    if last
        .iter()
        .zip([0.0, 0.0, 0.0, 1.0])
        .any(|(v, expected)| (v - expected).abs() > LAST_ROW_TOLERANCE)
    {
        return Err(NotRigid {
            row: 3,
            reason: format!("the last row is {last:?}, not [0, 0, 0, 1]: not a rigid transform"),
        });
    }
    let r: Matrix3<f64> = m.fixed_view::<3, 3>(0, 0).into_owned();
    let off = (r.transpose() * r - Matrix3::identity()).amax();
    if off > ORTHONORMAL_TOLERANCE {
        return Err(NotRigid {
            row: 0,
            reason: format!(
                "the rotation part is not orthonormal (|R^T R - I| = {off:.2e} > \
                 {ORTHONORMAL_TOLERANCE:e}): scaled or sheared?"
            ),
        });
    }
    let det = r.determinant();
    if det <= 0.0 {
        return Err(NotRigid {
            row: 0,
            reason: format!(
                "the rotation part has determinant {det:.6}: a reflection, not a rotation"
            ),
        });
    }
    // Shepperd's method is exact for any angle (180 degrees included); normalising the
    // quaternion absorbs the small non-orthonormality allowed above.
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    let rotation = UnitQuaternion::new_normalize(q.into_inner());
    let translation = Translation3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)]);
    Ok(Isometry3::from_parts(translation, rotation))
}

fn is_colmap_path(path: &Path) -> bool {
    path.is_dir()
        || matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("images.txt" | "cameras.txt")
        )
}

fn detect_in_text(path: &Path, text: &str) -> Result<PoseFormat> {
    let src = Source {
        what: "camera trajectory",
        path,
    };
    let is_json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json || text.trim_start().starts_with('{') {
        return Ok(PoseFormat::Nerf);
    }
    let mut lines = data_lines(text);
    let Some((line, tokens)) = lines.next() else {
        return Err(src.whole("no poses (the file is empty or holds only comments)"));
    };
    let is_number = |t: &&str| t.parse::<f64>().is_ok();
    let is_integer = |t: &&str| t.parse::<i64>().is_ok();
    if tokens.len() == 3 && tokens.iter().all(is_integer) {
        if let Some((_, next)) = lines.next() {
            if next.len() == 4 && next.iter().all(is_number) {
                return Ok(PoseFormat::Log);
            }
        }
    }
    if tokens.len() >= 10
        && is_integer(&tokens[0])
        && tokens[1..8].iter().all(is_number)
        && is_integer(&tokens[8])
    {
        return Ok(PoseFormat::Colmap);
    }
    if tokens.iter().all(is_number) {
        match tokens.len() {
            8 => return Ok(PoseFormat::Tum),
            7 => return Ok(PoseFormat::Plain),
            _ => {}
        }
    }
    Err(src.at(
        line,
        format!(
            "cannot tell the format from `{}` ({} values): expected 8 numbers (TUM: timestamp \
             tx ty tz qx qy qz qw), 7 (tx ty tz qx qy qz qw), 3 integers followed by 4 rows of \
             a 4x4 matrix (Open3D .log), a COLMAP images.txt or a NeRF transforms.json; name \
             the format explicitly",
            tokens.join(" "),
            tokens.len()
        ),
    ))
}

/// `world_from_camera` from a translation and an `x y z w` quaternion, camera-to-world.
fn camera_to_world(values: &[f64], src: &Source, line: usize) -> Result<Isometry3<f64>> {
    let [tx, ty, tz, qx, qy, qz, qw] = values else {
        return Err(src.at(line, "expected tx ty tz qx qy qz qw"));
    };
    let rotation = unit_quaternion(*qw, *qx, *qy, *qz).map_err(|r| src.at(line, r))?;
    Ok(Isometry3::from_parts(
        Translation3::new(*tx, *ty, *tz),
        rotation,
    ))
}

fn parse_tum(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
    data_lines(text)
        .map(|(line, tokens)| {
            let values: [f64; 8] = parse_numbers(&tokens, "timestamp tx ty tz qx qy qz qw")
                .map_err(|r| src.at(line, r))?;
            Ok(PoseEntry {
                key: PoseKey::Timestamp(values[0]),
                world_from_camera: camera_to_world(&values[1..], src, line)?,
                intrinsics: None,
            })
        })
        .collect()
}

fn parse_plain(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
    data_lines(text)
        .enumerate()
        .map(|(index, (line, tokens))| {
            let values: [f64; 7] =
                parse_numbers(&tokens, "tx ty tz qx qy qz qw").map_err(|r| src.at(line, r))?;
            Ok(PoseEntry {
                key: PoseKey::Index(index),
                world_from_camera: camera_to_world(&values, src, line)?,
                intrinsics: None,
            })
        })
        .collect()
}

/// Open3D's `.log`: per pose a line of 3 integers (`i i i+1`; Open3D ignores it too) and 4
/// rows of the camera-to-world matrix. Poses are keyed by their order, as Open3D does.
fn parse_log(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
    let mut lines = data_lines(text);
    let mut poses = Vec::new();
    while let Some((header_line, tokens)) = lines.next() {
        if tokens.len() != 3 || tokens.iter().any(|t| t.parse::<i64>().is_err()) {
            return Err(src.at(
                header_line,
                format!(
                    "expected a line of 3 integers (`i i i+1`) before each 4x4 matrix, found `{}`",
                    tokens.join(" ")
                ),
            ));
        }
        let mut m = Matrix4::zeros();
        let mut row_lines = [0; 4];
        for (row, row_line) in row_lines.iter_mut().enumerate() {
            let Some((line, tokens)) = lines.next() else {
                return Err(src.at(
                    header_line,
                    format!("the file ends after {row} of the 4 rows of this pose's matrix"),
                ));
            };
            let values: [f64; 4] =
                parse_numbers(&tokens, "a row of the 4x4 matrix").map_err(|r| src.at(line, r))?;
            for (col, value) in values.into_iter().enumerate() {
                m[(row, col)] = value;
            }
            *row_line = line;
        }
        let world_from_camera = rigid_from_matrix(&m).map_err(|e| {
            src.at(
                row_lines[e.row],
                format!(
                    "{} (the matrix on lines {}-{})",
                    e.reason, row_lines[0], row_lines[3]
                ),
            )
        })?;
        poses.push(PoseEntry {
            key: PoseKey::Index(poses.len()),
            world_from_camera,
            intrinsics: None,
        });
    }
    Ok(poses)
}

/// COLMAP's `images.txt` and `cameras.txt` for a folder, either file, or another name
/// (`images.txt` content; `cameras.txt` beside it).
fn colmap_paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        return (path.join("images.txt"), path.join("cameras.txt"));
    }
    if path.file_name().and_then(|n| n.to_str()) == Some("cameras.txt") {
        return (path.with_file_name("images.txt"), path.to_path_buf());
    }
    (path.to_path_buf(), path.with_file_name("cameras.txt"))
}

fn read_colmap(path: &Path) -> Result<Trajectory> {
    let (images_path, cameras_path) = colmap_paths(path);
    let images_text = read_text(&images_path, "COLMAP images.txt")?;
    let cameras = if cameras_path.is_file() {
        let text = read_text(&cameras_path, "COLMAP cameras.txt")?;
        let src = Source {
            what: "COLMAP cameras.txt",
            path: &cameras_path,
        };
        Some(parse_colmap_cameras(&text, &src)?)
    } else {
        tracing::debug!(
            "no cameras.txt beside {}: poses without intrinsics",
            images_path.display()
        );
        None
    };
    let src = Source {
        what: PoseFormat::Colmap.what(),
        path: &images_path,
    };
    let poses = parse_colmap_images(&images_text, cameras.as_ref(), &src)?;
    if poses.is_empty() {
        return Err(src.whole("no images (the file is empty or holds only comments)"));
    }
    Ok(Trajectory {
        format: PoseFormat::Colmap,
        path: images_path,
        poses,
    })
}

/// `CAMERA_ID MODEL WIDTH HEIGHT PARAMS...` to intrinsics in our convention (`None` for
/// models that are not perspective).
fn parse_colmap_cameras(text: &str, src: &Source) -> Result<HashMap<u64, Option<Intrinsics>>> {
    let mut cameras = HashMap::new();
    for (line, tokens) in data_lines(text) {
        let at = |reason: String| src.at(line, reason);
        let [id, model, width, height, params @ ..] = tokens.as_slice() else {
            return Err(at(format!(
                "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., found {} values",
                tokens.len()
            )));
        };
        let id: u64 = parse_integer(id, "CAMERA_ID").map_err(at)?;
        let width: u32 = parse_integer(width, "WIDTH").map_err(at)?;
        let height: u32 = parse_integer(height, "HEIGHT").map_err(at)?;
        let params = params
            .iter()
            .map(|t| parse_number(t))
            .collect::<Result<Vec<f64>, String>>()
            .map_err(at)?;
        // Perspective models: parameter count, and where distortion starts (the first
        // parameters are `f cx cy` or `fx fy cx cy`).
        let layout = match *model {
            "SIMPLE_PINHOLE" => Some((3, 3)),
            "SIMPLE_RADIAL" => Some((4, 3)),
            "RADIAL" => Some((5, 3)),
            "PINHOLE" => Some((4, 4)),
            "OPENCV" => Some((8, 4)),
            "FULL_OPENCV" => Some((12, 4)),
            _ => None,
        };
        let intrinsics = match layout {
            Some((count, _)) if params.len() != count => {
                return Err(at(format!(
                    "camera model {model} has {count} parameters, found {}",
                    params.len()
                )));
            }
            Some((_, distortion_from)) => {
                let [fx, fy, cx, cy] = match params[..distortion_from] {
                    [f, cx, cy] => [f, f, cx, cy],
                    [fx, fy, cx, cy] => [fx, fy, cx, cy],
                    _ => return Err(at(format!("unexpected parameters for {model}"))),
                };
                let distortion = &params[distortion_from..];
                if distortion.iter().any(|&k| k != 0.0) {
                    tracing::warn!(
                        "camera {id} is {model}: its distortion {distortion:?} is ignored, only \
                         the pinhole part is used ({}, line {line})",
                        src.path.display()
                    );
                }
                // COLMAP's first pixel centre is (0.5, 0.5), ours (0, 0).
                let intrinsics = Intrinsics::new(fx, fy, cx - 0.5, cy - 0.5, width, height)
                    .map_err(|e| at(e.to_string()))?;
                Some(intrinsics)
            }
            None => {
                tracing::warn!(
                    "camera {id} is {model}, not a perspective model: its images get no \
                     intrinsics ({}, line {line})",
                    src.path.display()
                );
                None
            }
        };
        if cameras.insert(id, intrinsics).is_some() {
            return Err(at(format!("camera {id} is listed twice")));
        }
    }
    Ok(cameras)
}

/// Splits `line` into its first `n` whitespace-separated tokens and the rest, trimmed
/// (COLMAP's image NAME may hold spaces).
fn split_with_rest(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut rest = line.trim();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let end = rest.find(char::is_whitespace)?;
        tokens.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (!rest.is_empty()).then_some((tokens, rest))
}

/// The lines of `images.txt` that are not comments, `(1-based number, text)`, without
/// trailing blank lines; images take two lines each.
fn colmap_image_lines(text: &str) -> Vec<(usize, &str)> {
    // Blank lines count here: an image without 2D points has an empty second line.
    let mut lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with('#'))
        .collect();
    while lines.last().is_some_and(|(_, line)| line.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// `images.txt`: per image a line `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`
/// (camera_from_world) and a line of 2D points `X Y POINT3D_ID ...`, possibly empty.
fn parse_colmap_images(
    text: &str,
    cameras: Option<&HashMap<u64, Option<Intrinsics>>>,
    src: &Source,
) -> Result<Vec<PoseEntry>> {
    let lines = colmap_image_lines(text);
    let layout = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME";
    let mut poses = Vec::new();
    for pair in lines.chunks(2) {
        let (line, image) = pair[0];
        let at = |reason: String| src.at(line, reason);
        let Some((tokens, name)) = split_with_rest(image, 9) else {
            return Err(at(format!(
                "expected {layout}, found {} values",
                image.split_whitespace().count()
            )));
        };
        let id: u64 = parse_integer(tokens[0], "IMAGE_ID").map_err(at)?;
        let values = tokens[1..8]
            .iter()
            .map(|t| parse_number(t))
            .collect::<Result<Vec<f64>, String>>()
            .map_err(at)?;
        let camera_id: u64 = parse_integer(tokens[8], "CAMERA_ID").map_err(at)?;
        let rotation = unit_quaternion(values[0], values[1], values[2], values[3]).map_err(at)?;
        let camera_from_world =
            Isometry3::from_parts(Translation3::new(values[4], values[5], values[6]), rotation);
        if let Some(&(points_line, points)) = pair.get(1) {
            let count = points.split_whitespace().count();
            if count % 3 != 0 {
                return Err(src.at(
                    points_line,
                    format!(
                        "expected the 2D points of image {id} as `X Y POINT3D_ID` triples (or \
                         an empty line), found {count} values; every image takes two lines"
                    ),
                ));
            }
        }
        let intrinsics = match cameras {
            None => None,
            Some(cameras) => *cameras.get(&camera_id).ok_or_else(|| {
                at(format!(
                    "image {id} uses camera {camera_id}, which cameras.txt does not list"
                ))
            })?,
        };
        poses.push(PoseEntry {
            key: PoseKey::Name(name.to_owned()),
            world_from_camera: camera_from_world.inverse(),
            intrinsics,
        });
    }
    Ok(poses)
}

/// The rotation from OpenGL camera axes (x right, y up, z backward) to OpenCV ones (x right,
/// y down, z forward): half a turn about x, `diag(1, -1, -1)`.
fn opengl_from_opencv() -> UnitQuaternion<f64> {
    UnitQuaternion::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI)
}

/// `transforms.json`: the file's camera settings, each frame may override them.
#[derive(Deserialize)]
struct NerfFile {
    frames: Vec<NerfFrame>,
    #[serde(flatten)]
    camera: NerfCamera,
}

#[derive(Deserialize)]
struct NerfFrame {
    file_path: String,
    /// Checked while parsing, so that errors carry the line of the matrix.
    #[serde(rename = "transform_matrix", deserialize_with = "opengl_matrix")]
    world_from_opengl_camera: Isometry3<f64>,
    #[serde(flatten)]
    camera: NerfCamera,
}

/// Camera settings of instant-ngp / nerfstudio / Blender files, all optional.
#[derive(Clone, Debug, Default, Deserialize)]
struct NerfCamera {
    #[serde(default, deserialize_with = "positive")]
    fl_x: Option<f64>,
    #[serde(default, deserialize_with = "positive")]
    fl_y: Option<f64>,
    cx: Option<f64>,
    cy: Option<f64>,
    #[serde(default, deserialize_with = "image_side")]
    w: Option<u32>,
    #[serde(default, deserialize_with = "image_side")]
    h: Option<u32>,
    #[serde(default, deserialize_with = "field_of_view")]
    camera_angle_x: Option<f64>,
    #[serde(default, deserialize_with = "field_of_view")]
    camera_angle_y: Option<f64>,
    k1: Option<f64>,
    k2: Option<f64>,
    k3: Option<f64>,
    k4: Option<f64>,
    p1: Option<f64>,
    p2: Option<f64>,
    camera_model: Option<String>,
}

impl NerfCamera {
    /// These settings, completed by `fallback` where absent.
    fn or(&self, fallback: &Self) -> Self {
        Self {
            fl_x: self.fl_x.or(fallback.fl_x),
            fl_y: self.fl_y.or(fallback.fl_y),
            cx: self.cx.or(fallback.cx),
            cy: self.cy.or(fallback.cy),
            w: self.w.or(fallback.w),
            h: self.h.or(fallback.h),
            camera_angle_x: self.camera_angle_x.or(fallback.camera_angle_x),
            camera_angle_y: self.camera_angle_y.or(fallback.camera_angle_y),
            k1: self.k1.or(fallback.k1),
            k2: self.k2.or(fallback.k2),
            k3: self.k3.or(fallback.k3),
            k4: self.k4.or(fallback.k4),
            p1: self.p1.or(fallback.p1),
            p2: self.p2.or(fallback.p2),
            camera_model: self
                .camera_model
                .clone()
                .or_else(|| fallback.camera_model.clone()),
        }
    }

    fn has_distortion(&self) -> bool {
        [self.k1, self.k2, self.k3, self.k4, self.p1, self.p2]
            .iter()
            .any(|k| k.is_some_and(|k| k != 0.0))
    }

    fn is_perspective(&self) -> bool {
        self.camera_model
            .as_deref()
            .is_none_or(|m| matches!(m, "OPENCV" | "PINHOLE" | "SIMPLE_PINHOLE"))
    }

    /// Intrinsics when the image size and a focal length (or field of view) are known.
    /// instant-ngp / nerfstudio's `cx`, `cy` put the first pixel centre at 0.5, ours at 0.
    fn intrinsics(&self) -> Result<Option<Intrinsics>> {
        let (Some(width), Some(height)) = (self.w, self.h) else {
            return Ok(None);
        };
        if !self.is_perspective() {
            return Ok(None);
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let focal = |side: f64, angle: Option<f64>| angle.map(|a| 0.5 * side / (0.5 * a).tan());
        let fx = self.fl_x.or_else(|| focal(w, self.camera_angle_x));
        let fy = self.fl_y.or_else(|| focal(h, self.camera_angle_y));
        let (fx, fy) = match (fx, fy) {
            (Some(fx), Some(fy)) => (fx, fy),
            (Some(f), None) | (None, Some(f)) => (f, f),
            (None, None) => return Ok(None),
        };
        let cx = self.cx.unwrap_or(0.5 * w) - 0.5;
        let cy = self.cy.unwrap_or(0.5 * h) - 0.5;
        Intrinsics::new(fx, fy, cx, cy, width, height).map(Some)
    }
}

fn opengl_matrix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Isometry3<f64>, D::Error> {
    deserializer.deserialize_seq(RigidMatrixVisitor)
}

/// Reads 4 rows of 4 numbers and checks rigidity inside the visitor, so that serde_json
/// reports errors at the matrix (its closing bracket) rather than at the end of the frame.
struct RigidMatrixVisitor;

impl<'de> de::Visitor<'de> for RigidMatrixVisitor {
    type Value = Isometry3<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 4x4 matrix as 4 rows of 4 numbers")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut m = Matrix4::zeros();
        for row in 0..4 {
            let values: [f64; 4] = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(row, &self))?;
            for (col, value) in values.into_iter().enumerate() {
                m[(row, col)] = value;
            }
        }
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(5, &self));
        }
        rigid_from_matrix(&m).map_err(|e| {
            de::Error::custom(format!(
                "transform_matrix row {} of 4: {}",
                e.row + 1,
                e.reason
            ))
        })
    }
}

fn positive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value = Option::<f64>::deserialize(deserializer)?;
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(de::Error::custom(format!(
            "focal length {v} must be positive"
        ))),
        _ => Ok(value),
    }
}

fn field_of_view<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value = Option::<f64>::deserialize(deserializer)?;
    match value {
        Some(v) if !(v > 0.0 && v < std::f64::consts::PI) => Err(de::Error::custom(format!(
            "field of view {v} radians must lie in (0, pi)"
        ))),
        _ => Ok(value),
    }
}

fn image_side<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    // instant-ngp writes sizes as floats (`"w": 1920.0`).
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(v) if v >= 1.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0 => {
            // Exact: v is a whole number in u32's range.
            Ok(Some(v as u32))
        }
        Some(v) => Err(de::Error::custom(format!(
            "image size {v} must be a positive whole number"
        ))),
    }
}

/// A serde_json error as [`Error::FileLine`], its position moved into the fields.
fn json_error(e: &serde_json::Error, src: &Source) -> Error {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = message.strip_suffix(&suffix).unwrap_or(&message);
    src.at(e.line().max(1), format!("{reason} (column {})", e.column()))
}

fn parse_nerf(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
    let file: NerfFile = serde_json::from_str(text).map_err(|e| json_error(&e, src))?;
    let mut warned = false;
    file.frames
        .into_iter()
        .map(|frame| {
            let camera = frame.camera.or(&file.camera);
            if !warned && (camera.has_distortion() || !camera.is_perspective()) {
                warned = true;
                tracing::warn!(
                    "camera model {} with distortion k1..p2 = {:?}: distortion is ignored, \
                     non-perspective models get no intrinsics ({})",
                    camera.camera_model.as_deref().unwrap_or("(unnamed)"),
                    [camera.k1, camera.k2, camera.k3, camera.k4, camera.p1, camera.p2],
                    src.path.display()
                );
            }
            let intrinsics = camera.intrinsics().map_err(|e| {
                src.whole(format!("intrinsics of frame `{}`: {e}", frame.file_path))
            })?;
            Ok(PoseEntry {
                key: PoseKey::Name(frame.file_path),
                world_from_camera: frame.world_from_opengl_camera * opengl_from_opencv(),
                intrinsics,
            })
        })
        .collect()
}

/// A 3D point of a COLMAP model where one image sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Pixel position in the convention of [`Intrinsics`] (pixel centres at integer
    /// coordinates: COLMAP's `X - 0.5`, `Y - 0.5`).
    pub u: f64,
    pub v: f64,
    /// The point in the model's world frame.
    pub world: Point3<f64>,
}

/// The sparse points of a COLMAP text model, per image name (as `images.txt` writes it):
/// each image's `X Y POINT3D_ID` triples that refer to a point of `points3D.txt`, with that
/// point's position. Used to put relative depth on the model's scale, image by image.
///
/// `path` is the model's folder, its `images.txt` or its `cameras.txt`, as for
/// [`read_trajectory`]; `points3D.txt` lies beside `images.txt`.
///
/// ```
/// use anydepth_core::pose::read_colmap_observations;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(
///     dir.path().join("images.txt"),
///     "1 1 0 0 0 0 0 0 1 a.jpg\n10.5 20.5 7 3.0 4.0 -1\n",
/// )?;
/// std::fs::write(dir.path().join("points3D.txt"), "7 0.1 0.2 2.0 255 0 0 0.5 1 0\n")?;
/// let seen = read_colmap_observations(dir.path())?;
/// let a = &seen["a.jpg"];
/// assert_eq!(a.len(), 1); // POINT3D_ID -1: no 3D point
/// assert_eq!((a[0].u, a[0].v), (10.0, 20.0));
/// assert_eq!(a[0].world.z, 2.0);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Io`] when either file cannot be read, [`Error::FileLine`] naming the file and
/// line for a malformed line or a `POINT3D_ID` that `points3D.txt` does not hold.
pub fn read_colmap_observations(path: &Path) -> Result<HashMap<String, Vec<Observation>>> {
    let (images_path, _) = colmap_paths(path);
    let points_path = images_path.with_file_name("points3D.txt");
    let points_text = read_text(&points_path, "COLMAP points3D.txt")?;
    let src = Source {
        what: "COLMAP points3D.txt",
        path: &points_path,
    };
    let mut points = HashMap::new();
    for (line, tokens) in data_lines(&points_text) {
        let at = |reason: String| src.at(line, reason);
        if tokens.len() < 8 {
            return Err(at(format!(
                "expected POINT3D_ID X Y Z R G B ERROR TRACK..., found {} values",
                tokens.len()
            )));
        }
        let id: u64 = parse_integer(tokens[0], "POINT3D_ID").map_err(at)?;
        let [x, y, z] = parse_numbers::<3>(&tokens[1..4], "X Y Z").map_err(at)?;
        points.insert(id, Point3::new(x, y, z));
    }
    let images_text = read_text(&images_path, "COLMAP images.txt")?;
    let src = Source {
        what: PoseFormat::Colmap.what(),
        path: &images_path,
    };
    let mut seen = HashMap::new();
    for pair in colmap_image_lines(&images_text).chunks(2) {
        let (line, image) = pair[0];
        let Some((_, name)) = split_with_rest(image, 9) else {
            return Err(src.at(
                line,
                "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME",
            ));
        };
        let mut observations = Vec::new();
        if let Some(&(line, text)) = pair.get(1) {
            let at = |reason: String| src.at(line, reason);
            let tokens: Vec<&str> = text.split_whitespace().collect();
            if !tokens.len().is_multiple_of(3) {
                return Err(at(format!(
                    "expected `X Y POINT3D_ID` triples, found {} values",
                    tokens.len()
                )));
            }
            for triple in tokens.chunks_exact(3) {
                if triple[2] == "-1" {
                    continue;
                }
                let [x, y] = parse_numbers::<2>(&triple[..2], "X Y").map_err(at)?;
                let id: u64 = parse_integer(triple[2], "POINT3D_ID").map_err(at)?;
                let world = *points.get(&id).ok_or_else(|| {
                    at(format!(
                        "POINT3D_ID {id} is not in {}",
                        points_path.display()
                    ))
                })?;
                observations.push(Observation {
                    u: x - 0.5,
                    v: y - 0.5,
                    world,
                });
            }
        }
        seen.insert(name.to_owned(), observations);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    use nalgebra::Point3;

    const REDWOOD: &str = "../../../shared/data/redwood-livingroom";
    const KINECT: &str = "../../../shared/data/kinect-office";

    fn shared(relative: &str) -> Option<PathBuf> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        if path.exists() {
            Some(path)
        } else {
            eprintln!("skipped: {} is absent", path.display());
            None
        }
    }

    /// A camera placed with a look-at, built twice and independently: with OpenCV axes and
    /// with OpenGL axes (as Blender / NeRF tools build it).
    struct Camera {
        eye: Point3<f64>,
        target: Point3<f64>,
        up: Vector3<f64>,
    }

    impl Camera {
        /// x right, y down, z forward (toward the target).
        fn world_from_camera(&self) -> Isometry3<f64> {
            let z = (self.target - self.eye).normalize();
            let x = z.cross(&self.up).normalize();
            let y = z.cross(&x);
            let r = Rotation3::from_basis_unchecked(&[x, y, z]);
            Isometry3::from_parts(
                Translation3::from(self.eye.coords),
                UnitQuaternion::from_rotation_matrix(&r),
            )
        }

        /// The OpenGL `lookAt` camera-to-world matrix: x right, y up, z backward.
        fn opengl_matrix(&self) -> Matrix4<f64> {
            let back = (self.eye - self.target).normalize();
            let right = self.up.cross(&back).normalize();
            let up = back.cross(&right);
            let mut m = Matrix4::identity();
            for (col, axis) in [right, up, back, self.eye.coords].iter().enumerate() {
                for row in 0..3 {
                    m[(row, col)] = axis[row];
                }
            }
            m
        }

        /// The unit vectors of "right" and "up" as a viewer looking at the target sees them.
        fn right_and_up(&self) -> (Vector3<f64>, Vector3<f64>) {
            let forward = (self.target - self.eye).normalize();
            let right = forward.cross(&self.up).normalize();
            (right, right.cross(&forward))
        }
    }

    /// The point both cameras see, and the two cameras (the second rolled).
    fn scene() -> (Point3<f64>, [Camera; 2]) {
        let x = Point3::new(0.3, 0.5, 1.1);
        let cameras = [
            Camera {
                eye: Point3::new(2.0, -3.0, 1.5),
                target: Point3::new(0.5, 0.2, 0.8),
                up: Vector3::z(),
            },
            Camera {
                eye: Point3::new(-1.5, 1.0, 2.5),
                target: Point3::new(0.0, 0.4, 0.9),
                up: Vector3::new(0.3, 0.0, 1.0),
            },
        ];
        (x, cameras)
    }

    fn close_points(a: &Point3<f64>, b: &Point3<f64>) -> bool {
        (a - b).norm() < 1e-9
    }

    /// The convention check shared by every format: the camera-space observation of `x`
    /// (OpenCV axes, from the true pose) maps back onto `x` with the pose that was read, is
    /// in front of the camera, and points displaced right of / above the target appear right
    /// (x > 0) / above (y < 0) in the camera read.
    fn assert_convention(read: &Isometry3<f64>, camera: &Camera, x: &Point3<f64>) {
        let truth = camera.world_from_camera();
        let p_in_camera = truth.inverse() * x;
        assert!(p_in_camera.z > 0.0, "{p_in_camera:?}");
        let back = read * p_in_camera;
        assert!(close_points(&back, x), "{back:?} != {x:?}");
        let seen = read.inverse() * x;
        assert!(seen.z > 0.0, "behind the camera: {seen:?}");
        let (right, up) = camera.right_and_up();
        let to_the_right = read.inverse() * (camera.target + 0.3 * right);
        let above = read.inverse() * (camera.target + 0.3 * up);
        assert!(to_the_right.x > 0.0 && to_the_right.y.abs() < 1e-9);
        assert!(above.y < 0.0 && above.x.abs() < 1e-9);
        // The target is on the optical axis.
        let target = read.inverse() * camera.target;
        assert!(target.x.abs() < 1e-9 && target.y.abs() < 1e-9 && target.z > 0.0);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes");
        path
    }

    fn matrix_rows(m: &Matrix4<f64>) -> String {
        (0..4)
            .map(|r| {
                let row: Vec<String> = (0..4).map(|c| m[(r, c)].to_string()).collect();
                row.join(" ") + "\n"
            })
            .collect()
    }

    #[test]
    fn tum_convention() {
        let (x, cameras) = scene();
        let mut text = "# ground truth trajectory\n# timestamp tx ty tz qx qy qz qw\n".to_owned();
        for (camera, t) in cameras.iter().zip([1305031102.175304, 1305031102.211214]) {
            let pose = camera.world_from_camera();
            let (v, q) = (pose.translation.vector, pose.rotation);
            text += &format!(
                "{t} {} {} {} {} {} {} {}\n",
                v.x, v.y, v.z, q.i, q.j, q.k, q.w
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "groundtruth.txt", &text);
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Tum);
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.poses.len(), 2);
        assert_eq!(
            trajectory.poses[1].key,
            PoseKey::Timestamp(1305031102.211214)
        );
        for (entry, camera) in trajectory.poses.iter().zip(&cameras) {
            assert_convention(&entry.world_from_camera, camera, &x);
        }
        // By time, within the tolerance, in any order.
        let by_time = trajectory
            .poses_for_timestamps(&[1305031102.2, 1305031102.18], DEFAULT_TIME_TOLERANCE_S)
            .expect("within tolerance");
        assert_eq!(by_time[0], &trajectory.poses[1]);
        assert_eq!(by_time[1], &trajectory.poses[0]);
        let by_file = trajectory
            .poses_for_files(&["rgb/1305031102.211214.png"])
            .expect("stem is a time");
        assert_eq!(by_file[0], &trajectory.poses[1]);
        let message = trajectory
            .poses_for_timestamps(&[1305031102.3], DEFAULT_TIME_TOLERANCE_S)
            .expect_err("too far")
            .to_string();
        assert!(message.contains("groundtruth.txt"), "{message}");
        assert!(trajectory.poses_for_timestamps(&[1.0], f64::NAN).is_err());
        assert!(trajectory.poses_for_files(&["rgb/frame.png"]).is_err());
    }

    #[test]
    fn plain_convention() {
        let (x, cameras) = scene();
        let mut text = String::new();
        for camera in &cameras {
            let pose = camera.world_from_camera();
            let (v, q) = (pose.translation.vector, pose.rotation);
            text += &format!("{} {} {} {} {} {} {}\n", v.x, v.y, v.z, q.i, q.j, q.k, q.w);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "pose.txt", &text);
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Plain);
        let trajectory = read_trajectory(&path, None).expect("reads");
        let poses = trajectory.poses_for_frames(2).expect("two frames");
        for (entry, camera) in poses.iter().zip(&cameras) {
            assert_convention(&entry.world_from_camera, camera, &x);
        }
        assert_eq!(poses[1].key, PoseKey::Index(1));
        let message = trajectory
            .poses_for_files(&["a.png"])
            .expect_err("no names");
        assert!(matches!(message, Error::NoPose { .. }), "{message}");
    }

    #[test]
    fn log_convention() {
        let (x, cameras) = scene();
        let mut text = String::new();
        for (i, camera) in cameras.iter().enumerate() {
            text += &format!("{i}\t{i}\t{}\n", i + 1);
            text += &matrix_rows(&camera.world_from_camera().to_homogeneous());
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "trajectory.log", &text);
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Log);
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.format, PoseFormat::Log);
        for (entry, camera) in trajectory.poses.iter().zip(&cameras) {
            assert_convention(&entry.world_from_camera, camera, &x);
        }
    }

    /// COLMAP writes camera_from_world, quaternion w first, and its pixel (0, 0) is the
    /// top-left corner of the image.
    #[test]
    fn colmap_convention_and_intrinsics() {
        let (x, cameras) = scene();
        let mut images = "# Image list with two lines of data per image:\n\
                          #   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n\
                          #   POINTS2D[] as (X, Y, POINT3D_ID)\n\
                          # Number of images: 2, mean observations per image: 1\n"
            .to_owned();
        let points = ["120.5 80.25 7 300.0 200.0 -1", ""];
        for (i, camera) in cameras.iter().enumerate() {
            let camera_from_world = camera.world_from_camera().inverse();
            let (t, q) = (
                camera_from_world.translation.vector,
                camera_from_world.rotation,
            );
            images += &format!(
                "{} {} {} {} {} {} {} {} {} images/frame {:04}.jpg\n{}\n",
                i + 1,
                q.w,
                q.i,
                q.j,
                q.k,
                t.x,
                t.y,
                t.z,
                i + 1,
                i,
                points[i]
            );
        }
        // Camera 1 as COLMAP would write it: PINHOLE fx fy cx cy, cx in corner coordinates.
        let ours = Intrinsics::new(500.0, 510.0, 319.5, 239.5, 640, 480).expect("valid");
        let cameras_txt = format!(
            "# Camera list with one line of data per camera:\n\
             1 PINHOLE 640 480 {} {} {} {}\n\
             2 SIMPLE_RADIAL 320 240 300 160 120 0.01\n",
            ours.fx,
            ours.fy,
            ours.cx + 0.5,
            ours.cy + 0.5
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let images_path = write(dir.path(), "images.txt", &images);
        write(dir.path(), "cameras.txt", &cameras_txt);
        for path in [dir.path().to_path_buf(), images_path.clone()] {
            assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Colmap);
        }
        let trajectory = read_trajectory(dir.path(), None).expect("reads");
        assert_eq!(trajectory.path, images_path);
        assert_eq!(
            trajectory.poses[1].key,
            PoseKey::Name("images/frame 0001.jpg".to_owned())
        );
        for (entry, camera) in trajectory.poses.iter().zip(&cameras) {
            assert_convention(&entry.world_from_camera, camera, &x);
        }
        // Intrinsics round trip with the half-pixel shift.
        assert_eq!(trajectory.poses[0].intrinsics, Some(ours));
        let second = trajectory.poses[1].intrinsics.expect("SIMPLE_RADIAL");
        assert_eq!(
            (second.fx, second.fy, second.cx, second.cy),
            (300.0, 300.0, 159.5, 119.5)
        );
        assert_eq!(trajectory.intrinsics(), None);
        // The pixel where COLMAP projects X, shifted by half a pixel, is ours.
        let p_in_camera = cameras[0].world_from_camera().inverse() * x;
        let u_colmap = 500.0 * p_in_camera.x / p_in_camera.z + 320.0;
        let v_colmap = 510.0 * p_in_camera.y / p_in_camera.z + 240.0;
        let seen = trajectory.poses[0].world_from_camera.inverse() * x;
        let (u, v) = ours.project(&seen).expect("in front");
        assert!((u - (u_colmap - 0.5)).abs() < 1e-9 && (v - (v_colmap - 0.5)).abs() < 1e-9);
        // By name: extension and folder may differ.
        let by_name = trajectory
            .poses_for_files(&["/data/depth/frame 0001.png", "frame 0000.jpg"])
            .expect("matches stems");
        assert_eq!(by_name[0], &trajectory.poses[1]);
        assert_eq!(by_name[1], &trajectory.poses[0]);
        let message = trajectory
            .poses_for_files(&["frame 0002.png"])
            .expect_err("absent")
            .to_string();
        assert!(
            message.contains("frame 0002.png") && message.contains("images.txt"),
            "{message}"
        );
        // Without cameras.txt, poses only.
        let alone = tempfile::tempdir().expect("temp dir");
        let path = write(alone.path(), "model.txt", &images);
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Colmap);
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.poses[0].intrinsics, None);
        assert_convention(&trajectory.poses[0].world_from_camera, &cameras[0], &x);
    }

    #[test]
    fn colmap_observations_give_depth_in_each_camera() {
        let (x, cameras) = scene();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut images = String::new();
        for (i, camera) in cameras.iter().enumerate() {
            let c = camera.world_from_camera().inverse();
            let q = c.rotation.quaternion();
            let t = c.translation.vector;
            // Where the camera sees x, in COLMAP's corner-origin pixels (fx 500, c 320/240).
            let p = c * x;
            let (u, v) = (500.0 * p.x / p.z + 320.5, 500.0 * p.y / p.z + 240.5);
            images.push_str(&format!(
                "{} {} {} {} {} {} {} {} 1 img{i}.jpg\n1.5 2.5 -1 {u} {v} 42\n",
                i + 1,
                q.w,
                q.i,
                q.j,
                q.k,
                t.x,
                t.y,
                t.z
            ));
        }
        write(dir.path(), "images.txt", &images);
        write(
            dir.path(),
            "points3D.txt",
            &format!(
                "# id x y z r g b err track\n42 {} {} {} 1 2 3 0.1 1 1 2 1\n",
                x.x, x.y, x.z
            ),
        );
        let seen = read_colmap_observations(dir.path()).expect("reads");
        let trajectory = read_trajectory(dir.path(), None).expect("reads");
        for (i, entry) in trajectory.poses.iter().enumerate() {
            let observed = &seen[&format!("img{i}.jpg")];
            assert_eq!(observed.len(), 1);
            let o = observed[0];
            // Back in the camera, the point is where the pixel says, in our convention.
            let p = entry.world_from_camera.inverse() * o.world;
            assert!((500.0 * p.x / p.z + 320.0 - o.u).abs() < 1e-9);
            assert!((500.0 * p.y / p.z + 240.0 - o.v).abs() < 1e-9);
        }

        // A 2D point naming a 3D point that is not there, and a malformed points3D line.
        write(
            dir.path(),
            "images.txt",
            "1 1 0 0 0 0 0 0 1 a.jpg\n1 2 43\n",
        );
        let err = read_colmap_observations(dir.path()).expect_err("unknown id");
        assert!(matches!(err, Error::FileLine { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("POINT3D_ID 43"), "{err}");
        write(dir.path(), "points3D.txt", "42 0 0 x 1 2 3 0.1\n");
        let err = read_colmap_observations(dir.path()).expect_err("bad number");
        assert!(matches!(err, Error::FileLine { line: 1, .. }), "{err}");
    }

    #[test]
    fn nerf_convention_and_intrinsics() {
        let (x, cameras) = scene();
        let frames: Vec<serde_json::Value> = cameras
            .iter()
            .enumerate()
            .map(|(i, camera)| {
                let m = camera.opengl_matrix();
                let rows: Vec<Vec<f64>> = (0..4)
                    .map(|r| (0..4).map(|c| m[(r, c)]).collect())
                    .collect();
                serde_json::json!({
                    "file_path": format!("./train/r_{i}"),
                    "transform_matrix": rows,
                })
            })
            .collect();
        let json = serde_json::json!({
            "camera_angle_x": 0.69,
            "fl_x": 500.0, "fl_y": 510.0, "cx": 320.0, "cy": 240.0, "w": 640.0, "h": 480,
            "aabb_scale": 16,
            "frames": frames,
        });
        let text = serde_json::to_string_pretty(&json).expect("serializes");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "transforms.json", &text);
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Nerf);
        let trajectory = read_trajectory(&path, None).expect("reads");
        for (entry, camera) in trajectory.poses.iter().zip(&cameras) {
            assert_convention(&entry.world_from_camera, camera, &x);
        }
        assert_eq!(
            trajectory.intrinsics(),
            Some(Intrinsics::new(500.0, 510.0, 319.5, 239.5, 640, 480).expect("valid"))
        );
        let by_name = trajectory
            .poses_for_files(&["train/r_1.png"])
            .expect("matches");
        assert_eq!(by_name[0], &trajectory.poses[1]);

        // Blender's layout: only the field of view, and per-frame sizes.
        let blender = serde_json::json!({
            "camera_angle_x": std::f64::consts::FRAC_PI_2,
            "frames": [{"file_path": "a", "w": 800, "h": 600,
                        "transform_matrix": cameras[0].opengl_matrix().transpose()
                            .as_slice().chunks(4).map(<[f64]>::to_vec).collect::<Vec<_>>()}],
        });
        let path = write(dir.path(), "blender.json", &blender.to_string());
        let trajectory = read_trajectory(&path, None).expect("reads");
        let camera = trajectory.poses[0].intrinsics.expect("size and angle");
        assert!((camera.fx - 400.0).abs() < 1e-9 && (camera.fy - 400.0).abs() < 1e-9);
        assert_eq!((camera.cx, camera.cy), (399.5, 299.5));
        assert_convention(&trajectory.poses[0].world_from_camera, &cameras[0], &x);
    }

    #[test]
    fn redwood_logs() {
        let Some(dir) = shared(REDWOOD) else { return };
        for name in ["odometry.log", "trajectory.log"] {
            let path = dir.join(name);
            assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Log);
            let trajectory = read_trajectory(&path, None).expect("reads");
            assert_eq!(trajectory.poses.len(), 5, "{name}");
            let keys: Vec<_> = trajectory.poses.iter().map(|e| e.key.clone()).collect();
            assert_eq!(keys, (0..5).map(PoseKey::Index).collect::<Vec<_>>());
            assert_eq!(trajectory.poses_for_frames(5).expect("five").len(), 5);
            let message = trajectory.poses_for_frames(6).expect_err("six").to_string();
            assert!(
                message.contains('6') && message.contains('5') && message.contains(name),
                "{message}"
            );
        }
        // odometry.log starts with the identity rotation at (2, 2, -0.3) and moves
        // smoothly: about 2.5 cm and under a degree per frame.
        let odometry = read_trajectory(&dir.join("odometry.log"), None).expect("reads");
        let first = odometry.poses[0].world_from_camera;
        assert_eq!(first.rotation.angle(), 0.0);
        assert_eq!(first.translation.vector, Vector3::new(2.0, 2.0, -0.3));
        for pair in odometry.poses.windows(2) {
            let step = pair[0].world_from_camera.inverse() * pair[1].world_from_camera;
            assert!(step.translation.vector.norm() < 0.05, "{step:?}");
            assert!(step.rotation.angle() < 1f64.to_radians(), "{step:?}");
        }
    }

    #[test]
    fn kinect_pose_txt() {
        let Some(dir) = shared(KINECT) else { return };
        let path = dir.join("pose.txt");
        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Plain);
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.poses.len(), 5);
        let first = trajectory.poses[0].world_from_camera;
        assert_eq!(
            first.translation.vector,
            Vector3::new(-0.228993, 0.00645704, 0.0287837)
        );
        // The last line has no newline; it still counts.
        let last = trajectory.poses[4].world_from_camera;
        assert!(
            (last.translation.vector - Vector3::new(-1.55819, -0.301094, 1.6215)).norm() < 1e-12
        );
        assert!(trajectory.poses_for_frames(6).is_err());
        assert_eq!(trajectory.poses_for_frames(3).expect("three").len(), 3);
    }

    /// Writes `text` as `name`, reads it as `format` and checks the error names the file
    /// and the line.
    fn assert_error_at(
        format: Option<PoseFormat>,
        name: &str,
        text: &str,
        line: usize,
        says: &str,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), name, text);
        let error = read_trajectory(&path, format).expect_err(text);
        let message = error.to_string();
        assert!(
            matches!(error, Error::FileLine { line: l, .. } if l == line),
            "expected line {line}: {message}"
        );
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(message.contains(name), "{message}");
        assert!(message.contains(says), "expected `{says}` in: {message}");
    }

    #[test]
    fn bad_text_lines_name_file_and_line() {
        let tum = Some(PoseFormat::Tum);
        let good = "1.0 0 0 0 0 0 0 1\n";
        let cases = [
            (tum, "# header\n1.0 0 0 0 0 0 1\n", 2, "expected 8 numbers"),
            (
                tum,
                &format!("{good}2.0 0 0 x 0 0 0 1\n"),
                2,
                "`x` is not a number",
            ),
            (
                tum,
                &format!("{good}\n2.0 0 0 NaN 0 0 0 1\n"),
                3,
                "not a finite",
            ),
            (tum, "1.0 0 0 inf 0 0 0 1\n", 1, "not a finite"),
            (tum, "1.0 0 0 0 0 0 0 0\n", 1, "norm 0"),
            (tum, "1.0 0 0 0 1 1 1 1\n", 1, "far from 1"),
            (
                None,
                "1.0 0 0 0 1 0 0 0\n2 0 0 0 0 0 1\n",
                2,
                "expected 8 numbers",
            ),
            (
                Some(PoseFormat::Plain),
                "0 0 0 0 0 0 1\n0 0 0 0 0 1\n",
                2,
                "expected 7",
            ),
            (
                None,
                "0 0 0 0 0 0 1\n0 0 0 0.5 0.5 0.5 0.5 9\n",
                2,
                "expected 7",
            ),
        ];
        for (format, text, line, says) in cases {
            assert_error_at(format, "poses.txt", text, line, says);
        }
    }

    #[test]
    fn bad_log_matrices_name_file_and_line() {
        let log = Some(PoseFormat::Log);
        let identity = "1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n";
        let cases = [
            // Scaled by 2: not orthonormal, blamed on the first row.
            (
                format!("0 0 1\n{identity}1 1 2\n2 0 0 0\n0 2 0 0\n0 0 2 0\n0 0 0 1\n"),
                7,
                "orthonormal",
            ),
            // A mirror.
            (
                "0 0 1\n-1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n".to_owned(),
                2,
                "determinant",
            ),
            // A projective last row.
            (
                "0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0.5 1\n".to_owned(),
                5,
                "last row",
            ),
            // Missing metadata, a short row, a file cut inside a matrix.
            (format!("0 0 1\n{identity}{identity}"), 6, "3 integers"),
            (
                "0 0 1\n1 0 0 0\n0 1 0\n".to_owned(),
                3,
                "expected 4 numbers",
            ),
            (
                format!("0 0 1\n{identity}\n1 1 2\n1 0 0 0\n"),
                7,
                "ends after 1 of the 4 rows",
            ),
            (
                "0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1e999\n".to_owned(),
                5,
                "finite",
            ),
        ];
        for (text, line, says) in cases {
            assert_error_at(log, "trajectory.log", &text, line, says);
        }
        // Slightly off orthonormal, as printed with six digits: accepted and made a rotation.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "ok.log",
            "0 0 1\n1.000001 0 0 0\n0 1 0 0\n0 0 0.999999 0\n0 0 0 1\n",
        );
        let pose = read_trajectory(&path, None).expect("nearly rigid").poses[0].world_from_camera;
        assert!((pose.rotation.into_inner().norm() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_colmap_models_name_file_and_line() {
        let header = "# Image list with two lines of data per image:\n";
        let image = "1 1 0 0 0 0 0 0 1 a.jpg\n";
        let colmap = Some(PoseFormat::Colmap);
        let cases = [
            (
                format!("{header}1 1 0 0 0 0 0 1 a.jpg\n\n"),
                2,
                "expected IMAGE_ID",
            ),
            (
                format!("{header}{image}\n1 0 0 0 0 0 0 0 1 b.jpg\n\n"),
                4,
                "norm 0",
            ),
            (
                format!("{header}{image}2 1 0 0 0 0 0 0 1 b.jpg\n"),
                3,
                "two lines",
            ),
            (
                format!("{header}{image}\nx 1 0 0 0 0 0 0 1 b.jpg\n"),
                4,
                "IMAGE_ID `x`",
            ),
            (
                format!("{header}{image}\n2 2 0 0 0 0 0 0 1 b.jpg\n"),
                4,
                "far from 1",
            ),
        ];
        for (text, line, says) in cases {
            assert_error_at(colmap, "images.txt", &text, line, says);
        }
        // Cameras: a wrong parameter count, and an image whose camera is not listed.
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "images.txt",
            &format!("{header}{image}\n2 1 0 0 0 0 0 0 7 b.jpg\n\n"),
        );
        write(
            dir.path(),
            "cameras.txt",
            "# cameras\n1 PINHOLE 640 480 500 500 320\n",
        );
        let message = read_trajectory(dir.path(), None)
            .expect_err("3 params")
            .to_string();
        assert!(
            message.contains("cameras.txt") && message.contains("line 2"),
            "{message}"
        );
        write(
            dir.path(),
            "cameras.txt",
            "1 PINHOLE 640 480 500 500 320 240\n",
        );
        let message = read_trajectory(dir.path(), None)
            .expect_err("camera 7")
            .to_string();
        assert!(
            message.contains("images.txt")
                && message.contains("line 4")
                && message.contains("camera 7"),
            "{message}"
        );
        // Fisheye cameras give poses without intrinsics.
        write(
            dir.path(),
            "cameras.txt",
            "1 PINHOLE 640 480 500 500 320 240\n7 OPENCV_FISHEYE 640 480 1 1 1 1 0 0 0 0\n",
        );
        let trajectory = read_trajectory(dir.path(), None).expect("reads");
        assert!(trajectory.poses[0].intrinsics.is_some());
        assert_eq!(trajectory.poses[1].intrinsics, None);
        // A camera COLMAP would refuse (zero focal length).
        write(
            dir.path(),
            "cameras.txt",
            "1 SIMPLE_PINHOLE 640 480 0 320 240\n",
        );
        let message = read_trajectory(dir.path(), None)
            .expect_err("f = 0")
            .to_string();
        assert!(
            message.contains("line 1") && message.contains("cameras.txt"),
            "{message}"
        );
    }

    #[test]
    fn bad_nerf_files_name_file_and_line() {
        let nerf = Some(PoseFormat::Nerf);
        let frame = |matrix: &str| {
            format!("{{\n  \"frames\": [\n    {{\n      \"file_path\": \"a\",\n      \"transform_matrix\": {matrix}\n    }}\n  ]\n}}\n")
        };
        let scaled = "[[2, 0, 0, 0],\n[0, 2, 0, 0],\n[0, 0, 2, 0],\n[0, 0, 0, 1]]";
        assert_error_at(nerf, "transforms.json", &frame(scaled), 8, "orthonormal");
        let short = "[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]";
        assert_error_at(nerf, "transforms.json", &frame(short), 5, "length 3");
        assert_error_at(
            nerf,
            "transforms.json",
            "{\n  \"fl_x\": 1\n}\n",
            3,
            "frames",
        );
        assert_error_at(
            nerf,
            "transforms.json",
            "{\n  \"frames\": [\n  {]\n}",
            3,
            "",
        );
        let negative = "{\n\"fl_x\": -5,\n\"frames\": []\n}\n";
        assert_error_at(nerf, "transforms.json", negative, 4, "positive");
    }

    #[test]
    fn empty_and_unknown_files_are_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        for format in [
            None,
            Some(PoseFormat::Tum),
            Some(PoseFormat::Plain),
            Some(PoseFormat::Log),
        ] {
            let path = write(dir.path(), "empty.txt", "# only a comment\n\n");
            let message = read_trajectory(&path, format)
                .expect_err("empty")
                .to_string();
            assert!(
                message.contains("empty.txt") && message.contains("no poses"),
                "{message}"
            );
        }
        let path = write(dir.path(), "images.txt", "# header\n");
        let message = read_trajectory(&path, None)
            .expect_err("no images")
            .to_string();
        assert!(message.contains("images.txt"), "{message}");
        let path = write(dir.path(), "frames.json", "{\"frames\": []}");
        let message = read_trajectory(&path, None)
            .expect_err("no frames")
            .to_string();
        assert!(message.contains("frames.json"), "{message}");
        assert_error_at(
            None,
            "mystery.txt",
            "# x\n1 2 3 4 5\n",
            2,
            "cannot tell the format",
        );
        let missing = dir.path().join("missing.txt");
        assert!(matches!(
            read_trajectory(&missing, None),
            Err(Error::Io { .. })
        ));
        let empty_dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            read_trajectory(empty_dir.path(), None),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn names_match_by_stem_and_folders_break_ties() {
        let pose = |name: &str| PoseEntry {
            key: PoseKey::Name(name.to_owned()),
            world_from_camera: Isometry3::identity(),
            intrinsics: None,
        };
        let trajectory = Trajectory {
            format: PoseFormat::Colmap,
            path: PathBuf::from("images.txt"),
            poses: vec![
                pose("left/0001.png"),
                pose("right/0001.png"),
                pose("0002.jpg"),
            ],
        };
        let found = trajectory
            .poses_for_files(&["/x/right/0001.png", "/x/left/0001.jpg", "0002.png"])
            .expect("unique");
        assert_eq!(found[0].key, PoseKey::Name("right/0001.png".to_owned()));
        assert_eq!(found[1].key, PoseKey::Name("left/0001.png".to_owned()));
        assert_eq!(found[2].key, PoseKey::Name("0002.jpg".to_owned()));
        let message = trajectory
            .poses_for_files(&["0001.png"])
            .expect_err("ambiguous")
            .to_string();
        assert!(message.contains("2 poses match"), "{message}");
    }
}
