//! Writing trajectories in the plain format ([`PoseFormat::Plain`](super::PoseFormat::Plain)).

use std::path::Path;

use nalgebra::Isometry3;

use crate::error::Result;
use crate::fs::write_atomically;

/// The comment line a plain trajectory written here starts with.
const PLAIN_HEADER: &str = "# tx ty tz qx qy qz qw (world_from_camera, OpenCV axes)";

/// Writes `world_from_camera` poses as a plain trajectory, one pose per line in the order
/// given: a comment line `# tx ty tz qx qy qz qw (world_from_camera, OpenCV axes)`, then
/// per pose the translation and the unit quaternion `x y z w`, separated by spaces.
///
/// Numbers are written as Rust prints an `f64` (the shortest text that reads back to the
/// same value), so [`read_trajectory`](super::read_trajectory) recognises the file as
/// [`PoseFormat::Plain`](super::PoseFormat::Plain) and gives the poses back (the quaternion
/// normalised again), keyed [`PoseKey::Index`](super::PoseKey::Index) from 0. With no poses
/// the file holds only the comment line, which reading refuses as holding no poses.
///
/// The file is written atomically ([`write_atomically`]): with `force` false an existing
/// file is kept and an error returned; with `force` true it is replaced.
///
/// ```
/// use anydepth_core::pose::{read_trajectory, write_plain_trajectory, PoseFormat};
/// use nalgebra::Isometry3;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("poses.txt");
/// let camera = Isometry3::translation(0.5, 0.0, -1.0);
/// write_plain_trajectory(&path, false, &[camera])?;
/// assert_eq!(
///     std::fs::read_to_string(&path)?,
///     "# tx ty tz qx qy qz qw (world_from_camera, OpenCV axes)\n0.5 0 -1 0 0 0 1\n"
/// );
/// let trajectory = read_trajectory(&path, None)?;
/// assert_eq!(trajectory.format, PoseFormat::Plain);
/// assert_eq!(trajectory.poses[0].world_from_camera, camera);
/// assert!(write_plain_trajectory(&path, false, &[camera]).is_err()); // exists
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) naming `path` when the file cannot be written, or when
/// it exists and `force` is false.
pub fn write_plain_trajectory(
    path: &Path,
    force: bool,
    world_from_camera: &[Isometry3<f64>],
) -> Result<()> {
    write_atomically(path, force, |out| {
        writeln!(out, "{PLAIN_HEADER}")?;
        for pose in world_from_camera {
            let t = pose.translation.vector;
            let q = pose.rotation.quaternion();
            writeln!(
                out,
                "{} {} {} {} {} {} {}",
                t.x, t.y, t.z, q.i, q.j, q.k, q.w
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};

    use super::write_plain_trajectory;
    use crate::error::Error;
    use crate::pose::test_support::scene;
    use crate::pose::{detect_format, read_trajectory, PoseFormat, PoseKey};

    #[test]
    fn plain_trajectories_round_trip_byte_for_byte() {
        // Values whose text and normalisation are exact: the identity, and a third of a turn
        // about (1, 1, 1) (quaternion 0.5 0.5 0.5 0.5, norm exactly 1).
        let turned = Isometry3::from_parts(
            Translation3::new(-0.25, 1.5, 3.0),
            UnitQuaternion::from_quaternion(Quaternion::new(0.5, 0.5, 0.5, 0.5)),
        );
        let poses = [Isometry3::identity(), turned];
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("poses.txt");
        write_plain_trajectory(&path, false, &poses).expect("writes");
        let expected = "# tx ty tz qx qy qz qw (world_from_camera, OpenCV axes)\n\
                        0 0 0 0 0 0 1\n\
                        -0.25 1.5 3 0.5 0.5 0.5 0.5\n";
        assert_eq!(std::fs::read_to_string(&path).expect("reads"), expected);

        assert_eq!(detect_format(&path).expect("detects"), PoseFormat::Plain);
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.format, PoseFormat::Plain);
        let keys: Vec<_> = trajectory.poses.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, [PoseKey::Index(0), PoseKey::Index(1)]);
        let read: Vec<_> = trajectory
            .poses
            .iter()
            .map(|e| e.world_from_camera)
            .collect();
        assert_eq!(read, poses);
        assert!(trajectory.poses.iter().all(|e| e.intrinsics.is_none()));

        // Written again from what was read: the same bytes.
        let again = dir.path().join("again.txt");
        write_plain_trajectory(&again, false, &read).expect("writes");
        assert_eq!(std::fs::read(&again).expect("reads"), expected.as_bytes());
    }

    #[test]
    fn plain_trajectories_keep_general_poses() {
        let (_, cameras) = scene();
        let poses: Vec<_> = cameras.iter().map(|c| c.world_from_camera()).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("poses.txt");
        write_plain_trajectory(&path, false, &poses).expect("writes");
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.format, PoseFormat::Plain);
        assert_eq!(trajectory.poses.len(), poses.len());
        for (entry, pose) in trajectory.poses.iter().zip(&poses) {
            // Translations print exactly; the quaternion is normalised again on reading.
            assert_eq!(entry.world_from_camera.translation, pose.translation);
            assert!(entry.world_from_camera.rotation.angle_to(&pose.rotation) < 1e-12);
        }
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("poses.txt");
        std::fs::write(&path, "keep me\n").expect("writes");
        let pose = [Isometry3::translation(1.0, 2.0, 3.0)];
        let error = write_plain_trajectory(&path, false, &pose).expect_err("exists");
        assert!(matches!(error, Error::Io { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("reads"), "keep me\n");
        write_plain_trajectory(&path, true, &pose).expect("replaces");
        let trajectory = read_trajectory(&path, None).expect("reads");
        assert_eq!(trajectory.poses[0].world_from_camera, pose[0]);
    }
}
