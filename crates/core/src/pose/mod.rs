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
//! [`write_plain_trajectory`] writes poses in the `Plain` format, which [`read_trajectory`]
//! recognises and reads back.
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

mod cameras_json;
mod colmap;
mod colmap_writer;
mod matching;
mod nerf;
mod open3d_log;
mod parse;
mod tum;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nalgebra::Isometry3;

use crate::camera::Intrinsics;
use crate::error::{Error, Result};

pub use cameras_json::{write_cameras_json, CameraFrame, CamerasFile};
pub use colmap::{read_colmap_observations, Observation};
pub use colmap_writer::{write_colmap_text, ColmapImage, ColmapPoint};
pub use writer::write_plain_trajectory;

use colmap::{is_colmap_path, read_colmap};
use nerf::parse_nerf;
use open3d_log::parse_log;
use parse::{data_lines, read_text, Source};
use tum::{parse_plain, parse_tum};

/// Tolerance for matching frame timestamps to TUM poses, in seconds (TUM's own
/// `associate.py` uses the same 0.02 s).
pub const DEFAULT_TIME_TOLERANCE_S: f64 = 0.02;

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
    /// `cameras.json` as `anydepth views` writes it: camera-to-world (OpenCV axes) and
    /// intrinsics per photo name.
    Cameras,
}

impl PoseFormat {
    /// Every format, in the order of [`PoseFormat::NAMES`].
    pub const ALL: [Self; 6] = [
        Self::Tum,
        Self::Plain,
        Self::Log,
        Self::Colmap,
        Self::Nerf,
        Self::Cameras,
    ];
    /// The names [`PoseFormat::name`] gives and [`FromStr`] reads.
    pub const NAMES: [&'static str; 6] = ["tum", "plain", "log", "colmap", "nerf", "cameras"];

    /// The short name: `tum`, `plain`, `log`, `colmap`, `nerf`, `cameras`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tum => "tum",
            Self::Plain => "plain",
            Self::Log => "log",
            Self::Colmap => "colmap",
            Self::Nerf => "nerf",
            Self::Cameras => "cameras",
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
            Self::Cameras => "cameras.json",
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
            "cameras" | "cameras.json" => Ok(Self::Cameras),
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
        PoseFormat::Cameras => cameras_json::parse_cameras_json(&text, &src)?,
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
        if cameras_json::looks_like_cameras_json(text) {
            return Ok(PoseFormat::Cameras);
        }
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

/// Helpers the tests of every format share.
#[cfg(test)]
mod test_support {
    use std::path::{Path, PathBuf};

    use nalgebra::{Isometry3, Matrix4, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};

    use super::{read_trajectory, PoseFormat};
    use crate::error::Error;

    pub(super) fn shared(relative: &str) -> Option<PathBuf> {
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
    pub(super) struct Camera {
        eye: Point3<f64>,
        target: Point3<f64>,
        up: Vector3<f64>,
    }

    impl Camera {
        /// x right, y down, z forward (toward the target).
        pub(super) fn world_from_camera(&self) -> Isometry3<f64> {
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
        pub(super) fn opengl_matrix(&self) -> Matrix4<f64> {
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
        pub(super) fn right_and_up(&self) -> (Vector3<f64>, Vector3<f64>) {
            let forward = (self.target - self.eye).normalize();
            let right = forward.cross(&self.up).normalize();
            (right, right.cross(&forward))
        }
    }

    /// The point both cameras see, and the two cameras (the second rolled).
    pub(super) fn scene() -> (Point3<f64>, [Camera; 2]) {
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
    pub(super) fn assert_convention(read: &Isometry3<f64>, camera: &Camera, x: &Point3<f64>) {
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

    pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes");
        path
    }

    /// Writes `text` as `name`, reads it as `format` and checks the error names the file
    /// and the line.
    pub(super) fn assert_error_at(
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
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_error_at, write};
    use super::*;

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
}
