//! `cameras.json`, the cameras `anydepth views` writes: per photo its name, size,
//! `world_from_camera` (4x4, row-major, OpenCV camera axes) and `K` (3x3, row-major, at the
//! photo's resolution, pixel centres at integer coordinates).
//!
//! ```json
//! {"frames": [{"name": "a.jpg", "width": 640, "height": 480,
//!              "world_from_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
//!              "K": [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]}]}
//! ```

use std::path::Path;

use nalgebra::Matrix4;
use serde::{Deserialize, Serialize};

use super::parse::{rigid_from_matrix, Source};
use super::{PoseEntry, PoseKey};
use crate::camera::Intrinsics;
use crate::error::{Error, Result};
use crate::fs::write_atomically;

/// One photo's camera in `cameras.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraFrame {
    /// The photo's file name.
    pub name: String,
    /// The photo's width in pixels.
    pub width: u32,
    /// The photo's height in pixels.
    pub height: u32,
    /// World from camera, row-major, OpenCV camera axes.
    pub world_from_camera: [[f64; 4]; 4],
    /// Intrinsics at the photo's resolution, row-major.
    #[serde(rename = "K")]
    pub k: [[f64; 3]; 3],
}

impl CameraFrame {
    /// The intrinsics as [`Intrinsics`].
    ///
    /// # Errors
    /// When they are not a valid pinhole camera.
    pub fn intrinsics(&self) -> Result<Intrinsics> {
        Intrinsics::new(
            self.k[0][0],
            self.k[1][1],
            self.k[0][2],
            self.k[1][2],
            self.width,
            self.height,
        )
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CamerasFile {
    /// One entry per photo.
    pub frames: Vec<CameraFrame>,
}

/// Whether JSON text is a `cameras.json` (rather than a NeRF `transforms.json`).
pub(super) fn looks_like_cameras_json(text: &str) -> bool {
    text.contains("\"world_from_camera\"")
}

/// Parses `cameras.json` into poses keyed by name, with their intrinsics.
pub(super) fn parse_cameras_json(text: &str, src: &Source<'_>) -> Result<Vec<PoseEntry>> {
    let file: CamerasFile = serde_json::from_str(text)
        .map_err(|e| src.at(e.line(), format!("not a cameras.json: {e}")))?;
    file.frames
        .iter()
        .map(|frame| {
            let m = Matrix4::from_fn(|i, j| frame.world_from_camera[i][j]);
            let world_from_camera = rigid_from_matrix(&m)
                .map_err(|e| src.whole(format!("camera of `{}`: {}", frame.name, e.reason)))?;
            let intrinsics = frame
                .intrinsics()
                .map_err(|e| src.whole(format!("camera of `{}`: {e}", frame.name)))?;
            Ok(PoseEntry {
                key: PoseKey::Name(frame.name.clone()),
                world_from_camera,
                intrinsics: Some(intrinsics),
            })
        })
        .collect()
}

/// Writes `cameras.json` atomically (with `force` false an existing file is kept and an
/// error returned).
///
/// # Errors
/// [`Error::Io`] naming `path` when the file cannot be written or exists without `force`.
pub fn write_cameras_json(path: &Path, force: bool, frames: &[CameraFrame]) -> Result<()> {
    // One frame per line: readable, and diffs show which camera changed.
    let lines = frames
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::FileFormat {
            what: "cameras.json",
            reason: e.to_string(),
            path: path.to_path_buf(),
        })?;
    write_atomically(path, force, |out| {
        writeln!(out, "{{\"frames\": [")?;
        for (i, line) in lines.iter().enumerate() {
            let comma = if i + 1 < lines.len() { "," } else { "" };
            writeln!(out, "  {line}{comma}")?;
        }
        writeln!(out, "]}}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::{read_trajectory, PoseFormat};

    #[test]
    fn written_cameras_read_back_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cameras.json");
        let (c, s) = (0.6f64.cos(), 0.6f64.sin());
        let frame = CameraFrame {
            name: "a.jpg".into(),
            width: 640,
            height: 480,
            world_from_camera: [
                [c, 0.0, s, 0.5],
                [0.0, 1.0, 0.0, -1.0],
                [-s, 0.0, c, 2.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            k: [[500.0, 0.0, 319.5], [0.0, 510.0, 239.5], [0.0, 0.0, 1.0]],
        };
        write_cameras_json(&path, false, std::slice::from_ref(&frame)).expect("written");
        assert!(
            write_cameras_json(&path, false, &[]).is_err(),
            "kept without force"
        );
        let trajectory = read_trajectory(&path, None).expect("readable");
        assert_eq!(trajectory.format, PoseFormat::Cameras);
        let entry = &trajectory.poses[0];
        assert_eq!(entry.key, PoseKey::Name("a.jpg".into()));
        let m = entry.world_from_camera.to_homogeneous();
        for i in 0..4 {
            for j in 0..4 {
                assert!((m[(i, j)] - frame.world_from_camera[i][j]).abs() < 1e-12);
            }
        }
        let k = entry.intrinsics.expect("intrinsics");
        assert_eq!((k.fx, k.fy, k.cx, k.cy), (500.0, 510.0, 319.5, 239.5));
    }
}
