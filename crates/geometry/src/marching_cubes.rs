//! Marching cubes: the triangles that separate a cube's inside corners (value < 0) from
//! its outside corners (value >= 0), for each of the 256 sign patterns.
//!
//! The table is not typed in but derived once, from two rules that make neighbouring
//! cubes agree, so the surface has no cracks:
//! - on each face, the crossing edges are paired; where a face has four crossings (the
//!   ambiguous case) each inside corner is cut off on its own — a rule that depends only
//!   on the face's four corners, which both cubes sharing the face see alike;
//! - the pairs chain into closed loops, each fanned into triangles wound so that their
//!   normals point from the inside corners to the outside ones.
//!
//! Corner `c` of a cube sits at offset `(c & 1, (c >> 1) & 1, (c >> 2) & 1)`; edge `e`
//! is listed by [`EDGES`] as its lower corner and axis.
//!
//! ```
//! use anydepth_geometry::marching_cubes::{case_triangles, EDGES};
//!
//! // Only corner 0 inside: one triangle around it, across its three edges.
//! let triangles = case_triangles(0b0000_0001);
//! assert_eq!(triangles.len(), 1);
//! assert!(triangles[0].iter().all(|&e| EDGES[usize::from(e)].0 == 0));
//! // All inside or all outside: nothing.
//! assert!(case_triangles(0).is_empty() && case_triangles(255).is_empty());
//! ```

use std::sync::OnceLock;

use nalgebra::Vector3;

/// The 12 cube edges as `(lower corner, axis)`: the edge joins corner `c` and
/// `c | (1 << axis)`.
pub const EDGES: [(u8, u8); 12] = [
    (0, 0),
    (2, 0),
    (4, 0),
    (6, 0),
    (0, 1),
    (1, 1),
    (4, 1),
    (5, 1),
    (0, 2),
    (1, 2),
    (2, 2),
    (3, 2),
];

/// The triangles of sign pattern `case` (bit `c` set: corner `c` is inside), as
/// triples of edge indices into [`EDGES`], counter-clockwise seen from outside.
pub fn case_triangles(case: u8) -> &'static [[u8; 3]] {
    static TABLE: OnceLock<Vec<Vec<[u8; 3]>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| (0..=255u8).map(derive_case).collect());
    &table[usize::from(case)]
}

fn corner_offset(c: u8) -> Vector3<f64> {
    Vector3::new(
        f64::from(c & 1),
        f64::from((c >> 1) & 1),
        f64::from((c >> 2) & 1),
    )
}

/// The edge index joining corners `a` and `b` (which differ in one bit).
fn edge_between(a: u8, b: u8) -> u8 {
    let lower = a.min(b);
    let axis = (a ^ b).trailing_zeros() as u8;
    EDGES
        .iter()
        .position(|&e| e == (lower, axis))
        .map_or(u8::MAX, |i| i as u8)
}

fn derive_case(case: u8) -> Vec<[u8; 3]> {
    let inside = |c: u8| case & (1 << c) != 0;
    // Pair crossing edges face by face.
    let mut partner: [Vec<u8>; 12] = Default::default();
    for axis in 0..3u8 {
        let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
        for side in 0..2u8 {
            let base = side << axis;
            let ring = [base, base | 1 << u, base | 1 << u | 1 << v, base | 1 << v];
            let edges: [u8; 4] = std::array::from_fn(|i| edge_between(ring[i], ring[(i + 1) % 4]));
            let crossing: Vec<usize> = (0..4)
                .filter(|&i| inside(ring[i]) != inside(ring[(i + 1) % 4]))
                .collect();
            let mut link = |a: u8, b: u8| {
                partner[usize::from(a)].push(b);
                partner[usize::from(b)].push(a);
            };
            match crossing.len() {
                2 => link(edges[crossing[0]], edges[crossing[1]]),
                4 => {
                    // Cut off each inside corner: edges (i - 1) and i meet at corner i.
                    for i in 0..4 {
                        if inside(ring[i]) {
                            link(edges[(i + 3) % 4], edges[i]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Chain the pairs into loops (every crossing edge has exactly two partners).
    let mut used = [false; 12];
    let mut triangles = Vec::new();
    for start in 0..12u8 {
        if used[usize::from(start)] || partner[usize::from(start)].len() != 2 {
            continue;
        }
        let mut ring = vec![start];
        used[usize::from(start)] = true;
        let mut current = start;
        loop {
            let next = partner[usize::from(current)]
                .iter()
                .copied()
                .find(|&e| !used[usize::from(e)]);
            match next {
                Some(e) => {
                    used[usize::from(e)] = true;
                    ring.push(e);
                    current = e;
                }
                None => break,
            }
        }
        // Outward: from each crossing edge's inside corner to its outside corner.
        let midpoint = |e: u8| {
            let (c, axis) = EDGES[usize::from(e)];
            corner_offset(c) + Vector3::ith(usize::from(axis), 0.5)
        };
        let outward: Vector3<f64> = ring
            .iter()
            .map(|&e| {
                let (c, axis) = EDGES[usize::from(e)];
                let along = Vector3::ith(usize::from(axis), 1.0);
                if inside(c) {
                    along
                } else {
                    -along
                }
            })
            .sum();
        let points: Vec<Vector3<f64>> = ring.iter().map(|&e| midpoint(e)).collect();
        let normal: Vector3<f64> = (0..points.len())
            .map(|i| points[i].cross(&points[(i + 1) % points.len()]))
            .sum();
        if normal.dot(&outward) < 0.0 {
            ring.reverse();
        }
        for i in 1..ring.len().saturating_sub(1) {
            triangles.push([ring[0], ring[i], ring[i + 1]]);
        }
    }
    triangles
}

/// Marching cubes over a dense grid of `dims = [nx, ny, nz]` values (x fastest), with
/// grid point `(i, j, k)` at `origin + spacing * (i, j, k)`. Returns vertices (one per
/// crossing grid edge, shared by all its triangles) and faces wound so that their
/// normals point toward values >= 0. Non-finite values mark unknown points: cubes that
/// touch one are skipped.
///
/// Mostly for tests and small volumes; the TSDF volume has its own sparse extraction
/// built on the same table.
pub fn dense_marching_cubes(
    values: &[f32],
    dims: [usize; 3],
    origin: Vector3<f32>,
    spacing: f32,
) -> (Vec<nalgebra::Point3<f32>>, Vec<[u32; 3]>) {
    let [nx, ny, nz] = dims;
    let mut vertices = Vec::new();
    let mut faces = Vec::new();
    if values.len() != nx * ny * nz || nx < 2 || ny < 2 || nz < 2 {
        return (vertices, faces);
    }
    let at = |i: usize, j: usize, k: usize| values[(k * ny + j) * nx + i];
    // Vertex of each grid edge, indexed (point, axis).
    let mut edge_vertex = vec![u32::MAX; values.len() * 3];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let a = at(i, j, k);
                for (axis, (di, dj, dk)) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)].iter().enumerate() {
                    let (i2, j2, k2) = (i + di, j + dj, k + dk);
                    if i2 >= nx || j2 >= ny || k2 >= nz {
                        continue;
                    }
                    let b = at(i2, j2, k2);
                    if !(a.is_finite() && b.is_finite()) || (a < 0.0) == (b < 0.0) {
                        continue;
                    }
                    let t = a / (a - b);
                    let mut p = Vector3::new(i as f32, j as f32, k as f32);
                    p[axis] += t;
                    edge_vertex[((k * ny + j) * nx + i) * 3 + axis] = vertices.len() as u32;
                    vertices.push(nalgebra::Point3::from(origin + p * spacing));
                }
            }
        }
    }
    for k in 0..nz - 1 {
        for j in 0..ny - 1 {
            for i in 0..nx - 1 {
                let mut case = 0u8;
                let mut known = true;
                for c in 0..8u8 {
                    let v = at(
                        i + usize::from(c & 1),
                        j + usize::from((c >> 1) & 1),
                        k + usize::from((c >> 2) & 1),
                    );
                    known &= v.is_finite();
                    if v < 0.0 {
                        case |= 1 << c;
                    }
                }
                if !known {
                    continue;
                }
                for triangle in case_triangles(case) {
                    let ids = triangle.map(|e| {
                        let (c, axis) = EDGES[usize::from(e)];
                        let (ci, cj, ck) = (
                            i + usize::from(c & 1),
                            j + usize::from((c >> 1) & 1),
                            k + usize::from((c >> 2) & 1),
                        );
                        edge_vertex[((ck * ny + cj) * nx + ci) * 3 + usize::from(axis)]
                    });
                    if ids.iter().all(|&v| v != u32::MAX) {
                        faces.push(ids);
                    }
                }
            }
        }
    }
    (vertices, faces)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Every undirected edge is used by exactly two faces, in opposite directions.
    fn assert_closed_and_oriented(faces: &[[u32; 3]]) {
        let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
        for f in faces {
            for i in 0..3 {
                *directed.entry((f[i], f[(i + 1) % 3])).or_default() += 1;
            }
        }
        for (&(a, b), &n) in &directed {
            assert_eq!(n, 1, "edge {a}->{b} used {n} times in one direction");
            assert_eq!(directed.get(&(b, a)), Some(&1), "edge {a}->{b} has no twin");
        }
    }

    #[test]
    fn every_case_separates_inside_from_outside() {
        for case in 0..=255u8 {
            let triangles = case_triangles(case);
            let inside = |c: u8| case & (1 << c) != 0;
            // Each crossing edge is used, and only crossing edges are.
            for (e, &(c, axis)) in EDGES.iter().enumerate() {
                let crossing = inside(c) != inside(c | 1 << axis);
                let used = triangles.iter().any(|t| t.contains(&(e as u8)));
                assert_eq!(crossing, used, "case {case:#010b}, edge {e}");
            }
            assert_eq!(triangles.is_empty(), case == 0 || case == 255);
        }
    }

    #[test]
    fn sphere_is_closed_round_and_faces_outward() {
        let n = 24;
        let (centre, radius) = (Vector3::new(11.3f32, 11.7, 12.1), 7.4f32);
        let values: Vec<f32> = (0..n * n * n)
            .map(|idx| {
                let p = Vector3::new(
                    (idx % n) as f32,
                    ((idx / n) % n) as f32,
                    (idx / n / n) as f32,
                );
                (p - centre).norm() - radius
            })
            .collect();
        let (vertices, faces) = dense_marching_cubes(&values, [n, n, n], Vector3::zeros(), 1.0);
        assert!(faces.len() > 500);
        assert_closed_and_oriented(&faces);
        // Euler characteristic of a sphere: V - E + F = 2, with E = 3F / 2.
        let euler = vertices.len() as i64 - (3 * faces.len() / 2) as i64 + faces.len() as i64;
        assert_eq!(euler, 2);
        for v in &vertices {
            // Linear interpolation of a distance field is exact to a fraction of a cell.
            assert!(((v.coords - centre).norm() - radius).abs() < 0.05);
        }
        for f in &faces {
            let [a, b, c] = f.map(|i| vertices[i as usize].coords);
            let normal = (b - a).cross(&(c - a));
            assert!(
                normal.dot(&((a + b + c) / 3.0 - centre)) > 0.0,
                "face {f:?} points inward"
            );
        }
    }

    #[test]
    fn ambiguous_faces_match_between_neighbours() {
        // A checkerboard of signs makes every face ambiguous: still closed.
        let n = 6;
        let values: Vec<f32> = (0..n * n * n)
            .map(|idx| {
                let (i, j, k) = (idx % n, (idx / n) % n, idx / n / n);
                let interior =
                    (1..n - 1).contains(&i) && (1..n - 1).contains(&j) && (1..n - 1).contains(&k);
                if interior && (i + j + k) % 2 == 0 {
                    -1.0
                } else {
                    1.0 + 0.1 * (idx % 7) as f32
                }
            })
            .collect();
        let (_, faces) = dense_marching_cubes(&values, [n, n, n], Vector3::zeros(), 1.0);
        assert!(!faces.is_empty());
        assert_closed_and_oriented(&faces);
    }
}
