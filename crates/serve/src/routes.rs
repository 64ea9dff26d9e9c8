//! The HTTP side: routes, the token check, request metrics, bodies, and JSON errors.

use std::sync::Arc;
use std::time::Instant;

use anydepth_core::colormap::Colormap;
use anydepth_core::{Prediction, RgbImage};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batcher::{Queue, Refused};
use crate::metrics::{self, Metrics};
use crate::query::{depth_content_type, DepthQuery};

/// How long a client may take to send its body: a slow one would hold a slot (and a
/// graceful shutdown) for as long as it likes.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Seconds a client should wait before retrying when the queue is full.
const RETRY_AFTER_SECS: u32 = 1;

/// What every handler shares.
pub(crate) struct AppState {
    pub queue: Queue,
    /// One permit per photo the service may hold at once, from its body being read to its
    /// answer being encoded (`--queue` waiting plus `--batch` on the model): what bounds
    /// memory, since a decoded photo is far larger than its file.
    pub slots: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// The model, as `ModelConfig::describe` says.
    pub model: String,
    /// The device, as LibTorch names it.
    pub device: String,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub colormap: Colormap,
}

/// The service's routes, with the token check and request metrics.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/depth", post(depth))
        .route("/v1/cloud", post(crate::shapes::cloud))
        .route("/v1/mesh", post(crate::shapes::mesh))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            StatusCode::UNAUTHORIZED => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// A 200 answer of `bytes` as `content_type`.
pub(crate) fn binary(content_type: &'static str, bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// Counts every answer by route and status, with its latency.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    // Unmatched paths share one label, so scanners cannot grow the metrics without end.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// With a token: `Authorization: Bearer TOKEN` on everything but `/` and `/healthz`.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let open = matches!(request.uri().path(), "/" | "/healthz");
        if !open && !bearer_matches(request.headers(), token) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer TOKEN`",
            )
            .into_response();
        }
    } else if let Some(why) = foreign(request.headers()) {
        // Without a token the service listens on loopback only, but a web page in the
        // user's browser could still reach it: through a DNS name rebound to 127.0.0.1
        // (its Host is that name), or by posting across origins (its Origin is the page's).
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(request).await
}

/// Why a request to a token-less (loopback) service did not come from this machine's own
/// clients: a `Host` or an `Origin` that names another host. `None` when it may be served.
fn foreign(headers: &HeaderMap) -> Option<String> {
    let value = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    if let Some(host) = value(header::HOST) {
        if !is_local_host(&host) {
            return Some(format!(
                "Host {host:?} is not this machine: without --token the service answers \
                 only requests addressed to localhost or a loopback address"
            ));
        }
    }
    if let Some(origin) = value(header::ORIGIN) {
        let host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if !is_local_host(host) {
            return Some(format!(
                "requests from the web page at {origin:?} are refused: without --token the \
                 service answers only pages it serves itself and local clients"
            ));
        }
    }
    None
}

/// Whether `authority` (`host[:port]`, IPv6 in brackets) names this machine: `localhost`,
/// a `.localhost` name, or a loopback address.
fn is_local_host(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request carries `Authorization: Bearer <token>` (compared in constant time).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.trim().as_bytes());
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

async fn index() -> Response {
    match crate::web::asset("/") {
        Some((page, content_type)) => {
            ([(header::CONTENT_TYPE, content_type)], page).into_response()
        }
        None => not_found().await.into_response(),
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "model": state.model,
        "device": state.device,
    })
    .to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here (photos are POSTed)",
    )
}

/// `POST /v1/depth`: the bytes `anydepth depth --formats FORMAT` writes for the photo.
async fn depth(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = DepthQuery::parse(query.as_deref())?;
    let _slot = admit(&state)?;
    let photo = read_body(&state, &headers, body).await?;
    let (prediction, image) = predict(&state, photo).await?;
    let colormap = query.colormap.unwrap_or(state.colormap);
    let format = query.format;
    let bytes = blocking(move || {
        anydepth_pipeline::output::encode_depth(
            format,
            prediction.values(),
            prediction.width(),
            prediction.height(),
            Some(&image),
            colormap,
        )
        .map_err(|e| ApiError::internal(anydepth_pipeline::chain_text(&e)))
    })
    .await?;
    Ok(binary(depth_content_type(format), bytes))
}

/// A slot for one more photo, held until the answer is made; 503 when every slot is taken.
pub(crate) fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.slots).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue is full: retry later",
        )
    })
}

/// The request's body, at most `--max-body` bytes.
///
/// # Errors
/// 413 beyond the limit (from `Content-Length` before reading, else while reading); 408
/// when it takes longer than a minute; 400 when the body cannot be read or is empty.
pub(crate) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes (--max-body)"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?;
    let bytes = collected
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: POST the photo's bytes (curl --data-binary @photo.jpg)",
        ));
    }
    Ok(bytes)
}

/// Decodes the photo (on the blocking pool), queues it for the model and waits for its
/// depth; gives the photo back with it.
///
/// # Errors
/// 422 when the photo does not decode, 503 when the queue is full or the model stopped,
/// 500 when the model failed.
pub(crate) async fn predict(
    state: &AppState,
    photo: Bytes,
) -> Result<(Prediction, RgbImage), ApiError> {
    let image = blocking(move || {
        anydepth_core::decode_image_bytes(&photo)
            .map_err(|e| ApiError::unprocessable(anydepth_pipeline::chain_text(&e)))
    })
    .await?;
    let answer = state.queue.submit(image).map_err(|refused| match refused {
        Refused::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue is full: retry later",
        ),
        Refused::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    })?;
    state.metrics.set_queue_depth(state.queue.depth());
    answer
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model stopped"))?
        .map_err(|reason| ApiError::internal(format!("the model failed: {reason}")))
}

/// Runs `work` on tokio's blocking pool (decoding, encoding, geometry).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the work failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_localhost_names_and_loopback_addresses() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:80",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "localhost.example.com:8080",
            "10.0.0.1:8080",
            "[::2]:8080",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
