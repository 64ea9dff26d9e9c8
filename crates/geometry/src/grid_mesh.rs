//! Depth maps to triangle meshes by connecting neighbouring pixels.
//!
//! Every pixel with a finite, positive depth is unprojected like
//! [`crate::unproject`] does (`x = (u - cx) * z / fx`, `y = (v - cy) * z / fy`), and
//! each 2 x 2 block of (strided) pixels becomes two triangles. Triangles that would
//! bridge a depth discontinuity (the edge of an object in front of a wall) or that are
//! seen almost edge-on are dropped, so silhouettes stay open instead of being joined
//! by "rubber sheets".
//!
//! ```
//! use anydepth_core::{DepthMap, Intrinsics, Metres};
//! use anydepth_geometry::grid_mesh::{mesh_from_depth, GridMeshOptions};
//!
//! // A 3 x 2 wall two metres away: 2 blocks, 4 triangles, all facing the camera.
//! let depth = DepthMap::<Metres>::new(3, 2, vec![2.0; 6]).expect("3 x 2");
//! let camera = Intrinsics::new(100.0, 100.0, 1.0, 0.5, 3, 2).expect("valid camera");
//! let mesh = mesh_from_depth(&depth, &camera, &GridMeshOptions::default(), None)
//!     .expect("valid input");
//! assert_eq!(mesh.vertices.len(), 6);
//! assert_eq!(mesh.faces.len(), 4);
//! let normals = mesh.normals.as_ref().expect("always computed");
//! assert!(normals.iter().all(|n| n.z < -0.99));
//! ```

use anydepth_core::{DepthMap, Intrinsics, Metres};
use nalgebra::Point3;

use crate::unproject::{check_camera, check_color};
use crate::{Error, Result, TriangleMesh};

/// How to connect pixels and which triangles to drop.
#[derive(Clone, Debug, PartialEq)]
pub struct GridMeshOptions {
    /// Use every `stride`-th column of every `stride`-th row, starting at pixel (0, 0);
    /// neighbouring sampled pixels are connected.
    pub stride: usize,
    /// A triangle is dropped when the largest depth of its vertices exceeds the smallest
    /// by more than this fraction: `max_z / min_z > 1 + max_relative_jump`.
    ///
    /// The default, 0.05, separates a person standing 10 cm in front of a wall 2 m away
    /// while keeping a plane tilted by 80 degrees at 500 px focal length and stride 4
    /// (neighbouring depths there differ by about 3 %). `f32::INFINITY` disables the test.
    pub max_relative_jump: f32,
    /// A triangle is dropped when the angle between its normal and the ray from the
    /// triangle to the camera exceeds this many degrees. Triangles facing away from the
    /// camera (angle over 90) are dropped with any value up to 90.
    pub max_grazing_deg: f32,
}

impl Default for GridMeshOptions {
    /// Stride 1, 5 % depth jump, 85 degrees.
    fn default() -> Self {
        Self {
            stride: 1,
            max_relative_jump: 0.05,
            max_grazing_deg: 85.0,
        }
    }
}

impl GridMeshOptions {
    /// Checks the stride and thresholds.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `stride` is 0, `max_relative_jump` is negative or NaN, or
    /// `max_grazing_deg` is outside `0..=180`.
    pub fn validate(&self) -> Result<()> {
        if self.stride == 0 {
            return Err(Error::Invalid("stride must be at least 1".into()));
        }
        if self.max_relative_jump.is_nan() || self.max_relative_jump < 0.0 {
            return Err(Error::Invalid(format!(
                "max_relative_jump must be >= 0, got {}",
                self.max_relative_jump
            )));
        }
        if !(0.0..=180.0).contains(&self.max_grazing_deg) {
            return Err(Error::Invalid(format!(
                "max_grazing_deg must be within 0..=180, got {}",
                self.max_grazing_deg
            )));
        }
        Ok(())
    }
}

/// Meshes a metric depth map in camera coordinates, with `camera` of the same size.
///
/// Pixels with non-finite or non-positive depth are holes. Each 2 x 2 block of sampled
/// pixels gives the triangles `(top-left, bottom-left, top-right)` and
/// `(top-right, bottom-left, bottom-right)` when all four pixels are valid; when exactly
/// three are valid, the one triangle they form. Triangles are wound so that their
/// normals face the camera (towards -z for a fronto-parallel plane), then filtered by
/// [`GridMeshOptions::max_relative_jump`] and [`GridMeshOptions::max_grazing_deg`].
///
/// Only vertices used by a kept face are returned, in row-major pixel order; faces come
/// in row-major block order. With `color` (interleaved RGB8, `width * height * 3` bytes)
/// vertices get their pixel's colour. Vertex normals are always computed
/// (area-weighted face normals, normalised).
///
/// # Errors
/// [`Error::Invalid`] when the camera is invalid ([`Intrinsics::validate`]) or not the
/// size of `depth`, `color` does not match that size, or the options are invalid
/// (see [`GridMeshOptions::validate`]).
pub fn mesh_from_depth(
    depth: &DepthMap<Metres>,
    camera: &Intrinsics,
    options: &GridMeshOptions,
    color: Option<&[u8]>,
) -> Result<TriangleMesh> {
    grid_mesh(depth, camera, options, color).map(|grid| grid.mesh)
}

/// A depth-grid mesh and the pixel each vertex came from.
#[derive(Clone, Debug, PartialEq)]
pub struct GridMesh {
    /// The mesh, as [`mesh_from_depth`] returns it.
    pub mesh: TriangleMesh,
    /// `(column, row)` of each vertex's pixel in the depth map.
    pub pixels: Vec<[u32; 2]>,
}

impl GridMesh {
    /// Texture coordinates of the vertices for an image the size of the depth map:
    /// each vertex at its pixel's centre, `(0, 0)` the image's top-left corner and
    /// `(1, 1)` its bottom-right (glTF's convention).
    pub fn tex_coords(&self, width: u32, height: u32) -> Vec<[f32; 2]> {
        let (w, h) = (f64::from(width), f64::from(height));
        self.pixels
            .iter()
            .map(|&[u, v]| {
                [
                    ((f64::from(u) + 0.5) / w) as f32,
                    ((f64::from(v) + 0.5) / h) as f32,
                ]
            })
            .collect()
    }
}

/// [`mesh_from_depth`], also returning each vertex's pixel (for texturing with the photo).
///
/// # Errors
/// As [`mesh_from_depth`].
pub fn grid_mesh(
    depth: &DepthMap<Metres>,
    camera: &Intrinsics,
    options: &GridMeshOptions,
    color: Option<&[u8]>,
) -> Result<GridMesh> {
    let (width, height) = (depth.width(), depth.height());
    let (w, h) = (width as usize, height as usize);
    check_camera(camera, width, height)?;
    check_color(color, width, height)?;
    options.validate()?;
    let depth = depth.data();

    let stride = options.stride;
    // The sampled grid: columns 0, stride, 2 * stride, ... and the same for rows.
    let (gw, gh) = (w.div_ceil(stride), h.div_ceil(stride));
    let pixel_of = |gx: usize, gy: usize| gy * stride * w + gx * stride;

    // Unproject every sampled pixel; `None` marks a hole.
    let points: Vec<Option<Point3<f32>>> = (0..gh)
        .flat_map(|gy| (0..gw).map(move |gx| (gx, gy)))
        .map(|(gx, gy)| {
            let z = depth[pixel_of(gx, gy)];
            (z.is_finite() && z > 0.0).then(|| {
                let zf = f64::from(z);
                let x = ((gx * stride) as f64 - camera.cx) * zf / camera.fx;
                let y = ((gy * stride) as f64 - camera.cy) * zf / camera.fy;
                Point3::new(x as f32, y as f32, z)
            })
        })
        .collect();

    let max_ratio = 1.0 + f64::from(options.max_relative_jump);
    let min_cos = f64::from(options.max_grazing_deg).to_radians().cos();
    let keep = |tri: [usize; 3]| -> bool {
        let [a, b, c] = tri.map(|i| points[i]);
        let (Some(a), Some(b), Some(c)) = (a, b, c) else {
            return false;
        };
        let zs = [a.z, b.z, c.z].map(f64::from);
        let (z_min, z_max) = (zs[0].min(zs[1]).min(zs[2]), zs[0].max(zs[1]).max(zs[2]));
        if z_max > z_min * max_ratio {
            return false;
        }
        let [a, b, c] = [a, b, c].map(|p| p.coords.cast::<f64>());
        let normal = (b - a).cross(&(c - a));
        let to_camera = -(a + b + c) / 3.0;
        let denominator = normal.norm() * to_camera.norm();
        // Degenerate triangles have no direction to judge; drop them.
        denominator > 0.0 && normal.dot(&to_camera) / denominator >= min_cos
    };

    let mut faces_in_grid: Vec<[usize; 3]> = Vec::new();
    for gy in 0..gh.saturating_sub(1) {
        for gx in 0..gw.saturating_sub(1) {
            let tl = gy * gw + gx;
            let (tr, bl, br) = (tl + 1, tl + gw, tl + gw + 1);
            let valid = [tl, tr, bl, br].map(|i| points[i].is_some());
            let candidates: &[[usize; 3]] = match valid {
                [true, true, true, true] => &[[tl, bl, tr], [tr, bl, br]],
                [false, true, true, true] => &[[tr, bl, br]],
                [true, false, true, true] => &[[tl, bl, br]],
                [true, true, false, true] => &[[tl, br, tr]],
                [true, true, true, false] => &[[tl, bl, tr]],
                _ => &[],
            };
            faces_in_grid.extend(candidates.iter().copied().filter(|&t| keep(t)));
        }
    }

    // Compact: number the used grid vertices in row-major order.
    let mut index_of = vec![u32::MAX; points.len()];
    for face in &faces_in_grid {
        for &i in face {
            index_of[i] = 0;
        }
    }
    let mut vertices = Vec::new();
    let mut pixels = Vec::new();
    let mut colors = color.map(|_| Vec::new());
    for (i, slot) in index_of.iter_mut().enumerate() {
        if *slot == u32::MAX {
            continue;
        }
        let (Some(p), Ok(next)) = (points[i], u32::try_from(vertices.len())) else {
            return Err(Error::Invalid(format!(
                "{width} x {height} depth map gives more vertices than u32 indices can address"
            )));
        };
        *slot = next;
        vertices.push(p);
        let (gx, gy) = (i % gw, i / gw);
        // Grid coordinates times the stride are below the map's u32 size.
        pixels.push([(gx * stride) as u32, (gy * stride) as u32]);
        if let (Some(colors), Some(rgb)) = (colors.as_mut(), color) {
            let pixel = pixel_of(i % gw, i / gw) * 3;
            colors.push([rgb[pixel], rgb[pixel + 1], rgb[pixel + 2]]);
        }
    }
    let faces = faces_in_grid
        .iter()
        .map(|face| face.map(|i| index_of[i]))
        .collect();

    let mut mesh = TriangleMesh {
        vertices,
        faces,
        colors,
        normals: None,
    };
    mesh.compute_vertex_normals();
    tracing::debug!(
        vertices = mesh.vertices.len(),
        faces = mesh.faces.len(),
        "meshed a {width} x {height} depth map"
    );
    Ok(GridMesh { mesh, pixels })
}

#[cfg(test)]
mod tests {
    use nalgebra::Vector3;

    use super::*;

    fn camera(width: u32, height: u32) -> Intrinsics {
        let (cx, cy) = (f64::from(width - 1) / 2.0, f64::from(height - 1) / 2.0);
        Intrinsics::new(100.0, 100.0, cx, cy, width, height).expect("valid camera")
    }

    fn depth_map(depth: &[f32], w: u32, h: u32) -> DepthMap<Metres> {
        DepthMap::new(w, h, depth.to_vec()).expect("w x h values")
    }

    fn mesh(depth: &[f32], w: u32, h: u32, options: &GridMeshOptions) -> TriangleMesh {
        mesh_from_depth(&depth_map(depth, w, h), &camera(w, h), options, None).expect("valid input")
    }

    #[test]
    fn fronto_parallel_plane_gives_two_triangles_per_block() {
        let (w, h) = (17u32, 11u32);
        let depth = vec![2.5; (w * h) as usize];
        let m = mesh(&depth, w, h, &GridMeshOptions::default());
        assert_eq!(m.faces.len(), 2 * (w as usize - 1) * (h as usize - 1));
        assert_eq!(m.vertices.len(), (w * h) as usize);
        m.validate().expect("consistent mesh");
        for face in &m.faces {
            let n = m.face_normal_area_weighted(face);
            assert!(n.z < 0.0, "face {face:?} faces away from the camera: {n:?}");
        }
        let normals = m.normals.expect("computed");
        assert!(normals
            .iter()
            .all(|n| (n - Vector3::new(0.0, 0.0, -1.0)).norm() < 1e-6));
    }

    #[test]
    fn box_in_front_of_a_wall_is_not_joined_to_it() {
        // A 1 m box over columns 10..25, rows 8..20 of a 3 m wall.
        let (w, h) = (40u32, 30u32);
        let in_box = |u: u32, v: u32| (10..25).contains(&u) && (8..20).contains(&v);
        let depth: Vec<f32> = (0..h)
            .flat_map(|v| (0..w).map(move |u| if in_box(u, v) { 1.0 } else { 3.0 }))
            .collect();
        let m = mesh(&depth, w, h, &GridMeshOptions::default());
        for face in &m.faces {
            let zs = face.map(|i| m.vertices[i as usize].z);
            assert!(
                zs.iter().all(|&z| z == 1.0) || zs.iter().all(|&z| z == 3.0),
                "face {face:?} spans the discontinuity: {zs:?}"
            );
        }
        // Oracle: full blocks inside the box, plus the wall's full blocks, plus one
        // triangle in each of the two corner blocks whose box pixel lies off their
        // diagonal (top-left and bottom-right corner of the box).
        let box_faces = 2 * 14 * 11;
        let wall_full_blocks = (0..h - 1)
            .flat_map(|v| (0..w - 1).map(move |u| (u, v)))
            .filter(|&(u, v)| {
                [(u, v), (u + 1, v), (u, v + 1), (u + 1, v + 1)]
                    .iter()
                    .all(|&(x, y)| !in_box(x, y))
            })
            .count();
        assert_eq!(m.faces.len(), box_faces + 2 * wall_full_blocks + 2);
    }

    #[test]
    fn tilted_plane_is_kept_until_the_grazing_limit() {
        // Plane z = 2 + tan(angle) * x. A long focal length keeps the field of view
        // within +-0.6 degrees, so every triangle is seen at about `angle`.
        let (w, h) = (21u32, 21u32);
        let cam = Intrinsics {
            fx: 1000.0,
            fy: 1000.0,
            ..camera(w, h)
        };
        let tilted = |angle_deg: f64, options: &GridMeshOptions| -> TriangleMesh {
            let t = angle_deg.to_radians().tan();
            let depth: Vec<f32> = (0..h)
                .flat_map(|_| {
                    (0..w).map(move |u| {
                        // Ray-plane intersection: x = ray_x * z and z = 2 + t * x.
                        let ray_x = (f64::from(u) - cam.cx) / cam.fx;
                        (2.0 / (1.0 - t * ray_x)) as f32
                    })
                })
                .collect();
            mesh_from_depth(&depth_map(&depth, w, h), &cam, options, None).expect("valid input")
        };
        let full = 2 * (w as usize - 1) * (h as usize - 1);
        let default = GridMeshOptions::default();
        assert_eq!(tilted(60.0, &default).faces.len(), full);
        assert_eq!(tilted(80.0, &default).faces.len(), full);
        // Beyond the default limit of 85 degrees.
        assert_eq!(tilted(88.0, &default).faces.len(), 0);
        // A stricter limit drops the 60 degree plane.
        let strict = GridMeshOptions {
            max_grazing_deg: 55.0,
            ..default.clone()
        };
        assert_eq!(tilted(60.0, &strict).faces.len(), 0);
        let tilted_mesh = tilted(60.0, &default);
        let n = tilted_mesh.normals.expect("computed")[0];
        let expected = Vector3::new(60f32.to_radians().sin(), 0.0, -60f32.to_radians().cos());
        assert!((n - expected).norm() < 1e-3, "{n:?} vs {expected:?}");
    }

    #[test]
    fn stride_samples_every_nth_pixel() {
        let (w, h) = (41u32, 31u32);
        let depth = vec![2.0; (w * h) as usize];
        let full = mesh(&depth, w, h, &GridMeshOptions::default());
        let halved = mesh(
            &depth,
            w,
            h,
            &GridMeshOptions {
                stride: 2,
                ..GridMeshOptions::default()
            },
        );
        // 21 x 16 sampled pixels.
        assert_eq!(halved.vertices.len(), 21 * 16);
        assert_eq!(halved.faces.len(), 2 * 20 * 15);
        assert_eq!(full.faces.len(), 2 * 40 * 30);
        // Sampled pixels are a subset of the full-resolution vertices.
        assert_eq!(halved.vertices[1], full.vertices[2]);
        assert_eq!(halved.vertices[21], full.vertices[2 * 41]);
    }

    #[test]
    fn holes_colours_and_compaction() {
        // 3 x 3, centre pixel has no depth: each of the four blocks keeps one triangle
        // (three valid corners); the corner pixels are used, so all 8 valid ones stay.
        let (w, h) = (3u32, 3u32);
        let mut depth = vec![1.0; 9];
        depth[4] = f32::NAN;
        let color: Vec<u8> = (0..27).collect();
        let m = mesh_from_depth(
            &depth_map(&depth, w, h),
            &camera(w, h),
            &GridMeshOptions::default(),
            Some(&color),
        )
        .expect("valid input");
        assert_eq!(m.faces.len(), 4);
        assert_eq!(m.vertices.len(), 8);
        let colors = m.colors.as_ref().expect("colour given");
        // Vertex 4 is pixel 5 (pixel 4 is the hole).
        assert_eq!(colors[4], [15, 16, 17]);
        assert_eq!(m.vertices[4].x, 0.01);
        m.validate().expect("consistent mesh");

        // A single valid pixel makes no face and therefore no vertex.
        let mut depth = vec![0.0; 9];
        depth[0] = 1.0;
        let m = mesh(&depth, w, h, &GridMeshOptions::default());
        assert!(m.vertices.is_empty() && m.faces.is_empty());
    }

    #[test]
    fn output_is_deterministic() {
        let (w, h) = (30u32, 20u32);
        let depth: Vec<f32> = (0..w * h)
            .map(|i| 1.0 + ((i * 7919) % 13) as f32 * 0.004)
            .collect();
        let a = mesh(&depth, w, h, &GridMeshOptions::default());
        let b = mesh(&depth, w, h, &GridMeshOptions::default());
        assert_eq!(a, b);
        assert!(!a.faces.is_empty());
    }

    #[test]
    fn invalid_input_is_rejected() {
        let depth = depth_map(&[1.0; 6], 3, 2);
        let ok = GridMeshOptions::default();
        let cam = camera(3, 2);
        assert!(mesh_from_depth(&depth, &camera(3, 3), &ok, None).is_err());
        assert!(mesh_from_depth(&depth, &cam, &ok, Some(&[0; 17])).is_err());
        let bad_cam = Intrinsics { fx: 0.0, ..cam };
        assert!(mesh_from_depth(&depth, &bad_cam, &ok, None).is_err());
        let bad_cam = Intrinsics {
            cy: f64::NAN,
            ..cam
        };
        assert!(mesh_from_depth(&depth, &bad_cam, &ok, None).is_err());
        for bad in [
            GridMeshOptions {
                stride: 0,
                ..ok.clone()
            },
            GridMeshOptions {
                max_relative_jump: f32::NAN,
                ..ok.clone()
            },
            GridMeshOptions {
                max_relative_jump: -0.1,
                ..ok.clone()
            },
            GridMeshOptions {
                max_grazing_deg: 181.0,
                ..ok.clone()
            },
        ] {
            assert!(
                mesh_from_depth(&depth, &cam, &bad, None).is_err(),
                "{bad:?}"
            );
        }
    }
}
