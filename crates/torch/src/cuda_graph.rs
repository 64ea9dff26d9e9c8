//! CUDA graphs: a network's forward pass for one input shape, captured once and replayed
//! as a single launch, so that a small batch is not held back by the host queuing a few
//! hundred kernels one by one.
//!
//! tch binds neither `at::cuda::CUDAGraph` nor LibTorch's current-stream guard, so they
//! are reached through the CUDA shim ([`crate::cuda_shim`]).
//!
//! What a graph replays is fixed at capture: the kernels, the shapes and the addresses of
//! its input and output. [`GraphedForward::run`] copies the input into the captured input
//! tensor, replays, and returns a copy of the captured output.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use libloading::os::unix::Symbol;
use tch::{Device, Tensor};

use crate::cuda_shim::{call, made, new_on_device, shim, Shim, StepFn};
use crate::error::{Error, Result};

/// Ordinary runs before the capture, on the capture's stream: LibTorch and cuDNN
/// set up their per-stream state and pick algorithms on first use, which a capture must
/// not see.
const WARMUP_RUNS: usize = 2;

/// Loads the shim and makes (and frees) a graph on CUDA device 0: whether graphs can be
/// used here.
///
/// # Errors
/// The reason, as a sentence (LibTorch's own message when it refuses).
pub fn probe() -> Result<()> {
    Handle::new(0).map(drop)
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
        let ptr = new_on_device("CUDA graph", &shim.graph_new, device)?;
        Ok(Self { shim, ptr })
    }

    /// A graph captured on the side stream of `other`, so that it can use `other`'s
    /// memory pool: the caching allocator reuses a freed block only for the stream it was
    /// allocated on.
    fn beside(other: &Handle) -> Result<Self> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `other` is a live graph; `anydepth_graph_new_beside` writes a new graph
        // to `ptr` when it returns 0.
        call("CUDA graph creation", |e, n| unsafe {
            (other.shim.graph_new_beside)(other.ptr.as_ptr(), &mut ptr, e, n)
        })?;
        Ok(Self {
            shim: other.shim,
            ptr: made("CUDA graph", ptr)?,
        })
    }

    fn step(&self, name: &str, f: &Symbol<StepFn>) -> Result<()> {
        // SAFETY: `ptr` is a live graph made by `anydepth_graph_new` or `_new_beside`.
        call(&format!("CUDA graph {name}"), |e, n| unsafe {
            f(self.ptr.as_ptr(), e, n)
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `anydepth_graph_new` or `_new_beside` and is freed once, here.
        unsafe { (self.shim.graph_free)(self.ptr.as_ptr()) }
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
    /// With `share_memory_with`, a graph captured before on the same device, the new
    /// graph is captured on that graph's side stream and takes its activations from its
    /// memory pool instead of a pool of its own, so that the graphs of one network for
    /// several shapes hold about the activations of the largest. A replay may then
    /// overwrite the other graph's activations and captured output, which is safe as
    /// [`GraphedForward::run`] uses them: the graphs run one at a time on one stream
    /// (through `&mut`, or behind one lock), each run copying its output out before the
    /// next replay.
    ///
    /// # Errors
    /// When `example` is not on a CUDA device, CUDA graphs are unavailable, or `forward`
    /// fails or cannot be captured.
    pub fn capture(
        example: &Tensor,
        share_memory_with: Option<&GraphedForward>,
        forward: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        /// One capture at a time in this process: LibTorch hands out its pool streams
        /// round-robin (two captures could share one), and the device's random generator
        /// is in capture mode while one is open.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

        let Device::Cuda(device) = example.device() else {
            return Err(Error::Invalid(
                "CUDA graphs need a CUDA device (--device cuda)".into(),
            ));
        };
        if let Some(other) = share_memory_with {
            if other.input.device() != example.device() {
                return Err(Error::Invalid(format!(
                    "a CUDA graph on {:?} cannot share the memory of one on {:?}",
                    example.device(),
                    other.input.device()
                )));
            }
        }
        let _capturing = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let graph = match share_memory_with {
            Some(other) => Handle::beside(&other.graph)?,
            None => Handle::new(device)?,
        };
        let input = copy_of(example)?;
        graph.step("set-up", &graph.shim.graph_enter)?;
        let captured = catch_unwind(AssertUnwindSafe(|| -> Result<Tensor> {
            for _ in 0..WARMUP_RUNS {
                drop(forward(&input)?);
            }
            let share = share_memory_with.map_or(std::ptr::null_mut(), |g| g.graph.ptr.as_ptr());
            // SAFETY: both are live graphs on one side stream (`Handle::beside`); `share`
            // has been captured (a `GraphedForward` exists only after a successful capture).
            call("CUDA graph capture", |e, n| unsafe {
                (graph.shim.graph_begin)(graph.ptr.as_ptr(), share, e, n)
            })?;
            let output = forward(&input)?;
            graph.step("capture", &graph.shim.graph_end)?;
            Ok(output)
        }));
        // Undoes a capture a failure left open, and goes back to the previous stream.
        let left = graph.step("clean-up", &graph.shim.graph_leave);
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
        self.graph.step("replay", &self.graph.shim.graph_replay)?;
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
