//! One view to a point cloud or a mesh, and clouds and meshes to file bytes: what
//! `anydepth cloud`, `anydepth mesh`, `anydepth fuse` and the depth service share, so
//! the same input gives the same bytes everywhere.
//!
//! Formats are chosen by the output's extension ([`ShapeFormat::from_path`]): binary or
//! ASCII PLY, OBJ (meshes), and glTF binary (`.glb`, see
//! [`anydepth_geometry::io::gltf`]), which can also carry the views' cameras. A mesh
//! made from a photo's depth grid carries the photo as its texture in GLB, unless
//! [`MeshSettings::vertex_colors`] asks for colours per vertex.
//!
//! ```no_run
//! use anydepth_pipeline::scene::Scene;
//! use anydepth_pipeline::shape::{build_mesh, encode_mesh, MeshSettings, ShapeFormat};
//!
//! # fn run(scene: &Scene) -> anydepth_pipeline::Result<()> {
//! let mesh = build_mesh(scene, None, &MeshSettings::default(), ShapeFormat::Glb)?;
//! let glb = encode_mesh(&mesh, ShapeFormat::Glb, &[])?;
//! std::fs::write("scene.glb", glb)?;
//! # Ok(())
//! # }
//! ```

use std::io::Cursor;
use std::path::Path;

use anydepth_core::{DepthMap, Intrinsics, Metres};
use anydepth_geometry::filter::{remove_statistical_outliers, voxel_downsample};
use anydepth_geometry::grid_mesh::{grid_mesh, GridMeshOptions};
use anydepth_geometry::io::gltf::{Glb, Texture};
use anydepth_geometry::io::{obj, ply};
use anydepth_geometry::normals::estimate_normals;
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use anydepth_geometry::{PointCloud, TriangleMesh};
use nalgebra::{Isometry3, Point3};

use crate::error::{bail, Context, Result};
use crate::scene::Scene;

/// JPEG quality of a photo embedded as a mesh's texture.
pub const TEXTURE_JPEG_QUALITY: u8 = 92;

/// Neighbours and standard deviations of `--remove-outliers`.
const OUTLIER_NEIGHBOURS: usize = 20;
const OUTLIER_STD_RATIO: f64 = 2.0;
/// Neighbours of `--normals`.
const NORMAL_NEIGHBOURS: usize = 20;

/// How a view becomes a point cloud (`anydepth cloud`).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CloudSettings {
    /// Average points into voxels of this size, in metres.
    #[cfg_attr(feature = "clap", arg(long, value_name = "M"))]
    pub voxel_size: Option<f32>,

    /// Remove statistical outliers (20 neighbours, 2 standard deviations).
    #[cfg_attr(feature = "clap", arg(long))]
    pub remove_outliers: bool,

    /// Estimate normals (20 neighbours), oriented toward the camera.
    #[cfg_attr(feature = "clap", arg(long))]
    pub normals: bool,
}

/// How a view becomes a mesh (`anydepth mesh`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct MeshSettings {
    /// Use every N-th pixel.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1, value_name = "N"))]
    pub stride: usize,

    /// Cut triangles whose largest depth exceeds their smallest by more than this
    /// fraction (depth discontinuities).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FRACTION"))]
    pub max_jump: Option<f32>,

    /// In GLB, colour the mesh per vertex instead of texturing it with the photo.
    #[cfg_attr(feature = "clap", arg(long))]
    pub vertex_colors: bool,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            stride: 1,
            max_jump: None,
            vertex_colors: false,
        }
    }
}

/// A mesh to write, with the photo to lay on it in GLB when it was made from one view.
#[derive(Clone, Debug, PartialEq)]
pub struct TexturedMesh {
    /// The mesh, with vertex colours when the view has colours.
    pub mesh: TriangleMesh,
    /// The photo and each vertex's place in it, for GLB; `None` for other formats,
    /// without colours, or with [`MeshSettings::vertex_colors`].
    pub texture: Option<Texture>,
}

/// A view's camera, to be drawn in a GLB file.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewCamera {
    /// The camera's intrinsics.
    pub intrinsics: Intrinsics,
    /// Its pose (OpenCV axes, metres).
    pub world_from_camera: Isometry3<f64>,
}

/// A file format for clouds and meshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeFormat {
    /// Binary little-endian PLY.
    Ply,
    /// ASCII PLY.
    PlyAscii,
    /// Wavefront OBJ (meshes only).
    Obj,
    /// glTF 2.0 binary.
    Glb,
}

impl ShapeFormat {
    /// The format of `path` by its extension: `.glb`, `.obj`, else PLY (ASCII when
    /// `ascii`).
    ///
    /// # Errors
    /// When `ascii` is asked for a format other than PLY.
    pub fn from_path(path: &Path, ascii: bool) -> Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            Some("glb") => Self::Glb,
            Some("obj") => Self::Obj,
            _ if ascii => Self::PlyAscii,
            _ => Self::Ply,
        };
        if ascii && format != Self::PlyAscii {
            bail!("--ascii applies to PLY outputs, not {}", path.display());
        }
        Ok(format)
    }

    /// Whether the format can carry cameras.
    pub fn carries_cameras(self) -> bool {
        self == Self::Glb
    }
}

/// The point cloud of `scene`: its pixels with depth up to `max_depth` metres,
/// unprojected with its camera and coloured, then filtered as `settings` ask.
///
/// # Errors
/// When the settings are invalid or no pixel has valid depth within range.
pub fn build_cloud(
    scene: &Scene,
    max_depth: Option<f32>,
    settings: &CloudSettings,
) -> Result<PointCloud> {
    if let Some(v) = settings.voxel_size {
        if !(v.is_finite() && v > 0.0) {
            bail!("--voxel-size must be a positive number of metres, got {v}");
        }
    }
    let options = UnprojectOptions {
        max_depth_m: max_depth.unwrap_or(f32::INFINITY),
        ..Default::default()
    };
    let mut cloud = unproject(
        &scene.depth,
        &scene.camera,
        &options,
        scene.color.as_deref().map(<[[u8; 3]]>::as_flattened),
    )?;
    if cloud.is_empty() {
        bail!("no valid depth within range: the cloud would be empty");
    }
    if settings.remove_outliers {
        cloud = remove_statistical_outliers(&cloud, OUTLIER_NEIGHBOURS, OUTLIER_STD_RATIO)?.0;
    }
    if let Some(v) = settings.voxel_size {
        cloud = voxel_downsample(&cloud, v)?;
    }
    if settings.normals {
        estimate_normals(&mut cloud, NORMAL_NEIGHBOURS, Point3::origin())?;
    }
    Ok(cloud)
}

/// The depth-grid mesh of `scene` (depth up to `max_depth` metres), with vertex colours
/// and, when it is to be written as `format` GLB without [`MeshSettings::vertex_colors`],
/// the photo as its texture.
///
/// # Errors
/// When the settings are invalid or no triangle is left.
pub fn build_mesh(
    scene: &Scene,
    max_depth: Option<f32>,
    settings: &MeshSettings,
    format: ShapeFormat,
) -> Result<TexturedMesh> {
    let mut options = GridMeshOptions {
        stride: settings.stride,
        ..Default::default()
    };
    if let Some(jump) = settings.max_jump {
        options.max_relative_jump = jump;
    }
    let (width, height) = (scene.depth.width(), scene.depth.height());
    let clipped;
    let depth = match max_depth {
        Some(max_m) => {
            let values = scene
                .depth
                .data()
                .iter()
                .map(|&d| if d > max_m { f32::NAN } else { d })
                .collect();
            clipped = DepthMap::<Metres>::new(width, height, values)?;
            &clipped
        }
        None => &scene.depth,
    };
    let color = scene.color.as_deref();
    let grid = grid_mesh(
        depth,
        &scene.camera,
        &options,
        color.map(<[[u8; 3]]>::as_flattened),
    )?;
    if grid.mesh.faces.is_empty() {
        bail!("no triangles: the depth map has no valid 2x2 blocks within range");
    }
    let texture = match color {
        Some(pixels) if format == ShapeFormat::Glb && !settings.vertex_colors => Some(Texture {
            image: encode_jpeg(width, height, pixels)?,
            mime_type: "image/jpeg",
            tex_coords: grid.tex_coords(width, height),
        }),
        _ => None,
    };
    Ok(TexturedMesh {
        mesh: grid.mesh,
        texture,
    })
}

/// The file bytes of `cloud` in `format`, with `cameras` (GLB only).
///
/// # Errors
/// When the format cannot hold a cloud (OBJ) or cameras, or the cloud is invalid.
pub fn encode_cloud(
    cloud: &PointCloud,
    format: ShapeFormat,
    cameras: &[ViewCamera],
) -> Result<Vec<u8>> {
    check_cameras(format, cameras)?;
    Ok(match format {
        ShapeFormat::Ply => ply::encode_point_cloud(cloud, ply::PlyEncoding::BinaryLittleEndian)?,
        ShapeFormat::PlyAscii => ply::encode_point_cloud(cloud, ply::PlyEncoding::Ascii)?,
        ShapeFormat::Obj => bail!("OBJ holds meshes: write a point cloud as .ply or .glb"),
        ShapeFormat::Glb => {
            let mut glb = Glb::new();
            glb.add_points("cloud", cloud)?;
            add_cameras(&mut glb, cameras, &cloud.points)?;
            glb.to_bytes()?
        }
    })
}

/// The file bytes of `mesh` in `format`, with `cameras` (GLB only); the texture is used
/// by GLB alone.
///
/// # Errors
/// When the format cannot hold cameras, or the mesh is invalid.
pub fn encode_mesh(
    mesh: &TexturedMesh,
    format: ShapeFormat,
    cameras: &[ViewCamera],
) -> Result<Vec<u8>> {
    check_cameras(format, cameras)?;
    Ok(match format {
        ShapeFormat::Ply => ply::encode_mesh(&mesh.mesh, ply::PlyEncoding::BinaryLittleEndian)?,
        ShapeFormat::PlyAscii => ply::encode_mesh(&mesh.mesh, ply::PlyEncoding::Ascii)?,
        ShapeFormat::Obj => obj::encode_obj(&mesh.mesh)?,
        ShapeFormat::Glb => {
            let mut glb = Glb::new();
            glb.add_mesh("mesh", &mesh.mesh, mesh.texture.as_ref())?;
            add_cameras(&mut glb, cameras, &mesh.mesh.vertices)?;
            glb.to_bytes()?
        }
    })
}

fn check_cameras(format: ShapeFormat, cameras: &[ViewCamera]) -> Result<()> {
    if !cameras.is_empty() && !format.carries_cameras() {
        bail!("--cameras needs a glTF output: give a file ending in .glb");
    }
    Ok(())
}

/// Adds each camera with a frustum sized to the geometry: a twentieth of its bounding
/// box's diagonal (at least 1 cm).
fn add_cameras(glb: &mut Glb, cameras: &[ViewCamera], points: &[Point3<f32>]) -> Result<()> {
    if cameras.is_empty() {
        return Ok(());
    }
    let frustum_depth = (bounding_diagonal(points) / 20.0).max(0.01);
    for (i, camera) in cameras.iter().enumerate() {
        glb.add_camera(
            &format!("camera {i}"),
            &camera.intrinsics,
            &camera.world_from_camera,
            frustum_depth,
        )?;
    }
    Ok(())
}

fn bounding_diagonal(points: &[Point3<f32>]) -> f32 {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in points {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let d: f32 = (0..3).map(|k| (hi[k] - lo[k]).powi(2)).sum::<f32>().sqrt();
    if d.is_finite() {
        d
    } else {
        0.0
    }
}

/// The photo as a JPEG file's bytes.
fn encode_jpeg(width: u32, height: u32, pixels: &[[u8; 3]]) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, TEXTURE_JPEG_QUALITY)
        .encode(
            pixels.as_flattened(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .context("cannot encode the photo as the mesh's texture")?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        let format = |path: &str, ascii| ShapeFormat::from_path(Path::new(path), ascii);
        assert_eq!(format("a.GLB", false).expect("glb"), ShapeFormat::Glb);
        assert_eq!(format("a.obj", false).expect("obj"), ShapeFormat::Obj);
        assert_eq!(format("a.ply", true).expect("ply"), ShapeFormat::PlyAscii);
        assert_eq!(format("a", false).expect("ply"), ShapeFormat::Ply);
        assert!(format("a.glb", true).is_err());
    }

    #[test]
    fn cameras_need_glb() {
        let camera = ViewCamera {
            intrinsics: Intrinsics::new(100.0, 100.0, 1.0, 1.0, 3, 3).expect("camera"),
            world_from_camera: Isometry3::identity(),
        };
        let cloud = PointCloud {
            points: vec![Point3::new(0.0, 0.0, 1.0)],
            ..Default::default()
        };
        let cameras = [camera];
        assert!(encode_cloud(&cloud, ShapeFormat::Ply, &cameras).is_err());
        let glb = encode_cloud(&cloud, ShapeFormat::Glb, &cameras).expect("glb");
        assert_eq!(&glb[..4], b"glTF");
    }
}
