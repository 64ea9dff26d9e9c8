//! A copy stream: photos go up to the GPU on a CUDA stream of their own, so that the copy
//! of the next batch overlaps the network running on the current one, instead of queuing
//! behind it on the compute stream.
//!
//! [`CopyStream::run`] runs host code with the copy stream current on the calling thread
//! (tensors it makes on the device are allocated for that stream and copied on it), and
//! marks the end of that work with an event; [`Copied::wait`] makes the compute stream wait
//! for it and tells LibTorch's caching allocator that the tensors are used there, so that
//! their memory is not reused by a later copy while the network still reads it. tch binds
//! neither streams nor events, so both go through the CUDA shim ([`crate::cuda_shim`]).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use tch::Tensor;

use crate::cuda_shim::{call, made, new_on_device, shim, Shim};
use crate::error::Result;

/// A high-priority CUDA stream from LibTorch's pool, for host-to-device copies.
pub struct CopyStream {
    shim: &'static Shim,
    ptr: NonNull<c_void>,
    device: usize,
}

// SAFETY: the pointer is a `c10::cuda::CUDAStream`, an immutable handle: any thread may
// make it current on itself (each thread's current stream is its own).
unsafe impl Send for CopyStream {}
// SAFETY: as above; nothing is ever written through `&CopyStream`.
unsafe impl Sync for CopyStream {}

impl std::fmt::Debug for CopyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyStream")
            .field("device", &self.device)
            .finish()
    }
}

impl CopyStream {
    /// A copy stream on CUDA device `device`.
    ///
    /// # Errors
    /// When the CUDA shim is missing or LibTorch cannot make the stream (no such device).
    pub fn new(device: usize) -> Result<Self> {
        let shim = shim()?;
        let ptr = new_on_device("copy stream", &shim.copy_stream_new, device)?;
        Ok(Self { shim, ptr, device })
    }

    /// Runs `queue` with this stream (and its device) current on the calling thread, then
    /// restores the thread's previous stream. Returns what `queue` returned, with the mark
    /// of the end of the work it queued, for the compute stream to wait on. A panic in
    /// `queue` carries on once the stream is restored.
    ///
    /// # Errors
    /// When LibTorch cannot switch streams or record the event.
    pub fn run<T>(&self, queue: impl FnOnce() -> T) -> Result<(T, Copied)> {
        let mut guard = std::ptr::null_mut();
        // SAFETY: `ptr` is a live stream; `anydepth_copy_begin` writes a new guard to
        // `guard` when it returns 0.
        call("copy stream switch", |e, n| unsafe {
            (self.shim.copy_begin)(self.ptr.as_ptr(), &mut guard, e, n)
        })?;
        let queued = catch_unwind(AssertUnwindSafe(queue));
        let mut event = std::ptr::null_mut();
        // SAFETY: `guard` came from `anydepth_copy_begin` on this thread, and
        // `anydepth_copy_end` frees it whatever it returns; it writes a new event to
        // `event` when it returns 0.
        let ended = call("copy stream event", |e, n| unsafe {
            (self.shim.copy_end)(guard, &mut event, e, n)
        });
        let copied = ended.and_then(|()| {
            made("copy stream event", event).map(|event| Copied {
                shim: self.shim,
                event,
            })
        });
        match queued {
            Ok(value) => Ok((value, copied?)),
            Err(panic) => {
                drop(copied); // the event, freed before the panic carries on
                resume_unwind(panic)
            }
        }
    }
}

impl Drop for CopyStream {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `anydepth_copy_stream_new` and is freed once, here.
        unsafe { (self.shim.copy_stream_free)(self.ptr.as_ptr()) }
    }
}

/// The end of the work queued by one [`CopyStream::run`].
pub struct Copied {
    shim: &'static Shim,
    event: NonNull<c_void>,
}

// SAFETY: a CUDA event may be waited on and destroyed from any thread.
unsafe impl Send for Copied {}

impl std::fmt::Debug for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Copied")
    }
}

impl Copied {
    /// Makes the calling thread's current stream on the copy's device wait for the copies,
    /// and marks `tensors` (made by them) as used on that stream.
    ///
    /// # Errors
    /// When LibTorch refuses (a CUDA error).
    pub fn wait(self, tensors: &[Tensor]) -> Result<()> {
        let pointers: Vec<*const c_void> = tensors.iter().map(|t| t.as_ptr().cast()).collect();
        // SAFETY: `event` is a live event; each pointer is a live `at::Tensor` (tch's
        // `C_tensor`), borrowed for the call.
        call("copy stream wait", |e, n| unsafe {
            (self.shim.copy_wait)(self.event.as_ptr(), pointers.as_ptr(), pointers.len(), e, n)
        })
    }
}

impl Drop for Copied {
    fn drop(&mut self) {
        // SAFETY: `event` came from `anydepth_copy_end` and is freed once, here.
        unsafe { (self.shim.copy_event_free)(self.event.as_ptr()) }
    }
}
