//! Lets binaries and tests that link libtorch find it at run time without
//! `LD_LIBRARY_PATH`: torch-sys reports the library directory, we add it as an rpath.
//! Shared by every crate whose binaries or tests link tch (`build = "../torch/build.rs"`).
//! Set `ANYDEPTH_LINK_CUDA=1` to force-link `libtorch_cuda` (a CUDA build of libtorch is
//! otherwise dropped by `--as-needed`, and CUDA would never be found at run time).

fn main() {
    println!("cargo:rerun-if-env-changed=ANYDEPTH_LINK_CUDA");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let cuda = std::path::Path::new(&lib).join("libtorch_cuda.so");
        if std::env::var("ANYDEPTH_LINK_CUDA").as_deref() == Ok("1") && cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
