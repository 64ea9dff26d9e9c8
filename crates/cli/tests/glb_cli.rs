//! glTF binary output of `anydepth cloud`, `anydepth mesh` and `anydepth fuse`: every kind
//! of file we write passes the Khronos glTF-Validator (npm `gltf-validator`, installed by
//! `scripts/setup.sh` into `scripts/node`) with no errors and no warnings, and holds the
//! same vertices as the PLY written from the same input, in glTF's axes.
//!
//! Tests skip (with a message) when their data or the validator is missing, unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`.

use std::path::{Path, PathBuf};

use anydepth_geometry::io::ply;

mod common;
use common::{anydepth, assert_code, assert_ok, assert_valid_gltf as assert_valid, s, stderr};

const INTRINSICS: &str = "525,525,319.5,239.5";

fn redwood() -> Option<PathBuf> {
    common::dataset("redwood-livingroom", "odometry.log")
}

/// What a GLB file's first primitive with `mode` holds, read with the `gltf` crate.
struct Primitive {
    positions: Vec<[f32; 3]>,
    normals: Option<Vec<[f32; 3]>>,
    colors: Option<Vec<[u16; 3]>>,
    tex_coords: Option<Vec<[f32; 2]>>,
    indices: Option<Vec<u32>>,
    textured: bool,
    unlit: bool,
}

fn read_primitive(path: &Path, mode: gltf::mesh::Mode) -> (gltf::Document, Primitive) {
    let file = gltf::Gltf::open(path).expect("a glTF file");
    let blob = file.blob.clone().expect("a binary chunk");
    let document = file.document;
    let primitive = document
        .meshes()
        .flat_map(|m| m.primitives().collect::<Vec<_>>())
        .find(|p| p.mode() == mode)
        .expect("a primitive of the mode");
    let reader = primitive.reader(|_| Some(&blob));
    let material = primitive.material();
    let read = Primitive {
        positions: reader.read_positions().expect("positions").collect(),
        normals: reader.read_normals().map(Iterator::collect),
        colors: reader.read_colors(0).map(|c| c.into_rgb_u16().collect()),
        tex_coords: reader.read_tex_coords(0).map(|t| t.into_f32().collect()),
        indices: reader.read_indices().map(|i| i.into_u32().collect()),
        textured: material
            .pbr_metallic_roughness()
            .base_color_texture()
            .is_some(),
        unlit: material.unlit(),
    };
    (document, read)
}

/// The PLY's 8-bit sRGB colours as glTF stores them: linear light, normalised 16-bit.
fn linear(colors: &Option<Vec<[u8; 3]>>) -> Option<Vec<[u16; 3]>> {
    let decode = |c: u8| {
        let v = f64::from(c) / 255.0;
        let l = if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        };
        (l * 65535.0).round() as u16
    };
    colors
        .as_ref()
        .map(|c| c.iter().map(|rgb| rgb.map(decode)).collect())
}

/// Positions stored in glTF's axes: `(x, -y, -z)` of ours.
fn assert_positions_match(glb: &[[f32; 3]], ply_points: &[nalgebra::Point3<f32>]) {
    assert_eq!(glb.len(), ply_points.len());
    for (g, p) in glb.iter().zip(ply_points) {
        assert_eq!(*g, [p.x, -p.y, -p.z]);
    }
}

#[test]
fn cloud_and_mesh_as_glb_match_their_ply() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = |name: &str| tmp.path().join(name);
    let depth = dir.join("depth/00000.png");
    let color = dir.join("color/00000.jpg");
    let view = [
        "--depth",
        s(&depth),
        "--color",
        s(&color),
        "--intrinsics",
        INTRINSICS,
        "-q",
    ];
    let run = |command: &str, extra: &[&str], path: &Path| {
        assert_ok(&anydepth(
            &[&[command][..], &view, extra, &["-o", s(path)]].concat(),
        ));
    };
    run(
        "cloud",
        &["--normals", "--voxel-size", "0.02"],
        &out("cloud.ply"),
    );
    run(
        "cloud",
        &["--normals", "--voxel-size", "0.02", "--cameras"],
        &out("cloud.glb"),
    );
    run("mesh", &[], &out("mesh.ply"));
    run("mesh", &["--cameras"], &out("textured.glb"));
    run("mesh", &["--vertex-colors"], &out("colored.glb"));
    assert_valid(&[&out("cloud.glb"), &out("textured.glb"), &out("colored.glb")]);

    // The cloud: points, colours and normals of the PLY, turned into glTF's axes.
    let ply_cloud = ply::read_point_cloud(&out("cloud.ply")).expect("PLY");
    let (document, points) = read_primitive(&out("cloud.glb"), gltf::mesh::Mode::Points);
    assert_positions_match(&points.positions, &ply_cloud.points);
    assert_eq!(points.colors, linear(&ply_cloud.colors));
    let normals = points.normals.expect("normals");
    for (g, n) in normals
        .iter()
        .zip(ply_cloud.normals.as_ref().expect("normals"))
    {
        let expected = [n.x, -n.y, -n.z];
        let error: f32 = (0..3).map(|k| (g[k] - expected[k]).abs()).sum();
        assert!(error < 1e-5, "{g:?} vs {expected:?}");
    }
    // Its camera: 480 px high at fy 525, 4:3, at the origin.
    let camera = document.cameras().next().expect("a camera");
    let gltf::camera::Projection::Perspective(perspective) = camera.projection() else {
        panic!("a perspective camera");
    };
    let yfov = 2.0 * (480.0_f32 / (2.0 * 525.0)).atan();
    assert!((perspective.yfov() - yfov).abs() < 1e-6);
    assert_eq!(perspective.aspect_ratio(), Some(640.0 / 480.0));
    let node = document
        .nodes()
        .find(|n| n.camera().is_some())
        .expect("a camera node");
    let (translation, rotation, _) = node.transform().decomposed();
    assert_eq!(translation, [0.0, 0.0, 0.0]);
    assert_eq!(rotation, [0.0, 0.0, 0.0, 1.0]);
    assert!(node.mesh().is_some(), "the frustum");

    // The textured mesh: the PLY's vertices and faces, the photo instead of colours.
    let ply_mesh = ply::read_mesh(&out("mesh.ply")).expect("PLY");
    let (document, textured) = read_primitive(&out("textured.glb"), gltf::mesh::Mode::Triangles);
    assert_positions_match(&textured.positions, &ply_mesh.vertices);
    let faces: Vec<u32> = ply_mesh.faces.iter().flatten().copied().collect();
    assert_eq!(textured.indices.as_ref(), Some(&faces));
    assert!(textured.textured && textured.unlit && textured.colors.is_none());
    let uv = textured.tex_coords.expect("texture coordinates");
    assert_eq!(uv.len(), ply_mesh.vertices.len());
    assert!(uv.iter().flatten().all(|c| (0.0..=1.0).contains(c)));
    let image = document.images().next().expect("the photo");
    let gltf::image::Source::View { mime_type, .. } = image.source() else {
        panic!("an embedded image");
    };
    assert_eq!(mime_type, "image/jpeg");
    assert!(textured.normals.is_some());

    // With --vertex-colors: the PLY's colours, no texture.
    let (_, colored) = read_primitive(&out("colored.glb"), gltf::mesh::Mode::Triangles);
    assert_positions_match(&colored.positions, &ply_mesh.vertices);
    assert_eq!(colored.colors, linear(&ply_mesh.colors));
    assert!(!colored.textured && colored.tex_coords.is_none() && colored.unlit);
}

#[test]
fn fused_model_as_glb_with_cameras() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let color = dir.join("color/*.jpg");
    let depth = dir.join("depth/*.png");
    let log = dir.join("odometry.log");
    let args = [
        "fuse",
        "--color",
        s(&color),
        "--depth",
        s(&depth),
        "--intrinsics",
        INTRINSICS,
        "--poses",
        s(&log),
        "--voxel-size",
        "0.02",
        "--max-depth",
        "3",
        "-q",
    ];
    let (ply_path, glb_path) = (tmp.path().join("room.ply"), tmp.path().join("room.glb"));
    let cloud_path = tmp.path().join("room-points.glb");
    assert_ok(&anydepth(&[&args[..], &["-o", s(&ply_path)]].concat()));
    assert_ok(&anydepth(
        &[&args[..], &["--cameras", "-o", s(&glb_path)]].concat(),
    ));
    assert_ok(&anydepth(
        &[&args[..], &["--cloud", "-o", s(&cloud_path)]].concat(),
    ));
    assert_valid(&[&glb_path, &cloud_path]);

    let ply_mesh = ply::read_mesh(&ply_path).expect("PLY");
    let (document, mesh) = read_primitive(&glb_path, gltf::mesh::Mode::Triangles);
    assert_positions_match(&mesh.positions, &ply_mesh.vertices);
    assert_eq!(mesh.colors, linear(&ply_mesh.colors));
    // One camera per frame, where the trajectory puts it (in glTF's axes).
    let poses = anydepth_core::pose::read_trajectory(&log, None).expect("poses");
    let cameras: Vec<_> = document.nodes().filter(|n| n.camera().is_some()).collect();
    assert_eq!(cameras.len(), 5);
    for (node, pose) in cameras.iter().zip(&poses.poses) {
        let (t, _, _) = node.transform().decomposed();
        let expected = pose.world_from_camera.translation.vector;
        let expected = [expected.x, -expected.y, -expected.z];
        for k in 0..3 {
            assert!(
                (f64::from(t[k]) - expected[k]).abs() < 1e-5,
                "{t:?} vs {expected:?}"
            );
        }
    }
    let (_, points) = read_primitive(&cloud_path, gltf::mesh::Mode::Points);
    assert!(!points.positions.is_empty() && points.colors.is_some());
}

#[test]
fn options_that_do_not_fit_the_format_are_refused() {
    let Some(dir) = redwood() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let depth = dir.join("depth/00000.png");
    let ply_path = tmp.path().join("cloud.ply");
    let glb_path = tmp.path().join("cloud.glb");
    let base = ["cloud", "--depth", s(&depth), "--intrinsics", INTRINSICS];
    let out = anydepth(&[&base[..], &["--cameras", "-o", s(&ply_path)]].concat());
    assert_code(&out, 2);
    assert!(stderr(&out).contains(".glb"), "{}", stderr(&out));
    let out = anydepth(&[&base[..], &["--ascii", "-o", s(&glb_path)]].concat());
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--ascii"), "{}", stderr(&out));
    let obj_path = tmp.path().join("cloud.obj");
    let out = anydepth(&[&base[..], &["-o", s(&obj_path)]].concat());
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("OBJ holds meshes"),
        "{}",
        stderr(&out)
    );
    assert!(!ply_path.exists() && !glb_path.exists() && !obj_path.exists());
}
