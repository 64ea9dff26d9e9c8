//! One photo through Depth Anything to metric depth, a point cloud and a mesh, each streamed
//! to Rerun as soon as it exists. A starting point to copy: every step is one library call.
//!
//! ```sh
//! # a viewer on PATH: pip install rerun-sdk==0.36.3
//! cargo run --release -p photo_to_rerun -- room.jpg depth_anything_v2_metric_hypersim_vits.pth
//! # or save the recording and open it later with `rerun room.rrd`
//! cargo run --release -p photo_to_rerun -- room.jpg depth_anything_v2_metric_hypersim_vits.pth room.rrd
//! ```
//!
//! The checkpoint must be a metric one (depth in metres); a relative model's disparity has
//! no scale to build geometry from (`anydepth cloud --align-depth` fits one).

use std::path::PathBuf;

use anydepth_core::{load_image, Intrinsics, Prediction};
use anydepth_geometry::grid_mesh::{mesh_from_depth, GridMeshOptions};
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use anydepth_torch::{DepthEstimator, EstimatorOptions, ModelSpec};
use anydepth_viz::{paths, PointRadius, Recording, Sink};
use nalgebra::Isometry3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (photo, weights, save) = match &args[..] {
        [photo, weights] => (photo, weights, None),
        [photo, weights, rrd] => (photo, weights, Some(rrd.clone())),
        _ => return Err("usage: photo_to_rerun PHOTO METRIC_CHECKPOINT [OUT.rrd]".into()),
    };

    // 1. Where the data goes: a file, or a viewer (started from PATH if none is running).
    let sink = match save {
        Some(path) => Sink::Save { path },
        None => Sink::Spawn {
            port: anydepth_viz::DEFAULT_PORT,
        },
    };
    let recording = Recording::start(&sink, "anydepth_photo_to_rerun")?;
    recording.log_world_axes()?;
    recording.set_frame(0);

    // 2. The photo, and a camera for it: EXIF focal length, else a 60 degree guess.
    let image = load_image(photo)?;
    let (width, height) = (image.width, image.height);
    let camera = match Intrinsics::from_exif_file(photo, width, height)? {
        Some(camera) => camera,
        None => Intrinsics::default_guess(width, height)?,
    };
    let colors = image.to_rgb8();
    recording.log_camera(&camera, &Isometry3::identity())?;
    recording.log_rgb8(width, height, colors.as_slice())?;

    // 3. Depth in metres.
    let estimator = DepthEstimator::from_checkpoint(
        weights,
        ModelSpec::default(),
        EstimatorOptions::default(),
    )?;
    let Prediction::Metric(depth) = estimator.predict(&image)? else {
        return Err("a metric checkpoint is needed (depth in metres), e.g. \
                    depth_anything_v2_metric_hypersim_vits.pth"
            .into());
    };
    recording.log_depth(&depth)?;

    // 4. The point cloud, coloured by the photo.
    let cloud = unproject(
        &depth,
        &camera,
        &UnprojectOptions::default(),
        Some(colors.as_flattened()),
    )?;
    let radius = PointRadius::for_depth(depth.data(), camera.fx);
    recording.log_cloud(paths::CLOUD, &cloud, radius)?;

    // 5. The mesh, cut at depth discontinuities (with vertex normals for shading).
    let mesh = mesh_from_depth(
        &depth,
        &camera,
        &GridMeshOptions::default(),
        Some(colors.as_flattened()),
    )?;
    recording.log_mesh(paths::MESH, &mesh)?;

    recording.flush()?;
    eprintln!(
        "{width}x{height}: {} points, {} triangles logged",
        cloud.len(),
        mesh.faces.len()
    );
    Ok(())
}
