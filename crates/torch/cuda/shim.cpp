// The few LibTorch C++ entry points anydepth needs and tch does not bind, behind a C
// interface: CUDA graphs (`at::cuda::CUDAGraph`), the current-stream guard, the events
// and `record_stream` of a copy stream, and the caching allocator's memory statistics.
//
// Built by `crates/torch/build.rs` into a shared library that the binary carries and loads
// at run time, after LibTorch's CUDA part (see `src/cuda_shim.rs`). It links nothing: its
// LibTorch symbols resolve against the libtorch_cuda.so and libc10_cuda.so already loaded.
//
// Every function but the `_free` ones returns 0 on success, or 1 with the C++ exception's
// message in `error`.

#include <ATen/Context.h>
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>

namespace {

int fail(const char* message, char* error, size_t len) {
  if (error != nullptr && len > 0) {
    std::strncpy(error, message, len - 1);
    error[len - 1] = '\0';
  }
  return 1;
}

template <typename F>
int guarded(F&& body, char* error, size_t len) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), error, len);
  } catch (...) {
    return fail("unknown C++ exception", error, len);
  }
}

// CUDA device `device` as LibTorch indexes it, checked, with LibTorch's CUDA state (the
// caching allocator's included) made if nothing has used CUDA yet.
c10::DeviceIndex checked_device(int device) {
  TORCH_CHECK(device >= 0 && device < c10::cuda::device_count(), "no CUDA device ", device,
              " (", static_cast<int>(c10::cuda::device_count()), " found)");
  at::globalContext().lazyInitDevice(c10::DeviceType::CUDA);
  return static_cast<c10::DeviceIndex>(device);
}

// Runs `body`, dropping any exception: for clean-up after a failure already reported.
template <typename F>
bool quietly(F&& body) {
  try {
    body();
    return true;
  } catch (...) {
    return false;
  }
}

// A CUDAGraph that can undo a capture that failed. `capture_end` throws at its first
// failing step and leaves the rest undone: the caching allocators still route this
// graph's allocations to its private pool (through a filter that points at this object),
// the pool is never released (`reset` releases it only after a successful end), and the
// device's random generator stays in capture mode.
struct Graph : at::cuda::CUDAGraph {
  // `capture_begin` returned: this capture holds a reference to its memory pool.
  bool began = false;

  void abandon_capture() {
    if (capture_ended_ || capture_dev_ == UNDEFINED_DEVICE) {
      return;  // ended (the destructor releases the pool), or never began
    }
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(capture_stream_.stream(), &status) == cudaSuccess &&
        status != cudaStreamCaptureStatusNone) {
      cudaGraph_t partial = nullptr;
      cudaStreamEndCapture(capture_stream_.stream(), &partial);
      if (partial != nullptr) {
        cudaGraphDestroy(partial);
      }
    }
    (void)cudaGetLastError();  // the capture's error is not the next call's
    if (mempool_id_.first != 0 || mempool_id_.second != 0) {
      // The pool's reference is this capture's when `capture_begin` returned, or when
      // the redirection this call ends was begun (a `capture_begin` that failed later);
      // a `capture_end` that failed after ending the redirection still holds it.
      const bool device_ended = quietly([&] {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(capture_dev_, mempool_id_);
      });
      if (device_ended || began) {
        quietly([&] {
          c10::cuda::CUDACachingAllocator::releasePool(capture_dev_, mempool_id_);
        });
      }
      const bool host_ended = quietly(
          [&] { at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(mempool_id_); });
      if (host_ended || began) {
        quietly([&] { at::getHostAllocator(at::kCUDA)->release_pool(mempool_id_); });
      }
    }
    // What `CUDAGeneratorState::capture_epilogue` does, which LibTorch does not export.
    // The states stay registered: the destructor unregisters this graph from them.
    for (auto& entry : captured_generator_states_) {
      entry.first->capturing_ = false;
    }
    // Undone: a second call releases nothing (the destructor releases only after a
    // successful end).
    began = false;
    mempool_id_ = {0, 0};
  }
};

// One graph on one device, the side stream it is captured on, and the guard that makes
// that device and stream the calling thread's current ones between `enter` and `leave`.
struct Capture {
  Graph graph;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStreamGuard> guard;

  explicit Capture(c10::DeviceIndex device)
      : side(c10::cuda::getStreamFromPool(false, device)) {}
  explicit Capture(const c10::cuda::CUDAStream& stream) : side(stream) {}
};

}  // namespace

extern "C" {

// A new graph on CUDA device `device`, with a side stream from LibTorch's pool.
int anydepth_graph_new(int device, void** out, char* error, size_t len) {
  return guarded(
      [&] {
        const auto index = checked_device(device);
        c10::cuda::CUDAGuard on_device(index);
        *out = new Capture(index);
      },
      error, len);
}

// A new graph captured on the side stream of `other`: graphs that share a memory pool
// must be captured on one stream, since the caching allocator reuses a freed block only
// for the stream it was allocated on.
int anydepth_graph_new_beside(void* other, void** out, char* error, size_t len) {
  return guarded(
      [&] {
        const auto& side = static_cast<Capture*>(other)->side;
        c10::cuda::CUDAGuard on_device(side.device_index());
        *out = new Capture(side);
      },
      error, len);
}

// Makes the graph's device and side stream current on this thread, then waits for the
// device's earlier work: warm-up runs and the capture happen on the side stream (capture
// is not allowed on the default stream).
int anydepth_graph_enter(void* handle, char* error, size_t len) {
  auto* c = static_cast<Capture*>(handle);
  return guarded(
      [&] {
        c->guard.emplace(c->side);
        c10::cuda::device_synchronize();
      },
      error, len);
}

// Starts capturing the work this thread queues on the side stream, into the memory pool
// of the graph `share` (captured earlier on the same side stream, see
// `anydepth_graph_new_beside`), or a pool of its own when `share` is null. The
// allocator's cached blocks are returned to the device first, as PyTorch's
// `torch.cuda.graph` does, since none can be reclaimed while a capture is open (the
// shared pool keeps its own). Other threads may keep using CUDA meanwhile.
int anydepth_graph_begin(void* handle, void* share, char* error, size_t len) {
  auto* c = static_cast<Capture*>(handle);
  return guarded(
      [&] {
        const auto pool = share != nullptr ? static_cast<Capture*>(share)->graph.pool()
                                           : c10::MempoolId_t{0, 0};
        c->side.synchronize();
        c10::cuda::CUDACachingAllocator::emptyCache();
        c->graph.capture_begin(pool, cudaStreamCaptureModeThreadLocal);
        c->graph.began = true;
      },
      error, len);
}

// Ends the capture and instantiates the graph.
int anydepth_graph_end(void* handle, char* error, size_t len) {
  auto* c = static_cast<Capture*>(handle);
  return guarded(
      [&] { c->graph.capture_end(); },
      error, len);
}

// Undoes a capture a failure left open or half-ended, waits for the side stream and
// restores the thread's previous device and stream. Safe to call at any point after
// `enter`.
int anydepth_graph_leave(void* handle, char* error, size_t len) {
  auto* c = static_cast<Capture*>(handle);
  c->graph.abandon_capture();  // nothing to undo after a successful end, or no begin
  const int status = guarded(
      [&] {
        if (c->guard.has_value()) {
          c->side.synchronize();
        }
      },
      error, len);
  c->guard.reset();
  return status;
}

// Replays the captured work on the current stream of the graph's device.
int anydepth_graph_replay(void* handle, char* error, size_t len) {
  auto* c = static_cast<Capture*>(handle);
  return guarded([&] { c->graph.replay(); }, error, len);
}

// Frees the graph and its share of its memory pool, which goes with the last graph that
// uses it (never while a capture is open: `leave` first).
void anydepth_graph_free(void* handle) {
  delete static_cast<Capture*>(handle);
}

// A copy stream: a high-priority stream from LibTorch's pool on CUDA device `device`, for
// host-to-device copies that overlap the network on the compute stream. Graphs take their
// side streams from the low-priority pool, so a copy queued from another thread can never
// land on a stream being captured; a device with a single stream priority, where LibTorch
// would serve both from one pool, gets no copy stream.
int anydepth_copy_stream_new(int device, void** out, char* error, size_t len) {
  return guarded(
      [&] {
        const auto index = checked_device(device);
        c10::cuda::CUDAGuard on_device(index);
        int least = 0;
        int greatest = 0;
        C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        TORCH_CHECK(least != greatest,
                    "this GPU has a single stream priority, so no copy stream apart from "
                    "the graphs' streams");
        *out = new c10::cuda::CUDAStream(c10::cuda::getStreamFromPool(true, index));
      },
      error, len);
}

void anydepth_copy_stream_free(void* stream) {
  delete static_cast<c10::cuda::CUDAStream*>(stream);
}

// Makes the copy stream (and its device) current on this thread until
// `anydepth_copy_end`: tensors made meanwhile are allocated for it and copied on it.
int anydepth_copy_begin(void* stream, void** guard, char* error, size_t len) {
  return guarded(
      [&] {
        *guard = new c10::cuda::CUDAStreamGuard(*static_cast<c10::cuda::CUDAStream*>(stream));
      },
      error, len);
}

// Records an event after the work queued on the copy stream since `anydepth_copy_begin`,
// and restores the thread's previous stream and device (also when recording fails).
int anydepth_copy_end(void* guard, void** event, char* error, size_t len) {
  auto* g = static_cast<c10::cuda::CUDAStreamGuard*>(guard);
  const int status = guarded(
      [&] {
        auto recorded = std::make_unique<c10::cuda::CUDAEvent>();
        recorded->record(g->current_stream());
        *event = recorded.release();
      },
      error, len);
  delete g;
  return status;
}

// Makes the current stream of the event's device wait for the copies the event marks, and
// tells the caching allocator that each of the `n` tensors is used on that stream, so that
// their memory is not handed back to the copy stream before that use is over.
int anydepth_copy_wait(void* event, const void* const* tensors, size_t n, char* error,
                       size_t len) {
  auto* e = static_cast<c10::cuda::CUDAEvent*>(event);
  return guarded(
      [&] {
        const auto compute = c10::cuda::getCurrentCUDAStream(e->device_index());
        e->block(compute);
        for (size_t i = 0; i < n; ++i) {
          static_cast<const at::Tensor*>(tensors[i])->record_stream(compute);
        }
      },
      error, len);
}

void anydepth_copy_event_free(void* event) {
  delete static_cast<c10::cuda::CUDAEvent*>(event);
}

// The caching allocator's bytes on CUDA device `device`, into `bytes[0..4]`: held by
// tensors now and at the peak, reserved from the device (tensors, the allocator's cache
// and CUDA graphs' pools) now and at the peak; peaks since the last
// `anydepth_memory_reset_peaks`, or since LibTorch started.
int anydepth_memory_stats(int device, int64_t* bytes, char* error, size_t len) {
  return guarded(
      [&] {
        const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(checked_device(device));
        constexpr auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
        bytes[0] = stats.allocated_bytes[all].current;
        bytes[1] = stats.allocated_bytes[all].peak;
        bytes[2] = stats.reserved_bytes[all].current;
        bytes[3] = stats.reserved_bytes[all].peak;
      },
      error, len);
}

// Returns the caching allocator's unused blocks to the devices (`torch.cuda.empty_cache`),
// so that what it reserves afterwards is what is in use.
int anydepth_memory_release_cached(char* error, size_t len) {
  return guarded([&] { c10::cuda::CUDACachingAllocator::emptyCache(); }, error, len);
}

// Starts the peaks of `anydepth_memory_stats` on CUDA device `device` again from the bytes
// held now.
int anydepth_memory_reset_peaks(int device, char* error, size_t len) {
  return guarded(
      [&] {
        c10::cuda::CUDACachingAllocator::resetPeakStats(checked_device(device));
      },
      error, len);
}

}  // extern "C"
