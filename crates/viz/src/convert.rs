//! The one place where anydepth's types become Rerun's.
//!
//! Large batches (points, colours, normals, faces, image buffers) are written straight into
//! Arrow buffers of the component's own data type, one parallel pass per batch and no
//! intermediate `Vec` of Rerun component structs: a 1920x1080 frame's cloud is two million
//! points, and the usual `Points3D::new(iter)` path copies them twice on one thread. Small
//! things (cameras, poses) use the ordinary archetype builders.

use std::borrow::Cow;
use std::sync::Arc;

use anydepth_core::colormap::Colormap;
use anydepth_core::{DepthMap, Disparity, Intrinsics};
use anydepth_geometry::{PointCloud, TriangleMesh};
use nalgebra::{Isometry3, Point3, Vector3};
use rayon::prelude::*;
use rerun::external::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, UInt32Array};
use rerun::external::arrow::buffer::Buffer;
use rerun::external::arrow::datatypes::DataType;
use rerun::{ComponentDescriptor, Loggable, SerializedComponentBatch};

use crate::error::{Error, Result};

/// How big points are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PointRadius {
    /// A radius in scene units (metres), shrinking with distance like the surface it samples.
    Metres(f32),
    /// A constant size on screen, in UI points.
    UiPoints(f32),
}

impl PointRadius {
    /// Half the footprint of one pixel at `depth_m` for a camera of focal length `fx` pixels:
    /// neighbouring points of a full-resolution cloud just touch.
    pub fn pixel_footprint(depth_m: f32, fx: f64) -> Self {
        Self::Metres((0.5 * f64::from(depth_m) / fx) as f32)
    }

    /// [`PointRadius::pixel_footprint`] at the mean of the valid (finite, positive) values
    /// of a depth map, 1 m when there are none: the points of its full cloud just touch.
    pub fn for_depth(depth_m: &[f32], fx: f64) -> Self {
        let (sum, n) = depth_m
            .iter()
            .filter(|d| d.is_finite() && **d > 0.0)
            .fold((0.0f64, 0usize), |(s, n), &d| (s + f64::from(d), n + 1));
        let mean = if n > 0 { sum / n as f64 } else { 1.0 };
        Self::pixel_footprint(mean as f32, fx)
    }

    fn component(self) -> rerun::components::Radius {
        match self {
            Self::Metres(r) => rerun::components::Radius::new_scene_units(r),
            Self::UiPoints(r) => rerun::components::Radius::new_ui_points(r),
        }
    }
}

/// A `FixedSizeList<_, 3>` of the data type component `C` uses, over `values`.
fn fixed_size_list3<C: Loggable>(values: ArrayRef) -> Result<ArrayRef> {
    match C::arrow_datatype() {
        DataType::FixedSizeList(field, 3) => Ok(Arc::new(FixedSizeListArray::try_new(
            field, 3, values, None,
        )?)),
        other => Err(Error::Invalid(format!(
            "expected a list of 3 values for {}, Rerun's type is {other}",
            std::any::type_name::<C>()
        ))),
    }
}

fn batch(array: ArrayRef, descriptor: ComponentDescriptor) -> Option<SerializedComponentBatch> {
    Some(SerializedComponentBatch::new(array, descriptor))
}

/// Items per parallel task: large enough to amortise scheduling, small enough to split a
/// frame over the cores.
const CHUNK: usize = 1 << 16;

/// `N` outputs per input, computed in parallel into a new buffer (zeroed by the allocator,
/// so its pages are first touched by the parallel writers).
fn par_map<T: Sync, U: Copy + Default + Send, const N: usize>(
    input: &[T],
    f: impl Fn(&T) -> [U; N] + Sync,
) -> Vec<U> {
    let mut out = vec![U::default(); N * input.len()];
    out.par_chunks_mut(N * CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(out, input)| {
            for (o, i) in out.chunks_exact_mut(N).zip(input) {
                o.copy_from_slice(&f(i));
            }
        });
    out
}

/// Points as `Position3D`s; owned points become the buffer without a copy.
fn positions(points: Cow<[Point3<f32>]>) -> Result<ArrayRef> {
    let flat = match points {
        Cow::Owned(points) => match bytemuck::allocation::try_cast_vec::<_, f32>(points) {
            Ok(flat) => flat,
            Err((_, points)) => par_map(&points, |p| [p.x, p.y, p.z]),
        },
        Cow::Borrowed(points) => par_map(points, |p| [p.x, p.y, p.z]),
    };
    fixed_size_list3::<rerun::components::Position3D>(Arc::new(Float32Array::from(flat)))
}

/// Unit vectors as `Vector3D`s.
fn vectors(normals: &[Vector3<f32>]) -> Result<ArrayRef> {
    let flat = par_map(normals, |n| [n.x, n.y, n.z]);
    fixed_size_list3::<rerun::components::Vector3D>(Arc::new(Float32Array::from(flat)))
}

/// RGB8 as opaque `Color`s (`0xRRGGBBAA`).
fn colors(rgb: &[[u8; 3]]) -> ArrayRef {
    let packed = par_map(rgb, |&[r, g, b]| [u32::from_be_bytes([r, g, b, 255])]);
    Arc::new(UInt32Array::from(packed))
}

/// Faces as `TriangleIndices`.
fn triangles(faces: &[[u32; 3]]) -> Result<ArrayRef> {
    let flat = UInt32Array::from(par_map(faces, |&face| face));
    fixed_size_list3::<rerun::components::TriangleIndices>(Arc::new(flat))
}

/// A point cloud as `Points3D`: positions, colours when it has them, one radius for all.
///
/// # Errors
/// When colours and points disagree in number.
///
/// # Performance
/// One parallel pass over the points and one over the colours, writing the Arrow buffers
/// the recording stream keeps; [`points3d_owned`] skips the pass over the points.
pub fn points3d(cloud: &PointCloud, radius: PointRadius) -> Result<rerun::Points3D> {
    points3d_from(
        Cow::Borrowed(&cloud.points),
        cloud.colors.as_deref(),
        radius,
    )
}

/// As [`points3d`], taking the cloud: its positions become Rerun's buffer as they are (no
/// copy), and only the colours are converted.
///
/// # Errors
/// When colours and points disagree in number.
pub fn points3d_owned(cloud: PointCloud, radius: PointRadius) -> Result<rerun::Points3D> {
    points3d_from(Cow::Owned(cloud.points), cloud.colors.as_deref(), radius)
}

fn points3d_from(
    points: Cow<[Point3<f32>]>,
    rgb: Option<&[[u8; 3]]>,
    radius: PointRadius,
) -> Result<rerun::Points3D> {
    use rerun::Points3D;
    check_len("colours", rgb.map(<[_]>::len), points.len())?;
    let radii: ArrayRef = Arc::new(Float32Array::from(vec![radius.component().0 .0]));
    Ok(Points3D {
        positions: batch(positions(points)?, Points3D::descriptor_positions()),
        colors: rgb.and_then(|c| batch(colors(c), Points3D::descriptor_colors())),
        radii: batch(radii, Points3D::descriptor_radii()),
        ..Default::default()
    })
}

/// A triangle mesh as `Mesh3D`: vertices, faces, and vertex colours and normals when it has
/// them.
///
/// # Errors
/// When colours or normals and vertices disagree in number.
pub fn mesh3d(mesh: &TriangleMesh) -> Result<rerun::Mesh3D> {
    use rerun::Mesh3D;
    let n = mesh.vertices.len();
    check_len("colours", mesh.colors.as_ref().map(Vec::len), n)?;
    check_len("normals", mesh.normals.as_ref().map(Vec::len), n)?;
    let normals = match &mesh.normals {
        Some(normals) => batch(vectors(normals)?, Mesh3D::descriptor_vertex_normals()),
        None => None,
    };
    Ok(Mesh3D {
        vertex_positions: batch(
            positions(Cow::Borrowed(&mesh.vertices))?,
            Mesh3D::descriptor_vertex_positions(),
        ),
        triangle_indices: batch(
            triangles(&mesh.faces)?,
            Mesh3D::descriptor_triangle_indices(),
        ),
        vertex_normals: normals,
        vertex_colors: mesh
            .colors
            .as_deref()
            .and_then(|c| batch(colors(c), Mesh3D::descriptor_vertex_colors())),
        ..Default::default()
    })
}

fn check_len(what: &str, len: Option<usize>, expected: usize) -> Result<()> {
    match len {
        Some(len) if len != expected => Err(Error::Invalid(format!(
            "{len} {what} for {expected} points: cannot log them together"
        ))),
        _ => Ok(()),
    }
}

/// An RGB8 image, `width * height` pixels row-major; owned pixels (a `Vec`) become Rerun's
/// buffer without a copy, borrowed ones are copied.
///
/// # Errors
/// When the pixel count is not `width * height`.
pub fn rgb_image(width: u32, height: u32, pixels: Cow<[[u8; 3]]>) -> Result<rerun::Image> {
    check_len(
        "pixels",
        Some(pixels.len()),
        width as usize * height as usize,
    )?;
    let bytes = match pixels {
        Cow::Owned(pixels) => pixels.into_flattened(),
        Cow::Borrowed(pixels) => par_map(pixels, |&rgb| rgb),
    };
    Ok(rerun::Image::from_rgb24(bytes, [width, height]))
}

/// Depth (metres, or Depth Anything 3's depth in its own units) as a `DepthImage` of f32
/// (`meter = 1`). Invalid values (NaN, infinite, zero or negative) become 0, which Rerun
/// draws as no depth.
pub fn depth_image<K: anydepth_core::ValueKind>(depth: &DepthMap<K>) -> rerun::DepthImage {
    let values = par_map(depth.data(), |&d| {
        [if d.is_finite() && d > 0.0 { d } else { 0.0 }]
    });
    rerun::DepthImage::from_data_type_and_bytes(
        Buffer::from_vec(values),
        [depth.width(), depth.height()],
        rerun::datatypes::ChannelDatatype::F32,
    )
    .with_meter(1.0)
}

/// Relative depth (disparity, larger is closer) coloured with `colormap` as the official
/// app and `anydepth depth --formats color` do.
pub fn disparity_image(disparity: &DepthMap<Disparity>, colormap: Colormap) -> rerun::Image {
    rerun::Image::from_rgb24(
        colormap.apply(disparity.data()),
        [disparity.width(), disparity.height()],
    )
}

/// The camera's `Pinhole`, in Rerun's pixel convention: pixel centres at half-integers, so the
/// principal point moves by half a pixel from ours (centres at integers, see
/// [`anydepth_core::camera`]). Camera axes are OpenCV's (RDF: x right, y down, z forward).
pub fn pinhole(camera: &Intrinsics) -> rerun::Pinhole {
    let (fx, fy) = (camera.fx as f32, camera.fy as f32);
    let (cx, cy) = ((camera.cx + 0.5) as f32, (camera.cy + 0.5) as f32);
    rerun::Pinhole::new([[fx, 0.0, 0.0], [0.0, fy, 0.0], [cx, cy, 1.0]])
        .with_resolution([camera.width as f32, camera.height as f32])
        .with_camera_xyz(rerun::components::ViewCoordinates::RDF)
}

/// `world_from_camera` as the `Transform3D` of the camera entity (Rerun's default relation,
/// parent from child, is exactly that).
pub fn transform(world_from_camera: &Isometry3<f64>) -> rerun::Transform3D {
    let t = world_from_camera.translation.vector.cast::<f32>();
    let q = world_from_camera.rotation.quaternion().cast::<f32>();
    rerun::Transform3D::from_translation_rotation(
        [t.x, t.y, t.z],
        rerun::Quaternion::from_xyzw([q.i, q.j, q.k, q.w]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anydepth_core::Metres;

    #[test]
    fn radius_for_depth_is_half_a_pixel_at_the_mean_valid_depth() {
        let PointRadius::Metres(r) =
            PointRadius::for_depth(&[1.0, 3.0, f32::NAN, 0.0, f32::INFINITY], 100.0)
        else {
            panic!("metres");
        };
        assert!((r - 0.01).abs() < 1e-7, "{r}");
        let PointRadius::Metres(r) = PointRadius::for_depth(&[f32::NAN], 50.0) else {
            panic!("metres");
        };
        assert!((r - 0.01).abs() < 1e-7, "1 m without valid depth: {r}");
    }

    fn cloud() -> PointCloud {
        PointCloud {
            points: vec![Point3::new(1.0, 2.0, 3.0), Point3::new(-1.0, 0.5, 4.0)],
            colors: Some(vec![[255, 0, 10], [1, 2, 3]]),
            normals: None,
        }
    }

    /// The Arrow arrays written directly must be exactly what Rerun's own builders make
    /// (same data types, nullability, values), or the viewer would not read them.
    #[test]
    fn points_equal_the_archetype_builders() {
        let cloud = cloud();
        let fast = points3d(&cloud, PointRadius::Metres(0.01)).expect("consistent");
        let owned = points3d_owned(cloud.clone(), PointRadius::Metres(0.01)).expect("consistent");
        assert_eq!(owned, fast, "moved and copied positions agree");
        let reference = rerun::Points3D::new(cloud.points.iter().map(|p| [p.x, p.y, p.z]))
            .with_colors([
                rerun::Color::from_rgb(255, 0, 10),
                rerun::Color::from_rgb(1, 2, 3),
            ])
            .with_radii([rerun::components::Radius::new_scene_units(0.01)]);
        assert_eq!(fast, reference);

        let ui = points3d(&cloud, PointRadius::UiPoints(2.0)).expect("consistent");
        let reference = reference.with_radii([rerun::components::Radius::new_ui_points(2.0)]);
        assert_eq!(ui, reference);
    }

    #[test]
    fn mesh_equals_the_archetype_builders() {
        let mut mesh = TriangleMesh {
            vertices: vec![
                Point3::new(0.0, 0.0, 1.0),
                Point3::new(0.0, 1.0, 1.0),
                Point3::new(1.0, 0.0, 1.0),
            ],
            faces: vec![[0, 1, 2]],
            colors: Some(vec![[10, 20, 30]; 3]),
            normals: None,
        };
        mesh.compute_vertex_normals();
        let fast = mesh3d(&mesh).expect("consistent");
        let reference = rerun::Mesh3D::new(mesh.vertices.iter().map(|p| [p.x, p.y, p.z]))
            .with_triangle_indices([[0, 1, 2]])
            .with_vertex_normals([[0.0, 0.0, -1.0]; 3])
            .with_vertex_colors([rerun::Color::from_rgb(10, 20, 30); 3]);
        assert_eq!(fast, reference);

        // Without colours and normals only positions and faces go out.
        mesh.colors = None;
        mesh.normals = None;
        let bare = mesh3d(&mesh).expect("consistent");
        assert!(bare.vertex_colors.is_none() && bare.vertex_normals.is_none());
    }

    #[test]
    fn counts_that_disagree_are_errors() {
        let mut bad = cloud();
        bad.colors = Some(vec![[0, 0, 0]]);
        assert!(points3d(&bad, PointRadius::Metres(0.01)).is_err());
        let mesh = TriangleMesh {
            vertices: vec![Point3::origin(); 3],
            faces: vec![[0, 1, 2]],
            colors: None,
            normals: Some(vec![Vector3::z(); 2]),
        };
        assert!(mesh3d(&mesh).is_err());
        assert!(rgb_image(2, 2, Cow::Borrowed(&[[0, 0, 0]; 3])).is_err());
    }

    /// A centred camera in our convention (cx = (W - 1) / 2) is centred in Rerun's, where
    /// `from_focal_length_and_resolution` puts the principal point at W / 2.
    #[test]
    fn pinhole_moves_the_principal_point_half_a_pixel() {
        let camera = Intrinsics::from_fov(640, 480, 90.0).expect("valid");
        assert_eq!((camera.cx, camera.cy), (319.5, 239.5));
        let reference =
            rerun::Pinhole::from_focal_length_and_resolution([320.0, 320.0], [640.0, 480.0])
                .with_camera_xyz(rerun::components::ViewCoordinates::RDF);
        assert_eq!(pinhole(&camera), reference);
    }

    #[test]
    fn transform_is_world_from_camera() {
        let world_from_camera = Isometry3::from_parts(
            nalgebra::Translation3::new(1.0, -2.0, 0.5),
            nalgebra::UnitQuaternion::from_euler_angles(0.1, 0.2, 0.3),
        );
        let q = world_from_camera.rotation.quaternion().cast::<f32>();
        let reference = rerun::Transform3D::from_translation_rotation(
            [1.0, -2.0, 0.5],
            rerun::Quaternion::from_xyzw([q.i, q.j, q.k, q.w]),
        );
        assert_eq!(transform(&world_from_camera), reference);
    }

    #[test]
    fn invalid_depth_becomes_zero() {
        let depth = DepthMap::<Metres>::new(5, 1, vec![1.5, f32::NAN, -2.0, f32::INFINITY, 0.0])
            .expect("5 x 1");
        let reference = rerun::DepthImage::from_data_type_and_bytes(
            [1.5f32, 0.0, 0.0, 0.0, 0.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
            [5, 1],
            rerun::datatypes::ChannelDatatype::F32,
        )
        .with_meter(1.0);
        assert_eq!(depth_image(&depth), reference);
    }

    #[test]
    fn owned_and_borrowed_pixels_agree() {
        let pixels = vec![[1, 2, 3], [4, 5, 6]];
        let borrowed = rgb_image(2, 1, Cow::Borrowed(&pixels)).expect("2 x 1");
        let owned = rgb_image(2, 1, Cow::Owned(pixels)).expect("2 x 1");
        assert_eq!(owned, borrowed);
        assert_eq!(
            owned,
            rerun::Image::from_rgb24(vec![1, 2, 3, 4, 5, 6], [2, 1])
        );
    }

    #[test]
    fn disparity_uses_the_colormap() {
        let disparity = DepthMap::<Disparity>::new(2, 1, vec![0.0, 1.0]).expect("2 x 1");
        let reference = rerun::Image::from_rgb24(vec![94, 79, 162, 158, 1, 66], [2, 1]);
        assert_eq!(disparity_image(&disparity, Colormap::SpectralR), reference);
    }
}
