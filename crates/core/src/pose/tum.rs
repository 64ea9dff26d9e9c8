//! TUM RGB-D trajectories (`timestamp tx ty tz qx qy qz qw`) and plain pose lists
//! (`tx ty tz qx qy qz qw`, one line per frame): both camera-to-world with OpenCV axes,
//! quaternion `x y z w`, so they share one line parser.

use nalgebra::{Isometry3, Translation3};

use super::parse::{data_lines, parse_numbers, unit_quaternion, Source};
use super::{PoseEntry, PoseKey};
use crate::error::Result;

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

pub(super) fn parse_tum(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
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

pub(super) fn parse_plain(text: &str, src: &Source) -> Result<Vec<PoseEntry>> {
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

#[cfg(test)]
mod tests {
    use nalgebra::Vector3;

    use crate::error::Error;
    use crate::pose::test_support::{assert_convention, assert_error_at, scene, shared, write};
    use crate::pose::{
        detect_format, read_trajectory, PoseFormat, PoseKey, DEFAULT_TIME_TOLERANCE_S,
    };

    const KINECT: &str = "../../../shared/data/kinect-office";

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
}
