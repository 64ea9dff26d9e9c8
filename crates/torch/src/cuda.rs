//! CUDA at run time, and what this machine offers (`anydepth doctor`).
//!
//! A binary built against a CUDA LibTorch refers to no symbol of `libtorch_cuda.so`: that
//! library only registers CUDA kernels and hooks with LibTorch from its initialisers when
//! it is loaded. The linker drops it (`--as-needed`), so it is loaded here instead, from
//! the folder `libtorch_cpu.so` was loaded from, the first time CUDA is asked for or
//! `--device auto` resolves. Commands on `--device cpu` never load it, nor the few hundred
//! megabytes of CUDA libraries it pulls in (0.1 to 0.2 s on the build machine). A LibTorch
//! without CUDA builds
//! and runs the same; CUDA is then reported as not compiled in.
//!
//! Every LibTorch CUDA query goes through [`load`] first: LibTorch decides whether CUDA
//! exists at its first CUDA query, and keeps that answer.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use anydepth_model::runtime::{cuda_version, cudnn_version, CudaReport, GpuReport};
use anydepth_model::Tf32;
use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LOCAL, RTLD_NOW};

/// LibTorch's CPU library, whose folder holds the rest of LibTorch.
const CPU_LIBRARY: &str = "libtorch_cpu.so";
/// LibTorch's CUDA library, present in CUDA builds only.
const CUDA_LIBRARY: &str = "libtorch_cuda.so";
/// The NVIDIA driver's CUDA library.
const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// `libtorch_cuda.so` once loaded (kept for the life of the process), or why not.
static CUDA: OnceLock<Result<Loaded, String>> = OnceLock::new();

struct Loaded {
    library: Library,
    path: PathBuf,
}

/// The folder this process loaded `libtorch_cpu.so` from, read from `/proc/self/maps`.
pub fn libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.find('/').map(|start| Path::new(&line[start..])))
        .find(|path| path.file_name() == Some(CPU_LIBRARY.as_ref()))
        .and_then(|path| path.parent().map(Path::to_path_buf))
}

/// Whether `libtorch_cuda.so` is loaded into this process (read from `/proc/self/maps`).
pub fn is_loaded() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| {
        maps.lines()
            .any(|line| line.ends_with(&format!("/{CUDA_LIBRARY}")))
    })
}

/// Loads LibTorch's CUDA library, once per process, from the folder of the loaded
/// `libtorch_cpu.so`. Returns its path, or why CUDA cannot be used (LibTorch built without
/// CUDA, or its CUDA libraries missing).
///
/// # Errors
/// The reason, as a sentence.
pub fn load() -> Result<&'static Path, &'static str> {
    let loaded = CUDA.get_or_init(|| {
        let dir = libtorch_dir()
            .ok_or_else(|| format!("cannot tell where {CPU_LIBRARY} was loaded from"))?;
        let path = dir.join(CUDA_LIBRARY);
        if !path.exists() {
            return Err(format!(
                "this LibTorch was built without CUDA (no {CUDA_LIBRARY} in {})",
                dir.display()
            ));
        }
        let started = Instant::now();
        // SAFETY: `libtorch_cuda.so` is the CUDA part of the LibTorch this process already
        // runs (same folder, same build). Its initialisers register CUDA kernels and hooks
        // with that LibTorch, which is what it is built to do when loaded by it; it is never
        // unloaded (the handle lives in a static).
        let library = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        tracing::info!(
            path = %path.display(),
            ms = started.elapsed().as_millis(),
            "loaded LibTorch's CUDA library"
        );
        Ok(Loaded { library, path })
    });
    match loaded {
        Ok(loaded) => Ok(&loaded.path),
        Err(why) => Err(why),
    }
}

/// How many CUDA devices LibTorch can use (0 without CUDA). Loads CUDA first.
pub fn device_count() -> usize {
    if load().is_err() || !tch::Cuda::is_available() {
        return 0;
    }
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// CUDA as this process finds it: LibTorch's CUDA part, the driver, the GPUs, cuDNN.
/// Loads LibTorch's CUDA part when it has one.
pub fn report() -> CudaReport {
    let compiled = libtorch_dir().is_some_and(|dir| dir.join(CUDA_LIBRARY).exists());
    let loaded = load();
    let available = device_count() > 0;
    let driver = Driver::get();
    let mut report = CudaReport {
        compiled,
        loaded: loaded.is_ok(),
        available,
        cudnn_available: available && tch::Cuda::cudnn_is_available(),
        ..CudaReport::default()
    };
    if let Ok(driver) = driver {
        report.driver_version = driver.version().map(cuda_version);
        report.gpus = driver.gpus();
    }
    if let Some(Ok(cuda)) = CUDA.get() {
        report.runtime_version = runtime_version(&cuda.library).map(cuda_version);
        report.cudnn_version = loaded_cudnn_version(&cuda.library).map(cudnn_version);
    }
    report.problem = match (&loaded, driver) {
        (Err(why), _) => Some((*why).to_string()),
        (Ok(_), Err(why)) => Some(why.clone()),
        (Ok(_), Ok(_)) if report.gpus.is_empty() => Some("no CUDA device found".into()),
        (Ok(_), Ok(_)) if !available => Some(
            "LibTorch cannot use the CUDA devices the driver sees (driver too old for this \
             LibTorch's CUDA runtime?)"
                .into(),
        ),
        (Ok(_), Ok(_)) => None,
    };
    report
}

/// LibTorch's version, from the file its folder's parent keeps it in: `version.py` in a
/// Python package (`__version__ = '2.11.0+cu130'`), `build-version` in a LibTorch zip.
pub fn libtorch_version(dir: &Path) -> Option<String> {
    let root = dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let version = text.lines().find_map(|line| {
            let value = line.strip_prefix("__version__")?.trim_start();
            let value = value.strip_prefix('=')?.trim();
            Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
        });
        if version.is_some() {
            return version;
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

/// `cudaRuntimeGetVersion` of the CUDA runtime LibTorch's CUDA part loaded.
fn runtime_version(cuda: &Library) -> Option<i32> {
    // SAFETY: `cudaRuntimeGetVersion(int*)` has this signature in every CUDA runtime, and
    // writes one int; the symbol is looked up in libtorch_cuda.so and its dependencies.
    unsafe {
        let get = cuda
            .get::<unsafe extern "C" fn(*mut c_int) -> c_int>(b"cudaRuntimeGetVersion\0")
            .ok()?;
        let mut version = 0;
        (get(&mut version) == 0).then_some(version)
    }
}

/// `cudnnGetVersion` of the cuDNN LibTorch's CUDA part loaded.
fn loaded_cudnn_version(cuda: &Library) -> Option<usize> {
    // SAFETY: `size_t cudnnGetVersion(void)` has this signature in every cuDNN release.
    unsafe {
        let get = cuda
            .get::<unsafe extern "C" fn() -> usize>(b"cudnnGetVersion\0")
            .ok()?;
        Some(get()).filter(|&v| v > 0)
    }
}

/// The NVIDIA driver's API (`libcuda.so.1`), for what LibTorch does not tell: the driver
/// version and each GPU's name, memory and compute capability.
struct Driver {
    library: Library,
}

/// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` and `_MINOR` of the driver API.
const COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const COMPUTE_CAPABILITY_MINOR: c_int = 76;

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;

impl Driver {
    /// The driver API, loaded and initialised once per process (kept loaded: LibTorch's
    /// CUDA runtime uses the same library).
    fn get() -> &'static Result<Driver, String> {
        static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
        DRIVER.get_or_init(Driver::open)
    }

    /// Loads and initialises the driver API.
    fn open() -> Result<Self, String> {
        // SAFETY: the NVIDIA driver library has no initialisers with requirements on the
        // caller; it is loaded locally and only the documented entry points below are used.
        let library = unsafe { Library::open(Some(DRIVER_LIBRARY), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|_| format!("no NVIDIA driver found ({DRIVER_LIBRARY} is not installed)"))?;
        // SAFETY: `CUresult cuInit(unsigned int flags)`; flags must be 0.
        let status = unsafe {
            let init = library
                .get::<CuInit>(b"cuInit\0")
                .map_err(|e| format!("{DRIVER_LIBRARY} has no cuInit: {e}"))?;
            init(0)
        };
        match status {
            0 => Ok(Self { library }),
            100 => Err("the NVIDIA driver sees no CUDA device".into()),
            code => Err(format!(
                "the NVIDIA driver failed to start (cuInit error {code})"
            )),
        }
    }

    /// `cuDriverGetVersion`.
    fn version(&self) -> Option<i32> {
        let mut version = 0;
        // SAFETY: `CUresult cuDriverGetVersion(int*)` writes one int.
        let status =
            unsafe { self.library.get::<CuIntOut>(b"cuDriverGetVersion\0").ok()?(&mut version) };
        (status == 0).then_some(version)
    }

    /// Every device the driver sees; devices it cannot describe are left out.
    fn gpus(&self) -> Vec<GpuReport> {
        let mut count = 0;
        // SAFETY: `CUresult cuDeviceGetCount(int*)` writes one int.
        let status = unsafe {
            match self.library.get::<CuIntOut>(b"cuDeviceGetCount\0") {
                Ok(get) => get(&mut count),
                Err(_) => return Vec::new(),
            }
        };
        if status != 0 {
            return Vec::new();
        }
        (0..count).filter_map(|ordinal| self.gpu(ordinal)).collect()
    }

    fn gpu(&self, ordinal: c_int) -> Option<GpuReport> {
        // SAFETY: the driver API signatures as documented (types above); the name buffer is
        // 256 bytes and its length passed, so the driver writes at most that, NUL included.
        unsafe {
            let device_get = self.library.get::<CuDeviceGet>(b"cuDeviceGet\0").ok()?;
            let get_name = self
                .library
                .get::<CuDeviceGetName>(b"cuDeviceGetName\0")
                .ok()?;
            let total_mem = self
                .library
                .get::<CuDeviceTotalMem>(b"cuDeviceTotalMem_v2\0")
                .ok()?;
            let attribute = self
                .library
                .get::<CuDeviceGetAttribute>(b"cuDeviceGetAttribute\0")
                .ok()?;
            let mut device = 0;
            if device_get(&mut device, ordinal) != 0 {
                return None;
            }
            let mut name = [0 as c_char; 256];
            if get_name(name.as_mut_ptr(), name.len() as c_int, device) != 0 {
                return None;
            }
            let mut memory = 0usize;
            if total_mem(&mut memory, device) != 0 {
                return None;
            }
            let (mut major, mut minor) = (0, 0);
            if attribute(&mut major, COMPUTE_CAPABILITY_MAJOR, device) != 0
                || attribute(&mut minor, COMPUTE_CAPABILITY_MINOR, device) != 0
            {
                return None;
            }
            Some(GpuReport {
                index: u32::try_from(ordinal).ok()?,
                name: std::ffi::CStr::from_ptr(name.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                memory_bytes: memory as u64,
                compute_capability: format!("{major}.{minor}"),
            })
        }
    }
}

/// Allows or forbids TensorFloat-32 in LibTorch's float32 convolutions (cuDNN) and matrix
/// products (cuBLAS) as `tf32` says, for the whole process. LibTorch, like PyTorch, allows
/// it in convolutions and forbids it in matrix products by default. TF32 rounds the inputs of
/// those products to 10 mantissa bits; forbidding it keeps float32 on a GPU to float32
/// arithmetic, as on the CPU and in the official code with
/// `torch.backends.cudnn.allow_tf32 = False`. The setting is LibTorch's, for the whole
/// process: the model loaded last decides it.
///
/// tch has no binding for this, so LibTorch's `at::Context` setters are called through
/// their exported C++ symbols (Itanium ABI: the context is the first argument).
///
/// # Errors
/// When this LibTorch does not export the setters.
pub fn set_tf32(tf32: Tf32) -> Result<(), String> {
    // "C-unwind": a C++ exception would unwind through here (an abort) rather than be UB.
    type GlobalContext = unsafe extern "C-unwind" fn() -> *mut std::ffi::c_void;
    type SetFlag = unsafe extern "C-unwind" fn(*mut std::ffi::c_void, bool);
    let process = Library::this();
    // SAFETY: `at::Context& at::globalContext()` and `void at::Context::setAllowTF32CuDNN(bool)`
    // / `setAllowTF32CuBLAS(bool)` are exported by libtorch_cpu.so with these mangled names;
    // under the Itanium C++ ABI a reference is returned as a pointer and a member function
    // takes `this` first. The context lives as long as the process.
    unsafe {
        let context = process
            .get::<GlobalContext>(b"_ZN2at13globalContextEv\0")
            .map_err(|e| format!("LibTorch exports no at::globalContext: {e}"))?(
        );
        for (symbol, allowed) in [
            (
                &b"_ZN2at7Context17setAllowTF32CuDNNEb\0"[..],
                tf32.convolutions,
            ),
            (
                &b"_ZN2at7Context18setAllowTF32CuBLASEb\0"[..],
                tf32.matrix_products,
            ),
        ] {
            let set = process
                .get::<SetFlag>(symbol)
                .map_err(|e| format!("LibTorch exports no TF32 setter: {e}"))?;
            set(context, allowed);
        }
    }
    Ok(())
}
