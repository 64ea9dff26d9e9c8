//! NeRF `transforms.json` files (Blender, instant-ngp, nerfstudio): camera-to-world with
//! OpenGL camera axes, turned into OpenCV axes here, and optional intrinsics.

use std::fmt;

use nalgebra::{Isometry3, Matrix4, UnitQuaternion, Vector3};
use serde::{de, Deserialize, Deserializer};

use super::parse::{rigid_from_matrix, Source};
use super::{PoseEntry, PoseKey};
use crate::camera::Intrinsics;
use crate::error::{Error, Result};

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

pub(super) fn parse_nerf(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
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

#[cfg(test)]
mod tests {
    use crate::camera::Intrinsics;
    use crate::pose::test_support::{assert_convention, assert_error_at, scene, write};
    use crate::pose::{detect_format, read_trajectory, PoseFormat};

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
}
