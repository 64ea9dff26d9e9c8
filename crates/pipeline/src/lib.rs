//! The application layer of anydepth: what every front end (the command line, a service,
//! video, Python) calls to turn photos and depth files into depth maps, point clouds,
//! meshes and fused models.
//!
//! A front end parses its input into a request, calls one job here and reports the
//! outcome:
//! - [`scene::Scene::load`]: a photo (through a depth engine) or a depth file, in metres,
//!   with its colours and camera;
//! - [`depth::DepthJob`]: photos, folders and globs to depth maps in every format, in
//!   batches, with skip-if-exists and a failure list;
//! - [`fuse::FuseRequest::run`]: many views into one mesh or cloud;
//! - [`model::ModelRequest`]: which model, and its weights from a file or the hub cache;
//! - [`stabilize::StabilizeRequest`]: a clip's relative disparity files brought to one
//!   consistent scale and shift;
//! - [`video::VideoJob`]: clips (video files, image sequences, live sources) to depth per
//!   frame and depth videos, through Video Depth Anything or a per-frame model;
//! - [`shape`]: a view to a point cloud or a mesh, and both to PLY, OBJ or GLB bytes;
//! - [`sources`]: files, folders and globs as ordered frame lists;
//! - [`output`]: every depth encoder (npy, png16, pfm, exr, colour, side-by-side) and
//!   the cloud and mesh output files.
//!
//! Networks are reached only through [`anydepth_model::EngineLoader`], so nothing here
//! links libtorch.
//!
//! ```no_run
//! use anydepth_model::{DepthEngine, EngineLoader};
//! use anydepth_pipeline::scene::{Scene, SceneRequest};
//!
//! # fn run(loader: &dyn EngineLoader) -> anydepth_pipeline::Result<()> {
//! let request = SceneRequest {
//!     depth: Some("depth/00000.png".into()),
//!     color: Some("color/00000.jpg".into()),
//!     ..Default::default()
//! };
//! let scene = Scene::load(&request, loader, &|note| eprintln!("{note}"), &mut |_, _, _| {})?;
//! println!("{} x {} view", scene.depth.width(), scene.depth.height());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod depth;
pub mod error;
pub mod fuse;
pub mod model;
pub mod output;
pub mod scene;
pub mod shape;
pub mod sources;
pub mod stabilize;
pub mod video;
pub mod views;

pub use error::{chain_text, Context, Error, Result};

/// An error of an observer or callback, passed through unchanged.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Hears what the user should know (for example that a camera was guessed).
pub type Notes<'a> = &'a dyn Fn(&str);

/// Hears of weights being downloaded: `(file name, bytes done, bytes in all)`.
pub type Downloads<'a> = &'a mut dyn FnMut(&str, u64, Option<u64>);

/// Runs `work` on this thread while `log` runs on a second one (when there is one), so
/// that logging or streaming a result overlaps writing it. Returns what `work` returned,
/// or the error `log` met.
///
/// # Errors
/// The error `log` returned.
pub fn run_beside<T, L>(log: Option<L>, work: impl FnOnce() -> T) -> Result<T>
where
    L: FnOnce() -> std::result::Result<(), BoxError> + Send,
{
    let Some(log) = log else {
        return Ok(work());
    };
    std::thread::scope(|s| {
        let logging = s.spawn(log);
        let value = work();
        match logging.join() {
            Ok(logged) => logged.map(|()| value).map_err(Error::Observer),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_beside_returns_the_work_and_the_log_error() {
        let none: Option<fn() -> std::result::Result<(), BoxError>> = None;
        assert_eq!(run_beside(none, || 7).expect("no log"), 7);
        let ok = Some(|| Ok(()));
        assert_eq!(run_beside(ok, || 8).expect("log ok"), 8);
        let failing = Some(|| Err(BoxError::from("viewer gone")));
        let err = run_beside(failing, || 9).expect_err("log failed");
        assert_eq!(err.to_string(), "viewer gone");
    }
}
