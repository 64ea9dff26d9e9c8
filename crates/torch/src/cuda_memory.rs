//! How much GPU memory LibTorch's caching allocator holds: by tensors, and reserved from
//! the device (tensors, its cache of freed blocks, CUDA graphs' memory pools), now and at
//! the peak. tch binds none of it, so it goes through the CUDA shim ([`crate::cuda_shim`]).
#![allow(unsafe_code)]

use anydepth_model::DeviceMemory;

use crate::cuda_shim::{call, device_index, shim};
use crate::error::Result;

/// The memory LibTorch holds on CUDA device `device`, with its peaks since the last
/// [`reset_peaks`] (or since the process started).
///
/// # Errors
/// When the CUDA shim is missing, or there is no such device.
pub fn device_memory(device: usize) -> Result<DeviceMemory> {
    let shim = shim()?;
    let index = device_index(device)?;
    let mut bytes = [0i64; 4];
    // SAFETY: `anydepth_memory_stats` writes four values into `bytes` when it returns 0.
    call("reading the device memory", |e, n| unsafe {
        (shim.memory_stats)(index, bytes.as_mut_ptr(), e, n)
    })?;
    let [allocated, peak_allocated, reserved, peak_reserved] =
        bytes.map(|b| u64::try_from(b).unwrap_or(0));
    Ok(DeviceMemory {
        allocated,
        peak_allocated,
        reserved,
        peak_reserved,
    })
}

/// Returns the caching allocator's unused blocks to the devices (`torch.cuda.empty_cache`),
/// so that what it reserves afterwards is what is in use: the copies a model's weights
/// were converted from, for one.
///
/// # Errors
/// When the CUDA shim is missing.
pub fn release_cached() -> Result<()> {
    let shim = shim()?;
    // SAFETY: `anydepth_memory_release_cached` takes a message buffer.
    call("releasing the allocator's cache", |e, n| unsafe {
        (shim.memory_release_cached)(e, n)
    })
}

/// Starts the peaks of [`device_memory`] on CUDA device `device` again from what is held
/// now.
///
/// # Errors
/// As [`device_memory`].
pub fn reset_peaks(device: usize) -> Result<()> {
    let shim = shim()?;
    let index = device_index(device)?;
    // SAFETY: `anydepth_memory_reset_peaks` takes a device index and a message buffer.
    call("resetting the device memory peaks", |e, n| unsafe {
        (shim.memory_reset_peaks)(index, e, n)
    })
}
