//! PLY files for point clouds and triangle meshes, as Open3D and MeshLab write them.
//!
//! Written layout: element `vertex` with `float x, y, z`, then `float nx, ny, nz` when
//! normals are present, then `uchar red, green, blue` when colours are present; for
//! meshes, element `face` with `list uchar int vertex_indices`.
//!
//! Reading accepts `float` or `double` coordinates and normals, `uchar` colours (or
//! `float`/`double` colours in `0..=1`), faces as `vertex_indices` or `vertex_index`
//! with any integer list type (polygons are split into triangle fans), and either
//! binary byte order or ASCII. Unknown properties and elements are skipped.
//!
//! ```
//! use anydepth_geometry::io::ply::{read_mesh, write_mesh, PlyEncoding};
//! use anydepth_geometry::TriangleMesh;
//! use nalgebra::Point3;
//!
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let path = dir.path().join("triangle.ply");
//! let mesh = TriangleMesh {
//!     vertices: vec![
//!         Point3::new(0.0, 0.0, 1.0),
//!         Point3::new(0.0, 1.0, 1.0),
//!         Point3::new(1.0, 0.0, 1.0),
//!     ],
//!     faces: vec![[0, 1, 2]],
//!     colors: None,
//!     normals: None,
//! };
//! write_mesh(&path, &mesh, PlyEncoding::Ascii).expect("written");
//! assert_eq!(read_mesh(&path).expect("read"), mesh);
//! ```

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::ops::Range;
use std::path::Path;

use nalgebra::{Point3, Vector3};
use ply_rs_bw::parser::Parser;
use ply_rs_bw::ply::{
    Addable, ElementDef, Encoding, Header, Ply, Property, PropertyAccess, PropertyAccessResult,
    PropertyDef, PropertyType, ScalarType,
};
use ply_rs_bw::writer::Writer;
use rayon::prelude::*;

use crate::io::write_atomically;
use crate::{Error, PointCloud, Result, TriangleMesh};

/// How the payload of a written PLY file is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlyEncoding {
    /// Compact and exact; what Open3D writes by default.
    #[default]
    BinaryLittleEndian,
    /// Human-readable; floats are written in their shortest exact form.
    Ascii,
}

/// Writes a point cloud as a PLY file, atomically.
///
/// # Errors
/// [`Error::Invalid`] when the cloud is inconsistent (see [`PointCloud::validate`]);
/// [`Error::File`] when the file cannot be written.
pub fn write_point_cloud(path: &Path, cloud: &PointCloud, encoding: PlyEncoding) -> Result<()> {
    let vertices = cloud_vertices(cloud)?;
    write_atomically(path, |out| write_ply(out, &vertices, None, encoding))
}

/// The bytes [`write_point_cloud`] writes.
///
/// # Errors
/// As [`write_point_cloud`].
pub fn encode_point_cloud(cloud: &PointCloud, encoding: PlyEncoding) -> Result<Vec<u8>> {
    let vertices = cloud_vertices(cloud)?;
    encode(|out| write_ply(out, &vertices, None, encoding))
}

/// Writes a triangle mesh as a PLY file, atomically.
///
/// # Errors
/// [`Error::Invalid`] when the mesh is inconsistent (see [`TriangleMesh::validate`]) or
/// has more vertices than a PLY `int` index can address; [`Error::File`] when the file
/// cannot be written.
pub fn write_mesh(path: &Path, mesh: &TriangleMesh, encoding: PlyEncoding) -> Result<()> {
    let vertices = mesh_vertices(mesh)?;
    write_atomically(path, |out| {
        write_ply(out, &vertices, Some(&mesh.faces), encoding)
    })
}

/// The bytes [`write_mesh`] writes.
///
/// # Errors
/// As [`write_mesh`].
pub fn encode_mesh(mesh: &TriangleMesh, encoding: PlyEncoding) -> Result<Vec<u8>> {
    let vertices = mesh_vertices(mesh)?;
    encode(|out| write_ply(out, &vertices, Some(&mesh.faces), encoding))
}

fn cloud_vertices(cloud: &PointCloud) -> Result<Vertices<'_>> {
    cloud.validate()?;
    Ok(Vertices {
        points: &cloud.points,
        normals: cloud.normals.as_deref(),
        colors: cloud.colors.as_deref(),
    })
}

fn mesh_vertices(mesh: &TriangleMesh) -> Result<Vertices<'_>> {
    mesh.validate()?;
    if i32::try_from(mesh.vertices.len()).is_err() {
        return Err(Error::Invalid(format!(
            "a mesh with {} vertices cannot be indexed by PLY int indices",
            mesh.vertices.len()
        )));
    }
    Ok(Vertices {
        points: &mesh.vertices,
        normals: mesh.normals.as_deref(),
        colors: mesh.colors.as_deref(),
    })
}

/// What `write` writes, in memory.
fn encode(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    write(&mut bytes).map_err(|e| Error::Invalid(format!("cannot encode PLY: {e}")))?;
    Ok(bytes)
}

/// The PLY file of `vertices` (and `faces`) in `encoding`.
fn write_ply(
    out: &mut dyn Write,
    vertices: &Vertices<'_>,
    faces: Option<&[[u32; 3]]>,
    encoding: PlyEncoding,
) -> io::Result<()> {
    match encoding {
        PlyEncoding::BinaryLittleEndian => write_binary(out, vertices, faces),
        PlyEncoding::Ascii => write_with_ply_rs(out, vertices, faces, encoding),
    }
}

/// Reads the vertices of a PLY file (with normals and colours when it has them) as a
/// point cloud; faces, if any, are ignored.
///
/// # Errors
/// [`Error::File`] when the file cannot be read, is not a valid PLY file, or has no
/// `vertex` element with `x`, `y` and `z`.
pub fn read_point_cloud(path: &Path) -> Result<PointCloud> {
    let contents = read_ply(path)?;
    Ok(PointCloud {
        points: contents.vertices,
        colors: contents.colors,
        normals: contents.normals,
    })
}

/// Reads a PLY file as a triangle mesh; polygons with more than three corners are split
/// into triangle fans. A file without a `face` element gives a mesh without faces.
///
/// # Errors
/// [`Error::File`] when the file cannot be read, is not a valid PLY file, has no
/// `vertex` element with `x`, `y` and `z`, or has a face with fewer than three corners
/// or an index that is negative or beyond the vertices.
pub fn read_mesh(path: &Path) -> Result<TriangleMesh> {
    let contents = read_ply(path)?;
    if !contents.faces.is_empty() && !contents.faces_have_indices {
        return Err(Error::File {
            reason: "the face element of the PLY file has no vertex_indices".into(),
            path: path.to_path_buf(),
        });
    }
    let n = contents.vertices.len();
    let mut faces = Vec::with_capacity(contents.faces.len());
    for (i, polygon) in contents.faces.iter().enumerate() {
        let bad = |what: String| Error::File {
            reason: format!("face {i} of the PLY file {what}"),
            path: path.to_path_buf(),
        };
        let indices = match &polygon.indices {
            Some(indices) => indices,
            None => {
                return Err(bad(
                    "has an index list that is not non-negative integers".into()
                ))
            }
        };
        if indices.len() < 3 {
            return Err(bad(format!("has only {} corners", indices.len())));
        }
        if let Some(&v) = indices.iter().find(|&&v| v as usize >= n) {
            return Err(bad(format!(
                "refers to vertex {v} but the file has {n} vertices"
            )));
        }
        faces.extend((1..indices.len() - 1).map(|k| [indices[0], indices[k], indices[k + 1]]));
    }
    Ok(TriangleMesh {
        vertices: contents.vertices,
        faces,
        colors: contents.colors,
        normals: contents.normals,
    })
}

/// One element of either kind, as ply-rs-bw reads and writes them.
#[derive(Clone, Debug, Default)]
struct Element {
    xyz: [f32; 3],
    normal: [f32; 3],
    rgb: [u8; 3],
    /// Face corners; `None` when the file's list held negative or non-integer values.
    indices: Option<Vec<u32>>,
    /// The same corners for writing, where PLY wants `int`.
    indices_out: Vec<i32>,
}

fn axis(name: &str) -> Option<usize> {
    match name {
        "x" | "nx" | "red" => Some(0),
        "y" | "ny" | "green" => Some(1),
        "z" | "nz" | "blue" => Some(2),
        _ => None,
    }
}

impl PropertyAccess for Element {
    fn new() -> Self {
        Self::default()
    }

    fn set_property(&mut self, name: &str, property: Property) -> PropertyAccessResult {
        let as_f32 = |p: &Property| match *p {
            Property::Float(v) => Some(v),
            Property::Double(v) => Some(v as f32),
            _ => None,
        };
        match (name, axis(name)) {
            ("x" | "y" | "z", Some(k)) => match as_f32(&property) {
                Some(v) => self.xyz[k] = v,
                None => return PropertyAccessResult::UnsupportedType,
            },
            ("nx" | "ny" | "nz", Some(k)) => match as_f32(&property) {
                Some(v) => self.normal[k] = v,
                None => return PropertyAccessResult::UnsupportedType,
            },
            ("red" | "green" | "blue", Some(k)) => match property {
                Property::UChar(v) => self.rgb[k] = v,
                Property::Float(v) => self.rgb[k] = (v.clamp(0.0, 1.0) * 255.0).round() as u8,
                Property::Double(v) => self.rgb[k] = (v.clamp(0.0, 1.0) * 255.0).round() as u8,
                _ => return PropertyAccessResult::UnsupportedType,
            },
            ("vertex_indices" | "vertex_index", _) => self.indices = property.to_u32_list(),
            _ => return PropertyAccessResult::Ignored,
        }
        PropertyAccessResult::Set
    }

    fn get_float(&self, name: &str) -> Option<f32> {
        match (name, axis(name)) {
            ("x" | "y" | "z", Some(k)) => Some(self.xyz[k]),
            ("nx" | "ny" | "nz", Some(k)) => Some(self.normal[k]),
            _ => None,
        }
    }

    fn get_uchar(&self, name: &str) -> Option<u8> {
        match (name, axis(name)) {
            ("red" | "green" | "blue", Some(k)) => Some(self.rgb[k]),
            _ => None,
        }
    }

    fn get_list_int(&self, name: &str) -> Option<&[i32]> {
        (name == "vertex_indices").then_some(self.indices_out.as_slice())
    }
}

/// The comment line of every written header.
const COMMENT: &str = "written by anydepth";
const POSITION: [&str; 3] = ["x", "y", "z"];
const NORMAL: [&str; 3] = ["nx", "ny", "nz"];
const COLOR: [&str; 3] = ["red", "green", "blue"];
/// Bytes of one binary face row: a `uchar` count of 3, then three `int` indices.
const FACE_ROW_BYTES: usize = 1 + 3 * 4;
/// Rows one rayon task encodes.
const ROWS_PER_TASK: usize = 1 << 13;
/// Rows encoded (in parallel) into the reused buffer before it is written out, which
/// bounds the writer's memory to a few megabytes whatever the size of the cloud.
const ROWS_PER_BATCH: usize = 1 << 18;

/// The vertex element to write: positions, with normals and colours when present (each
/// as long as `points`, which the callers have validated).
#[derive(Clone, Copy)]
struct Vertices<'a> {
    points: &'a [Point3<f32>],
    normals: Option<&'a [Vector3<f32>]>,
    colors: Option<&'a [[u8; 3]]>,
}

impl Vertices<'_> {
    /// Bytes of one binary vertex row.
    fn row_bytes(&self) -> usize {
        3 * 4
            + if self.normals.is_some() { 3 * 4 } else { 0 }
            + if self.colors.is_some() { 3 } else { 0 }
    }

    /// Encodes vertices `rows` into `out`, which holds exactly that many rows.
    fn encode(&self, rows: Range<usize>, out: &mut [u8]) {
        let points = &self.points[rows.clone()];
        match (self.normals, self.colors) {
            (None, None) => encode_vertex_rows::<false, false>(out, points, &[], &[]),
            (None, Some(c)) => encode_vertex_rows::<false, true>(out, points, &[], &c[rows]),
            (Some(n), None) => encode_vertex_rows::<true, false>(out, points, &n[rows], &[]),
            (Some(n), Some(c)) => {
                encode_vertex_rows::<true, true>(out, points, &n[rows.clone()], &c[rows]);
            }
        }
    }
}

/// Little-endian `float x, y, z[, nx, ny, nz][, uchar red, green, blue]` rows; one
/// instance per layout so that the per-row work has no branches.
fn encode_vertex_rows<const NORMALS: bool, const COLORS: bool>(
    out: &mut [u8],
    points: &[Point3<f32>],
    normals: &[Vector3<f32>],
    colors: &[[u8; 3]],
) {
    let row_bytes = 12 + if NORMALS { 12 } else { 0 } + if COLORS { 3 } else { 0 };
    for (i, (row, p)) in out.chunks_exact_mut(row_bytes).zip(points).enumerate() {
        put_f32x3(&mut row[..12], &p.coords);
        if NORMALS {
            put_f32x3(&mut row[12..24], &normals[i]);
        }
        if COLORS {
            row[row_bytes - 3..].copy_from_slice(&colors[i]);
        }
    }
}

fn put_f32x3(out: &mut [u8], v: &Vector3<f32>) {
    out[0..4].copy_from_slice(&v.x.to_le_bytes());
    out[4..8].copy_from_slice(&v.y.to_le_bytes());
    out[8..12].copy_from_slice(&v.z.to_le_bytes());
}

/// Little-endian `list uchar int` rows of three indices each.
fn encode_face_rows(faces: &[[u32; 3]], out: &mut [u8]) {
    for (row, face) in out.chunks_exact_mut(FACE_ROW_BYTES).zip(faces) {
        row[0] = 3;
        for (k, &v) in face.iter().enumerate() {
            // Indices are below i32::MAX (the caller checked the vertex count), where
            // the bytes of the u32 are those of the PLY int.
            row[1 + 4 * k..5 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// The header ply-rs-bw writes for [`build_ply`]'s layout in binary little endian.
fn binary_header(vertices: &Vertices<'_>, faces: Option<&[[u32; 3]]>) -> String {
    let mut header = format!(
        "ply\nformat binary_little_endian 1.0\ncomment {COMMENT}\nelement vertex {}\n",
        vertices.points.len()
    );
    let mut scalars = |names: [&str; 3], scalar: &str| {
        for name in names {
            header.push_str(&format!("property {scalar} {name}\n"));
        }
    };
    scalars(POSITION, "float");
    if vertices.normals.is_some() {
        scalars(NORMAL, "float");
    }
    if vertices.colors.is_some() {
        scalars(COLOR, "uchar");
    }
    if let Some(faces) = faces {
        header.push_str(&format!(
            "element face {}\nproperty list uchar int vertex_indices\n",
            faces.len()
        ));
    }
    header.push_str("end_header\n");
    header
}

/// Writes `rows` rows of `row_bytes` bytes each to `out`: `encode(range, bytes)` fills
/// `bytes` with the rows in `range`, tasks of [`ROWS_PER_TASK`] rows in parallel, one
/// batch of [`ROWS_PER_BATCH`] rows at a time.
fn write_rows(
    out: &mut dyn Write,
    rows: usize,
    row_bytes: usize,
    encode: impl Fn(Range<usize>, &mut [u8]) + Sync,
) -> io::Result<()> {
    let mut buffer = vec![0u8; rows.min(ROWS_PER_BATCH) * row_bytes];
    for start in (0..rows).step_by(ROWS_PER_BATCH) {
        let end = rows.min(start + ROWS_PER_BATCH);
        let bytes = &mut buffer[..(end - start) * row_bytes];
        bytes
            .par_chunks_mut(ROWS_PER_TASK * row_bytes)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = start + task * ROWS_PER_TASK;
                encode(first..first + chunk.len() / row_bytes, chunk);
            });
        out.write_all(bytes)?;
    }
    Ok(())
}

/// Binary little-endian PLY, byte for byte what ply-rs-bw writes for the same data
/// ([`write_with_ply_rs`]), encoded in parallel.
fn write_binary(
    out: &mut dyn Write,
    vertices: &Vertices<'_>,
    faces: Option<&[[u32; 3]]>,
) -> io::Result<()> {
    let header = binary_header(vertices, faces);
    out.write_all(header.as_bytes())?;
    write_rows(
        out,
        vertices.points.len(),
        vertices.row_bytes(),
        |rows, bytes| vertices.encode(rows, bytes),
    )?;
    if let Some(faces) = faces {
        write_rows(out, faces.len(), FACE_ROW_BYTES, |rows, bytes| {
            encode_face_rows(&faces[rows], bytes);
        })?;
    }
    Ok(())
}

fn scalar_properties(element: &mut ElementDef, names: [&str; 3], scalar: ScalarType) {
    for name in names {
        element.properties.add(PropertyDef::new(
            name.to_string(),
            PropertyType::Scalar(scalar.clone()),
        ));
    }
}

fn build_ply(
    vertices: &Vertices<'_>,
    faces: Option<&[[u32; 3]]>,
    encoding: PlyEncoding,
) -> Ply<Element> {
    let Vertices {
        points,
        normals,
        colors,
    } = *vertices;
    let mut header = Header::new();
    header.encoding = match encoding {
        PlyEncoding::BinaryLittleEndian => Encoding::BinaryLittleEndian,
        PlyEncoding::Ascii => Encoding::Ascii,
    };
    header.comments.push(COMMENT.into());

    let mut vertex = ElementDef::new("vertex".into());
    scalar_properties(&mut vertex, POSITION, ScalarType::Float);
    if normals.is_some() {
        scalar_properties(&mut vertex, NORMAL, ScalarType::Float);
    }
    if colors.is_some() {
        scalar_properties(&mut vertex, COLOR, ScalarType::UChar);
    }
    vertex.count = points.len();
    let vertices: Vec<Element> = points
        .iter()
        .enumerate()
        .map(|(i, p)| Element {
            xyz: [p.x, p.y, p.z],
            normal: normals.map_or([0.0; 3], |n| [n[i].x, n[i].y, n[i].z]),
            rgb: colors.map_or([0; 3], |c| c[i]),
            ..Element::default()
        })
        .collect();
    header.elements.add(vertex);

    let mut ply = Ply::new();
    ply.payload.insert("vertex".into(), vertices);
    if let Some(faces) = faces {
        let mut face = ElementDef::new("face".into());
        face.properties.add(PropertyDef::new(
            "vertex_indices".into(),
            PropertyType::List(ScalarType::UChar, ScalarType::Int),
        ));
        face.count = faces.len();
        header.elements.add(face);
        // Indices fit: the caller checked the vertex count against i32::MAX.
        let elements = faces
            .iter()
            .map(|f| Element {
                indices_out: f.iter().map(|&v| v as i32).collect(),
                ..Element::default()
            })
            .collect();
        ply.payload.insert("face".into(), elements);
    }
    ply.header = header;
    ply
}

/// Writes through ply-rs-bw: the ASCII writer, and the reference the binary writer
/// matches byte for byte.
fn write_with_ply_rs(
    mut out: &mut dyn Write,
    vertices: &Vertices<'_>,
    faces: Option<&[[u32; 3]]>,
    encoding: PlyEncoding,
) -> io::Result<()> {
    let mut ply = build_ply(vertices, faces, encoding);
    Writer::new().write_ply(&mut out, &mut ply)?;
    Ok(())
}

/// What a PLY file holds, before faces are checked and triangulated.
struct PlyContents {
    vertices: Vec<Point3<f32>>,
    normals: Option<Vec<Vector3<f32>>>,
    colors: Option<Vec<[u8; 3]>>,
    faces: Vec<Element>,
    /// Whether the face element, if any, has `vertex_indices` or `vertex_index`.
    faces_have_indices: bool,
}

fn read_ply(path: &Path) -> Result<PlyContents> {
    let file_error = |reason: String| Error::File {
        reason,
        path: path.to_path_buf(),
    };
    let file =
        File::open(path).map_err(|e| file_error(format!("cannot open the PLY file ({e})")))?;
    let mut ply = Parser::<Element>::new()
        .read_ply(&mut BufReader::new(file))
        .map_err(|e| file_error(format!("not a valid PLY file ({e})")))?;

    let vertex_def = ply
        .header
        .elements
        .get("vertex")
        .ok_or_else(|| file_error("the PLY file has no vertex element".into()))?;
    let has = |names: [&str; 3]| {
        names
            .iter()
            .all(|name| vertex_def.properties.contains_key(*name))
    };
    if !has(["x", "y", "z"]) {
        return Err(file_error(
            "the vertex element of the PLY file lacks x, y or z".into(),
        ));
    }
    let has_normals = has(["nx", "ny", "nz"]);
    let has_colors = has(["red", "green", "blue"]);
    let faces_have_indices = ply.header.elements.get("face").is_some_and(|face| {
        ["vertex_indices", "vertex_index"]
            .iter()
            .any(|name| face.properties.contains_key(*name))
    });
    let elements = ply.payload.swap_remove("vertex").unwrap_or_default();
    let faces = ply.payload.swap_remove("face").unwrap_or_default();
    Ok(PlyContents {
        vertices: elements.iter().map(|e| Point3::from(e.xyz)).collect(),
        normals: has_normals.then(|| elements.iter().map(|e| Vector3::from(e.normal)).collect()),
        colors: has_colors.then(|| elements.iter().map(|e| e.rgb).collect()),
        faces,
        faces_have_indices,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn cloud(with_colors: bool, with_normals: bool) -> PointCloud {
        // Values that are not round in binary, to catch lossy ASCII formatting.
        let points: Vec<Point3<f32>> = (0..50)
            .map(|i| {
                let t = i as f32;
                Point3::new(t * 0.1, -t / 3.0, 1.0 + t.sqrt() * 1e-3)
            })
            .collect();
        let n = points.len();
        PointCloud {
            points,
            colors: with_colors.then(|| (0..n).map(|i| [i as u8, 255 - i as u8, 7]).collect()),
            normals: with_normals.then(|| {
                (0..n)
                    .map(|i| Vector3::new(i as f32, 1.0, -2.0).normalize())
                    .collect()
            }),
        }
    }

    fn mesh(with_colors: bool, with_normals: bool) -> TriangleMesh {
        let c = cloud(with_colors, with_normals);
        TriangleMesh {
            faces: (0..48u32).map(|i| [i, i + 2, i + 1]).collect(),
            vertices: c.points,
            colors: c.colors,
            normals: c.normals,
        }
    }

    const ENCODINGS: [PlyEncoding; 2] = [PlyEncoding::BinaryLittleEndian, PlyEncoding::Ascii];

    #[test]
    fn point_clouds_round_trip() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for encoding in ENCODINGS {
            for (colors, normals) in [(false, false), (true, false), (false, true), (true, true)] {
                let original = cloud(colors, normals);
                let path = dir
                    .path()
                    .join(format!("{encoding:?}-{colors}-{normals}.ply"));
                write_point_cloud(&path, &original, encoding).expect("written");
                let back = read_point_cloud(&path).expect("read");
                assert_eq!(
                    back, original,
                    "{encoding:?} colours {colors} normals {normals}"
                );
                // A mesh file without faces reads as a mesh without faces.
                let as_mesh = read_mesh(&path).expect("read");
                assert!(as_mesh.faces.is_empty());
                assert_eq!(as_mesh.vertices, original.points);
            }
        }
    }

    #[test]
    fn meshes_round_trip() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for encoding in ENCODINGS {
            for (colors, normals) in [(false, false), (true, false), (false, true), (true, true)] {
                let original = mesh(colors, normals);
                let path = dir
                    .path()
                    .join(format!("{encoding:?}-{colors}-{normals}.ply"));
                write_mesh(&path, &original, encoding).expect("written");
                let back = read_mesh(&path).expect("read");
                assert_eq!(
                    back, original,
                    "{encoding:?} colours {colors} normals {normals}"
                );
                // The cloud reader takes the vertices of a mesh file.
                assert_eq!(
                    read_point_cloud(&path).expect("read").points,
                    original.vertices
                );
            }
        }
    }

    #[test]
    fn header_is_what_open3d_and_meshlab_expect() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mesh.ply");
        write_mesh(&path, &mesh(true, true), PlyEncoding::default()).expect("written");
        let bytes = std::fs::read(&path).expect("readable");
        let end = bytes
            .windows(10)
            .position(|w| w == b"end_header")
            .expect("a header");
        let header = String::from_utf8_lossy(&bytes[..end]);
        let expected = [
            "ply",
            "format binary_little_endian 1.0",
            "element vertex 50",
            "property float x",
            "property float y",
            "property float z",
            "property float nx",
            "property float ny",
            "property float nz",
            "property uchar red",
            "property uchar green",
            "property uchar blue",
            "element face 48",
            "property list uchar int vertex_indices",
        ];
        let lines: Vec<&str> = header
            .lines()
            .filter(|l| !l.starts_with("comment"))
            .collect();
        assert_eq!(lines, expected);
        // 50 vertices of 27 bytes, 48 faces of 13 bytes after "end_header\n".
        assert_eq!(bytes.len() - end - 11, 50 * 27 + 48 * 13);
    }

    /// Writes `vertices` (and `faces`) through ply-rs-bw and through the binary writer
    /// and checks that the files are the same bytes.
    fn assert_binary_matches_ply_rs(
        dir: &Path,
        name: &str,
        vertices: &Vertices<'_>,
        faces: Option<&[[u32; 3]]>,
    ) -> PathBuf {
        let mut expected = Vec::new();
        write_with_ply_rs(
            &mut expected,
            vertices,
            faces,
            PlyEncoding::BinaryLittleEndian,
        )
        .expect("written");
        let mut got = Vec::new();
        write_binary(&mut got, vertices, faces).expect("written");
        let path = dir.join(format!("{name}.ply"));
        std::fs::write(&path, &got).expect("written");
        assert_eq!(got.len(), expected.len(), "{name}: length");
        if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!("{name}: first difference at byte {at} of {}", got.len());
        }
        path
    }

    const LAYOUTS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

    #[test]
    fn binary_clouds_match_ply_rs_byte_for_byte() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut clouds: Vec<(String, PointCloud)> = LAYOUTS
            .iter()
            .map(|&(c, n)| (format!("colors-{c}-normals-{n}"), cloud(c, n)))
            .collect();
        clouds.push(("empty".into(), PointCloud::default()));
        clouds.push((
            "empty-with-attributes".into(),
            PointCloud {
                points: vec![],
                colors: Some(vec![]),
                normals: Some(vec![]),
            },
        ));
        // Values whose bytes are unusual: signed zeros, subnormals, extremes, and
        // normals that are not finite (only positions are validated).
        clouds.push((
            "odd-values".into(),
            PointCloud {
                points: vec![
                    Point3::new(-0.0, 0.0, f32::MIN_POSITIVE / 8.0),
                    Point3::new(f32::MAX, f32::MIN, f32::EPSILON),
                ],
                colors: Some(vec![[0, 128, 255], [255, 0, 1]]),
                normals: Some(vec![
                    Vector3::new(f32::NAN, f32::INFINITY, f32::NEG_INFINITY),
                    Vector3::new(-0.0, 1.0, -1.0),
                ]),
            },
        ));
        for (name, original) in &clouds {
            let vertices = Vertices {
                points: &original.points,
                normals: original.normals.as_deref(),
                colors: original.colors.as_deref(),
            };
            let path = assert_binary_matches_ply_rs(dir.path(), name, &vertices, None);
            // The public writer takes the new path and writes the same file.
            let public = dir.path().join(format!("{name}-public.ply"));
            write_point_cloud(&public, original, PlyEncoding::BinaryLittleEndian).expect("written");
            assert_eq!(
                std::fs::read(&public).expect("readable"),
                std::fs::read(&path).expect("readable"),
                "{name}"
            );
            let back = read_point_cloud(&path).expect("read");
            if name == "odd-values" {
                // NaN is not equal to itself: compare the bits.
                let bits = |c: &PointCloud| {
                    c.normals
                        .as_ref()
                        .map(|n| n.iter().map(|v| v.map(f32::to_bits)).collect::<Vec<_>>())
                };
                assert_eq!(back.points, original.points);
                assert_eq!(back.colors, original.colors);
                assert_eq!(bits(&back), bits(original));
            } else if original.is_empty() {
                // An empty cloud reads back as empty, with whatever attributes were declared.
                assert!(back.is_empty(), "{name}");
            } else {
                assert_eq!(&back, original, "{name}");
            }
        }
    }

    #[test]
    fn binary_meshes_match_ply_rs_byte_for_byte() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut meshes: Vec<(String, TriangleMesh)> = LAYOUTS
            .iter()
            .map(|&(c, n)| (format!("colors-{c}-normals-{n}"), mesh(c, n)))
            .collect();
        meshes.push(("empty".into(), TriangleMesh::default()));
        let mut no_faces = mesh(true, false);
        no_faces.faces.clear();
        meshes.push(("no-faces".into(), no_faces));
        for (name, original) in &meshes {
            let vertices = Vertices {
                points: &original.vertices,
                normals: original.normals.as_deref(),
                colors: original.colors.as_deref(),
            };
            let path =
                assert_binary_matches_ply_rs(dir.path(), name, &vertices, Some(&original.faces));
            let public = dir.path().join(format!("{name}-public.ply"));
            write_mesh(&public, original, PlyEncoding::BinaryLittleEndian).expect("written");
            assert_eq!(
                std::fs::read(&public).expect("readable"),
                std::fs::read(&path).expect("readable"),
                "{name}"
            );
            assert_eq!(&read_mesh(&path).expect("read"), original, "{name}");
        }
    }

    /// Enough rows for several batches and a last, partial task in each, so every
    /// boundary of the parallel encoding is crossed.
    #[test]
    fn binary_writer_matches_ply_rs_across_batches() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let n = 2 * ROWS_PER_BATCH + ROWS_PER_TASK + 17;
        let mut lcg = crate::cloud::Lcg(7);
        let mut big = TriangleMesh {
            vertices: (0..n)
                .map(|_| {
                    Point3::new(
                        lcg.uniform_f32(-3.0, 3.0),
                        lcg.uniform_f32(-2.0, 2.0),
                        lcg.uniform_f32(0.1, 9.0),
                    )
                })
                .collect(),
            colors: Some(
                (0..n)
                    .map(|i| [i as u8, (i >> 8) as u8, (i >> 16) as u8])
                    .collect(),
            ),
            ..TriangleMesh::default()
        };
        let last = n as u32 - 1;
        big.faces = (0..n as u32 + 5)
            .map(|i| [i % n as u32, last - i % n as u32, (i * 7919) % n as u32])
            .collect();
        big.compute_vertex_normals();
        let vertices = Vertices {
            points: &big.vertices,
            normals: big.normals.as_deref(),
            colors: big.colors.as_deref(),
        };
        let path = assert_binary_matches_ply_rs(dir.path(), "mesh", &vertices, Some(&big.faces));
        assert_eq!(read_mesh(&path).expect("read"), big);
        let vertices = Vertices {
            normals: None,
            ..vertices
        };
        let path = assert_binary_matches_ply_rs(dir.path(), "cloud", &vertices, None);
        let back = read_point_cloud(&path).expect("read");
        assert_eq!(back.points, big.vertices);
        assert_eq!(back.colors, big.colors);
    }

    fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    #[test]
    fn other_writers_layouts_are_read() {
        // Double coordinates, uint indices named vertex_index, a quad, extra properties.
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = write_text(
            dir.path(),
            "other.ply",
            "ply\nformat ascii 1.0\ncomment from elsewhere\n\
             element vertex 4\nproperty double x\nproperty double y\nproperty double z\n\
             property float quality\nproperty uchar red\nproperty uchar green\n\
             property uchar blue\nproperty uchar alpha\n\
             element face 1\nproperty list uchar uint vertex_index\nproperty int flags\n\
             end_header\n\
             0 0 1 0.5 1 2 3 255\n1 0 1 0.5 4 5 6 255\n1 1 1 0.5 7 8 9 255\n\
             0 1 1 0.5 10 11 12 255\n4 0 1 2 3 0\n",
        );
        let m = read_mesh(&path).expect("read");
        assert_eq!(m.vertices.len(), 4);
        assert_eq!(m.vertices[2], Point3::new(1.0, 1.0, 1.0));
        assert_eq!(m.faces, vec![[0, 1, 2], [0, 2, 3]]);
        assert_eq!(m.colors.expect("has colours")[3], [10, 11, 12]);
        assert!(m.normals.is_none());
    }

    fn expect_file_error(result: Result<impl std::fmt::Debug>, path: &Path, needle: &str) {
        match result {
            Err(Error::File { reason, path: p }) => {
                assert_eq!(p, path);
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
            }
            other => panic!(
                "expected a file error for {}, got {other:?}",
                path.display()
            ),
        }
    }

    #[test]
    fn malformed_files_give_file_errors() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();

        // Truncated binary payload, ASCII and binary.
        for encoding in ENCODINGS {
            let path = d.join(format!("full-{encoding:?}.ply"));
            write_mesh(&path, &mesh(true, true), encoding).expect("written");
            let bytes = std::fs::read(&path).expect("readable");
            let cut = d.join(format!("truncated-{encoding:?}.ply"));
            std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("written");
            expect_file_error(read_mesh(&cut), &cut, "not a valid PLY file");
            expect_file_error(read_point_cloud(&cut), &cut, "not a valid PLY file");
        }

        let garbage = d.join("garbage.ply");
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&garbage, noise).expect("written");
        expect_file_error(read_mesh(&garbage), &garbage, "not a valid PLY file");
        let empty = write_text(d, "empty.ply", "");
        expect_file_error(read_point_cloud(&empty), &empty, "not a valid PLY file");
        let missing = d.join("missing.ply");
        expect_file_error(read_mesh(&missing), &missing, "cannot open");

        let header = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n\
                      property float y\nproperty float z\nelement face 1\n\
                      property list uchar int vertex_indices\nend_header\n\
                      0 0 0\n1 0 0\n0 1 0\n";
        let out_of_range = write_text(d, "range.ply", &format!("{header}3 0 1 3\n"));
        expect_file_error(
            read_mesh(&out_of_range),
            &out_of_range,
            "refers to vertex 3",
        );
        let negative = write_text(d, "negative.ply", &format!("{header}3 0 -1 2\n"));
        expect_file_error(read_mesh(&negative), &negative, "not non-negative");
        let two = write_text(d, "two.ply", &format!("{header}2 0 1\n"));
        expect_file_error(read_mesh(&two), &two, "only 2 corners");
        // A huge declared count with a short payload must not allocate or panic.
        let huge = write_text(
            d,
            "huge.ply",
            "ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\n\
             property float x\nproperty float y\nproperty float z\nend_header\n0000",
        );
        expect_file_error(read_point_cloud(&huge), &huge, "not a valid PLY file");
        let no_z = write_text(
            d,
            "no-z.ply",
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n\
             property float y\nend_header\n0 0\n",
        );
        expect_file_error(read_point_cloud(&no_z), &no_z, "lacks x, y or z");
        let int_xyz = write_text(
            d,
            "int.ply",
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty int x\n\
             property int y\nproperty int z\nend_header\n0 0 1\n",
        );
        expect_file_error(read_point_cloud(&int_xyz), &int_xyz, "not a valid PLY file");
    }

    #[test]
    fn invalid_input_is_not_written() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut bad = cloud(true, false);
        bad.colors = Some(vec![[0; 3]; 3]);
        let path = dir.path().join("bad.ply");
        assert!(matches!(
            write_point_cloud(&path, &bad, PlyEncoding::default()),
            Err(Error::Invalid(_))
        ));
        let mut bad = mesh(false, false);
        bad.faces.push([0, 1, 50]);
        assert!(matches!(
            write_mesh(&path, &bad, PlyEncoding::default()),
            Err(Error::Invalid(_))
        ));
        assert!(!path.exists());
        // No temporary files are left behind either.
        assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 0);
        // A directory that does not exist is a file error naming the destination.
        let nowhere = dir.path().join("no/such/dir/cloud.ply");
        let err = write_point_cloud(&nowhere, &cloud(false, false), PlyEncoding::default());
        expect_file_error(err, &nowhere, "cannot create");
    }

    #[test]
    fn overwrites_atomically() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("cloud.ply");
        std::fs::write(&path, "old").expect("written");
        write_point_cloud(&path, &cloud(false, true), PlyEncoding::Ascii).expect("written");
        assert_eq!(read_point_cloud(&path).expect("read"), cloud(false, true));
        assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 1);
    }

    /// Open3D (when the project's Python environment has it) reads our files with the
    /// same counts. Skipped with a message otherwise.
    #[test]
    fn open3d_reads_our_files() {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
        let has_open3d = std::process::Command::new(&python)
            .args(["-c", "import open3d"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_open3d {
            eprintln!("skipping: open3d is not importable by {}", python.display());
            return;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        for encoding in ENCODINGS {
            let m = mesh(true, true);
            let mesh_path = dir.path().join(format!("mesh-{encoding:?}.ply"));
            write_mesh(&mesh_path, &m, encoding).expect("written");
            let c = cloud(true, true);
            let cloud_path = dir.path().join(format!("cloud-{encoding:?}.ply"));
            write_point_cloud(&cloud_path, &c, encoding).expect("written");
            let script = "import sys, open3d as o3d\n\
                m = o3d.io.read_triangle_mesh(sys.argv[1])\n\
                c = o3d.io.read_point_cloud(sys.argv[2])\n\
                print(len(m.vertices), len(m.triangles), len(m.vertex_colors), \
                len(m.vertex_normals), len(c.points), len(c.colors), len(c.normals))\n";
            let out = std::process::Command::new(&python)
                .arg("-c")
                .arg(script)
                .arg(&mesh_path)
                .arg(&cloud_path)
                .output()
                .expect("python runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let counts = String::from_utf8_lossy(&out.stdout);
            let n = m.vertices.len();
            let expected = format!("{n} {} {n} {n} {n} {n} {n}", m.faces.len());
            assert_eq!(counts.trim(), expected, "{encoding:?}");
        }
    }
}
