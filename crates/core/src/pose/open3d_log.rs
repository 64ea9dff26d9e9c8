//! Open3D / Redwood `.log` trajectories: per pose a line `i i i+1` and the 4 rows of a
//! camera-to-world matrix with OpenCV axes.

use nalgebra::Matrix4;

use super::parse::{data_lines, parse_numbers, rigid_from_matrix, Source};
use super::{PoseEntry, PoseKey};
use crate::error::Result;

/// Open3D's `.log`: per pose a line of 3 integers (`i i i+1`; Open3D ignores it too) and 4
/// rows of the camera-to-world matrix. Poses are keyed by their order, as Open3D does.
pub(super) fn parse_log(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
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

#[cfg(test)]
mod tests {
    use nalgebra::{Matrix4, Vector3};

    use crate::pose::test_support::{assert_convention, assert_error_at, scene, shared, write};
    use crate::pose::{detect_format, read_trajectory, PoseFormat, PoseKey};

    const REDWOOD: &str = "../../../shared/data/redwood-livingroom";

    fn matrix_rows(m: &Matrix4<f64>) -> String {
        (0..4)
            .map(|r| {
                let row: Vec<String> = (0..4).map(|c| m[(r, c)].to_string()).collect();
                row.join(" ") + "\n"
            })
            .collect()
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
}
