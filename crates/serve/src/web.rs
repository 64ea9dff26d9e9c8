//! The web page and the three.js modules it imports, embedded in the binary: `/` is
//! `web/index.html`, `/vendor/...` the files `build.rs` took from
//! `scripts/node/node_modules/three` (stubs that say how to install it when it was absent).
//!
//! `/vendor/` is open even with `--token`: a browser cannot send a token with the modules
//! an import map loads, and they are public code.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::routes::ApiError;

include!(concat!(env!("OUT_DIR"), "/vendor.rs"));

/// The page: one HTML file, its CSS and script inline.
const INDEX_HTML: &str = include_str!("../web/index.html");

/// How long a browser may keep a module: they change only with a new build.
const VENDOR_CACHE_CONTROL: &str = "public, max-age=86400";

/// The bytes and content type served at `path` (`/`, `/index.html`, `/vendor/...`), or
/// `None` when there is nothing there.
pub(crate) fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    if matches!(path, "/" | "/index.html") {
        return Some((INDEX_HTML.as_bytes(), "text/html; charset=utf-8"));
    }
    let name = path.strip_prefix("/vendor/")?;
    VENDOR
        .iter()
        .find(|(served, _)| *served == name)
        .map(|(_, bytes)| (*bytes, "text/javascript; charset=utf-8"))
}

/// `GET /vendor/...`, outside the token check (see the module docs).
pub(crate) fn router() -> Router {
    Router::new().route("/vendor/{*path}", get(vendor))
}

async fn vendor(uri: Uri) -> Response {
    match asset(uri.path()) {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, VENDOR_CACHE_CONTROL),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_every_module_it_imports() {
        let (page, content_type) = asset("/").expect("the page");
        assert!(content_type.starts_with("text/html"));
        let page = std::str::from_utf8(page).expect("utf-8");
        // The import map points at files that are served.
        for module in ["/vendor/three.module.js", "/vendor/addons/"] {
            assert!(page.contains(module), "{module}");
        }
        for path in [
            "/vendor/three.module.js",
            "/vendor/three.core.js",
            "/vendor/addons/controls/OrbitControls.js",
            "/vendor/addons/loaders/GLTFLoader.js",
            "/vendor/addons/utils/BufferGeometryUtils.js",
            "/vendor/addons/utils/SkeletonUtils.js",
        ] {
            let (bytes, content_type) = asset(path).expect(path);
            assert!(!bytes.is_empty(), "{path}");
            assert!(content_type.starts_with("text/javascript"), "{path}");
        }
        for path in [
            "/vendor/",
            "/vendor/../Cargo.toml",
            "/vendor/nope.js",
            "/nope",
        ] {
            assert!(asset(path).is_none(), "{path}");
        }
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        // three.module.js imports './three.core.js', GLTFLoader '../utils/...': a module
        // three.js adds to these imports in a later version fails here, not in a browser.
        let mut checked = 0;
        for (served, bytes) in VENDOR {
            let text = String::from_utf8_lossy(bytes);
            let dir = served.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().map(str::trim_start) {
                // Statements only: doc comments and messages say "from" too.
                if !["import ", "export ", "} from "]
                    .iter()
                    .any(|start| line.starts_with(start))
                {
                    continue;
                }
                for quote in ['\'', '"'] {
                    let Some((_, rest)) = line.split_once(&format!("from {quote}")) else {
                        continue;
                    };
                    let Some((target, _)) = rest.split_once(quote) else {
                        continue;
                    };
                    let resolved = match target {
                        "three" => "three.module.js".to_owned(),
                        // The page's import map: "three/addons/" is "/vendor/addons/".
                        _ if target.starts_with("three/addons/") => {
                            target["three/".len()..].to_owned()
                        }
                        _ => resolve(dir, target),
                    };
                    assert!(
                        VENDOR.iter().any(|(s, _)| *s == resolved),
                        "{served} imports {target} ({resolved}), which is not embedded"
                    );
                    checked += 1;
                }
            }
        }
        // Without three.js (stubs: no imports) there is nothing to check.
        let stubs = VENDOR
            .iter()
            .any(|(_, b)| b.starts_with(b"throw new Error"));
        assert!(stubs || checked >= 5, "only {checked} imports found");
    }

    /// `target` relative to the folder `dir` (both under `/vendor/`).
    fn resolve(dir: &str, target: &str) -> String {
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for part in target.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                _ => parts.push(part),
            }
        }
        parts.join("/")
    }
}
