//! Lets binaries and tests that link libtorch find it at run time without
//! `LD_LIBRARY_PATH`: torch-sys reports the library directory, we add it as an rpath.
//! Shared by every crate whose binaries or tests link tch (`build = "../torch/build.rs"`).
//!
//! `libtorch_cuda` is not linked: the binaries load it at run time when CUDA is asked for
//! (see `anydepth_torch::cuda`), so one build serves CPU and GPU machines.
//!
//! For `anydepth-torch` itself it also builds `cuda/shim.cpp` (CUDA graphs, the copy
//! stream's events, the caching allocator's statistics) into a shared library that the crate embeds (`anydepth_torch::cuda_shim`).
//! That needs a CUDA LibTorch's C++ headers and the CUDA runtime's headers; without them,
//! or when the C++ compiler fails, the crate builds without the shim, says why in a
//! warning (not for a CPU-only LibTorch, where there is nothing to miss) and at run time
//! when CUDA graphs are asked for (uploads then run on the compute stream). PyPI's CUDA 13
//! torch ships no complete set of runtime headers (its `nvidia/cu13/include` lacks `crt/`),
//! but its Triton does, for CUDA 12.8: the shim declares nothing that differs between the
//! two, and its few runtime calls exist in both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(anydepth_cuda_shim)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("anydepth-torch") {
        let lib = Path::new(&lib);
        match build_cuda_shim(lib) {
            Ok(()) => println!("cargo:rustc-cfg=anydepth_cuda_shim"),
            Err(why) => {
                if lib.join("libtorch_cuda.so").exists() {
                    println!("cargo:warning=built without CUDA graphs and copy stream: {why}");
                }
                println!("cargo:rustc-env=ANYDEPTH_CUDA_SHIM_MISSING={why}");
            }
        }
    }
}

/// Asks cargo to run this script again when `path` changes, if it exists (a missing path
/// would make it run on every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Compiles `cuda/shim.cpp` into `$OUT_DIR/libanydepth_cuda_shim.so`.
fn build_cuda_shim(lib: &Path) -> Result<(), String> {
    let source = Path::new("cuda/shim.cpp");
    // Again when the source, the compiler or the header folders change, and when LibTorch
    // is replaced (its library folder, a few files, and its version header).
    watch(source);
    watch(lib);
    for var in ["CXX", "CUDA_HOME", "CUDA_PATH", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let torch_include = lib
        .parent()
        .map(|root| root.join("include"))
        .ok_or_else(|| format!("no folder above {}", lib.display()))?;
    watch(&torch_include.join("torch/headeronly/version.h"));
    if !lib.join("libtorch_cuda.so").exists() {
        return Err(format!("the LibTorch in {} has no CUDA", lib.display()));
    }
    if !torch_include.join("ATen/cuda/CUDAGraph.h").exists() {
        return Err(format!(
            "no ATen/cuda/CUDAGraph.h in {}",
            torch_include.display()
        ));
    }
    let cuda_include = cuda_headers(&lib.canonicalize().map_err(|e| e.to_string())?).ok_or(
        "no CUDA runtime headers (cuda_runtime_api.h and crt/host_config.h) in $CUDA_HOME, \
         $CUDA_PATH, Triton's beside LibTorch or /usr/local/cuda: set CUDA_HOME to a CUDA \
         toolkit and rebuild",
    )?;
    watch(&cuda_include.join("cuda_runtime_api.h"));
    let version = torch_version(&torch_include)?;
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("libanydepth_cuda_shim.so");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    // `CXX` may carry arguments ("ccache g++").
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let mut words = cxx.split_whitespace();
    let compiler = words.next().unwrap_or("c++").to_string();
    let output = Command::new(&compiler)
        .args(words)
        .args(["-std=c++17", "-O2", "-fPIC", "-shared", "-w"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .arg("-I")
        .arg(&torch_include)
        .arg("-I")
        .arg(&cuda_include)
        .arg(source)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| l.contains("error"))
            .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("no message");
        return Err(format!(
            "{compiler} failed on {}: {first}",
            source.display()
        ));
    }
    // The shim lays out LibTorch's classes as these headers do: it must run with this
    // LibTorch version, which `cuda_shim` checks before loading it.
    println!("cargo:rustc-env=ANYDEPTH_CUDA_SHIM_TORCH_VERSION={version}");
    Ok(())
}

/// `TORCH_VERSION` of LibTorch's headers, e.g. `2.11.0`.
fn torch_version(include: &Path) -> Result<String, String> {
    let header = include.join("torch/headeronly/version.h");
    let text = std::fs::read_to_string(&header)
        .map_err(|e| format!("cannot read {}: {e}", header.display()))?;
    text.split("#define TORCH_VERSION")
        .skip(1)
        .find(|rest| rest.starts_with([' ', '\\']))
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_string)
        .ok_or_else(|| format!("no TORCH_VERSION string in {}", header.display()))
}

/// A folder with the CUDA runtime's headers: the toolkit named by `CUDA_HOME` or
/// `CUDA_PATH`, those a Python environment ships beside PyPI's torch (Triton's copy), or
/// the system toolkit. The shim uses only long-stable runtime API declarations.
fn cuda_headers(lib: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| PathBuf::from(root).join("include"))
        .collect();
    if let Some(site) = lib.parent().and_then(Path::parent) {
        candidates.push(site.join("triton/backends/nvidia/include"));
        candidates.push(site.join("nvidia/cuda_runtime/include"));
    }
    candidates.push("/usr/local/cuda/include".into());
    candidates.into_iter().find(|dir| {
        dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists()
    })
}
