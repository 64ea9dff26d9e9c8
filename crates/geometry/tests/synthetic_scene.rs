//! TSDF fusion against known geometry: a scene of analytic shapes (a floor, a box, a
//! sphere and a cylinder) is ray cast into exact depth maps from known cameras, fused,
//! and the extracted mesh is checked against the shapes themselves:
//!
//! - accuracy: every mesh vertex lies within one voxel of a shape's surface (with a
//!   truncation of two voxels; with four, vertices near convex edges move out by up to
//!   the truncation distance, see the second test);
//! - completeness: surface points that some camera sees have a mesh vertex within one
//!   voxel;
//! - the mesh rendered back into each camera (`render::render_depth`) agrees with that
//!   camera's depth map to within a voxel on average.
//!
//! The depth maps come from ray casting, not from `render_depth`, so the renderer is
//! checked here rather than assumed.

use anydepth_core::{DepthMap, Intrinsics, Metres, Prediction};
use anydepth_geometry::align::Affine;
use anydepth_geometry::fusion::{Fusion, FusionOptions, View, ViewScale};
use anydepth_geometry::render::render_depth;
use anydepth_geometry::tsdf::{TsdfOptions, TsdfVolume};
use anydepth_geometry::TriangleMesh;
use kiddo::{ImmutableKdTree, SquaredEuclidean};
use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

/// World coordinates: metres, z up, the floor at z = 0.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// The square `|x|, |y| <= half` in the plane z = 0.
    Floor { half: f64 },
    /// An axis-aligned box.
    Box { lo: Vector3<f64>, hi: Vector3<f64> },
    /// A sphere; only its part above the floor is seen.
    Sphere { centre: Vector3<f64>, radius: f64 },
    /// A vertical cylinder standing on the floor, closed at the top.
    Cylinder {
        x: f64,
        y: f64,
        radius: f64,
        height: f64,
    },
}

impl Shape {
    /// Smallest `t > 0` where the ray `origin + t dir` meets the shape's visible surface
    /// (the camera is outside every shape and above the floor).
    fn hit(&self, origin: &Vector3<f64>, dir: &Vector3<f64>) -> Option<f64> {
        match *self {
            Shape::Floor { half } => {
                let t = -origin.z / dir.z;
                let p = origin + dir * t;
                (t > 0.0 && p.x.abs() <= half && p.y.abs() <= half).then_some(t)
            }
            Shape::Box { lo, hi } => {
                let (mut near, mut far) = (f64::NEG_INFINITY, f64::INFINITY);
                for i in 0..3 {
                    let (a, b) = ((lo[i] - origin[i]) / dir[i], (hi[i] - origin[i]) / dir[i]);
                    near = near.max(a.min(b));
                    far = far.min(a.max(b));
                }
                (near <= far && near > 0.0).then_some(near)
            }
            Shape::Sphere { centre, radius } => {
                let oc = origin - centre;
                let (a, b, c) = (dir.dot(dir), oc.dot(dir), oc.dot(&oc) - radius * radius);
                let disc = b * b - a * c;
                if disc < 0.0 {
                    return None;
                }
                let t = (-b - disc.sqrt()) / a;
                (t > 0.0 && (origin + dir * t).z >= 0.0).then_some(t)
            }
            Shape::Cylinder {
                x,
                y,
                radius,
                height,
            } => {
                let (ox, oy) = (origin.x - x, origin.y - y);
                let a = dir.x * dir.x + dir.y * dir.y;
                let b = ox * dir.x + oy * dir.y;
                let c = ox * ox + oy * oy - radius * radius;
                let disc = b * b - a * c;
                let side = (disc >= 0.0 && a > 0.0)
                    .then(|| (-b - disc.sqrt()) / a)
                    .filter(|&t| t > 0.0 && (0.0..=height).contains(&(origin.z + dir.z * t)));
                let t = (height - origin.z) / dir.z;
                let p = origin + dir * t;
                let top = (t > 0.0 && (p.x - x).powi(2) + (p.y - y).powi(2) <= radius * radius)
                    .then_some(t);
                match (side, top) {
                    (Some(s), Some(t)) => Some(s.min(t)),
                    (s, t) => s.or(t),
                }
            }
        }
    }

    /// Distance from `p` to the shape's surface (all of it, hidden parts included).
    fn distance(&self, p: &Vector3<f64>) -> f64 {
        match *self {
            Shape::Floor { half } => {
                let dx = (p.x.abs() - half).max(0.0);
                let dy = (p.y.abs() - half).max(0.0);
                (dx * dx + dy * dy + p.z * p.z).sqrt()
            }
            Shape::Box { lo, hi } => {
                let centre = (lo + hi) / 2.0;
                let q = (p - centre).abs() - (hi - lo) / 2.0;
                (q.sup(&Vector3::zeros()).norm() + q.max().min(0.0)).abs()
            }
            Shape::Sphere { centre, radius } => ((p - centre).norm() - radius).abs(),
            Shape::Cylinder {
                x,
                y,
                radius,
                height,
            } => {
                // A capped cylinder's signed distance, from the radial and axial excess.
                let r = ((p.x - x).powi(2) + (p.y - y).powi(2)).sqrt() - radius;
                let h = (p.z - height / 2.0).abs() - height / 2.0;
                let outside = (r.max(0.0).powi(2) + h.max(0.0).powi(2)).sqrt();
                (outside + r.max(h).min(0.0)).abs()
            }
        }
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn to_segment(p: &Vector3<f64>, a: Vector3<f64>, b: Vector3<f64>) -> f64 {
    let t = ((p - a).dot(&(b - a)) / (b - a).norm_squared()).clamp(0.0, 1.0);
    (p - (a + (b - a) * t)).norm()
}

impl Shape {
    /// Distance from `p` to the shape's convex edges: the top and vertical edges of a box
    /// (its bottom edges meet the floor), the top rim of a cylinder.
    fn convex_edge_distance(&self, p: &Vector3<f64>) -> f64 {
        match *self {
            Shape::Floor { .. } | Shape::Sphere { .. } => f64::INFINITY,
            Shape::Box { lo, hi } => {
                let corner = |i: usize, z: f64| {
                    let (x, y) = [(lo.x, lo.y), (hi.x, lo.y), (hi.x, hi.y), (lo.x, hi.y)][i % 4];
                    Vector3::new(x, y, z)
                };
                (0..4)
                    .flat_map(|i| {
                        [
                            to_segment(p, corner(i, hi.z), corner(i + 1, hi.z)),
                            to_segment(p, corner(i, lo.z), corner(i, hi.z)),
                        ]
                    })
                    .fold(f64::INFINITY, f64::min)
            }
            Shape::Cylinder {
                x,
                y,
                radius,
                height,
            } => {
                let r = ((p.x - x).powi(2) + (p.y - y).powi(2)).sqrt() - radius;
                (r * r + (p.z - height).powi(2)).sqrt()
            }
        }
    }
}

fn scene() -> Vec<Shape> {
    vec![
        Shape::Floor { half: 1.2 },
        Shape::Box {
            lo: Vector3::new(-0.6, -0.5, 0.0),
            hi: Vector3::new(-0.1, 0.0, 0.4),
        },
        Shape::Sphere {
            centre: Vector3::new(0.35, 0.35, 0.2),
            radius: 0.25,
        },
        Shape::Cylinder {
            x: 0.4,
            y: -0.45,
            radius: 0.15,
            height: 0.5,
        },
    ]
}

/// Nearest hit over the scene.
fn cast(shapes: &[Shape], origin: &Vector3<f64>, dir: &Vector3<f64>) -> Option<f64> {
    shapes
        .iter()
        .filter_map(|s| s.hit(origin, dir))
        .min_by(f64::total_cmp)
}

fn distance(shapes: &[Shape], p: &Vector3<f64>) -> f64 {
    shapes
        .iter()
        .map(|s| s.distance(p))
        .fold(f64::INFINITY, f64::min)
}

/// A camera at `eye` looking at `target`, OpenCV axes, world z up.
fn look_at(eye: Vector3<f64>, target: Vector3<f64>) -> Isometry3<f64> {
    // face_towards maps +z to the direction and +y to the given vector: world down.
    let rotation = UnitQuaternion::face_towards(&(target - eye), &-Vector3::z());
    Isometry3::from_parts(Translation3::from(eye), rotation)
}

/// Exact depth (camera z) of the scene at each pixel centre; NaN where rays miss.
fn ray_cast(
    shapes: &[Shape],
    camera: &Intrinsics,
    world_from_camera: &Isometry3<f64>,
) -> DepthMap<Metres> {
    let (width, height) = (camera.width as usize, camera.height as usize);
    let eye = world_from_camera.translation.vector;
    let depth = (0..width * height)
        .map(|i| {
            let ray = Vector3::new(
                ((i % width) as f64 - camera.cx) / camera.fx,
                ((i / width) as f64 - camera.cy) / camera.fy,
                1.0,
            );
            // The ray has camera z 1, so its parameter is the depth.
            let dir = world_from_camera.rotation * ray;
            cast(shapes, &eye, &dir).map_or(f32::NAN, |t| t as f32)
        })
        .collect();
    DepthMap::new(camera.width, camera.height, depth).expect("width x height values")
}

/// Points on the visible parts of the shapes, about `spacing` apart.
fn surface_samples(shapes: &[Shape], spacing: f64) -> Vec<Vector3<f64>> {
    let mut points = Vec::new();
    let steps = |length: f64| (length / spacing).ceil().max(1.0) as usize;
    // A grid over a rectangle spanned from `origin` by `a` and `b`.
    let rectangle =
        |points: &mut Vec<Vector3<f64>>, origin: Vector3<f64>, a: Vector3<f64>, b: Vector3<f64>| {
            let (na, nb) = (steps(a.norm()), steps(b.norm()));
            for i in 0..=na {
                for j in 0..=nb {
                    points.push(origin + a * (i as f64 / na as f64) + b * (j as f64 / nb as f64));
                }
            }
        };
    let (x, y, z) = (Vector3::x(), Vector3::y(), Vector3::z());
    for shape in shapes {
        match *shape {
            Shape::Floor { half } => rectangle(
                &mut points,
                Vector3::new(-half, -half, 0.0),
                x * 2.0 * half,
                y * 2.0 * half,
            ),
            Shape::Box { lo, hi } => {
                let e = hi - lo;
                rectangle(
                    &mut points,
                    Vector3::new(lo.x, lo.y, hi.z),
                    x * e.x,
                    y * e.y,
                );
                rectangle(&mut points, lo, x * e.x, z * e.z);
                rectangle(
                    &mut points,
                    Vector3::new(lo.x, hi.y, lo.z),
                    x * e.x,
                    z * e.z,
                );
                rectangle(&mut points, lo, y * e.y, z * e.z);
                rectangle(
                    &mut points,
                    Vector3::new(hi.x, lo.y, lo.z),
                    y * e.y,
                    z * e.z,
                );
            }
            Shape::Sphere { centre, radius } => {
                // A Fibonacci lattice, the part above the floor.
                let n =
                    (4.0 * std::f64::consts::PI * radius * radius / (spacing * spacing)) as usize;
                let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
                for i in 0..n {
                    let zc = 1.0 - 2.0 * (i as f64 + 0.5) / n as f64;
                    let r = (1.0 - zc * zc).sqrt();
                    let phi = golden * i as f64;
                    let p = centre + Vector3::new(r * phi.cos(), r * phi.sin(), zc) * radius;
                    if p.z >= 0.0 {
                        points.push(p);
                    }
                }
            }
            Shape::Cylinder {
                x: cx,
                y: cy,
                radius,
                height,
            } => {
                let around = steps(std::f64::consts::TAU * radius);
                for i in 0..around {
                    let phi = std::f64::consts::TAU * i as f64 / around as f64;
                    let (s, c) = phi.sin_cos();
                    for j in 0..=steps(height) {
                        let h = height * j as f64 / steps(height) as f64;
                        points.push(Vector3::new(cx + radius * c, cy + radius * s, h));
                    }
                    for k in 0..=steps(radius) {
                        let r = radius * k as f64 / steps(radius) as f64;
                        points.push(Vector3::new(cx + r * c, cy + r * s, height));
                    }
                }
            }
        }
    }
    points
}

/// Whether `p` (on a surface) is seen by the camera: inside the image, in front, within
/// `max_depth_m` and not hidden by another surface.
fn seen(
    shapes: &[Shape],
    p: &Vector3<f64>,
    camera: &Intrinsics,
    world_from_camera: &Isometry3<f64>,
    max_depth_m: f64,
) -> bool {
    let (width, height) = (camera.width, camera.height);
    let in_camera = world_from_camera.inverse() * Point3::from(*p);
    if in_camera.z <= 0.0 || in_camera.z > max_depth_m {
        return false;
    }
    let u = camera.fx * in_camera.x / in_camera.z + camera.cx;
    let v = camera.fy * in_camera.y / in_camera.z + camera.cy;
    if !(u >= -0.5 && v >= -0.5 && u < f64::from(width) - 0.5 && v < f64::from(height) - 0.5) {
        return false;
    }
    let eye = world_from_camera.translation.vector;
    let dir = (p - eye) / in_camera.z;
    // The ray's parameter is camera depth; the point is seen when nothing is nearer.
    cast(shapes, &eye, &dir).is_some_and(|t| t >= in_camera.z - 1e-6)
}

/// How far the fused mesh's vertices are from the shapes.
struct Accuracy {
    max_m: f64,
    /// Over the vertices farther than the truncation distance from every convex edge.
    max_away_from_edges_m: f64,
    /// Vertices farther than a voxel from every surface.
    over_a_voxel: usize,
}

/// Fuses the scene seen from twelve cameras with 2 cm voxels and `trunc_voxels`
/// truncation; checks completeness and the rendered mesh against each camera's depth,
/// and returns the accuracy for the caller to judge.
/// Fuses ray-cast depth of the scene from twelve cameras and checks the mesh; with
/// `relative`, each view is given as disparity under its own affine map and fused through
/// [`Fusion`], the first view's map known and every other one fitted to the model.
// One scenario, read top to bottom.
#[allow(clippy::too_many_lines)]
fn fuse_and_check(trunc_voxels: f32, relative: bool) -> Accuracy {
    let shapes = scene();
    let camera = Intrinsics::new(300.0, 300.0, 159.5, 119.5, 320, 240).expect("valid camera");
    let options = TsdfOptions {
        voxel_size_m: 0.02,
        trunc_m: trunc_voxels * 0.02,
        max_depth_m: 4.0,
        min_weight: 1.0,
    };
    let voxel = f64::from(options.voxel_size_m);
    let trunc = f64::from(options.trunc_m);
    eprintln!(
        "voxel {:.0} mm, truncation {:.0} mm:",
        voxel * 1e3,
        trunc * 1e3
    );
    // Twelve cameras on a circle around the scene at two heights, looking at its middle.
    let poses: Vec<Isometry3<f64>> = (0..12)
        .map(|i| {
            let angle = i as f64 * std::f64::consts::TAU / 12.0 + 0.2;
            let (radius, eye_height) = if i % 2 == 0 { (2.0, 1.0) } else { (1.8, 1.6) };
            let eye = Vector3::new(radius * angle.cos(), radius * angle.sin(), eye_height);
            look_at(eye, Vector3::new(0.0, 0.0, 0.15))
        })
        .collect();
    let depths: Vec<DepthMap<Metres>> = poses
        .iter()
        .map(|pose| ray_cast(&shapes, &camera, pose))
        .collect();

    let mesh = if relative {
        fuse_relative(&depths, &poses, &camera, &options)
    } else {
        let mut volume = TsdfVolume::new(options.clone()).expect("valid options");
        for (depth, pose) in depths.iter().zip(&poses) {
            volume
                .integrate(depth, None, &camera, pose)
                .expect("integrates");
        }
        volume.extract_mesh().expect("extracts")
    };
    assert!(mesh.faces.len() > 10_000, "{} faces", mesh.faces.len());

    // (a) Accuracy: distance of each vertex to the nearest surface.
    let mut accuracy = Accuracy {
        max_m: 0.0,
        max_away_from_edges_m: 0.0,
        over_a_voxel: 0,
    };
    let mut sum = 0.0;
    for v in &mesh.vertices {
        let v = v.coords.cast::<f64>();
        let error = distance(&shapes, &v);
        sum += error;
        accuracy.max_m = accuracy.max_m.max(error);
        if shapes.iter().all(|s| s.convex_edge_distance(&v) > trunc) {
            accuracy.max_away_from_edges_m = accuracy.max_away_from_edges_m.max(error);
        }
        accuracy.over_a_voxel += usize::from(error > voxel);
    }
    eprintln!(
        "  accuracy: {} vertices, distance to the shapes max {:.2} mm, mean {:.2} mm; \
         {} vertices beyond a voxel; farther than the truncation from convex edges max {:.2} mm",
        mesh.vertices.len(),
        accuracy.max_m * 1e3,
        sum / mesh.vertices.len() as f64 * 1e3,
        accuracy.over_a_voxel,
        accuracy.max_away_from_edges_m * 1e3,
    );

    // (b) Completeness: surface points seen by some camera have a vertex within a voxel.
    let coords: Vec<[f32; 3]> = mesh.vertices.iter().map(|p| [p.x, p.y, p.z]).collect();
    let tree = ImmutableKdTree::<f32, 3>::new_from_slice(&coords).expect("tree");
    let samples = surface_samples(&shapes, 0.01);
    let max_depth = f64::from(options.max_depth_m);
    let visible: Vec<&Vector3<f64>> = samples
        .iter()
        .filter(|p| {
            poses
                .iter()
                .any(|pose| seen(&shapes, p, &camera, pose, max_depth))
        })
        .collect();
    let near_a_vertex = visible
        .iter()
        .filter(|p| {
            let p = p.cast::<f32>();
            let nearest = tree
                .query(&[p.x, p.y, p.z])
                .nearest_one::<SquaredEuclidean<f32>>()
                .execute();
            f64::from(nearest.distance).sqrt() <= voxel
        })
        .count();
    let share = near_a_vertex as f64 / visible.len() as f64;
    eprintln!(
        "  completeness: {near_a_vertex} of {} visible surface samples ({} in all) have a \
         vertex within a voxel: {:.2} %",
        visible.len(),
        samples.len(),
        share * 100.0
    );
    assert!(
        visible.len() > samples.len() / 2,
        "too few samples are visible"
    );
    assert!(share >= 0.99, "completeness {share}");

    // (c) The mesh rendered into each camera agrees with the camera's depth.
    for (i, (depth, pose)) in depths.iter().zip(&poses).enumerate() {
        let rendered = render_depth(&mesh, &camera, pose).expect("renders");
        let (mut sum, mut both, mut valid) = (0.0, 0usize, 0usize);
        for (&d, &r) in depth.data().iter().zip(rendered.data()) {
            if d.is_finite() && f64::from(d) <= max_depth {
                valid += 1;
                if r.is_finite() {
                    both += 1;
                    sum += f64::from((d - r).abs());
                }
            }
        }
        let mean = sum / both as f64;
        let coverage = both as f64 / valid as f64;
        eprintln!(
            "  camera {i:2}: rendered mesh vs ray-cast depth, mean |difference| {:.2} mm over \
             {both} pixels; the mesh covers {:.2} % of the pixels with depth",
            mean * 1e3,
            coverage * 100.0
        );
        assert!(mean < voxel, "camera {i}: mean difference {mean} m");
        assert!(coverage > 0.98, "camera {i}: coverage {coverage}");
    }
    accuracy
}

/// With a truncation of two voxels every vertex is within a voxel of a surface.
#[test]
fn fused_scene_is_within_a_voxel_of_the_shapes() {
    let accuracy = fuse_and_check(2.0, false);
    assert!(
        accuracy.max_m < 0.02,
        "a vertex is {} m off",
        accuracy.max_m
    );
}

/// With the usual four voxels, projective distances bleed past convex edges: a voxel just
/// outside a box's top edge lies behind the top face for cameras on the far side, which
/// write negative values there, so the zero crossing moves out. That bleed is bounded by
/// the truncation distance; everywhere farther than that from a convex edge the surface
/// is still within a voxel.
#[test]
fn convex_edges_bleed_at_most_the_truncation_distance() {
    let accuracy = fuse_and_check(4.0, false);
    assert!(
        accuracy.max_away_from_edges_m < 0.02,
        "a vertex away from convex edges is {} m off",
        accuracy.max_away_from_edges_m
    );
    assert!(
        accuracy.max_m < 0.08,
        "a vertex is {} m off",
        accuracy.max_m
    );
}

/// Relative depth: per view `disparity = (1 / depth - shift) / scale` with its own map; the
/// fitted maps must come back and the mesh must be as good as from metric depth.
fn fuse_relative(
    depths: &[DepthMap<Metres>],
    poses: &[Isometry3<f64>],
    camera: &Intrinsics,
    options: &TsdfOptions,
) -> TriangleMesh {
    let mut fusion = Fusion::new(FusionOptions {
        tsdf: options.clone(),
        ..Default::default()
    })
    .expect("valid options");
    for (i, (depth, pose)) in depths.iter().zip(poses).enumerate() {
        let truth = Affine {
            scale: 0.5 + 0.1 * i as f64,
            shift: 0.05 - 0.01 * i as f64,
        };
        let disparity: Vec<f32> = depth
            .data()
            .iter()
            .map(|&d| {
                if d.is_finite() && d > 0.0 {
                    ((1.0 / f64::from(d) - truth.shift) / truth.scale) as f32
                } else {
                    f32::NAN
                }
            })
            .collect();
        let view = View {
            depth: Prediction::Disparity(
                DepthMap::new(depth.width(), depth.height(), disparity).expect("size"),
            ),
            colors: None,
            camera: *camera,
            world_from_camera: Some(*pose),
            scale: (i == 0).then_some(ViewScale::Known(truth)),
        };
        let report = fusion.add_view(view).expect("fused");
        let fitted = report.affine.expect("an affine map was applied");
        eprintln!(
            "  view {i:2}: scale {:.5} (true {:.5}), shift {:+.5} (true {:+.5}) from {} pixels",
            fitted.scale, truth.scale, fitted.shift, truth.shift, report.scale_samples
        );
        assert!((fitted.scale / truth.scale - 1.0).abs() < 0.01, "view {i}");
        assert!((fitted.shift - truth.shift).abs() < 0.005, "view {i}");
    }
    fusion.volume().extract_mesh().expect("extracts")
}

/// Relative depth with an unknown scale and shift per view (only the first view's known),
/// each fitted to the model fused before it: as close to the shapes as metric depth.
#[test]
fn relative_views_fitted_to_the_model_are_within_a_voxel_of_the_shapes() {
    let accuracy = fuse_and_check(2.0, true);
    assert!(
        accuracy.max_m < 0.02,
        "a vertex is {} m off",
        accuracy.max_m
    );
}
