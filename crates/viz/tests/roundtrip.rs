//! Everything `Recording` logs, saved to an `.rrd` file and read back with Rerun's own
//! decoder: entity paths, archetypes, instance counts, values and timelines.

use std::time::{Duration, Instant};

use anydepth_core::colormap::Colormap;
use anydepth_core::{DepthMap, Disparity, Intrinsics, Metres, Prediction, RgbImage};
use anydepth_geometry::{PointCloud, TriangleMesh};
use anydepth_viz::rrd::Rrd;
use anydepth_viz::{paths, Error, PointRadius, Recording, Sink};
use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

fn cloud(n: usize) -> PointCloud {
    PointCloud {
        points: (0..n)
            .map(|i| Point3::new(i as f32, -(i as f32), 1.0 + i as f32 * 0.5))
            .collect(),
        colors: Some((0..n).map(|i| [i as u8, 2 * i as u8, 255]).collect()),
        normals: None,
    }
}

fn tetrahedron() -> TriangleMesh {
    let mut mesh = TriangleMesh {
        vertices: vec![
            Point3::new(0.0, 0.0, 1.0),
            Point3::new(1.0, 0.0, 1.0),
            Point3::new(0.0, 1.0, 1.0),
            Point3::new(0.0, 0.0, 2.0),
        ],
        faces: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        colors: Some(vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]]),
        normals: None,
    };
    mesh.compute_vertex_normals();
    mesh
}

/// Logs a two-frame sequence and a static model to `path` and closes the file.
fn record(path: &std::path::Path) {
    let recording = Recording::start(
        &Sink::Save {
            path: path.to_owned(),
        },
        "anydepth_test",
    )
    .expect("file sink");
    recording.log_world_axes().expect("axes");
    let camera = Intrinsics::new(500.0, 510.0, 319.5, 239.5, 640, 480).expect("camera");
    let photo = RgbImage::new(4, 3, vec![0.5; 36]).expect("4 x 3");
    for frame in 0..2u64 {
        recording.set_frame(frame);
        recording.set_time_secs(0.1 * frame as f64);
        let pose = Isometry3::from_parts(
            Translation3::new(1.0, 2.0, 3.0 + frame as f64),
            UnitQuaternion::from_axis_angle(&Vector3::y_axis(), 0.5),
        );
        recording.log_camera(&camera, &pose).expect("camera");
        recording.log_image(&photo).expect("photo");
        let depth = DepthMap::<Metres>::new(
            4,
            3,
            vec![
                1.0,
                f32::NAN,
                -1.0,
                2.0,
                0.0,
                3.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
            ],
        )
        .expect("depth");
        recording
            .log_prediction(&Prediction::Metric(depth), Colormap::default())
            .expect("depth");
        let disparity = DepthMap::<Disparity>::new(2, 1, vec![0.0, 1.0]).expect("disparity");
        recording
            .log_disparity(&disparity, Colormap::SpectralR)
            .expect("disparity");
        recording
            .log_cloud(
                paths::CLOUD,
                &cloud(10 + frame as usize),
                PointRadius::Metres(0.005),
            )
            .expect("cloud");
    }
    recording
        .log_mesh(paths::MESH, &tetrahedron())
        .expect("mesh");
    recording.log_model_mesh(&tetrahedron()).expect("model");
    recording.flush().expect("flush");
}

#[test]
// One scenario, read top to bottom.
#[allow(clippy::too_many_lines)]
fn everything_logged_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scene.rrd");
    record(&path);
    let rrd = Rrd::read(&path).expect("our recording decodes");

    let entities = rrd.entity_paths();
    for entity in [
        paths::WORLD,
        paths::CAMERA,
        paths::IMAGE,
        paths::RGB,
        paths::DEPTH,
        paths::DISPARITY,
        paths::CLOUD,
        paths::MESH,
        paths::MODEL,
    ] {
        assert!(
            entities.contains(entity),
            "{entity} missing from {entities:?}"
        );
    }
    let archetype = |entity: &str, name: &str| {
        assert!(
            rrd.archetypes(entity).contains(name),
            "{entity}: {:?}",
            rrd.archetypes(entity)
        );
    };
    archetype(paths::WORLD, "ViewCoordinates");
    archetype(paths::CAMERA, "Transform3D");
    archetype(paths::IMAGE, "Pinhole");
    archetype(paths::RGB, "Image");
    archetype(paths::DEPTH, "DepthImage");
    archetype(paths::DISPARITY, "Image");
    archetype(paths::CLOUD, "Points3D");
    archetype(paths::MESH, "Mesh3D");
    archetype(paths::MODEL, "Mesh3D");

    // Clouds: 10 then 11 points, every colour, one radius per log call.
    assert_eq!(rrd.row_count(paths::CLOUD, "Points3D:positions"), 2);
    assert_eq!(rrd.instance_count(paths::CLOUD, "Points3D:positions"), 21);
    assert_eq!(rrd.instance_count(paths::CLOUD, "Points3D:colors"), 21);
    assert_eq!(
        rrd.f32_values(paths::CLOUD, "Points3D:radii"),
        [0.005, 0.005]
    );
    let positions = rrd.f32_values(paths::CLOUD, "Points3D:positions");
    let expected: Vec<f32> = cloud(10)
        .points
        .iter()
        .chain(&cloud(11).points)
        .flat_map(|p| [p.x, p.y, p.z])
        .collect();
    assert_eq!(positions, expected);
    let colors = rrd.u32_values(paths::CLOUD, "Points3D:colors");
    assert_eq!(colors[3], 0x03_06_ff_ff, "RGBA, opaque");

    // Mesh: vertices, faces, per-vertex colours and normals.
    let mesh = tetrahedron();
    assert_eq!(
        rrd.instance_count(paths::MESH, "Mesh3D:vertex_positions"),
        4
    );
    assert_eq!(
        rrd.instance_count(paths::MESH, "Mesh3D:triangle_indices"),
        4
    );
    assert_eq!(rrd.instance_count(paths::MESH, "Mesh3D:vertex_normals"), 4);
    assert_eq!(rrd.instance_count(paths::MESH, "Mesh3D:vertex_colors"), 4);
    assert_eq!(
        rrd.u32_values(paths::MESH, "Mesh3D:triangle_indices"),
        mesh.faces.as_flattened()
    );
    let normals: Vec<f32> = mesh
        .normals
        .as_ref()
        .expect("computed")
        .iter()
        .flat_map(|n| [n.x, n.y, n.z])
        .collect();
    assert_eq!(
        rrd.f32_values(paths::MESH, "Mesh3D:vertex_normals"),
        normals
    );

    // The pinhole in Rerun's pixel convention: principal point half a pixel on.
    let k = rrd.f32_values(paths::IMAGE, "Pinhole:image_from_camera");
    assert_eq!(
        &k[..9],
        &[500.0, 0.0, 0.0, 0.0, 510.0, 0.0, 320.0, 240.0, 1.0]
    );
    assert_eq!(
        &rrd.f32_values(paths::IMAGE, "Pinhole:resolution")[..2],
        &[640.0, 480.0]
    );

    // The pose: world_from_camera's translation and rotation (x, y, z, w).
    assert_eq!(
        &rrd.f32_values(paths::CAMERA, "Transform3D:translation")[..3],
        &[1.0, 2.0, 3.0]
    );
    let q = rrd.f32_values(paths::CAMERA, "Transform3D:quaternion");
    let half = 0.25f32;
    assert!(
        (q[1] - half.sin()).abs() < 1e-6 && (q[3] - half.cos()).abs() < 1e-6,
        "{q:?}"
    );

    // Depth in metres (meter = 1) as f32, invalid values as 0; 4 x 3 f32 = 48 bytes.
    assert_eq!(rrd.f32_values(paths::DEPTH, "DepthImage:meter"), [1.0, 1.0]);
    assert_eq!(rrd.instance_count(paths::DEPTH, "DepthImage:buffer"), 2);
    let buffers = rrd
        .chunks()
        .iter()
        .filter(|c| c.entity_path().to_string() == "/world/camera/image/depth");
    let bytes: usize = buffers
        .flat_map(|c| c.components().0.values())
        .filter(|col| col.descriptor.component.as_str() == "DepthImage:buffer")
        .map(|col| {
            use rerun::external::arrow::array::Array;
            col.list_array.values().to_data().child_data()[0].len()
        })
        .sum();
    assert_eq!(bytes, 2 * 48);

    // Timelines: frames and times; the world axes and the model are static.
    for entity in [paths::CAMERA, paths::CLOUD, paths::DEPTH] {
        let timelines = rrd.timelines(entity);
        assert!(
            timelines.contains(paths::FRAME_TIMELINE),
            "{entity}: {timelines:?}"
        );
        assert!(
            timelines.contains(paths::TIME_TIMELINE),
            "{entity}: {timelines:?}"
        );
    }
    assert!(rrd.timelines(paths::MODEL).is_empty());
    assert!(rrd.timelines(paths::WORLD).is_empty());
}

#[test]
fn mismatched_colours_are_refused() {
    let (stream, _storage) = rerun::RecordingStreamBuilder::new("anydepth_test")
        .memory()
        .expect("memory sink");
    let recording = Recording::from_stream(stream);
    let mut bad = cloud(3);
    bad.colors = Some(vec![[0, 0, 0]; 2]);
    let err = recording
        .log_cloud(paths::CLOUD, &bad, PointRadius::UiPoints(1.0))
        .expect_err("2 colours for 3 points");
    assert!(err.to_string().contains("2 colours for 3 points"), "{err}");
}

#[test]
fn connect_to_nothing_fails_fast() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("rerun+http://127.0.0.1:{port}/proxy");
    let start = Instant::now();
    let err = Recording::start(&Sink::Connect { url: url.clone() }, "anydepth_test")
        .err()
        .expect("nothing listens");
    assert!(matches!(err, Error::NotListening { .. }), "{err}");
    assert!(err.to_string().contains(&url));
    assert!(start.elapsed() < Duration::from_secs(5));

    let err = Recording::start(
        &Sink::Connect {
            url: "photo.jpg".into(),
        },
        "anydepth_test",
    )
    .err()
    .expect("not a URL");
    assert!(err.to_string().contains("rerun+http://"), "{err}");
}
