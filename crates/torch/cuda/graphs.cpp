// CUDA graphs for anydepth: the few LibTorch C++ entry points that tch does not bind
// (`at::cuda::CUDAGraph` and the current-stream guard), behind a C interface.
//
// Built by `crates/torch/build.rs` into a shared library that the binary carries and loads
// at run time, after LibTorch's CUDA part (see `src/cuda_graph.rs`). It links nothing: its
// LibTorch symbols resolve against the libtorch_cuda.so and libc10_cuda.so already loaded.
//
// Every function returns 0 on success, or 1 with the C++ exception's message in `error`.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <cstring>
#include <exception>
#include <optional>

namespace {

// One graph on one device, the side stream it is captured on, and the guard that makes
// that device and stream the calling thread's current ones between `enter` and `leave`.
struct Graph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  bool capturing = false;

  explicit Graph(c10::DeviceIndex device)
      : side(c10::cuda::getStreamFromPool(false, device)) {}
};

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

}  // namespace

extern "C" {

// A new graph on CUDA device `device`, with a side stream from LibTorch's pool.
int anydepth_graph_new(int device, void** out, char* error, size_t len) {
  return guarded(
      [&] {
        const auto index = static_cast<c10::DeviceIndex>(device);
        c10::cuda::CUDAGuard on_device(index);
        *out = new Graph(index);
      },
      error, len);
}

// Makes the graph's device and side stream current on this thread, then waits for the
// device's earlier work: warm-up runs and the capture happen on the side stream (capture
// is not allowed on the default stream).
int anydepth_graph_enter(void* handle, char* error, size_t len) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(
      [&] {
        g->guard.emplace(g->side);
        c10::cuda::device_synchronize();
      },
      error, len);
}

// Starts capturing the work this thread queues on the side stream, into the graph's own
// memory pool. Other threads may keep using CUDA meanwhile.
int anydepth_graph_begin(void* handle, char* error, size_t len) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(
      [&] {
        g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        g->capturing = true;
      },
      error, len);
}

// Ends the capture and instantiates the graph.
int anydepth_graph_end(void* handle, char* error, size_t len) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(
      [&] {
        g->capturing = false;
        g->graph.capture_end();
      },
      error, len);
}

// Ends a capture left open by a failure (its error is dropped), waits for the side stream
// and restores the thread's previous current stream. Safe to call at any point.
int anydepth_graph_leave(void* handle, char* error, size_t len) {
  auto* g = static_cast<Graph*>(handle);
  if (g->capturing) {
    g->capturing = false;
    char ignored[8];
    guarded([&] { g->graph.capture_end(); }, ignored, sizeof ignored);
  }
  return guarded(
      [&] {
        if (g->guard.has_value()) {
          g->side.synchronize();
          g->guard.reset();
        }
      },
      error, len);
}

// Replays the captured work on the current stream of the graph's device.
int anydepth_graph_replay(void* handle, char* error, size_t len) {
  auto* g = static_cast<Graph*>(handle);
  return guarded([&] { g->graph.replay(); }, error, len);
}

// Frees the graph and its memory pool.
void anydepth_graph_free(void* handle) {
  try {
    delete static_cast<Graph*>(handle);
  } catch (...) {
  }
}

}  // extern "C"
