//! glTF 2.0 binary (`.glb`): meshes, textured depth-grid meshes, point clouds and cameras,
//! for AR and web viewers (three.js, `<model-viewer>`, Blender, the iOS and Android scene
//! viewers).
//!
//! Our geometry uses the OpenCV camera axes (x right, y down, z forward); glTF's are
//! x right, y up, z toward the viewer. A point `(x, y, z)` is stored as `(x, -y, -z)` (a
//! half turn about x, so windings and handedness are kept), normals likewise. Units are
//! metres.
//!
//! What a file holds:
//! - meshes: `POSITION`, `NORMAL` (when known), `COLOR_0` (the photo's sRGB colours as
//!   linear light, as glTF defines it; normalised 16-bit) and, for a
//!   textured mesh, `TEXCOORD_0` with the photo as `baseColorTexture`;
//! - point clouds: a `POINTS` primitive with `POSITION`, `COLOR_0` and `NORMAL` when known;
//! - cameras: a perspective camera node per view (`yfov` and aspect ratio from the
//!   intrinsics) carrying its frustum as `LINES`.
//!
//! Coloured geometry uses an unlit material (`KHR_materials_unlit`): its colours come from
//! photos, which already hold the lighting. The JSON is written with `serde_json` and
//! the container by hand (a 12-byte header and two chunks); the Khronos glTF-Validator
//! reports no errors or warnings on these files (the CLI's tests run it).
//!
//! ```
//! use anydepth_geometry::io::gltf::Glb;
//! use anydepth_geometry::PointCloud;
//! use nalgebra::Point3;
//!
//! let cloud = PointCloud {
//!     points: vec![Point3::new(0.0, 0.5, 2.0), Point3::new(0.1, 0.5, 2.0)],
//!     colors: Some(vec![[10, 20, 30], [40, 50, 60]]),
//!     normals: None,
//! };
//! let mut glb = Glb::new();
//! glb.add_points("cloud", &cloud).expect("valid cloud");
//! let bytes = glb.to_bytes().expect("encoded");
//! assert_eq!(&bytes[..4], b"glTF");
//! ```

use std::path::Path;

use anydepth_core::Intrinsics;
use nalgebra::{Isometry3, Matrix3, Point3, Rotation3, UnitQuaternion, Vector3};
use serde_json::{json, Value};

use crate::io::write_atomically;
use crate::unproject::validate_camera;
use crate::{Error, PointCloud, Result, TriangleMesh};

/// `bufferView.target` of vertex attributes.
const ARRAY_BUFFER: u32 = 34962;
/// `bufferView.target` of indices.
const ELEMENT_ARRAY_BUFFER: u32 = 34963;
/// `accessor.componentType` values.
const UNSIGNED_SHORT: u32 = 5123;
const UNSIGNED_INT: u32 = 5125;
const FLOAT: u32 = 5126;
/// `primitive.mode` values.
const POINTS: u32 = 0;
const LINES: u32 = 1;
const TRIANGLES: u32 = 4;
/// Near plane of the cameras, in metres.
const CAMERA_ZNEAR: f64 = 0.01;
/// Colour of camera frustums (linear RGB).
const FRUSTUM_COLOR: [f32; 4] = [1.0, 0.35, 0.1, 1.0];

/// A photo laid on a mesh: the encoded image and one texture coordinate per vertex
/// (glTF's: `(0, 0)` is the image's top-left corner, `(1, 1)` its bottom-right).
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    /// The image file's bytes (PNG or JPEG).
    pub image: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub mime_type: &'static str,
    /// One `(u, v)` per vertex of the mesh it belongs to.
    pub tex_coords: Vec<[f32; 2]>,
}

/// A glTF binary file being assembled: add geometry and cameras, then
/// [`Glb::to_bytes`] or [`Glb::write`].
#[derive(Debug, Default)]
pub struct Glb {
    bin: Vec<u8>,
    buffer_views: Vec<Value>,
    accessors: Vec<Value>,
    meshes: Vec<Value>,
    nodes: Vec<Value>,
    cameras: Vec<Value>,
    materials: Vec<Value>,
    images: Vec<Value>,
    textures: Vec<Value>,
    /// Index of the shared unlit vertex-colour material, once made.
    vertex_color_material: Option<usize>,
    /// Index of the frustums' material, once made.
    frustum_material: Option<usize>,
}

impl Glb {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a triangle mesh as a node named `name`; with `texture`, the mesh is drawn
    /// with that image instead of its vertex colours (glTF would multiply the two), and
    /// the colours are not stored.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the mesh is invalid or empty, or the texture coordinates
    /// are not one per vertex or not finite.
    pub fn add_mesh(
        &mut self,
        name: &str,
        mesh: &TriangleMesh,
        texture: Option<&Texture>,
    ) -> Result<()> {
        mesh.validate()?;
        if mesh.faces.is_empty() {
            return Err(Error::Invalid("a glTF mesh needs at least one face".into()));
        }
        // Everything is checked before anything is added, so a refused mesh leaves no
        // orphan buffers behind.
        if let Some(texture) = texture {
            if texture.tex_coords.len() != mesh.vertices.len() {
                return Err(Error::Invalid(format!(
                    "mesh has {} vertices but {} texture coordinates",
                    mesh.vertices.len(),
                    texture.tex_coords.len()
                )));
            }
            if texture.tex_coords.iter().flatten().any(|c| !c.is_finite()) {
                return Err(Error::Invalid("texture coordinates must be finite".into()));
            }
        }
        let colors = if texture.is_some() {
            None
        } else {
            mesh.colors.as_deref()
        };
        let mut attributes =
            self.vertex_attributes(&mesh.vertices, mesh.normals.as_deref(), colors);
        let material = match texture {
            Some(texture) => {
                let flat: Vec<f32> = texture.tex_coords.iter().flatten().copied().collect();
                let uv = self.float_accessor(&flat, "VEC2", false);
                attributes["TEXCOORD_0"] = json!(uv);
                Some(self.texture_material(texture))
            }
            None => mesh.colors.is_some().then(|| self.vertex_color_material()),
        };
        let flat: Vec<u32> = mesh.faces.iter().flatten().copied().collect();
        let indices = self.index_accessor(&flat, mesh.vertices.len());
        let mut primitive =
            json!({ "attributes": attributes, "indices": indices, "mode": TRIANGLES });
        if let Some(material) = material {
            primitive["material"] = json!(material);
        }
        self.add_node_with_mesh(name, primitive);
        Ok(())
    }

    /// Adds a point cloud as a node named `name` with one `POINTS` primitive.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the cloud is invalid or empty.
    pub fn add_points(&mut self, name: &str, cloud: &PointCloud) -> Result<()> {
        cloud.validate()?;
        if cloud.is_empty() {
            return Err(Error::Invalid(
                "a glTF point cloud needs at least one point".into(),
            ));
        }
        let attributes = self.vertex_attributes(
            &cloud.points,
            cloud.normals.as_deref(),
            cloud.colors.as_deref(),
        );
        let mut primitive = json!({ "attributes": attributes, "mode": POINTS });
        if cloud.colors.is_some() {
            primitive["material"] = json!(self.vertex_color_material());
        }
        self.add_node_with_mesh(name, primitive);
        Ok(())
    }

    /// Adds a view's camera as a node named `name`: a perspective camera placed at
    /// `world_from_camera` (OpenCV axes, metres) and its frustum drawn as lines out to
    /// `frustum_depth` metres.
    ///
    /// glTF cameras have no principal point or separate focal lengths: `yfov` comes from
    /// `fy` and the height, the aspect ratio from the image size.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the camera is invalid or `frustum_depth` is not a positive
    /// number.
    pub fn add_camera(
        &mut self,
        name: &str,
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
        frustum_depth: f32,
    ) -> Result<()> {
        validate_camera(camera)?;
        if !(frustum_depth.is_finite() && frustum_depth > 0.0) {
            return Err(Error::Invalid(format!(
                "frustum depth must be a positive number of metres, got {frustum_depth}"
            )));
        }
        let (w, h) = (f64::from(camera.width), f64::from(camera.height));
        let yfov = 2.0 * (h / (2.0 * camera.fy)).atan();
        let camera_index = self.cameras.len();
        self.cameras.push(json!({
            "type": "perspective",
            "name": name,
            "perspective": { "yfov": yfov, "aspectRatio": w / h, "znear": CAMERA_ZNEAR },
        }));

        // The frustum in the camera's own glTF axes: apex and the image's four corners.
        let d = f64::from(frustum_depth);
        let corner = |u: f64, v: f64| {
            gltf_point(&Point3::new(
                ((u - camera.cx) * d / camera.fx) as f32,
                ((v - camera.cy) * d / camera.fy) as f32,
                frustum_depth,
            ))
        };
        // Pixel edges: the image spans -0.5 .. w - 0.5 around pixel centres.
        let corners = [
            corner(-0.5, -0.5),
            corner(w - 0.5, -0.5),
            corner(w - 0.5, h - 0.5),
            corner(-0.5, h - 0.5),
        ];
        let mut positions = vec![[0.0_f32; 3]];
        positions.extend(corners);
        let flat: Vec<f32> = positions.iter().flatten().copied().collect();
        let position = self.float_accessor(&flat, "VEC3", true);
        let lines: [u32; 16] = [0, 1, 0, 2, 0, 3, 0, 4, 1, 2, 2, 3, 3, 4, 4, 1];
        let indices = self.index_accessor(&lines, positions.len());
        let material = self.frustum_material();
        let mesh_index = self.meshes.len();
        self.meshes.push(json!({
            "name": format!("{name} frustum"),
            "primitives": [{
                "attributes": { "POSITION": position },
                "indices": indices,
                "mode": LINES,
                "material": material,
            }],
        }));

        let (rotation, translation) = gltf_pose(world_from_camera);
        self.nodes.push(json!({
            "name": name,
            "camera": camera_index,
            "mesh": mesh_index,
            "rotation": rotation,
            "translation": translation,
        }));
        Ok(())
    }

    /// The file's bytes: header, JSON chunk, binary chunk.
    ///
    /// # Errors
    /// [`Error::Invalid`] when nothing was added, or the file would exceed glTF's 4 GiB.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let json = self.json_chunk()?;
        let bin_len = padded(self.bin.len());
        let total = 12 + 8 + json.len() + if bin_len > 0 { 8 + bin_len } else { 0 };
        let as_u32 = |n: usize| {
            u32::try_from(n).map_err(|_| {
                Error::Invalid(format!(
                    "a glTF binary file is at most 4 GiB, this one would be {n} bytes"
                ))
            })
        };
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(b"glTF");
        out.extend_from_slice(&2_u32.to_le_bytes());
        out.extend_from_slice(&as_u32(total)?.to_le_bytes());
        out.extend_from_slice(&as_u32(json.len())?.to_le_bytes());
        out.extend_from_slice(b"JSON");
        out.extend_from_slice(&json);
        if bin_len > 0 {
            out.extend_from_slice(&as_u32(bin_len)?.to_le_bytes());
            out.extend_from_slice(b"BIN\0");
            out.extend_from_slice(&self.bin);
            out.resize(total, 0);
        }
        Ok(out)
    }

    /// Writes the file to `path`, atomically.
    ///
    /// # Errors
    /// As [`Glb::to_bytes`]; [`Error::File`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomically(path, |out| out.write_all(&bytes))
    }

    /// The JSON chunk, padded with spaces to 4 bytes.
    fn json_chunk(&self) -> Result<Vec<u8>> {
        if self.nodes.is_empty() {
            return Err(Error::Invalid("a glTF file needs at least one node".into()));
        }
        let mut root = json!({
            "asset": {
                "version": "2.0",
                "generator": concat!("anydepth ", env!("CARGO_PKG_VERSION")),
            },
            "scene": 0,
            "scenes": [{ "nodes": (0..self.nodes.len()).collect::<Vec<_>>() }],
            "nodes": self.nodes,
        });
        let lists = [
            ("meshes", &self.meshes),
            ("cameras", &self.cameras),
            ("materials", &self.materials),
            ("images", &self.images),
            ("textures", &self.textures),
            ("accessors", &self.accessors),
            ("bufferViews", &self.buffer_views),
        ];
        for (key, list) in lists {
            if !list.is_empty() {
                root[key] = json!(list);
            }
        }
        if !self.bin.is_empty() {
            root["buffers"] = json!([{ "byteLength": padded(self.bin.len()) }]);
        }
        if !self.materials.is_empty() && self.materials.iter().any(is_unlit) {
            root["extensionsUsed"] = json!(["KHR_materials_unlit"]);
        }
        if !self.textures.is_empty() {
            root["samplers"] = json!([{ "magFilter": 9729, "minFilter": 9987 }]);
        }
        let mut bytes = serde_json::to_vec(&root)
            .map_err(|e| Error::Invalid(format!("cannot encode the glTF JSON: {e}")))?;
        bytes.resize(padded(bytes.len()), b' ');
        Ok(bytes)
    }

    fn add_node_with_mesh(&mut self, name: &str, primitive: Value) {
        let mesh_index = self.meshes.len();
        self.meshes
            .push(json!({ "name": name, "primitives": [primitive] }));
        self.nodes.push(json!({ "name": name, "mesh": mesh_index }));
    }

    /// `POSITION`, and `NORMAL` and `COLOR_0` when given, converted to glTF's axes.
    fn vertex_attributes(
        &mut self,
        points: &[Point3<f32>],
        normals: Option<&[Vector3<f32>]>,
        colors: Option<&[[u8; 3]]>,
    ) -> Value {
        let flat: Vec<f32> = points.iter().flat_map(gltf_point).collect();
        let mut attributes = json!({ "POSITION": self.float_accessor(&flat, "VEC3", true) });
        if let Some(normals) = normals {
            let flat: Vec<f32> = normals.iter().flat_map(gltf_normal).collect();
            attributes["NORMAL"] = json!(self.float_accessor(&flat, "VEC3", false));
        }
        if let Some(colors) = colors {
            attributes["COLOR_0"] = json!(self.color_accessor(colors));
        }
        attributes
    }

    /// Appends `bytes` to the binary chunk (4-byte aligned) as a new buffer view; images
    /// have no `target`.
    fn buffer_view(
        &mut self,
        bytes: &[u8],
        target: Option<u32>,
        byte_stride: Option<usize>,
    ) -> usize {
        let offset = self.bin.len();
        self.bin.extend_from_slice(bytes);
        self.bin.resize(padded(self.bin.len()), 0);
        let mut view = json!({
            "buffer": 0,
            "byteOffset": offset,
            "byteLength": bytes.len(),
        });
        if let Some(target) = target {
            view["target"] = json!(target);
        }
        if let Some(stride) = byte_stride {
            view["byteStride"] = json!(stride);
        }
        self.buffer_views.push(view);
        self.buffer_views.len() - 1
    }

    /// A float vertex attribute of `kind` (`VEC2`, `VEC3`); `POSITION` needs its bounds.
    fn float_accessor(&mut self, values: &[f32], kind: &str, with_bounds: bool) -> usize {
        let width = if kind == "VEC2" { 2 } else { 3 };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = self.buffer_view(&bytes, Some(ARRAY_BUFFER), None);
        let mut accessor = json!({
            "bufferView": view,
            "componentType": FLOAT,
            "count": values.len() / width,
            "type": kind,
        });
        if with_bounds {
            let mut min = vec![f32::INFINITY; width];
            let mut max = vec![f32::NEG_INFINITY; width];
            for row in values.chunks_exact(width) {
                for (k, &v) in row.iter().enumerate() {
                    min[k] = min[k].min(v);
                    max[k] = max[k].max(v);
                }
            }
            accessor["min"] = json!(min);
            accessor["max"] = json!(max);
        }
        self.accessors.push(accessor);
        self.accessors.len() - 1
    }

    /// Colours as glTF wants them, linear: 8-bit sRGB decoded to linear light and stored as
    /// normalised 16-bit values (8 bits would band the darks), each vertex padded to 8
    /// bytes as vertex attributes must be aligned to 4.
    fn color_accessor(&mut self, colors: &[[u8; 3]]) -> usize {
        let table: Vec<u16> = (0..=255).map(srgb_to_linear_u16).collect();
        let bytes: Vec<u8> = colors
            .iter()
            .flat_map(|&[r, g, b]| [table[r as usize], table[g as usize], table[b as usize], 0])
            .flat_map(u16::to_le_bytes)
            .collect();
        let view = self.buffer_view(&bytes, Some(ARRAY_BUFFER), Some(8));
        self.accessors.push(json!({
            "bufferView": view,
            "componentType": UNSIGNED_SHORT,
            "normalized": true,
            "count": colors.len(),
            "type": "VEC3",
        }));
        self.accessors.len() - 1
    }

    /// Indices as unsigned 32-bit integers; their bounds are checked by the caller's
    /// validation (every index below `vertex_count`).
    fn index_accessor(&mut self, indices: &[u32], vertex_count: usize) -> usize {
        debug_assert!(indices.iter().all(|&i| (i as usize) < vertex_count));
        let bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let view = self.buffer_view(&bytes, Some(ELEMENT_ARRAY_BUFFER), None);
        self.accessors.push(json!({
            "bufferView": view,
            "componentType": UNSIGNED_INT,
            "count": indices.len(),
            "type": "SCALAR",
        }));
        self.accessors.len() - 1
    }

    fn vertex_color_material(&mut self) -> usize {
        if let Some(index) = self.vertex_color_material {
            return index;
        }
        let index = self.push_material(json!({
            "name": "vertex colours",
            "pbrMetallicRoughness": { "metallicFactor": 0.0, "roughnessFactor": 1.0 },
            "doubleSided": true,
            "extensions": { "KHR_materials_unlit": {} },
        }));
        self.vertex_color_material = Some(index);
        index
    }

    fn frustum_material(&mut self) -> usize {
        if let Some(index) = self.frustum_material {
            return index;
        }
        let index = self.push_material(json!({
            "name": "camera frustum",
            "pbrMetallicRoughness": {
                "baseColorFactor": FRUSTUM_COLOR,
                "metallicFactor": 0.0,
                "roughnessFactor": 1.0,
            },
            "extensions": { "KHR_materials_unlit": {} },
        }));
        self.frustum_material = Some(index);
        index
    }

    fn texture_material(&mut self, texture: &Texture) -> usize {
        let view = self.buffer_view(&texture.image, None, None);
        self.images
            .push(json!({ "bufferView": view, "mimeType": texture.mime_type }));
        self.textures
            .push(json!({ "source": self.images.len() - 1, "sampler": 0 }));
        self.push_material(json!({
            "name": "photo",
            "pbrMetallicRoughness": {
                "baseColorTexture": { "index": self.textures.len() - 1 },
                "metallicFactor": 0.0,
                "roughnessFactor": 1.0,
            },
            "doubleSided": true,
            "extensions": { "KHR_materials_unlit": {} },
        }))
    }

    fn push_material(&mut self, material: Value) -> usize {
        self.materials.push(material);
        self.materials.len() - 1
    }
}

/// Writes `mesh` (and its `texture`, if any) as a GLB file, atomically.
///
/// # Errors
/// As [`Glb::add_mesh`] and [`Glb::write`].
pub fn write_mesh(path: &Path, mesh: &TriangleMesh, texture: Option<&Texture>) -> Result<()> {
    let mut glb = Glb::new();
    glb.add_mesh("mesh", mesh, texture)?;
    glb.write(path)
}

/// Writes `cloud` as a GLB file of points, atomically.
///
/// # Errors
/// As [`Glb::add_points`] and [`Glb::write`].
pub fn write_point_cloud(path: &Path, cloud: &PointCloud) -> Result<()> {
    let mut glb = Glb::new();
    glb.add_points("cloud", cloud)?;
    glb.write(path)
}

/// An 8-bit sRGB value as linear light, normalised to 16 bits (the sRGB transfer function,
/// IEC 61966-2-1).
pub fn srgb_to_linear_u16(value: u8) -> u16 {
    let c = f64::from(value) / 255.0;
    let linear = if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    };
    (linear * 65535.0).round() as u16
}

/// The OpenCV-axes point `p` in glTF's axes: `(x, -y, -z)`.
pub fn gltf_point(p: &Point3<f32>) -> [f32; 3] {
    [p.x, -p.y, -p.z]
}

/// A normal in glTF's axes, unit length as glTF requires; one that cannot be normalised
/// (zero or not finite) becomes `(0, 0, 1)`, facing the viewer.
fn gltf_normal(n: &Vector3<f32>) -> [f32; 3] {
    let converted = Vector3::new(n.x, -n.y, -n.z);
    let norm = converted.norm();
    if norm.is_finite() && norm > 1e-12 {
        let unit = converted / norm;
        [unit.x, unit.y, unit.z]
    } else {
        [0.0, 0.0, 1.0]
    }
}

/// `world_from_camera` (OpenCV axes for both the world and the camera) as a glTF node's
/// rotation quaternion `[x, y, z, w]` and translation: `C * pose * C` with
/// `C = diag(1, -1, -1)`.
fn gltf_pose(world_from_camera: &Isometry3<f64>) -> ([f64; 4], [f64; 3]) {
    let flip = Matrix3::from_diagonal(&Vector3::new(1.0, -1.0, -1.0));
    let rotation = flip * world_from_camera.rotation.to_rotation_matrix().matrix() * flip;
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(rotation));
    let t = world_from_camera.translation.vector;
    ([q.i, q.j, q.k, q.w], [t.x, -t.y, -t.z])
}

fn is_unlit(material: &Value) -> bool {
    material
        .get("extensions")
        .and_then(|e| e.get("KHR_materials_unlit"))
        .is_some()
}

/// `n` rounded up to a multiple of 4.
fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pose_flips_into_gltf_axes() {
        // A camera 1 m along +x looking down OpenCV +z: in glTF it looks down -z from
        // (1, 0, 0), which is the identity rotation.
        let pose = Isometry3::translation(1.0, 2.0, 3.0);
        let (q, t) = gltf_pose(&pose);
        assert_eq!(t, [1.0, -2.0, -3.0]);
        assert!((q[3].abs() - 1.0).abs() < 1e-12);
        // A camera turned 90 degrees about y looks down OpenCV's +x; a glTF camera looks
        // down its local -z, which must land on glTF's +x (x is kept by the flip).
        let turned = Isometry3::rotation(Vector3::new(0.0, std::f64::consts::FRAC_PI_2, 0.0));
        let (q, _) = gltf_pose(&turned);
        let rotation =
            UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(q[3], q[0], q[1], q[2]));
        let forward = rotation * Vector3::new(0.0, 0.0, -1.0);
        assert!(
            (forward - Vector3::new(1.0, 0.0, 0.0)).norm() < 1e-12,
            "{forward}"
        );
        // And its image's down (OpenCV +y, glTF local -y) stays world down (glTF -y).
        let down = rotation * Vector3::new(0.0, -1.0, 0.0);
        assert!(
            (down - Vector3::new(0.0, -1.0, 0.0)).norm() < 1e-12,
            "{down}"
        );
    }

    #[test]
    fn container_is_aligned_and_sized() {
        let mesh = TriangleMesh {
            vertices: vec![
                Point3::new(0.0, 0.0, 1.0),
                Point3::new(1.0, 0.0, 1.0),
                Point3::new(0.0, 1.0, 1.0),
            ],
            faces: vec![[0, 2, 1]],
            colors: Some(vec![[255, 0, 0]; 3]),
            normals: None,
        };
        let mut glb = Glb::new();
        glb.add_mesh("mesh", &mesh, None).expect("valid mesh");
        let bytes = glb.to_bytes().expect("encoded");
        let total = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(total, bytes.len());
        assert_eq!(bytes.len() % 4, 0);
        let json_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let json: Value = serde_json::from_slice(&bytes[20..20 + json_len]).expect("JSON");
        assert_eq!(json["accessors"][0]["max"], json!([1.0, 0.0, -1.0]));
        assert_eq!(json["extensionsUsed"], json!(["KHR_materials_unlit"]));
    }

    #[test]
    fn colours_are_stored_as_linear_light() {
        assert_eq!(srgb_to_linear_u16(0), 0);
        assert_eq!(srgb_to_linear_u16(255), 65535);
        // sRGB 50% grey is about 21.4% linear.
        let mid = f64::from(srgb_to_linear_u16(128)) / 65535.0;
        assert!((mid - 0.2158).abs() < 1e-3, "{mid}");
    }

    #[test]
    fn empty_and_mismatched_input_is_refused() {
        let mut glb = Glb::new();
        assert!(glb.to_bytes().is_err());
        assert!(glb.add_points("cloud", &PointCloud::default()).is_err());
        let mesh = TriangleMesh {
            vertices: vec![Point3::new(0.0, 0.0, 1.0); 3],
            faces: vec![[0, 1, 2]],
            ..Default::default()
        };
        let texture = Texture {
            image: vec![],
            mime_type: "image/png",
            tex_coords: vec![[0.0, 0.0]; 2],
        };
        assert!(glb.add_mesh("mesh", &mesh, Some(&texture)).is_err());
    }
}
