//! Depth rendering of triangle meshes: what a pinhole camera would measure.
//!
//! [`render_depth`] is a z-buffer rasteriser with the conventions of
//! [`crate::unproject`]: OpenCV camera axes (x right, y down, z forward), pixel centres at
//! integer coordinates, so pixel `(u, v)` sees the ray through
//! `((u - cx) / fx, (v - cy) / fy, 1)` and unprojecting a rendered depth map gives points
//! on the mesh.
//!
//! - Depth is the camera z of the nearest surface, exact for perspective: `1 / z` is
//!   affine in the image across a planar triangle and is evaluated at each pixel centre
//!   from the triangle's plane.
//! - Coverage is decided on vertices snapped to 1/256 pixel with integer edge functions
//!   and a top-left rule: a pixel centre on an edge shared by two triangles belongs to
//!   exactly one of them, so a closed mesh renders without holes or double coverage.
//! - Triangles are clipped in 3D against a near plane at [`NEAR_M`] (nothing at or behind
//!   the camera shows) and against a guard band far outside the image (so the fixed-point
//!   arithmetic cannot overflow).
//! - Both windings are drawn: there is no back-face culling.
//! - Rows are rendered in bands of 16 in parallel, each band with its own z-buffer and
//!   its triangles in face order, so the result does not depend on the thread count.
//!   Where two triangles give the same depth, the first face wins.
//!
//! ```
//! use anydepth_core::Intrinsics;
//! use anydepth_geometry::render::render_depth;
//! use anydepth_geometry::TriangleMesh;
//! use nalgebra::{Isometry3, Point3};
//!
//! // A square 2 m in front of a 4 x 4 camera, covering the pixel centres 1 and 2 of
//! // each axis (edges at 0.5 and 2.5 pixels).
//! let mesh = TriangleMesh {
//!     vertices: vec![
//!         Point3::new(-1.0, -1.0, 2.0),
//!         Point3::new(1.0, -1.0, 2.0),
//!         Point3::new(1.0, 1.0, 2.0),
//!         Point3::new(-1.0, 1.0, 2.0),
//!     ],
//!     faces: vec![[0, 1, 2], [0, 2, 3]],
//!     ..Default::default()
//! };
//! let camera = Intrinsics::new(2.0, 2.0, 1.5, 1.5, 4, 4).expect("valid camera");
//! let depth = render_depth(&mesh, &camera, &Isometry3::identity()).expect("renders");
//! assert_eq!((depth.width(), depth.height()), (4, 4));
//! for v in 0..4 {
//!     for u in 0..4 {
//!         let inside = (1..=2).contains(&u) && (1..=2).contains(&v);
//!         let z = depth.get(u, v);
//!         assert_eq!(inside, z == 2.0);
//!         assert_eq!(!inside, z.is_nan());
//!     }
//! }
//! ```

use std::ops::Range;

use anydepth_core::{DepthMap, Intrinsics, Metres};
use nalgebra::{Isometry3, Point3, Vector3};
use rayon::prelude::*;

use crate::unproject::validate_camera;
use crate::{Error, Result, TriangleMesh};

/// Surfaces nearer to the camera than this (camera z, metres) are clipped away.
pub const NEAR_M: f64 = 1e-3;

/// The largest image width or height [`render_depth`] accepts.
pub const MAX_SIDE: usize = 1 << 20;

/// Fixed-point vertex positions: 1/256 pixel.
const SUBPIXEL_BITS: u32 = 8;
const SUBPIXEL: i64 = 1 << SUBPIXEL_BITS;

/// How far outside the image (pixels) triangles are clipped. With [`MAX_SIDE`] it keeps
/// fixed-point coordinates below 2^29 and edge functions below 2^61.
const GUARD_PX: f64 = (1u64 << 20) as f64;

/// Rows rendered together, with one z-buffer.
const BAND_ROWS: usize = 16;

/// A clipped polygon has at most one vertex more per clip plane: 3 + 5.
const MAX_POLYGON: usize = 8;
/// Triangles of a fan over [`MAX_POLYGON`] vertices.
const MAX_FAN: usize = MAX_POLYGON - 2;

/// Depth (camera z, metres) of the nearest surface of `mesh` at each pixel of the image of
/// `camera` (its `width x height`) placed at `world_from_camera`; NaN where no triangle
/// covers the pixel.
///
/// See the [module documentation](self) for the conventions: OpenCV axes, pixel centres at
/// integer coordinates, top-left coverage, near plane at [`NEAR_M`], both windings drawn.
///
/// # Errors
/// [`Error::Invalid`] when the camera is invalid ([`Intrinsics::validate`], which also
/// refuses a zero width or height), its width or height is above [`MAX_SIDE`], the pose
/// is not finite, or the mesh is inconsistent (see [`TriangleMesh::validate`]: face
/// indices out of range, non-finite vertices, ...).
///
/// # Performance
/// Vertices are transformed and triangles set up in parallel; rows are rasterised in
/// parallel bands of 16, each triangle into the bands its bounding box spans.
pub fn render_depth(
    mesh: &TriangleMesh,
    camera: &Intrinsics,
    world_from_camera: &Isometry3<f64>,
) -> Result<DepthMap<Metres>> {
    validate_camera(camera)?;
    let (width, height) = (camera.width as usize, camera.height as usize);
    // A zero side is refused by `validate_camera`.
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::Invalid(format!(
            "image size must be 1 to {MAX_SIDE} pixels a side, got {width} x {height}"
        )));
    }
    if !world_from_camera
        .to_homogeneous()
        .iter()
        .all(|v| v.is_finite())
    {
        return Err(Error::Invalid("camera pose is not finite".into()));
    }
    let pixels = width
        .checked_mul(height)
        .ok_or_else(|| Error::Invalid(format!("{width} x {height} is too many pixels")))?;
    mesh.validate()?;

    let triangles = screen_triangles(mesh, camera, world_from_camera, width, height);
    let bands = height.div_ceil(BAND_ROWS);
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); bands];
    for (i, t) in triangles.iter().enumerate() {
        for bin in &mut bins[t.rows.start / BAND_ROWS..=(t.rows.end - 1) / BAND_ROWS] {
            bin.push(i);
        }
    }
    let mut depth = vec![f32::NAN; pixels];
    depth
        .par_chunks_mut(BAND_ROWS * width)
        .zip(bins.par_iter())
        .enumerate()
        .for_each(|(band, (out, bin))| {
            let first = band * BAND_ROWS;
            let rows = first..first + out.len() / width;
            let mut nearest = vec![f64::INFINITY; out.len()];
            for &i in bin {
                rasterize(&triangles[i], &rows, |u, v, z| {
                    let k = (v - first) * width + u;
                    if z < nearest[k] {
                        nearest[k] = z;
                    }
                });
            }
            for (o, z) in out.iter_mut().zip(nearest) {
                if z.is_finite() {
                    *o = z as f32;
                }
            }
        });
    tracing::debug!(
        width,
        height,
        faces = mesh.faces.len(),
        triangles = triangles.len(),
        "rendered depth"
    );
    DepthMap::new(camera.width, camera.height, depth).map_err(|e| Error::Invalid(e.to_string()))
}

/// A triangle ready to rasterise.
#[derive(Clone, Debug)]
struct ScreenTriangle {
    /// Vertices in pixels times [`SUBPIXEL`], ordered so that the signed area is positive
    /// (the inside is where every edge function is positive).
    xy: [[i64; 2]; 3],
    /// `1 / z` at pixel `(u, v)` is `inv_z[0] * u + inv_z[1] * v + inv_z[2]`.
    inv_z: [f64; 3],
    /// Depth range of the (clipped) triangle; interpolated depth is clamped to it.
    z_range: [f64; 2],
    /// Pixel columns and rows the triangle's bounding box spans, within the image;
    /// never empty.
    cols: Range<usize>,
    rows: Range<usize>,
}

/// A plane of camera space: the half space `normal . p + offset >= 0` is kept.
#[derive(Clone, Copy)]
struct ClipPlane {
    normal: Vector3<f64>,
    offset: f64,
}

impl ClipPlane {
    fn value(&self, p: &Point3<f64>) -> f64 {
        self.normal.dot(&p.coords) + self.offset
    }
}

/// The near plane and the four planes of the guard band, for a camera and image size.
fn clip_planes(camera: &Intrinsics, width: usize, height: usize) -> [ClipPlane; 5] {
    let Intrinsics { fx, fy, cx, cy, .. } = *camera;
    let (right, bottom) = (
        (width - 1) as f64 + GUARD_PX,
        (height - 1) as f64 + GUARD_PX,
    );
    // For z > 0: fx x / z + cx >= -GUARD  <=>  fx x + (cx + GUARD) z >= 0, and so on.
    let plane = |x: f64, y: f64, z: f64| ClipPlane {
        normal: Vector3::new(x, y, z),
        offset: 0.0,
    };
    [
        ClipPlane {
            normal: Vector3::z(),
            offset: -NEAR_M,
        },
        plane(fx, 0.0, cx + GUARD_PX),
        plane(-fx, 0.0, right - cx),
        plane(0.0, fy, cy + GUARD_PX),
        plane(0.0, -fy, bottom - cy),
    ]
}

/// Every face of `mesh`, in camera space, clipped and set up for rasterisation; faces
/// that cover no pixel centre's bounding box are left out. In face order.
fn screen_triangles(
    mesh: &TriangleMesh,
    camera: &Intrinsics,
    world_from_camera: &Isometry3<f64>,
    width: usize,
    height: usize,
) -> Vec<ScreenTriangle> {
    let camera_from_world = world_from_camera.inverse();
    let points: Vec<Point3<f64>> = mesh
        .vertices
        .par_iter()
        .map(|p| camera_from_world * p.cast::<f64>())
        .collect();
    let planes = clip_planes(camera, width, height);
    mesh.faces
        .par_iter()
        .flat_map_iter(|face| {
            let corners = face.map(|i| points[i as usize]);
            setup_face(&corners, &planes, camera, width, height)
                .into_iter()
                .flatten()
        })
        .collect()
}

/// The screen triangles of one face: none (clipped away, degenerate or off the image),
/// one, or a fan when clipping cut corners off.
fn setup_face(
    corners: &[Point3<f64>; 3],
    planes: &[ClipPlane; 5],
    camera: &Intrinsics,
    width: usize,
    height: usize,
) -> [Option<ScreenTriangle>; MAX_FAN] {
    let mut out: [Option<ScreenTriangle>; MAX_FAN] = Default::default();
    let Some(inv_z) = inverse_depth_plane(corners, camera) else {
        return out;
    };
    let mut polygon = [Point3::origin(); MAX_POLYGON];
    polygon[..3].copy_from_slice(corners);
    let mut n = 3;
    for plane in planes {
        let values = polygon[..n].iter().map(|p| plane.value(p));
        if values.clone().all(|v| v >= 0.0) {
            continue;
        }
        if values.clone().all(|v| v < 0.0) {
            return out;
        }
        n = clip(&mut polygon, n, plane);
        if n < 3 {
            return out;
        }
    }
    let (mut z_min, mut z_max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut xy = [[0i64; 2]; MAX_POLYGON];
    for (p, s) in polygon[..n].iter().zip(&mut xy) {
        z_min = z_min.min(p.z);
        z_max = z_max.max(p.z);
        *s = snap(p, camera, width, height);
    }
    for (k, slot) in (1..n - 1).zip(&mut out) {
        *slot = triangle(
            [xy[0], xy[k], xy[k + 1]],
            inv_z,
            [z_min, z_max],
            width,
            height,
        );
    }
    out
}

/// Clips the convex `polygon[..n]` to the kept side of `plane` (Sutherland-Hodgman) in
/// place; returns the new vertex count.
///
/// A crossing point is always computed from the kept end of its edge towards the other
/// one, so two faces sharing an edge get bit-identical points and stay watertight.
fn clip(polygon: &mut [Point3<f64>; MAX_POLYGON], n: usize, plane: &ClipPlane) -> usize {
    let input = *polygon;
    let mut m = 0;
    for i in 0..n {
        let (a, b) = (input[i], input[(i + 1) % n]);
        let (va, vb) = (plane.value(&a), plane.value(&b));
        if va >= 0.0 {
            polygon[m] = a;
            m += 1;
        }
        if (va >= 0.0) != (vb >= 0.0) {
            let (kept, cut, v_kept, v_cut) = if va >= 0.0 {
                (a, b, va, vb)
            } else {
                (b, a, vb, va)
            };
            let t = v_kept / (v_kept - v_cut);
            polygon[m] = kept + (cut - kept) * t;
            m += 1;
        }
    }
    m
}

/// `1 / z` as an affine function of the pixel `(u, v)` over the plane of a face, or
/// `None` when the face is degenerate or its plane passes through the camera centre
/// (it then covers no area of the image).
fn inverse_depth_plane(corners: &[Point3<f64>; 3], camera: &Intrinsics) -> Option<[f64; 3]> {
    let [p0, p1, p2] = corners;
    let normal = (p1 - p0).cross(&(p2 - p0));
    let d = normal.dot(&p0.coords);
    // Along the ray r = ((u - cx) / fx, (v - cy) / fy, 1) the plane is at z = d / (n . r).
    let Intrinsics { fx, fy, cx, cy, .. } = *camera;
    let a = normal.x / (fx * d);
    let b = normal.y / (fy * d);
    let c = (normal.z - normal.x * cx / fx - normal.y * cy / fy) / d;
    (d != 0.0 && a.is_finite() && b.is_finite() && c.is_finite()).then_some([a, b, c])
}

/// A camera-space point (with `z >= NEAR_M`, inside the guard band) projected to fixed
/// point pixels.
fn snap(p: &Point3<f64>, camera: &Intrinsics, width: usize, height: usize) -> [i64; 2] {
    let u = camera.fx * p.x / p.z + camera.cx;
    let v = camera.fy * p.y / p.z + camera.cy;
    // Clipping leaves points inside the guard band up to rounding; clamping keeps the
    // fixed-point bounds whatever happens.
    let fixed = |s: f64, side: usize| {
        let limit = side as f64 + GUARD_PX + 1.0;
        ((s.clamp(-limit, limit) * SUBPIXEL as f64).round()) as i64
    };
    [fixed(u, width), fixed(v, height)]
}

/// The edge function of `a -> b` at `p`: twice the signed area of `(a, b, p)`, positive
/// when `p` is on the inside of a positively oriented triangle.
fn edge(a: [i64; 2], b: [i64; 2], p: [i64; 2]) -> i64 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// Whether a pixel centre exactly on edge `a -> b` (of a positively oriented triangle)
/// belongs to the triangle: top edges and left edges own their pixels.
///
/// For an edge shared by two triangles exactly one of `a -> b` and `b -> a` owns; the
/// rule is that of a sample point moved right and a little down by an infinitesimal,
/// which also settles pixel centres on shared vertices.
fn owns(a: [i64; 2], b: [i64; 2]) -> bool {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    dy < 0 || (dy == 0 && dx > 0)
}

/// Orients and bounds a fixed-point triangle; `None` when it has no area or its bounding
/// box holds no pixel centre of the image.
fn triangle(
    mut xy: [[i64; 2]; 3],
    inv_z: [f64; 3],
    z_range: [f64; 2],
    width: usize,
    height: usize,
) -> Option<ScreenTriangle> {
    let area = edge(xy[0], xy[1], xy[2]);
    if area == 0 {
        return None;
    }
    if area < 0 {
        xy.swap(1, 2);
    }
    let span = |axis: usize, side: usize| {
        let lo = xy.iter().map(|p| p[axis]).min().unwrap_or(0);
        let hi = xy.iter().map(|p| p[axis]).max().unwrap_or(-1);
        // Pixel centres k with lo <= k * SUBPIXEL <= hi, within 0..side.
        let first = (-((-lo).div_euclid(SUBPIXEL))).max(0);
        let last = hi.div_euclid(SUBPIXEL).min(side as i64 - 1);
        (first <= last).then(|| first as usize..last as usize + 1)
    };
    Some(ScreenTriangle {
        xy,
        inv_z,
        z_range,
        cols: span(0, width)?,
        rows: span(1, height)?,
    })
}

/// Calls `fragment(u, v, z)` for each pixel centre in `rows` that the triangle covers.
fn rasterize(t: &ScreenTriangle, rows: &Range<usize>, mut fragment: impl FnMut(usize, usize, f64)) {
    let first = t.rows.start.max(rows.start);
    let last = t.rows.end.min(rows.end);
    let [p0, p1, p2] = t.xy;
    let edges = [(p1, p2), (p2, p0), (p0, p1)];
    // A pixel is covered when every edge function plus its bias is >= 0: the bias of -1
    // turns ">= 0" into "> 0" on edges that do not own their pixels.
    let bias = edges.map(|(a, b)| if owns(a, b) { 0 } else { -1 });
    // Stepping one column changes edge function a -> b by -(b.y - a.y) * SUBPIXEL.
    let step = edges.map(|(a, b)| -(b[1] - a[1]) * SUBPIXEL);
    let [a, b, c] = t.inv_z;
    let [z_min, z_max] = t.z_range;
    let u0 = t.cols.start;
    for v in first..last {
        let start = [u0 as i64 * SUBPIXEL, v as i64 * SUBPIXEL];
        let mut e: [i64; 3] =
            std::array::from_fn(|k| edge(edges[k].0, edges[k].1, start) + bias[k]);
        let row = b * v as f64 + c;
        for u in t.cols.clone() {
            if e[0] >= 0 && e[1] >= 0 && e[2] >= 0 {
                // NaN (a plane through the camera, by rounding) clamps to z_min.
                let z = (1.0 / (a * u as f64 + row)).max(z_min).min(z_max);
                fragment(u, v, z);
            }
            for (e, step) in e.iter_mut().zip(step) {
                *e += step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nalgebra::{Translation3, UnitQuaternion};

    use super::*;

    /// An 80 x 60 camera.
    fn camera() -> Intrinsics {
        Intrinsics::new(60.0, 55.0, 39.5, 29.5, 80, 60).expect("valid camera")
    }

    fn ray(camera: &Intrinsics, u: usize, v: usize) -> Vector3<f64> {
        Vector3::new(
            (u as f64 - camera.cx) / camera.fx,
            (v as f64 - camera.cy) / camera.fy,
            1.0,
        )
    }

    fn mesh(vertices: &[[f64; 3]], faces: &[[u32; 3]]) -> TriangleMesh {
        TriangleMesh {
            vertices: vertices
                .iter()
                .map(|p| Point3::new(p[0] as f32, p[1] as f32, p[2] as f32))
                .collect(),
            faces: faces.to_vec(),
            colors: None,
            normals: None,
        }
    }

    /// A camera at `eye` looking at `target`, OpenCV axes, world "up" roughly `up`.
    fn look_at(eye: Vector3<f64>, target: Vector3<f64>, up: Vector3<f64>) -> Isometry3<f64> {
        // face_towards maps +z to the direction and +y to `up`; the camera's y is down.
        let rotation = UnitQuaternion::face_towards(&(target - eye), &-up);
        Isometry3::from_parts(Translation3::from(eye), rotation)
    }

    /// Whether pixel centre `(u, v)` is in the rectangle `[x0, x1) x [y0, y1)` (pixel
    /// coordinates): a centre on a left or top edge is in, on a right or bottom edge out.
    fn top_left_inside(u: usize, v: usize, x: [f64; 2], y: [f64; 2]) -> bool {
        let (u, v) = (u as f64, v as f64);
        x[0] <= u && u < x[1] && y[0] <= v && v < y[1]
    }

    #[test]
    fn quad_facing_the_camera_covers_exactly_its_pixels() -> Result<()> {
        let camera = camera();
        let (w, h) = (camera.width as usize, camera.height as usize);
        let z = 2.0;
        // Edges between pixel centres, then through pixel centres (the top-left rule).
        for (x, y) in [([10.5, 30.5], [5.5, 40.5]), ([10.0, 30.0], [5.0, 41.0])] {
            let corner = |u: f64, v: f64| {
                [
                    (u - camera.cx) / camera.fx * z,
                    (v - camera.cy) / camera.fy * z,
                    z,
                ]
            };
            let quad = mesh(
                &[
                    corner(x[0], y[0]),
                    corner(x[1], y[0]),
                    corner(x[1], y[1]),
                    corner(x[0], y[1]),
                ],
                &[[0, 1, 2], [0, 2, 3]],
            );
            let depth = render_depth(&quad, &camera, &Isometry3::identity())?.into_data();
            for v in 0..h {
                for u in 0..w {
                    let d = depth[v * w + u];
                    if top_left_inside(u, v, x, y) {
                        assert!((d - 2.0).abs() < 1e-6, "({u}, {v}): {d}");
                    } else {
                        assert!(d.is_nan(), "({u}, {v}) outside {x:?} x {y:?}: {d}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn tilted_plane_depth_is_exact_for_perspective() -> Result<()> {
        let camera = camera();
        let (w, h) = (camera.width as usize, camera.height as usize);
        // The plane n . p = d, strongly tilted so depth spans 1.5 to 4.9 m.
        let n = Vector3::new(0.5, -0.35, 1.0).normalize();
        let d = 2.0;
        let on_plane = |u: f64, v: f64| {
            let r = Vector3::new(
                (u - camera.cx) / camera.fx,
                (v - camera.cy) / camera.fy,
                1.0,
            );
            let p = r * (d / n.dot(&r));
            [p.x, p.y, p.z]
        };
        // Corners beyond the image so the quad covers it all.
        let plane = mesh(
            &[
                on_plane(-5.0, -5.0),
                on_plane(85.0, -5.0),
                on_plane(85.0, 65.0),
                on_plane(-5.0, 65.0),
            ],
            &[[0, 1, 2], [0, 2, 3]],
        );
        let pose = look_at(
            Vector3::new(0.3, -0.2, 0.5),
            Vector3::new(0.5, 0.1, 3.0),
            Vector3::new(0.1, -1.0, 0.0),
        );
        // The same plane moved to the world by `pose` and seen from `pose`.
        let mut world = plane.clone();
        for p in &mut world.vertices {
            *p = (pose * p.cast::<f64>()).cast::<f32>();
        }
        let depth = render_depth(&world, &camera, &pose)?.into_data();
        let mut span = (f64::INFINITY, 0f64);
        for v in 0..h {
            for u in 0..w {
                let r = ray(&camera, u, v);
                let expected = d / n.dot(&r);
                span = (span.0.min(expected), span.1.max(expected));
                let got = f64::from(depth[v * w + u]);
                // f32 vertices and output: a few ulps at 4 m.
                assert!(
                    ((got - expected) / expected).abs() < 1e-5,
                    "({u}, {v}): {got} vs {expected}"
                );
            }
        }
        assert!(span.0 < 1.6 && span.1 > 4.5, "{span:?}");
        Ok(())
    }

    /// An axis-aligned box from `lo` to `hi`, with its faces wound alternately in and
    /// out (no winding is preferred).
    fn box_mesh(lo: Vector3<f64>, hi: Vector3<f64>) -> TriangleMesh {
        let corner = |c: u32| {
            [
                if c & 1 == 0 { lo.x } else { hi.x },
                if c & 2 == 0 { lo.y } else { hi.y },
                if c & 4 == 0 { lo.z } else { hi.z },
            ]
        };
        let vertices: Vec<[f64; 3]> = (0..8).map(corner).collect();
        // Each side of the cube as a quad of corners, split along one diagonal.
        let quads = [
            [0, 1, 3, 2],
            [4, 6, 7, 5],
            [0, 4, 5, 1],
            [2, 3, 7, 6],
            [0, 2, 6, 4],
            [1, 5, 7, 3],
        ];
        let mut faces = Vec::new();
        for (i, q) in quads.iter().enumerate() {
            if i % 2 == 0 {
                faces.extend([[q[0], q[1], q[2]], [q[0], q[2], q[3]]]);
            } else {
                faces.extend([[q[0], q[2], q[1]], [q[0], q[3], q[2]]]);
            }
        }
        mesh(&vertices, &faces)
    }

    /// Depth (camera z) where the ray from `origin` along `dir` (camera z component 1
    /// after rotation) first enters the box, by slabs.
    fn ray_box(
        origin: Vector3<f64>,
        dir: Vector3<f64>,
        lo: Vector3<f64>,
        hi: Vector3<f64>,
    ) -> Option<f64> {
        let (mut near, mut far) = (f64::NEG_INFINITY, f64::INFINITY);
        for i in 0..3 {
            let (a, b) = ((lo[i] - origin[i]) / dir[i], (hi[i] - origin[i]) / dir[i]);
            near = near.max(a.min(b));
            far = far.min(a.max(b));
        }
        (near <= far && near > 0.0).then_some(near)
    }

    #[test]
    fn closed_box_matches_ray_casting_without_holes() -> Result<()> {
        let camera = camera();
        let (w, h) = (camera.width as usize, camera.height as usize);
        let (lo, hi) = (
            Vector3::new(-0.4, -0.3, -0.5),
            Vector3::new(0.5, 0.35, 0.45),
        );
        let cube = box_mesh(lo, hi);
        let poses = [
            look_at(
                Vector3::new(0.2, -0.1, -2.5),
                Vector3::zeros(),
                -Vector3::y(),
            ),
            look_at(
                Vector3::new(1.6, -1.2, -1.4),
                Vector3::new(0.05, 0.0, 0.0),
                -Vector3::y(),
            ),
            look_at(Vector3::new(-1.3, 1.5, 1.2), Vector3::zeros(), Vector3::z()),
            look_at(
                Vector3::new(0.9, 0.4, 1.1),
                Vector3::new(0.1, 0.1, 0.0),
                -Vector3::y(),
            ),
        ];
        for pose in &poses {
            let depth = render_depth(&cube, &camera, pose)?.into_data();
            let rotation = pose.rotation.to_rotation_matrix();
            let origin = pose.translation.vector;
            let expected: Vec<Option<f64>> = (0..w * h)
                .map(|i| ray_box(origin, rotation * ray(&camera, i % w, i / w), lo, hi))
                .collect();
            let hits = expected.iter().filter(|e| e.is_some()).count();
            assert!(hits > 300 && hits < w * h, "{hits} pixels see the box");
            for v in 0..h {
                for u in 0..w {
                    let got = depth[v * w + u];
                    // Pixels next to the silhouette may differ: f32 vertices move edges.
                    let interior = (v.saturating_sub(1)..(v + 2).min(h)).all(|y| {
                        (u.saturating_sub(1)..(u + 2).min(w))
                            .all(|x| expected[y * w + x].is_some() == expected[v * w + u].is_some())
                    });
                    match expected[v * w + u] {
                        Some(z) => {
                            if interior {
                                assert!(got.is_finite(), "hole at ({u}, {v})");
                            }
                            if got.is_finite() {
                                let err = ((f64::from(got) - z) / z).abs();
                                assert!(err < 1e-5, "({u}, {v}): {got} vs {z}");
                            }
                        }
                        None => assert!(!interior || got.is_nan(), "({u}, {v}): {got}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// How many triangles cover each pixel centre.
    fn coverage(mesh: &TriangleMesh, camera: &Intrinsics, w: usize, h: usize) -> Vec<u32> {
        let triangles = screen_triangles(mesh, camera, &Isometry3::identity(), w, h);
        let mut count = vec![0; w * h];
        for t in &triangles {
            rasterize(t, &(0..h), |u, v, _| count[v * w + u] += 1);
        }
        count
    }

    #[test]
    fn shared_edges_and_vertices_cover_each_pixel_once() {
        let (w, h) = (40, 30);
        let camera = Intrinsics::new(10.0, 10.0, 0.0, 0.0, w as u32, h as u32).expect("valid");
        // A grid of vertices at pixel centres and half pixels, z = 1, fanned with
        // diagonals both ways and with slanted rows: many pixel centres lie exactly on
        // shared edges and vertices.
        let (nx, ny) = (13usize, 9usize);
        let mut vertices = Vec::new();
        for j in 0..ny {
            for i in 0..nx {
                let u = 2.0 + i as f64 * 2.5 + if j % 2 == 1 { 0.5 } else { 0.0 };
                let v = 2.0 + j as f64 * 3.0 + (i % 3) as f64;
                vertices.push([u / camera.fx, v / camera.fy, 1.0]);
            }
        }
        let mut faces = Vec::new();
        for j in 0..ny - 1 {
            for i in 0..nx - 1 {
                let [a, b, c, d] = [
                    j * nx + i,
                    j * nx + i + 1,
                    (j + 1) * nx + i,
                    (j + 1) * nx + i + 1,
                ]
                .map(|k| k as u32);
                if (i + j) % 2 == 0 {
                    faces.extend([[a, b, d], [a, d, c]]);
                } else {
                    faces.extend([[a, b, c], [b, c, d]]);
                }
            }
        }
        let grid = mesh(&vertices, &faces);
        let count = coverage(&grid, &camera, w, h);
        assert!(count.iter().all(|&c| c <= 1), "a pixel is covered twice");
        // Every pixel centre strictly inside the grid's outline is covered.
        let inside = |u: f64, v: f64| {
            // The outline's columns 0 and nx-1 and rows 0 and ny-1, as polylines.
            let left = |v: f64| {
                if (v / 3.0).floor() as usize % 2 == 1 {
                    2.5
                } else {
                    2.0
                }
            };
            u > left(v) + 0.5
                && u < 2.0 + (nx - 1) as f64 * 2.5 - 0.5
                && v > 5.0
                && v < 2.0 + (ny - 1) as f64 * 3.0
        };
        for v in 0..h {
            for u in 0..w {
                if inside(u as f64, v as f64) {
                    assert_eq!(count[v * w + u], 1, "({u}, {v})");
                }
            }
        }
        // A closed box seen from outside: every pixel is covered twice (front and back)
        // or not at all.
        let cube = box_mesh(Vector3::new(-0.5, -0.4, 2.0), Vector3::new(0.6, 0.5, 3.0));
        let camera = self::camera();
        let count = coverage(&cube, &camera, 80, 60);
        assert!(count.iter().all(|&c| c == 0 || c == 2), "{count:?}");
        assert!(count.iter().filter(|&&c| c == 2).count() > 500);
    }

    #[test]
    fn triangles_behind_the_camera_are_clipped() -> Result<()> {
        let camera = camera();
        let (w, h) = (camera.width as usize, camera.height as usize);
        // A floor triangle (plane y = 1) reaching from behind the camera to 8 m in front,
        // and one wholly behind the camera that would project onto the image.
        let vertices = [
            [-3.0, 1.0, -2.0],
            [3.0, 1.0, -2.0],
            [0.0, 1.0, 8.0],
            [-1.0, -1.0, -2.0],
            [1.0, -1.0, -2.0],
            [0.0, 1.0, -2.0],
        ];
        let floor = mesh(&vertices, &[[0, 1, 2], [3, 4, 5]]);
        let depth = render_depth(&floor, &camera, &Isometry3::identity())?.into_data();
        let [a, b, c] = [0, 1, 2].map(|i| Vector3::from(vertices[i]));
        // Depth where the ray of pixel (u, v) meets the floor triangle, if it does.
        let expected: Vec<Option<f64>> = (0..w * h)
            .map(|i| {
                let r = ray(&camera, i % w, i / w);
                let z = 1.0 / r.y;
                let p = r * z;
                // Same side of each edge as the opposite vertex, in the floor's plane.
                let side =
                    |p: Vector3<f64>, a: Vector3<f64>, b: Vector3<f64>| (p - a).cross(&(b - a)).y;
                let inside = side(p, a, b) * side(c, a, b) >= 0.0
                    && side(p, b, c) * side(a, b, c) >= 0.0
                    && side(p, c, a) * side(b, c, a) >= 0.0;
                (z > 0.0 && inside).then_some(z)
            })
            .collect();
        let mut covered = 0;
        for v in 0..h {
            for u in 0..w {
                let got = depth[v * w + u];
                let near_edge = (v.saturating_sub(1)..(v + 2).min(h)).any(|y| {
                    (u.saturating_sub(1)..(u + 2).min(w))
                        .any(|x| expected[y * w + x].is_some() != expected[v * w + u].is_some())
                });
                match expected[v * w + u] {
                    Some(z) if got.is_finite() => {
                        covered += 1;
                        assert!(
                            ((f64::from(got) - z) / z).abs() < 1e-5,
                            "({u}, {v}): {got} vs {z}"
                        );
                    }
                    Some(z) => assert!(near_edge, "({u}, {v}) not covered at z = {z}"),
                    None => assert!(near_edge || got.is_nan(), "({u}, {v}): {got}"),
                }
            }
        }
        assert!(covered > 500, "{covered}");
        // The triangle behind the camera alone draws nothing.
        let behind = mesh(&vertices[3..], &[[0, 1, 2]]);
        let depth = render_depth(&behind, &camera, &Isometry3::identity())?.into_data();
        assert!(depth.iter().all(|z| z.is_nan()));
        // Nor does a wall nearer than the near plane; just beyond it, it fills the image.
        for (z, drawn) in [(0.5 * NEAR_M, false), (2.0 * NEAR_M, true)] {
            let wall = mesh(
                &[
                    [-4.0 * z, -4.0 * z, z],
                    [4.0 * z, -4.0 * z, z],
                    [0.0, 4.0 * z, z],
                ],
                &[[0, 1, 2]],
            );
            let depth = render_depth(&wall, &camera, &Isometry3::identity())?.into_data();
            assert!(
                depth.iter().all(|d| d.is_finite() == drawn),
                "wall at {z} m"
            );
        }
        Ok(())
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() -> Result<()> {
        let camera = camera();
        let mut scene = box_mesh(Vector3::new(-0.4, -0.3, 1.5), Vector3::new(0.5, 0.35, 2.45));
        let more = box_mesh(Vector3::new(-0.1, -0.6, 1.8), Vector3::new(0.9, 0.1, 2.2));
        let offset = scene.vertices.len() as u32;
        scene.vertices.extend(more.vertices);
        scene
            .faces
            .extend(more.faces.iter().map(|f| f.map(|i| i + offset)));
        let pose = look_at(
            Vector3::new(0.3, -0.4, 0.0),
            Vector3::new(0.1, 0.0, 2.0),
            -Vector3::y(),
        );
        let render = |threads: usize| -> Result<DepthMap<Metres>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            pool.install(|| render_depth(&scene, &camera, &pose))
        };
        let one = render(1)?.into_data();
        let two = render(2)?.into_data();
        assert!(one.iter().filter(|z| z.is_finite()).count() > 500);
        let bits = |d: &[f32]| d.iter().map(|z| z.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&two));
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() {
        let quad = mesh(
            &[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
            &[[0, 1, 2]],
        );
        let camera = Intrinsics {
            width: 8,
            height: 6,
            ..camera()
        };
        let pose = Isometry3::identity();
        assert!(render_depth(&quad, &camera, &pose).is_ok());
        let sized = |width: usize, height: usize| Intrinsics {
            width: u32::try_from(width).expect("fits u32"),
            height: u32::try_from(height).expect("fits u32"),
            ..camera
        };
        assert!(render_depth(&quad, &sized(0, 6), &pose).is_err());
        assert!(render_depth(&quad, &sized(8, 0), &pose).is_err());
        assert!(render_depth(&quad, &sized(MAX_SIDE + 1, 1), &pose).is_err());
        for bad in [
            Intrinsics { fx: 0.0, ..camera },
            Intrinsics {
                fy: f64::NAN,
                ..camera
            },
            Intrinsics {
                cx: f64::INFINITY,
                ..camera
            },
        ] {
            assert!(render_depth(&quad, &bad, &pose).is_err(), "{bad:?}");
        }
        let mut bad_face = quad.clone();
        bad_face.faces.push([0, 1, 3]);
        assert!(render_depth(&bad_face, &camera, &pose).is_err());
        let mut bad_vertex = quad.clone();
        bad_vertex.vertices[1].y = f32::INFINITY;
        assert!(render_depth(&bad_vertex, &camera, &pose).is_err());
        let bad_pose = Isometry3::translation(f64::NAN, 0.0, 0.0);
        assert!(render_depth(&quad, &camera, &bad_pose).is_err());
        // An empty mesh renders nothing.
        let empty = render_depth(&TriangleMesh::default(), &camera, &pose).expect("valid");
        assert_eq!((empty.width(), empty.height()), (8, 6));
        assert!(empty.data().iter().all(|z| z.is_nan()));
    }
}
