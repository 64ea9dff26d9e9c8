//! Embeds the three.js modules the web page imports (`web/index.html`, served by
//! `src/web.rs`) from `scripts/node/node_modules/three`, where `scripts/setup.sh` installs
//! the version `scripts/node/package-lock.json` pins.
//!
//! Writes `$OUT_DIR/vendor.rs`: `VENDOR`, the files under `/vendor/` as
//! `(path, bytes)`. When three.js is not installed the build still
//! succeeds: every module is a stub that throws, so the page says how to install it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `(path under /vendor/, path inside the `three` package)`: the page imports `three`
/// (`three.module.js`, which imports `three.core.js`), OrbitControls and GLTFLoader, and
/// GLTFLoader imports BufferGeometryUtils and SkeletonUtils.
const FILES: [(&str, &str); 6] = [
    ("three.module.js", "build/three.module.js"),
    ("three.core.js", "build/three.core.js"),
    (
        "addons/controls/OrbitControls.js",
        "examples/jsm/controls/OrbitControls.js",
    ),
    (
        "addons/loaders/GLTFLoader.js",
        "examples/jsm/loaders/GLTFLoader.js",
    ),
    (
        "addons/utils/BufferGeometryUtils.js",
        "examples/jsm/utils/BufferGeometryUtils.js",
    ),
    (
        "addons/utils/SkeletonUtils.js",
        "examples/jsm/utils/SkeletonUtils.js",
    ),
];

/// What every module is when three.js was not installed: the page shows the message.
const STUB: &str = "throw new Error(\"three.js was not installed at build time; run \
                    scripts/setup.sh, then rebuild\");\n";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let node = manifest.join("../../scripts/node");
    let three = node.join("node_modules/three");

    let mut missing = Vec::new();
    let mut entries = String::new();
    for (served, source) in FILES {
        let path = three.join(source);
        let included = if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            path
        } else {
            missing.push(source);
            let stub = out.join(format!("stub-{}", served.replace('/', "-")));
            std::fs::write(&stub, STUB).expect("OUT_DIR is writable");
            stub
        };
        writeln!(
            entries,
            "    ({served:?}, include_bytes!({:?})),",
            absolute(&included).display().to_string()
        )
        .expect("writing to a String");
    }
    if !missing.is_empty() {
        println!(
            "cargo:warning=three.js is not installed ({} missing under {}): the web page \
             at / will show no 3D view; run scripts/setup.sh, then rebuild",
            missing.join(", "),
            three.display()
        );
        // Rebuilt once `npm ci` creates the files: watch the nearest folder that exists.
        let watched = [three.clone(), node.join("node_modules"), node]
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or(manifest);
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let code = format!(
        "/// The files served under `/vendor/`, by path (stubs where three.js was missing).\n\
         const VENDOR: &[(&str, &[u8])] = &[\n{entries}];\n"
    );
    std::fs::write(out.join("vendor.rs"), code).expect("OUT_DIR is writable");
}

/// `path` made absolute and without `..`, for `include_bytes!` in the generated code.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
