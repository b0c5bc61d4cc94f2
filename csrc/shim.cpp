// The few libtorch entry points samix needs that tch 0.24 does not expose: the fused multi-tensor
// SGD, AdamW and lerp kernels, gradient-norm clipping in multi-tensor kernels, autocast with an explicit dtype, channels-last memory order, the CUDA caching allocator's statistics,
// and CUDA-graph capture. Each function catches every C++ exception and returns it as a malloc'd
// message (NULL on success) that the caller frees with samix_free_error; tensors come in as the
// `at::Tensor*` handles tch hands out. Compiled by build.rs; the CUDA half only when libtorch has
// CUDA and the CUDA headers are found (SAMIX_WITH_CUDA).
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_lerp.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <ATen/ops/clamp_max.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "guarded.h"

#ifdef SAMIX_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using samix::error_message;
using samix::guarded;
using samix::tensor_list;

#ifdef SAMIX_WITH_CUDA
// A graph plus the side stream it is captured and warmed up on (capture is illegal on the
// legacy default stream). Only functions exported by libc10_cuda / libtorch_cuda are used (no
// inline CUDA-runtime calls), so the binary needs no direct link to libcudart.
struct Graph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream stream;
  std::optional<c10::cuda::CUDAStream> previous;
  explicit Graph(c10::DeviceIndex device) : stream(c10::cuda::getStreamFromPool(false, device)) {}
};
#endif

} // namespace

extern "C" {

void samix_free_error(char *e) { std::free(e); }

// SGD over one parameter group in a few multi-tensor kernels (torch.optim.SGD(fused=True)).
// `lr` is a 0-dim tensor so a captured graph reads the current value at replay.
// `n_buffers` is `n`, or 0 without momentum.
char *samix_fused_sgd(at::Tensor **params, at::Tensor **grads, size_t n, at::Tensor **buffers, size_t n_buffers,
                      double weight_decay, double momentum, at::Tensor *lr, bool nesterov) {
  return guarded([&] {
    at::_fused_sgd_(tensor_list(params, n), tensor_list(grads, n), tensor_list(buffers, n_buffers), weight_decay, momentum, *lr,
                    /*dampening=*/0.0, nesterov, /*maximize=*/false, /*is_first_step=*/false);
  });
}

// AdamW over one parameter group in a few multi-tensor kernels (torch.optim.AdamW(fused=True)):
// the step counters (0-dim float tensors on the parameters' device) are advanced first, as
// torch's `_fused_adamw` does before the kernel, which then reads them for the bias corrections.
char *samix_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs, at::Tensor **exp_avg_sqs,
                        at::Tensor **steps, size_t n, at::Tensor *lr, double beta1, double beta2, double weight_decay,
                        double eps) {
  return guarded([&] {
    auto step_list = tensor_list(steps, n);
    at::_foreach_add_(step_list, at::Scalar(1));
    at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n), tensor_list(exp_avg_sqs, n),
                      /*max_exp_avg_sqs=*/{}, step_list, *lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  });
}

// Scales the gradients so their joint 2-norm is at most `max_norm`, as
// torch.nn.utils.clip_grad_norm_ (foreach path): the norm over the per-tensor norms, the
// factor max_norm / (norm + 1e-6) capped at 1. Stays on the device (no host sync); the joint
// norm before clipping comes back as a new 0-dim tensor through `total`.
char *samix_clip_grad_norm(at::Tensor **grads, size_t n, double max_norm, at::Tensor **total) {
  return guarded([&] {
    auto list = tensor_list(grads, n);
    auto norms = at::_foreach_norm(list, 2);
    at::Tensor norm = at::linalg_vector_norm(at::stack(norms), 2);
    // torch writes `max_norm / (norm + 1e-6)`, which Tensor.__rdiv__ computes as a reciprocal
    // times max_norm: the same here, to the last bit.
    at::Tensor factor = at::clamp_max((norm + 1e-6).reciprocal() * max_norm, 1.0);
    at::_foreach_mul_(list, factor);
    *total = new at::Tensor(std::move(norm));
  });
}

// self[i] += weight · (other[i] − self[i]) for all i, in multi-tensor kernels.
char *samix_foreach_lerp(at::Tensor **self, at::Tensor **other, size_t n, double weight) {
  return guarded([&] { at::_foreach_lerp_(tensor_list(self, n), tensor_list(other, n), at::Scalar(weight)); });
}

// The autocast state of one device type that a region changes and must give back.
struct AutocastState {
  bool enabled;
  int dtype; // at::ScalarType as an int
  bool cache;
};

// Enters an autocast region for `cuda` (else CPU) with `dtype` (0 = bfloat16, 1 = float16) and
// the cast-weight cache on or off (off for CUDA-graph capture, as torch.cuda.graph requires);
// the state it replaces comes back through `saved`, for samix_autocast_exit.
char *samix_autocast_enter(bool cuda, int dtype, bool cache, AutocastState *saved) {
  return guarded([&] {
    at::DeviceType dev = cuda ? at::kCUDA : at::kCPU;
    *saved = {at::autocast::is_autocast_enabled(dev), static_cast<int>(at::autocast::get_autocast_dtype(dev)),
              at::autocast::is_autocast_cache_enabled()};
    at::autocast::set_autocast_cache_enabled(cache);
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kHalf : at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
  });
}

// Leaves the region: restores the state `samix_autocast_enter` saved; leaving the outermost
// region clears the cast cache, as torch.autocast's __exit__ does.
char *samix_autocast_exit(bool cuda, const AutocastState *saved) {
  return guarded([&] {
    at::DeviceType dev = cuda ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev, saved->enabled);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(saved->dtype));
    at::autocast::set_autocast_cache_enabled(saved->cache);
  });
}

// `*out` = a new handle to `t` in channels-last (NHWC) memory order (the same tensor when it
// already is); tch takes ownership and frees it with `delete`.
char *samix_channels_last(at::Tensor *t, at::Tensor **out) {
  return guarded([&] { *out = new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast)); });
}

char *samix_is_channels_last(at::Tensor *t, bool *out) {
  return guarded([&] { *out = t->dim() == 4 && t->is_contiguous(at::MemoryFormat::ChannelsLast); });
}

bool samix_has_cuda_support() {
#ifdef SAMIX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Peak and current bytes held in tensors by the caching allocator on `device` since the last
// reset (torch.cuda.max_memory_allocated / memory_allocated), and the peak reserved.
char *samix_cuda_memory(int device, int64_t *peak_allocated, int64_t *allocated, int64_t *peak_reserved) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const size_t all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *peak_allocated = stats.allocated_bytes[all].peak;
    *allocated = stats.allocated_bytes[all].current;
    *peak_reserved = stats.reserved_bytes[all].peak;
  });
#else
  (void)device; (void)peak_allocated; (void)allocated; (void)peak_reserved;
  return error_message("samix was built without CUDA support");
#endif
}

char *samix_cuda_reset_peak(int device) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] { c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device)); });
#else
  (void)device;
  return error_message("samix was built without CUDA support");
#endif
}

char *samix_graph_new(int device, void **out) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] { *out = new Graph(static_cast<c10::DeviceIndex>(device)); });
#else
  (void)device; (void)out;
  return error_message("CUDA graphs need a CUDA build of samix");
#endif
}

// Makes the graph's side stream current (enter = true) or restores the previous one.
char *samix_graph_stream(void *g, bool enter) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] {
    auto *graph = static_cast<Graph *>(g);
    if (enter) {
      c10::cuda::device_synchronize();
      graph->previous.emplace(c10::cuda::getCurrentCUDAStream(graph->stream.device_index()));
      c10::cuda::setCurrentCUDAStream(graph->stream);
    } else if (graph->previous) {
      c10::cuda::device_synchronize();
      c10::cuda::setCurrentCUDAStream(*graph->previous);
      graph->previous.reset();
    }
  });
#else
  (void)g; (void)enter;
  return error_message("CUDA graphs need a CUDA build of samix");
#endif
}

// Begins (begin = true) or ends capture on the graph's side stream, which must be current.
char *samix_graph_capture(void *g, bool begin) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] {
    auto *graph = static_cast<Graph *>(g);
    if (begin) {
      c10::cuda::device_synchronize();
      graph->graph.capture_begin();
    } else {
      graph->graph.capture_end();
    }
  });
#else
  (void)g; (void)begin;
  return error_message("CUDA graphs need a CUDA build of samix");
#endif
}

char *samix_graph_replay(void *g) {
#ifdef SAMIX_WITH_CUDA
  return guarded([&] { static_cast<Graph *>(g)->graph.replay(); });
#else
  (void)g;
  return error_message("CUDA graphs need a CUDA build of samix");
#endif
}

void samix_graph_free(void *g) {
#ifdef SAMIX_WITH_CUDA
  delete static_cast<Graph *>(g);
#else
  (void)g;
#endif
}

} // extern "C"
