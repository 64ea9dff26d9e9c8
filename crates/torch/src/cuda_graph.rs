//! CUDA graphs: a network's forward pass for one input shape, captured once and replayed
//! as a single launch, so that a small batch is not held back by the host queuing a few
//! hundred kernels one by one.
//!
//! tch binds neither `at::cuda::CUDAGraph` nor LibTorch's current-stream guard, so
//! `cuda/graphs.cpp` wraps them behind a C interface. The build compiles it into a shared
//! library that this crate embeds; [`GraphedForward::capture`] loads it, after LibTorch's
//! CUDA part ([`crate::cuda::load`]), from an in-memory file. A build made without a CUDA
//! LibTorch's headers has no shim, and asking for a graph then says so.
//!
//! What a graph replays is fixed at capture: the kernels, the shapes and the addresses of
//! its input and output. [`GraphedForward::run`] copies the input into the captured input
//! tensor, replays, and returns a copy of the captured output.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock, PoisonError};

use libloading::os::unix::{Library, Symbol, RTLD_LOCAL, RTLD_NOW};
use tch::{Device, Tensor};

use crate::error::{Error, Result};

/// Ordinary runs before the capture, on the capture's stream: LibTorch and cuDNN
/// set up their per-stream state and pick algorithms on first use, which a capture must
/// not see.
const WARMUP_RUNS: usize = 2;

/// Room for a C++ exception's message.
const ERROR_LEN: usize = 1024;

type NewFn = unsafe extern "C" fn(c_int, *mut *mut c_void, *mut c_char, usize) -> c_int;
type StepFn = unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The shim's entry points (see `cuda/graphs.cpp`).
struct Shim {
    new: Symbol<NewFn>,
    enter: Symbol<StepFn>,
    begin: Symbol<StepFn>,
    end: Symbol<StepFn>,
    leave: Symbol<StepFn>,
    replay: Symbol<StepFn>,
    free: Symbol<FreeFn>,
    // Last, so that the symbols above go first; the library is never unloaded anyway.
    _library: Library,
}

/// The shim, loaded once per process, or why it cannot be.
///
/// # Errors
/// When this build has no shim, LibTorch has no CUDA or another version, or the shim does
/// not load.
fn shim() -> Result<&'static Shim> {
    static SHIM: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();
    SHIM.get_or_init(load_shim)
        .as_ref()
        .map_err(|why| Error::Invalid(why.clone()))
}

/// Whether this build carries the CUDA-graph shim (it needs a CUDA LibTorch's headers and
/// the CUDA runtime's at build time).
pub fn built_in() -> bool {
    cfg!(anydepth_cuda_graphs)
}

/// Loads the shim after LibTorch's CUDA part, whose symbols it uses.
///
/// # Errors
/// The reason, as a sentence that says what to do.
pub fn load() -> Result<()> {
    shim().map(|_| ())
}

/// Loads the shim and makes (and frees) a graph on CUDA device 0: whether graphs can be
/// used here.
///
/// # Errors
/// The reason, as a sentence (LibTorch's own message when it refuses).
pub fn probe() -> Result<()> {
    Handle::new(0).map(drop)
}

#[cfg(not(anydepth_cuda_graphs))]
fn load_shim() -> std::result::Result<Shim, String> {
    let why =
        option_env!("ANYDEPTH_CUDA_GRAPHS_MISSING").unwrap_or("no CUDA LibTorch to build with");
    Err(format!(
        "this build of anydepth has no CUDA graphs ({why}); rebuild it where the CUDA runtime \
         headers are found ($CUDA_HOME, or PyPI's torch with Triton), or run without \
         --cuda-graphs"
    ))
}

#[cfg(anydepth_cuda_graphs)]
fn load_shim() -> std::result::Result<Shim, String> {
    const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libanydepth_cuda_graphs.so"));

    /// The LibTorch version whose headers the shim was compiled with.
    const BUILT_WITH: &str = env!("ANYDEPTH_CUDA_GRAPHS_TORCH_VERSION");

    let libtorch = crate::cuda::load().map_err(str::to_string)?;
    // The shim lays out LibTorch's classes as its headers do: another version could
    // differ, so it is refused rather than risked.
    match libtorch.parent().and_then(crate::cuda::libtorch_version) {
        Some(running) if running.split('+').next() == Some(BUILT_WITH) => {}
        Some(running) => {
            return Err(format!(
                "this build's CUDA graphs were made for LibTorch {BUILT_WITH} and this is \
                 LibTorch {running}: rebuild anydepth against it, or run without --cuda-graphs"
            ));
        }
        None => {
            return Err(format!(
                "cannot tell the version of the LibTorch in {} (this build's CUDA graphs \
                 were made for {BUILT_WITH}); run without --cuda-graphs",
                libtorch.display()
            ));
        }
    }
    let library = open_in_memory(LIBRARY).or_else(|in_memory| {
        open_from_temp_file(LIBRARY).map_err(|from_file| {
            format!("cannot load the CUDA-graph library: {in_memory}; {from_file}")
        })
    })?;
    /// The entry point `name` (NUL-terminated), of type `T`.
    ///
    /// # Safety
    /// `T` must be the signature `cuda/graphs.cpp` gives `name`.
    unsafe fn get<T>(library: &Library, name: &[u8]) -> std::result::Result<Symbol<T>, String> {
        // SAFETY: as the caller promises.
        unsafe { library.get::<T>(name) }
            .map_err(|e| format!("the CUDA-graph library lacks a function: {e}"))
    }
    // SAFETY: each type below is the signature `cuda/graphs.cpp` gives the name.
    unsafe {
        Ok(Shim {
            new: get::<NewFn>(&library, b"anydepth_graph_new\0")?,
            enter: get::<StepFn>(&library, b"anydepth_graph_enter\0")?,
            begin: get::<StepFn>(&library, b"anydepth_graph_begin\0")?,
            end: get::<StepFn>(&library, b"anydepth_graph_end\0")?,
            leave: get::<StepFn>(&library, b"anydepth_graph_leave\0")?,
            replay: get::<StepFn>(&library, b"anydepth_graph_replay\0")?,
            free: get::<FreeFn>(&library, b"anydepth_graph_free\0")?,
            _library: library,
        })
    }
}

/// Loads `bytes` as a shared library from an in-memory file (nothing written to disk).
#[cfg(anydepth_cuda_graphs)]
fn open_in_memory(bytes: &[u8]) -> std::result::Result<Library, String> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};

    // SAFETY: `memfd_create` takes a NUL-terminated name and flags; on success the
    // returned descriptor is ours alone, and `File` takes ownership of it. `MFD_EXEC` asks
    // for an executable file where `vm.memfd_noexec` would make it non-executable; kernels
    // before 6.3 do not know the flag (EINVAL) and make every such file executable.
    let mut file = unsafe {
        let name = c"anydepth-cuda-graphs";
        let mut fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_EXEC);
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
        }
        if fd < 0 {
            return Err(format!(
                "no in-memory file ({})",
                std::io::Error::last_os_error()
            ));
        }
        std::fs::File::from_raw_fd(fd)
    };
    file.write_all(bytes)
        .map_err(|e| format!("cannot write the in-memory file ({e})"))?;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: `bytes` is the library built from `cuda/graphs.cpp` with the headers of the
    // LibTorch this process runs (its version checked by the caller); its LibTorch symbols
    // resolve against that LibTorch, whose CUDA part the caller loaded globally.
    unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("from memory: {e}"))
}

/// Loads `bytes` as a shared library from a file in the temporary folder, removed once
/// loaded: where in-memory files cannot hold code (`vm.memfd_noexec = 2`).
#[cfg(anydepth_cuda_graphs)]
fn open_from_temp_file(bytes: &[u8]) -> std::result::Result<Library, String> {
    use std::io::Write;

    let path = std::env::temp_dir().join(format!("anydepth-cuda-graphs-{}.so", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| file.write_all(bytes));
    let opened = written
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
        .and_then(|()| {
            // SAFETY: as in `open_in_memory`.
            unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
                .map_err(|e| format!("from {}: {e}", path.display()))
        });
    let _ = std::fs::remove_file(&path);
    opened
}

/// Calls a shim function that reports failure through a message buffer.
fn call(step: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut message = [0 as c_char; ERROR_LEN];
    if f(message.as_mut_ptr(), ERROR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated string of at most ERROR_LEN bytes.
    let text = unsafe { CStr::from_ptr(message.as_ptr()) }.to_string_lossy();
    let first = text.lines().next().unwrap_or("unknown error");
    Err(Error::Invalid(format!("CUDA graph {step} failed: {first}")))
}

/// One `at::cuda::CUDAGraph` and its side stream, freed on drop.
struct Handle {
    shim: &'static Shim,
    ptr: NonNull<c_void>,
}

// SAFETY: a CUDA graph may be replayed and freed from any thread; `GraphedForward` is only
// used through `&mut` or behind a lock, so one thread at a time.
unsafe impl Send for Handle {}

impl Handle {
    /// A graph on CUDA device `device`.
    fn new(device: usize) -> Result<Self> {
        let shim = shim()?;
        let device = c_int::try_from(device)
            .map_err(|_| Error::Invalid(format!("no CUDA device {device}")))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `anydepth_graph_new` writes a new graph to `ptr` when it returns 0.
        call("creation", |e, n| unsafe {
            (shim.new)(device, &mut ptr, e, n)
        })?;
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| Error::Invalid("CUDA graph creation returned nothing".into()))?;
        Ok(Self { shim, ptr })
    }

    fn step(&self, name: &str, f: &Symbol<StepFn>) -> Result<()> {
        // SAFETY: `ptr` is a live graph made by `anydepth_graph_new`.
        call(name, |e, n| unsafe { f(self.ptr.as_ptr(), e, n) })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `anydepth_graph_new` and is freed once, here.
        unsafe { (self.shim.free)(self.ptr.as_ptr()) }
    }
}

/// A forward pass captured for one input shape and kind on one CUDA device.
pub struct GraphedForward {
    input: Tensor,
    output: Tensor,
    // Last: dropped after the tensors that live in its memory pool.
    graph: Handle,
}

impl std::fmt::Debug for GraphedForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphedForward")
            .field("input", &self.input.size())
            .field("output", &self.output.size())
            .finish()
    }
}

impl GraphedForward {
    /// Captures `forward` on an input shaped like `example` (on a CUDA device), after
    /// [`WARMUP_RUNS`] ordinary runs on the capture's stream. `forward` must queue device
    /// work only: no copy to or from the host, no host synchronisation. Call it with
    /// gradients off.
    ///
    /// # Errors
    /// When `example` is not on a CUDA device, CUDA graphs are unavailable, or `forward`
    /// fails or cannot be captured.
    pub fn capture(example: &Tensor, forward: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        /// One capture at a time in this process: LibTorch hands out its pool streams
        /// round-robin (two captures could share one), and the device's random generator
        /// is in capture mode while one is open.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

        let Device::Cuda(device) = example.device() else {
            return Err(Error::Invalid(
                "CUDA graphs need a CUDA device (--device cuda)".into(),
            ));
        };
        let _capturing = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let graph = Handle::new(device)?;
        let input = copy_of(example)?;
        graph.step("set-up", &graph.shim.enter)?;
        let captured = catch_unwind(AssertUnwindSafe(|| -> Result<Tensor> {
            for _ in 0..WARMUP_RUNS {
                drop(forward(&input)?);
            }
            graph.step("capture", &graph.shim.begin)?;
            let output = forward(&input)?;
            graph.step("capture", &graph.shim.end)?;
            Ok(output)
        }));
        // Undoes a capture a failure left open, and goes back to the previous stream.
        let left = graph.step("clean-up", &graph.shim.leave);
        let output =
            captured.unwrap_or_else(|panic| Err(crate::estimator::inference_failed(panic)))?;
        left?;
        tracing::debug!(shape = ?input.size(), "captured a CUDA graph");
        Ok(Self {
            graph,
            input,
            output,
        })
    }

    /// The shape of the input this graph was captured for.
    pub fn input_size(&self) -> Vec<i64> {
        self.input.size()
    }

    /// Runs the captured forward pass on `x` (the captured shape; any kind, copied into
    /// the captured input) and returns a copy of its output.
    ///
    /// # Errors
    /// When `x` has another shape, or the replay fails.
    pub fn run(&mut self, x: &Tensor) -> Result<Tensor> {
        if x.size() != self.input.size() {
            return Err(Error::Invalid(format!(
                "a CUDA graph captured for input {:?} cannot run on {:?}",
                self.input.size(),
                x.size()
            )));
        }
        self.input.f_copy_(x)?;
        self.graph.step("replay", &self.graph.shim.replay)?;
        copy_of(&self.output)
    }
}

/// A copy of `t` in new memory (one copy kernel, no fill), with LibTorch's failures as
/// errors.
fn copy_of(t: &Tensor) -> Result<Tensor> {
    let mut copy = t.f_empty_like()?;
    copy.f_copy_(t)?;
    Ok(copy)
}
