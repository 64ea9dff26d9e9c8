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

/// The timeline of frame indices (sequence).
pub const FRAME_TIMELINE: &str = "frame";
/// The timeline of capture times, when frames have them.
pub const TIME_TIMELINE: &str = "time";
