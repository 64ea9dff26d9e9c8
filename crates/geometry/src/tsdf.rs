//! Truncated signed distance fusion of many depth frames into one surface.
//!
//! The volume is sparse: blocks of `8 x 8 x 8` voxels are allocated only where a frame
//! sees a surface (within the truncation distance along each pixel's ray), so memory
//! grows with the surface area, not with the scene's bounding box. Voxel `g` (integer
//! coordinates over the whole grid) sits at `g * voxel_size_m` in world coordinates,
//! Open3D's `VoxelBlockGrid` convention.
//!
//! Integration follows Open3D: each voxel of the blocks a frame touches is projected
//! into the frame (nearest pixel); with `d` the depth there and `z` the voxel's depth
//! in the camera, `sdf = d - z` is ignored below `-trunc_m`, else truncated to
//! `min(sdf / trunc_m, 1)` and averaged into the voxel with weight 1 per frame, and so
//! is the pixel's colour. Extraction is marching cubes (see
//! [`crate::marching_cubes`]) across block borders, with one vertex per crossing
//! voxel edge, so there are neither duplicated vertices nor cracks.
//!
//! ```
//! use anydepth_core::{DepthMap, Intrinsics, Metres};
//! use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
//! use nalgebra::Isometry3;
//!
//! // A wall 1 m in front of a 64 x 48 camera.
//! let camera = Intrinsics::new(50.0, 50.0, 31.5, 23.5, 64, 48).expect("valid camera");
//! let depth = DepthMap::<Metres>::new(64, 48, vec![1.0; 64 * 48]).expect("64 x 48");
//! let options = TsdfOptions { voxel_size_m: 0.02, trunc_m: 0.06, ..Default::default() };
//! let mut volume = TsdfVolume::new(options).expect("valid options");
//! volume.integrate(&depth, None, &camera, &Isometry3::identity()).expect("integrates");
//! let mesh = volume.extract_mesh().expect("extracts");
//! assert!(!mesh.faces.is_empty());
//! assert!(mesh.vertices.iter().all(|v| (v.z - 1.0).abs() < 0.005));
//! ```

use anydepth_core::{DepthMap, Intrinsics, Metres};
use nalgebra::{Isometry3, Point3, Vector3};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::marching_cubes::{case_triangles, EDGES};
use crate::unproject::check_camera;
use crate::{Error, PointCloud, Result, TriangleMesh};

/// Voxels along each side of a block.
pub const BLOCK: usize = 8;
const BLOCK_VOXELS: usize = BLOCK * BLOCK * BLOCK;

/// Integer block coordinates.
type BlockKey = [i32; 3];

/// Parameters of a [`TsdfVolume`].
#[derive(Clone, Debug, PartialEq)]
pub struct TsdfOptions {
    /// Edge of a voxel, metres.
    pub voxel_size_m: f32,
    /// Truncation distance, metres: how far behind a surface a frame still writes.
    pub trunc_m: f32,
    /// Depth beyond this (metres) is ignored.
    pub max_depth_m: f32,
    /// Voxels observed with less total weight than this are left out of extraction.
    pub min_weight: f32,
}

impl Default for TsdfOptions {
    /// 1 cm voxels, 4 cm truncation, depth up to 5 m, every observed voxel extracted.
    fn default() -> Self {
        Self {
            voxel_size_m: 0.01,
            trunc_m: 0.04,
            max_depth_m: 5.0,
            min_weight: 1.0,
        }
    }
}

/// One block's voxels, x fastest.
#[derive(Clone)]
struct Block {
    tsdf: Vec<f32>,
    weight: Vec<f32>,
    color: Vec<[f32; 3]>,
}

impl Block {
    fn new() -> Self {
        Self {
            tsdf: vec![0.0; BLOCK_VOXELS],
            weight: vec![0.0; BLOCK_VOXELS],
            color: vec![[0.0; 3]; BLOCK_VOXELS],
        }
    }
}

/// A sparse TSDF volume.
pub struct TsdfVolume {
    options: TsdfOptions,
    keys: Vec<BlockKey>,
    blocks: Vec<Block>,
    index: FxHashMap<BlockKey, usize>,
    /// Whether any integrated frame had colours.
    colored: bool,
}

fn block_of(p: &Vector3<f32>, block_size_m: f32) -> Option<BlockKey> {
    let mut key = [0i32; 3];
    for (k, c) in key.iter_mut().zip(p.iter()) {
        let cell = (c / block_size_m).floor();
        // Far beyond any scene; keeps the voxel arithmetic below in range.
        if cell.is_nan() || cell.abs() >= 1e8 {
            return None;
        }
        *k = cell as i32;
    }
    Some(key)
}

impl TsdfVolume {
    /// An empty volume.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a voxel size, truncation or maximum depth that is not
    /// positive and finite, a truncation shorter than a voxel, or a negative weight.
    pub fn new(options: TsdfOptions) -> Result<Self> {
        let TsdfOptions {
            voxel_size_m,
            trunc_m,
            max_depth_m,
            min_weight,
        } = options;
        for (name, v) in [
            ("voxel size", voxel_size_m),
            ("truncation", trunc_m),
            ("maximum depth", max_depth_m),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Invalid(format!(
                    "{name} must be positive and finite, got {v} m"
                )));
            }
        }
        if trunc_m < voxel_size_m {
            return Err(Error::Invalid(format!(
                "truncation ({trunc_m} m) must be at least one voxel ({voxel_size_m} m)"
            )));
        }
        if !(min_weight.is_finite() && min_weight >= 0.0) {
            return Err(Error::Invalid(format!(
                "minimum weight must be finite and non-negative, got {min_weight}"
            )));
        }
        Ok(Self {
            options,
            keys: Vec::new(),
            blocks: Vec::new(),
            index: FxHashMap::default(),
            colored: false,
        })
    }

    /// The options the volume was made with.
    pub fn options(&self) -> &TsdfOptions {
        &self.options
    }

    /// How many blocks are allocated.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes held by the voxel data.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * BLOCK_VOXELS * (4 + 4 + 12)
    }

    /// Fuses one frame: `depth` (metres; zero or non-finite where unknown), optional
    /// 8-bit RGB colours of the same size, the camera (of the same size) and its pose
    /// `world_from_camera` (OpenCV axes).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an invalid camera ([`Intrinsics::validate`]), a camera or
    /// colours of another size than `depth`, or a non-finite pose. A frame with no valid
    /// depth changes nothing.
    pub fn integrate(
        &mut self,
        depth: &DepthMap<Metres>,
        colors: Option<&[[u8; 3]]>,
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
    ) -> Result<()> {
        let (width, height) = (depth.width() as usize, depth.height() as usize);
        check_camera(camera, depth.width(), depth.height())?;
        let depth_m = depth.data();
        if let Some(colors) = colors {
            if colors.len() != depth_m.len() {
                return Err(Error::Invalid(format!(
                    "colour has {} pixels but depth {width} x {height}",
                    colors.len()
                )));
            }
        }
        let pose = world_from_camera.to_homogeneous();
        if !pose.iter().all(|v| v.is_finite()) {
            return Err(Error::Invalid("camera pose is not finite".into()));
        }
        if colors.is_some() {
            self.colored = true;
        }
        let touched = self.allocate(depth_m, width, height, camera, world_from_camera);
        let mut is_touched = vec![false; self.blocks.len()];
        for &b in &touched {
            is_touched[b] = true;
        }

        let camera_from_world = world_from_camera.inverse().cast::<f32>();
        let rotation = camera_from_world.rotation.to_rotation_matrix().into_inner();
        let translation = camera_from_world.translation.vector;
        let (fx, fy, cx, cy) = (
            camera.fx as f32,
            camera.fy as f32,
            camera.cx as f32,
            camera.cy as f32,
        );
        let TsdfOptions {
            voxel_size_m,
            trunc_m,
            max_depth_m,
            ..
        } = self.options;
        let keys = &self.keys;
        self.blocks
            .par_iter_mut()
            .enumerate()
            .filter(|(b, _)| is_touched[*b])
            .for_each(|(b, block)| {
                let origin = Vector3::from(keys[b].map(|k| (k * BLOCK as i32) as f32));
                for (v, (x, y, z)) in voxel_offsets().enumerate() {
                    let world =
                        (origin + Vector3::new(x as f32, y as f32, z as f32)) * voxel_size_m;
                    let p = rotation * world + translation;
                    if p.z <= 0.0 {
                        continue;
                    }
                    let u = (fx * p.x / p.z + cx).round();
                    let r = (fy * p.y / p.z + cy).round();
                    if !(u >= 0.0 && r >= 0.0 && u < width as f32 && r < height as f32) {
                        continue;
                    }
                    let pixel = r as usize * width + u as usize;
                    let d = depth_m[pixel];
                    if !(d.is_finite() && d > 0.0 && d <= max_depth_m) {
                        continue;
                    }
                    let sdf = d - p.z;
                    if sdf < -trunc_m {
                        continue;
                    }
                    let tsdf = (sdf / trunc_m).min(1.0);
                    let w = block.weight[v];
                    let total = w + 1.0;
                    block.tsdf[v] = (block.tsdf[v] * w + tsdf) / total;
                    if let Some(colors) = colors {
                        let c = colors[pixel];
                        for (acc, new) in block.color[v].iter_mut().zip(c) {
                            *acc = (*acc * w + f32::from(new)) / total;
                        }
                    }
                    block.weight[v] = total;
                }
            });
        tracing::debug!(
            touched = touched.len(),
            blocks = self.blocks.len(),
            "integrated a frame"
        );
        Ok(())
    }

    /// Allocates the blocks within the truncation band of each valid pixel's surface
    /// point and returns the indices of all blocks the frame touches.
    fn allocate(
        &mut self,
        depth_m: &[f32],
        width: usize,
        height: usize,
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
    ) -> Vec<usize> {
        let pose = world_from_camera.cast::<f32>();
        let block_size_m = self.options.voxel_size_m * BLOCK as f32;
        let trunc_m = self.options.trunc_m;
        let max_depth_m = self.options.max_depth_m;
        let (fx, fy, cx, cy) = (
            camera.fx as f32,
            camera.fy as f32,
            camera.cx as f32,
            camera.cy as f32,
        );
        let origin = pose.translation.vector;
        let found: FxHashSet<BlockKey> = (0..height)
            .into_par_iter()
            .fold(FxHashSet::default, |mut set, row| {
                let mut last = None;
                for col in 0..width {
                    let d = depth_m[row * width + col];
                    if !(d.is_finite() && d > 0.0 && d <= max_depth_m) {
                        continue;
                    }
                    // The ray through the pixel, per metre of depth, in world axes.
                    let ray = pose.rotation
                        * Vector3::new((col as f32 - cx) / fx, (row as f32 - cy) / fy, 1.0);
                    let (near, far) = ((d - trunc_m).max(0.0), d + trunc_m);
                    // Half a block apart along the ray: no block is stepped over.
                    let steps = ((far - near) * ray.norm() / (0.5 * block_size_m)).ceil() as usize;
                    for s in 0..=steps {
                        let depth = near + (far - near) * s as f32 / steps.max(1) as f32;
                        let Some(key) = block_of(&(origin + ray * depth), block_size_m) else {
                            continue;
                        };
                        if last != Some(key) {
                            set.insert(key);
                            last = Some(key);
                        }
                    }
                }
                set
            })
            .reduce(FxHashSet::default, |a, b| {
                // Pour the smaller set into the larger.
                let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                big.extend(small);
                big
            });
        let mut found: Vec<BlockKey> = found.into_iter().collect();
        // Allocation order does not depend on hashing or threads.
        found.sort_unstable();
        found
            .into_iter()
            .map(|key| {
                *self.index.entry(key).or_insert_with(|| {
                    self.keys.push(key);
                    self.blocks.push(Block::new());
                    self.blocks.len() - 1
                })
            })
            .collect()
    }

    /// The fused surface as a mesh, with vertex colours (when frames had colours) and
    /// normals from the faces.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the mesh would have more than `u32::MAX` vertices.
    pub fn extract_mesh(&self) -> Result<TriangleMesh> {
        let (vertices, colors, faces) = self.marching_cubes(true)?;
        let mut mesh = TriangleMesh {
            vertices,
            faces,
            colors: self.colored.then_some(colors),
            normals: None,
        };
        mesh.compute_vertex_normals();
        Ok(mesh)
    }

    /// The fused surface as points: the zero crossings of the voxel edges (the mesh's
    /// vertices), with colours when frames had them.
    ///
    /// # Errors
    /// As [`TsdfVolume::extract_mesh`].
    pub fn extract_point_cloud(&self) -> Result<PointCloud> {
        let (points, colors, _) = self.marching_cubes(false)?;
        Ok(PointCloud {
            points,
            colors: self.colored.then_some(colors),
            normals: None,
        })
    }

    /// The voxel at local offset `(x, y, z)` (each in `0..=BLOCK`) from a block with the
    /// given `neighbours`: in that block or a neighbour above it. `(tsdf, weight, colour)`,
    /// or `None` when the neighbour is not allocated.
    fn neighbour_voxel(
        &self,
        neighbours: &[Option<usize>; 8],
        x: usize,
        y: usize,
        z: usize,
    ) -> Option<(f32, f32, [f32; 3])> {
        let (which, v) = locate(x, y, z);
        let block = &self.blocks[neighbours[which]?];
        Some((block.tsdf[v], block.weight[v], block.color[v]))
    }

    /// The blocks at offsets `(c & 1, (c >> 1) & 1, (c >> 2) & 1)` from block `b`.
    fn neighbours(&self, b: usize) -> [Option<usize>; 8] {
        let key = self.keys[b];
        std::array::from_fn(|c| {
            let offset = [c & 1, (c >> 1) & 1, (c >> 2) & 1];
            let mut k = key;
            for (k, o) in k.iter_mut().zip(offset) {
                *k += o as i32;
            }
            self.index.get(&k).copied()
        })
    }

    /// Vertices (with colours) on crossing voxel edges, and, when `with_faces`, the
    /// triangles between them.
    // One pass over the blocks that shares its neighbour lookups between vertices and faces;
    // split, the two halves would have to pass those lookups around.
    #[allow(clippy::type_complexity, clippy::too_many_lines)]
    fn marching_cubes(
        &self,
        with_faces: bool,
    ) -> Result<(Vec<Point3<f32>>, Vec<[u8; 3]>, Vec<[u32; 3]>)> {
        let voxel_size_m = self.options.voxel_size_m;
        let min_weight = self.options.min_weight.max(f32::MIN_POSITIVE);
        let neighbours: Vec<[Option<usize>; 8]> = (0..self.blocks.len())
            .into_par_iter()
            .map(|b| self.neighbours(b))
            .collect();

        // Vertices: each voxel owns the edges toward +x, +y and +z.
        type Vertex = (u16, Point3<f32>, [u8; 3]);
        let per_block: Vec<Vec<Vertex>> = (0..self.blocks.len())
            .into_par_iter()
            .map(|b| {
                let block = &self.blocks[b];
                let origin = Vector3::from(self.keys[b].map(|k| (k * BLOCK as i32) as f32));
                let mut found = Vec::new();
                for (v, (x, y, z)) in voxel_offsets().enumerate() {
                    let (fa, wa, ca) = (block.tsdf[v], block.weight[v], block.color[v]);
                    if wa < min_weight {
                        continue;
                    }
                    for axis in 0..3 {
                        let step = [
                            usize::from(axis == 0),
                            usize::from(axis == 1),
                            usize::from(axis == 2),
                        ];
                        let Some((fb, wb, cb)) = self.neighbour_voxel(
                            &neighbours[b],
                            x + step[0],
                            y + step[1],
                            z + step[2],
                        ) else {
                            continue;
                        };
                        if wb < min_weight || (fa < 0.0) == (fb < 0.0) {
                            continue;
                        }
                        let t = fa / (fa - fb);
                        let mut p = origin + Vector3::new(x as f32, y as f32, z as f32);
                        p[axis] += t;
                        let color = std::array::from_fn(|i| {
                            (ca[i] + t * (cb[i] - ca[i])).round().clamp(0.0, 255.0) as u8
                        });
                        found.push(((v * 3 + axis) as u16, Point3::from(p * voxel_size_m), color));
                    }
                }
                found
            })
            .collect();
        let total: usize = per_block.iter().map(Vec::len).sum();
        if total > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "the surface has {total} vertices, more than a mesh can index"
            )));
        }
        let mut offsets = Vec::with_capacity(per_block.len());
        let mut running = 0u32;
        for found in &per_block {
            offsets.push(running);
            running += found.len() as u32;
        }
        let mut vertices = Vec::with_capacity(total);
        let mut colors = Vec::with_capacity(total);
        for found in &per_block {
            for &(_, p, c) in found {
                vertices.push(p);
                colors.push(c);
            }
        }
        if !with_faces {
            return Ok((vertices, colors, Vec::new()));
        }
        // Global vertex of each (voxel, axis) edge, per block.
        let edge_vertex: Vec<Vec<u32>> = per_block
            .par_iter()
            .zip(&offsets)
            .map(|(found, &offset)| {
                let mut table = vec![u32::MAX; BLOCK_VOXELS * 3];
                for (i, &(edge, _, _)) in found.iter().enumerate() {
                    table[usize::from(edge)] = offset + i as u32;
                }
                table
            })
            .collect();
        let faces: Vec<[u32; 3]> = (0..self.blocks.len())
            .into_par_iter()
            .flat_map_iter(|b| {
                let mut faces = Vec::new();
                for (x, y, z) in voxel_offsets() {
                    let mut case = 0u8;
                    let mut known = true;
                    for c in 0..8u8 {
                        let corner = self.neighbour_voxel(
                            &neighbours[b],
                            x + usize::from(c & 1),
                            y + usize::from((c >> 1) & 1),
                            z + usize::from((c >> 2) & 1),
                        );
                        match corner {
                            Some((f, w, _)) if w >= min_weight => {
                                if f < 0.0 {
                                    case |= 1 << c;
                                }
                            }
                            _ => {
                                known = false;
                                break;
                            }
                        }
                    }
                    if !known {
                        continue;
                    }
                    for triangle in case_triangles(case) {
                        let ids = triangle.map(|e| {
                            let (c, axis) = EDGES[usize::from(e)];
                            let (cx, cy, cz) = (
                                x + usize::from(c & 1),
                                y + usize::from((c >> 1) & 1),
                                z + usize::from((c >> 2) & 1),
                            );
                            let (which, v) = locate(cx, cy, cz);
                            neighbours[b][which]
                                .map_or(u32::MAX, |nb| edge_vertex[nb][v * 3 + usize::from(axis)])
                        });
                        if ids.iter().all(|&v| v != u32::MAX) {
                            faces.push(ids);
                        }
                    }
                }
                faces
            })
            .collect();
        Ok((vertices, colors, faces))
    }
}

/// For local coordinates `(x, y, z)` each in `0..=BLOCK`: which neighbour holds the
/// voxel (bit set per axis at `BLOCK`, as in [`TsdfVolume::neighbours`]) and its index there.
fn locate(x: usize, y: usize, z: usize) -> (usize, usize) {
    let which =
        usize::from(x == BLOCK) | usize::from(y == BLOCK) << 1 | usize::from(z == BLOCK) << 2;
    let v = ((z % BLOCK) * BLOCK + y % BLOCK) * BLOCK + x % BLOCK;
    (which, v)
}

/// Local voxel coordinates of a block in storage order (x fastest).
fn voxel_offsets() -> impl Iterator<Item = (usize, usize, usize)> {
    (0..BLOCK_VOXELS).map(|v| (v % BLOCK, (v / BLOCK) % BLOCK, v / (BLOCK * BLOCK)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use nalgebra::{Translation3, UnitQuaternion};

    use super::*;

    /// Renders the depth of a sphere (centre, radius, in world coordinates) seen by a
    /// camera; zero where the ray misses.
    fn render_sphere(
        camera: &Intrinsics,
        world_from_camera: &Isometry3<f64>,
        centre: Vector3<f64>,
        radius: f64,
    ) -> DepthMap<Metres> {
        let (width, height) = (camera.width as usize, camera.height as usize);
        let c = world_from_camera.inverse() * Point3::from(centre);
        let mut depth = vec![0.0; width * height];
        for row in 0..height {
            for col in 0..width {
                let ray = Vector3::new(
                    (col as f64 - camera.cx) / camera.fx,
                    (row as f64 - camera.cy) / camera.fy,
                    1.0,
                );
                // |s ray - c|^2 = r^2, nearest root.
                let a = ray.dot(&ray);
                let b = -2.0 * ray.dot(&c.coords);
                let q = c.coords.dot(&c.coords) - radius * radius;
                let disc = b * b - 4.0 * a * q;
                if disc >= 0.0 {
                    let s = (-b - disc.sqrt()) / (2.0 * a);
                    if s > 0.0 {
                        depth[row * width + col] = s as f32;
                    }
                }
            }
        }
        DepthMap::new(camera.width, camera.height, depth).expect("width x height values")
    }

    #[test]
    fn sphere_seen_from_around_is_reconstructed_within_a_voxel() -> Result<()> {
        let camera = Intrinsics::new(120.0, 120.0, 79.5, 59.5, 160, 120).expect("valid camera");
        let centre = Vector3::new(0.1, -0.05, 2.0);
        let radius = 0.3;
        let voxel = 0.01f32;
        let mut volume = TsdfVolume::new(TsdfOptions {
            voxel_size_m: voxel,
            trunc_m: 0.04,
            ..Default::default()
        })?;
        // Eight cameras on a circle around the sphere, each looking at its centre.
        for i in 0..8 {
            let angle = i as f64 * std::f64::consts::TAU / 8.0;
            let eye = centre + Vector3::new(angle.sin(), 0.2, -angle.cos()) * 1.2;
            let forward = (centre - eye).normalize();
            let rotation = UnitQuaternion::face_towards(&forward, &Vector3::new(0.0, -1.0, 0.0));
            // face_towards maps +z to forward and +y to (roughly) the given up; our
            // camera's y points down, so "up" is -y in world.
            let pose = Isometry3::from_parts(Translation3::from(eye), rotation);
            let depth = render_sphere(&camera, &pose, centre, radius);
            volume.integrate(&depth, None, &camera, &pose)?;
        }
        let mesh = volume.extract_mesh()?;
        assert!(mesh.faces.len() > 1000, "{} faces", mesh.faces.len());
        for v in &mesh.vertices {
            let err = ((v.coords.cast::<f64>() - centre).norm() - radius).abs();
            assert!(
                err < f64::from(voxel),
                "vertex {v:?} is {err} m off the sphere"
            );
        }
        // No duplicated vertices, and no edge used more than twice.
        let mut seen = HashMap::new();
        for (i, v) in mesh.vertices.iter().enumerate() {
            let key = v.coords.map(f32::to_bits);
            assert!(seen.insert(key, i).is_none(), "vertex {v:?} appears twice");
        }
        let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
        for f in &mesh.faces {
            for i in 0..3 {
                *directed.entry((f[i], f[(i + 1) % 3])).or_default() += 1;
            }
        }
        assert!(
            directed.values().all(|&n| n == 1),
            "an edge is used twice in one direction"
        );
        // Normals point out of the sphere (toward the cameras).
        let normals = mesh
            .normals
            .as_ref()
            .ok_or(Error::Invalid("no normals".into()))?;
        let outward = mesh
            .vertices
            .iter()
            .zip(normals)
            .filter(|(v, n)| n.cast::<f64>().dot(&(v.coords.cast::<f64>() - centre)) > 0.0)
            .count();
        assert!(outward as f64 > 0.99 * mesh.vertices.len() as f64);
        // Memory follows the surface: far fewer blocks than the bounding box holds.
        let box_blocks = (0.6f32 / (voxel * BLOCK as f32)).powi(3);
        assert!(
            (volume.block_count() as f32) < box_blocks,
            "{} blocks",
            volume.block_count()
        );
        Ok(())
    }

    #[test]
    fn bad_options_and_frames_are_errors() {
        assert!(TsdfVolume::new(TsdfOptions {
            voxel_size_m: 0.0,
            ..Default::default()
        })
        .is_err());
        assert!(TsdfVolume::new(TsdfOptions {
            trunc_m: 0.001,
            ..Default::default()
        })
        .is_err());
        assert!(TsdfVolume::new(TsdfOptions {
            max_depth_m: f32::NAN,
            ..Default::default()
        })
        .is_err());
        let mut volume = TsdfVolume::new(TsdfOptions::default()).expect("valid");
        let camera = Intrinsics::new(10.0, 10.0, 1.0, 1.0, 2, 2).expect("valid camera");
        let pose = Isometry3::identity();
        let depth = |w: u32, h: u32, z: f32| {
            DepthMap::<Metres>::new(w, h, vec![z; (w * h) as usize]).expect("w x h values")
        };
        // Depth of another size than the camera.
        assert!(volume
            .integrate(&depth(5, 1, 1.0), None, &camera, &pose)
            .is_err());
        assert!(volume
            .integrate(&depth(2, 2, 1.0), Some(&[[0; 3]; 3]), &camera, &pose)
            .is_err());
        let bad = Intrinsics { fx: -1.0, ..camera };
        assert!(volume
            .integrate(&depth(2, 2, 1.0), None, &bad, &pose)
            .is_err());
        // No valid depth: nothing allocated, an empty mesh.
        volume
            .integrate(&depth(2, 2, 0.0), None, &camera, &pose)
            .expect("valid");
        assert_eq!(volume.block_count(), 0);
        assert!(volume.extract_mesh().expect("empty").faces.is_empty());
    }
}
