//! The CUDA shim: `cuda/shim.cpp`, a small C interface over the LibTorch C++ entry points
//! tch does not bind: `at::cuda::CUDAGraph` ([`crate::cuda_graph`]), the current-stream
//! guard, events and `record_stream` for a copy stream ([`crate::copy_stream`]), and the
//! caching allocator's memory statistics ([`crate::cuda_memory`]).
//!
//! The build compiles it into a shared library that this crate embeds; [`load`] loads it,
//! after LibTorch's CUDA part ([`crate::cuda::load`]), from an in-memory file. A build made
//! without a CUDA LibTorch's headers has no shim: asking for a CUDA graph then says so, and
//! uploads run on the compute stream.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use libloading::os::unix::{Library, Symbol, RTLD_LOCAL, RTLD_NOW};

use crate::error::{Error, Result};

/// Room for a C++ exception's message.
const ERROR_LEN: usize = 1024;

pub(crate) type NewFn = unsafe extern "C" fn(c_int, *mut *mut c_void, *mut c_char, usize) -> c_int;
pub(crate) type StepFn = unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> c_int;
pub(crate) type MakeFn =
    unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *mut c_char, usize) -> c_int;
pub(crate) type BeginFn =
    unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_char, usize) -> c_int;
pub(crate) type WaitFn =
    unsafe extern "C" fn(*mut c_void, *const *const c_void, usize, *mut c_char, usize) -> c_int;
pub(crate) type FreeFn = unsafe extern "C" fn(*mut c_void);
pub(crate) type StatsFn = unsafe extern "C" fn(c_int, *mut i64, *mut c_char, usize) -> c_int;
pub(crate) type DeviceFn = unsafe extern "C" fn(c_int, *mut c_char, usize) -> c_int;
pub(crate) type CallFn = unsafe extern "C" fn(*mut c_char, usize) -> c_int;

/// The shim's entry points (see `cuda/shim.cpp`).
pub(crate) struct Shim {
    pub(crate) graph_new: Symbol<NewFn>,
    pub(crate) graph_enter: Symbol<StepFn>,
    pub(crate) graph_new_beside: Symbol<MakeFn>,
    pub(crate) graph_begin: Symbol<BeginFn>,
    pub(crate) graph_end: Symbol<StepFn>,
    pub(crate) graph_leave: Symbol<StepFn>,
    pub(crate) graph_replay: Symbol<StepFn>,
    pub(crate) graph_free: Symbol<FreeFn>,
    pub(crate) copy_stream_new: Symbol<NewFn>,
    pub(crate) copy_stream_free: Symbol<FreeFn>,
    pub(crate) copy_begin: Symbol<MakeFn>,
    pub(crate) copy_end: Symbol<MakeFn>,
    pub(crate) copy_wait: Symbol<WaitFn>,
    pub(crate) copy_event_free: Symbol<FreeFn>,
    pub(crate) memory_stats: Symbol<StatsFn>,
    pub(crate) memory_reset_peaks: Symbol<DeviceFn>,
    pub(crate) memory_release_cached: Symbol<CallFn>,
    // Last, so that the symbols above go first; the library is never unloaded anyway.
    _library: Library,
}

/// The shim, loaded once per process, or why it cannot be.
///
/// # Errors
/// When this build has no shim, LibTorch has no CUDA or another version, or the shim does
/// not load.
pub(crate) fn shim() -> Result<&'static Shim> {
    static SHIM: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();
    SHIM.get_or_init(load_shim)
        .as_ref()
        .map_err(|why| Error::Invalid(why.clone()))
}

/// Whether this build carries the CUDA shim (it needs a CUDA LibTorch's headers and the
/// CUDA runtime's at build time).
pub fn built_in() -> bool {
    cfg!(anydepth_cuda_shim)
}

/// Loads the shim after LibTorch's CUDA part, whose symbols it uses.
///
/// # Errors
/// The reason, as a sentence that says what to do.
pub fn load() -> Result<()> {
    shim().map(|_| ())
}

#[cfg(not(anydepth_cuda_shim))]
fn load_shim() -> std::result::Result<Shim, String> {
    let why = option_env!("ANYDEPTH_CUDA_SHIM_MISSING").unwrap_or("no CUDA LibTorch to build with");
    Err(format!(
        "this build of anydepth has no CUDA shim ({why}); rebuild it where the CUDA runtime \
         headers are found ($CUDA_HOME, or PyPI's torch with Triton)"
    ))
}

#[cfg(anydepth_cuda_shim)]
fn load_shim() -> std::result::Result<Shim, String> {
    const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libanydepth_cuda_shim.so"));

    /// The LibTorch version whose headers the shim was compiled with.
    const BUILT_WITH: &str = env!("ANYDEPTH_CUDA_SHIM_TORCH_VERSION");

    let libtorch = crate::cuda::load().map_err(str::to_string)?;
    // The shim lays out LibTorch's classes as its headers do: another version could
    // differ, so it is refused rather than risked.
    match libtorch.parent().and_then(crate::cuda::libtorch_version) {
        Some(running) if running.split('+').next() == Some(BUILT_WITH) => {}
        Some(running) => {
            return Err(format!(
                "this build's CUDA shim was made for LibTorch {BUILT_WITH} and this is \
                 LibTorch {running}: rebuild anydepth against it"
            ));
        }
        None => {
            return Err(format!(
                "cannot tell the version of the LibTorch in {} (this build's CUDA shim \
                 was made for {BUILT_WITH})",
                libtorch.display()
            ));
        }
    }
    let library = open_in_memory(LIBRARY).or_else(|in_memory| {
        open_from_temp_file(LIBRARY)
            .map_err(|from_file| format!("cannot load the CUDA shim: {in_memory}; {from_file}"))
    })?;
    /// The entry point `name` (NUL-terminated), of type `T`.
    ///
    /// # Safety
    /// `T` must be the signature `cuda/shim.cpp` gives `name`.
    unsafe fn get<T>(library: &Library, name: &[u8]) -> std::result::Result<Symbol<T>, String> {
        // SAFETY: as the caller promises.
        unsafe { library.get::<T>(name) }
            .map_err(|e| format!("the CUDA shim lacks a function: {e}"))
    }
    // SAFETY: each type below is the signature `cuda/shim.cpp` gives the name.
    unsafe {
        Ok(Shim {
            graph_new: get::<NewFn>(&library, b"anydepth_graph_new\0")?,
            graph_enter: get::<StepFn>(&library, b"anydepth_graph_enter\0")?,
            graph_new_beside: get::<MakeFn>(&library, b"anydepth_graph_new_beside\0")?,
            graph_begin: get::<BeginFn>(&library, b"anydepth_graph_begin\0")?,
            graph_end: get::<StepFn>(&library, b"anydepth_graph_end\0")?,
            graph_leave: get::<StepFn>(&library, b"anydepth_graph_leave\0")?,
            graph_replay: get::<StepFn>(&library, b"anydepth_graph_replay\0")?,
            graph_free: get::<FreeFn>(&library, b"anydepth_graph_free\0")?,
            copy_stream_new: get::<NewFn>(&library, b"anydepth_copy_stream_new\0")?,
            copy_stream_free: get::<FreeFn>(&library, b"anydepth_copy_stream_free\0")?,
            copy_begin: get::<MakeFn>(&library, b"anydepth_copy_begin\0")?,
            copy_end: get::<MakeFn>(&library, b"anydepth_copy_end\0")?,
            copy_wait: get::<WaitFn>(&library, b"anydepth_copy_wait\0")?,
            copy_event_free: get::<FreeFn>(&library, b"anydepth_copy_event_free\0")?,
            memory_stats: get::<StatsFn>(&library, b"anydepth_memory_stats\0")?,
            memory_reset_peaks: get::<DeviceFn>(&library, b"anydepth_memory_reset_peaks\0")?,
            memory_release_cached: get::<CallFn>(&library, b"anydepth_memory_release_cached\0")?,
            _library: library,
        })
    }
}

/// Loads `bytes` as a shared library from an in-memory file (nothing written to disk).
#[cfg(anydepth_cuda_shim)]
fn open_in_memory(bytes: &[u8]) -> std::result::Result<Library, String> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};

    // SAFETY: `memfd_create` takes a NUL-terminated name and flags; on success the
    // returned descriptor is ours alone, and `File` takes ownership of it. `MFD_EXEC` asks
    // for an executable file where `vm.memfd_noexec` would make it non-executable; kernels
    // before 6.3 do not know the flag (EINVAL) and make every such file executable.
    let mut file = unsafe {
        let name = c"anydepth-cuda-shim";
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
    // SAFETY: `bytes` is the library built from `cuda/shim.cpp` with the headers of the
    // LibTorch this process runs (its version checked by the caller); its LibTorch symbols
    // resolve against that LibTorch, whose CUDA part the caller loaded globally.
    unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("from memory: {e}"))
}

/// Loads `bytes` as a shared library from a file in the temporary folder, removed once
/// loaded: where in-memory files cannot hold code (`vm.memfd_noexec = 2`).
#[cfg(anydepth_cuda_shim)]
fn open_from_temp_file(bytes: &[u8]) -> std::result::Result<Library, String> {
    use std::io::Write;

    let path = std::env::temp_dir().join(format!("anydepth-cuda-shim-{}.so", std::process::id()));
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

/// A new object of the shim on CUDA device `device`, made by `new` (one of the
/// `anydepth_*_new` functions); `what` names it in errors ("CUDA graph").
///
/// # Errors
/// When the device index is out of range or the shim refuses, with its message.
pub(crate) fn new_on_device(
    what: &str,
    new: &Symbol<NewFn>,
    device: usize,
) -> Result<NonNull<c_void>> {
    let index = device_index(device)?;
    let mut ptr = std::ptr::null_mut();
    // SAFETY: every `anydepth_*_new` takes a device index and writes a new object to `ptr`
    // when it returns 0.
    call(&format!("{what} creation"), |e, n| unsafe {
        new(index, &mut ptr, e, n)
    })?;
    made(what, ptr)
}

/// CUDA device `device` as the shim takes it.
///
/// # Errors
/// When `device` is beyond any device index.
pub(crate) fn device_index(device: usize) -> Result<c_int> {
    c_int::try_from(device).map_err(|_| Error::Invalid(format!("no CUDA device {device}")))
}

/// `ptr`, which a shim call that succeeded wrote; `what` names it in the error for a null
/// pointer ("CUDA graph").
pub(crate) fn made(what: &str, ptr: *mut c_void) -> Result<NonNull<c_void>> {
    NonNull::new(ptr).ok_or_else(|| Error::Invalid(format!("{what} creation returned nothing")))
}

/// Calls a shim function that reports failure through a message buffer; `what` names the
/// step in the error ("CUDA graph replay").
pub(crate) fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut message = [0 as c_char; ERROR_LEN];
    if f(message.as_mut_ptr(), ERROR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated string of at most ERROR_LEN bytes.
    let text = unsafe { CStr::from_ptr(message.as_ptr()) }.to_string_lossy();
    let first = text.lines().next().unwrap_or("unknown error");
    Err(Error::Invalid(format!("{what} failed: {first}")))
}
