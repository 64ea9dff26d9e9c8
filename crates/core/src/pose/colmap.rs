//! COLMAP text models: `images.txt` (world-to-camera poses, quaternion `qw qx qy qz`),
//! `cameras.txt` (intrinsics) and `points3D.txt` (the sparse points each image sees).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nalgebra::{Isometry3, Point3, Translation3};

use super::parse::{
    data_lines, parse_integer, parse_number, parse_numbers, read_text, unit_quaternion, Source,
};
use super::{PoseEntry, PoseFormat, PoseKey, Trajectory};
use crate::camera::Intrinsics;
use crate::error::Result;

pub(super) fn is_colmap_path(path: &Path) -> bool {
    path.is_dir()
        || matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("images.txt" | "cameras.txt")
        )
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

pub(super) fn read_colmap(path: &Path) -> Result<Trajectory> {
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

/// A 3D point of a COLMAP model where one image sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Pixel column in the convention of [`Intrinsics`] (pixel centres at integer
    /// coordinates: COLMAP's `X - 0.5`).
    pub u: f64,
    /// Pixel row, likewise (COLMAP's `Y - 0.5`).
    pub v: f64,
    /// The point in the model's world frame.
    pub world: Point3<f64>,
}

/// The sparse points of a COLMAP text model, per image name (as `images.txt` writes it):
/// each image's `X Y POINT3D_ID` triples that refer to a point of `points3D.txt`, with that
/// point's position. Used to put relative depth on the model's scale, image by image.
///
/// `path` is the model's folder, its `images.txt` or its `cameras.txt`, as for
/// [`read_trajectory`](super::read_trajectory); `points3D.txt` lies beside `images.txt`.
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
/// [`Error::Io`](crate::Error::Io) when either file cannot be read,
/// [`Error::FileLine`](crate::Error::FileLine) naming the file and line for a malformed line
/// or a `POINT3D_ID` that `points3D.txt` does not hold.
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
    use crate::error::Error;
    use crate::pose::test_support::{assert_convention, assert_error_at, scene, write};
    use crate::pose::{detect_format, read_trajectory};

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
}
