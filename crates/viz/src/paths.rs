//! The entity paths everything is logged under (see `docs/RERUN.md`).
//!
//! ```text
//! world                       ViewCoordinates RDF (static): x right, y down, z forward
//! world/camera                Transform3D world_from_camera
//! world/camera/image          Pinhole: intrinsics, resolution, camera axes RDF (OpenCV)
//! world/camera/image/rgb      Image: the photo or colour frame, RGB8
//! world/camera/image/depth    DepthImage: metric depth, f32 metres (meter = 1)
//! world/camera/image/disparity Image: relative depth (disparity), colour-mapped RGB8
//! world/cloud                 Points3D: one view's point cloud, in the world frame
//! world/mesh                  Mesh3D: one view's depth-grid mesh, in the world frame
//! world/model                 Mesh3D or Points3D: the fused model (static)
//! train/loss                  Scalars: training loss per step (`step` timeline)
//! train/lr                    Scalars: the encoder's learning rate per step
//! train/images_per_second     Scalars: training speed per step
//! train/validation/NAME       Scalars: a validation metric (abs_rel, delta1, ...)
//! ```
//!
//! Everything under `world/camera/image` lives in the camera's image space (pixels); the
//! `Pinhole` connects it to 3D, so the viewer back-projects `depth` into a cloud and draws
//! the photo on the camera's frustum.

/// The root of the 3D scene; its axes are the camera's (RDF) for single views.
pub const WORLD: &str = "world";
/// The camera, posed by `world_from_camera`.
pub const CAMERA: &str = "world/camera";
/// The camera's image plane: the `Pinhole`.
pub const IMAGE: &str = "world/camera/image";
/// The photo or colour frame.
pub const RGB: &str = "world/camera/image/rgb";
/// Metric depth.
pub const DEPTH: &str = "world/camera/image/depth";
/// Relative depth, colour-mapped.
pub const DISPARITY: &str = "world/camera/image/disparity";
/// One view's point cloud.
pub const CLOUD: &str = "world/cloud";
/// One view's mesh.
pub const MESH: &str = "world/mesh";
/// The fused model.
pub const MODEL: &str = "world/model";

/// Training: the loss of each step (time series on the `step` timeline).
pub const TRAIN_LOSS: &str = "train/loss";
/// Training: the encoder's learning rate of each step.
pub const TRAIN_LR: &str = "train/lr";
/// Training: images per second of each step.
pub const TRAIN_SPEED: &str = "train/images_per_second";
/// Training: the validations' metrics, one series per metric under it.
pub const TRAIN_VALIDATION: &str = "train/validation";

/// The timeline of training steps (sequence).
pub const STEP_TIMELINE: &str = "step";
/// The timeline of frame indices (sequence).
pub const FRAME_TIMELINE: &str = "frame";
/// The timeline of capture times, when frames have them.
pub const TIME_TIMELINE: &str = "time";
