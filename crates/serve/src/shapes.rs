//! `POST /v1/cloud` and `POST /v1/mesh`: the photo's view in metres
//! ([`Scene::from_prediction`]) as a point cloud or a mesh, in the bytes `anydepth cloud`
//! and `anydepth mesh` write without further flags.

use std::sync::{Arc, Mutex, PoisonError};

use anydepth_pipeline::scene::{CameraRequest, DepthValues, Scene, SceneRequest};
use anydepth_pipeline::shape::{
    build_cloud, build_mesh, encode_cloud, encode_mesh, CloudSettings, MeshSettings, ShapeFormat,
};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use crate::query::Query;
use crate::routes::{admit, binary, blocking, predict, read_body, ApiError, AppState};

/// The header that carries what the user should know (for example that the camera was
/// guessed), as `anydepth cloud` prints it.
pub(crate) const NOTE_HEADER: &str = "x-anydepth-note";

/// What the view becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Cloud,
    Mesh,
}

/// What `POST /v1/cloud` or `/v1/mesh` is asked for.
#[derive(Clone, Debug, PartialEq)]
struct ShapeQuery {
    format: ShapeFormat,
    scene: SceneRequest,
    cloud: CloudSettings,
    mesh: MeshSettings,
}

impl ShapeQuery {
    /// `format=ply|glb` (ply when absent), `intrinsics=fx,fy,cx,cy` or `fov=DEG`,
    /// `scale=S&shift=T`, `max_depth=M`; for a cloud `voxel_size=M`, for a mesh `stride=N`
    /// and `vertex_colors=true` (as `anydepth cloud` and `anydepth mesh` take them).
    fn parse(raw: Option<&str>, shape: Shape) -> Result<Self, ApiError> {
        let common = ["format", "intrinsics", "fov", "scale", "shift", "max_depth"];
        let own: &[&str] = match shape {
            Shape::Cloud => &["voxel_size"],
            Shape::Mesh => &["stride", "vertex_colors"],
        };
        let query = Query::parse(raw, &[&common[..], own].concat())?;
        let format = match query.get("format") {
            None | Some("ply") => ShapeFormat::Ply,
            Some("glb") => ShapeFormat::Glb,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown format {other:?}; known: ply, glb"
                )))
            }
        };
        let intrinsics = query.numbers("intrinsics")?;
        let fov = query.number::<f64>("fov")?;
        if intrinsics.is_some() && fov.is_some() {
            return Err(ApiError::bad_request(
                "give the camera as intrinsics=fx,fy,cx,cy or fov=DEG, not both",
            ));
        }
        let scale = query.number::<f64>("scale")?;
        let shift = query.number::<f64>("shift")?;
        if scale.is_some() != shift.is_some() {
            return Err(ApiError::bad_request(
                "scale and shift go together: 1/depth = scale * disparity + shift",
            ));
        }
        let scene = SceneRequest {
            values: DepthValues {
                scale,
                shift,
                ..DepthValues::default()
            },
            camera: CameraRequest { intrinsics, fov },
            max_depth: query.number::<f32>("max_depth")?,
            ..SceneRequest::default()
        };
        let cloud = CloudSettings {
            voxel_size: query.number::<f32>("voxel_size")?,
            ..CloudSettings::default()
        };
        let mesh = MeshSettings {
            stride: query.number::<usize>("stride")?.unwrap_or(1),
            vertex_colors: match query.get("vertex_colors") {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "vertex_colors is true or false, got {other:?}"
                    )))
                }
            },
            ..MeshSettings::default()
        };
        Ok(Self {
            format,
            scene,
            cloud,
            mesh,
        })
    }
}

/// `POST /v1/cloud`.
pub(crate) async fn cloud(
    state: State<Arc<AppState>>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    shape(state, query, headers, body, Shape::Cloud).await
}

/// `POST /v1/mesh`.
pub(crate) async fn mesh(
    state: State<Arc<AppState>>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    shape(state, query, headers, body, Shape::Mesh).await
}

async fn shape(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
    shape: Shape,
) -> Result<Response, ApiError> {
    let query = ShapeQuery::parse(query.as_deref(), shape)?;
    let _slot = admit(&state)?;
    let photo = read_body(&state, &headers, body).await?;
    let (prediction, image) = predict(&state, photo.clone()).await?;
    let (bytes, notes) = blocking(move || {
        let notes = Mutex::new(Vec::new());
        let note = |text: &str| {
            tracing::info!("{text}");
            notes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(text.to_owned());
        };
        let scene =
            Scene::from_prediction(&query.scene, prediction, image.to_rgb8(), &photo, &note)
                .map_err(refused)?;
        let max_depth = query.scene.max_depth;
        let bytes = match shape {
            Shape::Cloud => build_cloud(&scene, max_depth, &query.cloud)
                .and_then(|cloud| encode_cloud(&cloud, query.format, &[])),
            Shape::Mesh => build_mesh(&scene, max_depth, &query.mesh, query.format)
                .and_then(|mesh| encode_mesh(&mesh, query.format, &[])),
        }
        .map_err(refused)?;
        Ok((
            bytes,
            notes.into_inner().unwrap_or_else(PoisonError::into_inner),
        ))
    })
    .await?;
    let content_type = match query.format {
        ShapeFormat::Glb => "model/gltf-binary",
        ShapeFormat::Ply | ShapeFormat::PlyAscii | ShapeFormat::Obj => "application/octet-stream",
    };
    let mut response = binary(content_type, bytes);
    for note in notes {
        // A note that is not a valid header value is only logged.
        if let Ok(value) = HeaderValue::from_str(&note) {
            response.headers_mut().append(NOTE_HEADER, value);
        }
    }
    Ok(response)
}

/// A scene, cloud or mesh that cannot be made from this photo and query: 422, except
/// for failures of the machine (I/O), which are 500.
fn refused(err: anydepth_pipeline::Error) -> ApiError {
    let message = anydepth_pipeline::chain_text(&err);
    match err {
        anydepth_pipeline::Error::Io(_) => ApiError::internal(message),
        _ => ApiError::unprocessable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_queries() {
        let q = ShapeQuery::parse(
            Some("format=glb&intrinsics=500,500,320,240&scale=2&shift=0.1"),
            Shape::Mesh,
        )
        .expect("parses");
        assert_eq!(q.format, ShapeFormat::Glb);
        assert_eq!(
            q.scene.camera.intrinsics,
            Some(vec![500.0, 500.0, 320.0, 240.0])
        );
        assert_eq!(
            (q.scene.values.scale, q.scene.values.shift),
            (Some(2.0), Some(0.1))
        );
        let q = ShapeQuery::parse(Some("fov=60&max_depth=5&voxel_size=0.01"), Shape::Cloud)
            .expect("parses");
        assert_eq!(q.cloud.voxel_size, Some(0.01));
        let q =
            ShapeQuery::parse(Some("stride=4&vertex_colors=true"), Shape::Mesh).expect("parses");
        assert_eq!((q.mesh.stride, q.mesh.vertex_colors), (4, true));
        let q = ShapeQuery::parse(Some("fov=60&max_depth=5"), Shape::Cloud).expect("parses");
        assert_eq!(q.format, ShapeFormat::Ply);
        assert_eq!(q.scene.camera.fov, Some(60.0));
        assert_eq!(q.scene.max_depth, Some(5.0));
        for bad in [
            "format=obj",
            "fov=60&intrinsics=1,1,1,1",
            "scale=2",
            "fov=wide",
            "focal=500",
            "stride=two",
            "vertex_colors=yes",
        ] {
            assert!(ShapeQuery::parse(Some(bad), Shape::Mesh).is_err(), "{bad}");
        }
        for bad in ["stride=2", "voxel_size=big"] {
            assert!(ShapeQuery::parse(Some(bad), Shape::Cloud).is_err(), "{bad}");
        }
    }
}
