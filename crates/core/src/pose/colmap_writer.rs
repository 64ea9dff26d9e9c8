//! Writing a COLMAP text model (`cameras.txt`, `images.txt`, `points3D.txt`), as COLMAP
//! and pycolmap read it: `PINHOLE` cameras, each image's `camera_from_world` as a quaternion
//! `QW QX QY QZ` and translation, its 2D points, and the 3D points with their tracks.

use std::path::Path;

use nalgebra::{Isometry3, Point3};

use crate::camera::Intrinsics;
use crate::error::Result;
use crate::fs::write_atomically;

/// One image of a COLMAP model, with its own camera.
#[derive(Clone, Debug, PartialEq)]
pub struct ColmapImage {
    /// The image's file name.
    pub name: String,
    /// Its camera (pixel centres at integer coordinates; written in COLMAP's convention,
    /// where the first pixel's centre is at 0.5).
    pub intrinsics: Intrinsics,
    /// Its pose, OpenCV axes.
    pub world_from_camera: Isometry3<f64>,
}

/// One 3D point, seen at `pixel` (OpenCV convention) in image `image` (index into the
/// images).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColmapPoint {
    /// Position in the world.
    pub position: Point3<f64>,
    /// Colour.
    pub color: [u8; 3],
    /// The image that sees it.
    pub image: usize,
    /// Where, in that image's pixels.
    pub pixel: (f64, f64),
}

/// Writes `images` (ids from 1, one camera each) and `points` (ids from 1, one
/// observation each) into `dir` (which must exist) as a COLMAP text model, each file
/// atomically; with `force` false, existing files are kept and an error returned.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) naming the file that cannot be written or exists;
/// [`Error::FileFormat`](crate::Error::FileFormat) when a point names an image that is not
/// in `images`.
pub fn write_colmap_text(
    dir: &Path,
    force: bool,
    images: &[ColmapImage],
    points: &[ColmapPoint],
) -> Result<()> {
    if let Some(point) = points.iter().find(|p| p.image >= images.len()) {
        return Err(crate::Error::FileFormat {
            what: "COLMAP model",
            reason: format!(
                "a point is seen by image {} of {}",
                point.image + 1,
                images.len()
            ),
            path: dir.join("points3D.txt"),
        });
    }
    write_atomically(&dir.join("cameras.txt"), force, |out| {
        writeln!(out, "# Camera list with one line of data per camera:")?;
        writeln!(out, "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]")?;
        writeln!(out, "# Number of cameras: {}", images.len())?;
        for (i, image) in images.iter().enumerate() {
            let k = &image.intrinsics;
            writeln!(
                out,
                "{} PINHOLE {} {} {} {} {} {}",
                i + 1,
                k.width,
                k.height,
                k.fx,
                k.fy,
                k.cx + 0.5,
                k.cy + 0.5
            )?;
        }
        Ok(())
    })?;
    // Each image's observations, in point order: (point id, pixel).
    let mut observed: Vec<Vec<(usize, (f64, f64))>> = vec![Vec::new(); images.len()];
    let mut track = Vec::with_capacity(points.len());
    for (p, point) in points.iter().enumerate() {
        let list = &mut observed[point.image];
        track.push((point.image + 1, list.len()));
        list.push((p + 1, point.pixel));
    }
    write_atomically(&dir.join("images.txt"), force, |out| {
        writeln!(out, "# Image list with two lines of data per image:")?;
        writeln!(
            out,
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"
        )?;
        writeln!(out, "#   POINTS2D[] as (X, Y, POINT3D_ID)")?;
        writeln!(out, "# Number of images: {}", images.len())?;
        for (i, (image, seen)) in images.iter().zip(&observed).enumerate() {
            let camera_from_world = image.world_from_camera.inverse();
            let q = camera_from_world.rotation.quaternion();
            let t = camera_from_world.translation.vector;
            writeln!(
                out,
                "{} {} {} {} {} {} {} {} {} {}",
                i + 1,
                q.w,
                q.i,
                q.j,
                q.k,
                t.x,
                t.y,
                t.z,
                i + 1,
                image.name
            )?;
            let mut line = String::with_capacity(seen.len() * 24);
            for (n, (id, (x, y))) in seen.iter().enumerate() {
                if n > 0 {
                    line.push(' ');
                }
                line.push_str(&format!("{} {} {id}", x + 0.5, y + 0.5));
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    })?;
    write_atomically(&dir.join("points3D.txt"), force, |out| {
        writeln!(out, "# 3D point list with one line of data per point:")?;
        writeln!(
            out,
            "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"
        )?;
        writeln!(out, "# Number of points: {}", points.len())?;
        for (p, (point, (image_id, index))) in points.iter().zip(&track).enumerate() {
            let [r, g, b] = point.color;
            writeln!(
                out,
                "{} {} {} {} {r} {g} {b} 0 {image_id} {index}",
                p + 1,
                point.position.x,
                point.position.y,
                point.position.z
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::{read_colmap_observations, read_trajectory, PoseFormat, PoseKey};
    use nalgebra::{Translation3, UnitQuaternion};

    #[test]
    fn our_reader_reads_the_model_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let intrinsics = Intrinsics::new(500.0, 510.0, 319.5, 239.5, 640, 480).expect("valid");
        let pose = Isometry3::from_parts(
            Translation3::new(0.5, -0.2, 1.0),
            UnitQuaternion::from_euler_angles(0.1, 0.2, -0.3),
        );
        let images = [
            ColmapImage {
                name: "a.jpg".into(),
                intrinsics,
                world_from_camera: Isometry3::identity(),
            },
            ColmapImage {
                name: "b.jpg".into(),
                intrinsics,
                world_from_camera: pose,
            },
        ];
        let points = [ColmapPoint {
            position: Point3::new(0.0, 0.0, 2.0),
            color: [255, 0, 0],
            image: 1,
            pixel: (10.0, 20.0),
        }];
        write_colmap_text(dir.path(), false, &images, &points).expect("written");
        assert!(write_colmap_text(dir.path(), false, &images, &points).is_err());
        let trajectory = read_trajectory(dir.path(), None).expect("readable");
        assert_eq!(trajectory.format, PoseFormat::Colmap);
        assert_eq!(trajectory.poses[1].key, PoseKey::Name("b.jpg".into()));
        let read = trajectory.poses[1].world_from_camera;
        assert!((read.translation.vector - pose.translation.vector).norm() < 1e-12);
        assert!(read.rotation.angle_to(&pose.rotation) < 1e-12);
        let k = trajectory.poses[1].intrinsics.expect("intrinsics");
        assert!((k.cx - 319.5).abs() < 1e-12 && (k.fy - 510.0).abs() < 1e-12);
        let observations = read_colmap_observations(&trajectory.path).expect("points");
        assert_eq!(observations["b.jpg"].len(), 1);
    }
}
