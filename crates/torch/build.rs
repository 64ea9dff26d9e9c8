//! Lets binaries and tests that link libtorch find it at run time without
//! `LD_LIBRARY_PATH`: torch-sys reports the library directory, we add it as an rpath.
//! Shared by every crate whose binaries or tests link tch (`build = "../torch/build.rs"`).
//!
//! `libtorch_cuda` is not linked: the binaries load it at run time when CUDA is asked for
//! (see `anydepth_torch::cuda`), so one build serves CPU and GPU machines.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
