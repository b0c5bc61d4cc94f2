// PyTorch's c10d engine for samix's data-parallel training: a TCPStore rendezvous, a Gloo process
// group over it, and the few collectives training needs (all-reduce, broadcast, all-gather,
// barrier), each waited for within the group's timeout. Gloo's headers are not in the torch
// wheel; third_party/gloo carries the ones ProcessGroupGloo.hpp includes (see its README).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "guarded.h"

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// Launches one collective per tensor (Gloo runs them on its worker threads, so buckets overlap
// one another), then waits for every one; the first failure is rethrown after all have ended.
template <typename Launch> void run_each(Group *g, std::vector<at::Tensor> &tensors, Launch launch) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(tensors.size());
  for (auto &t : tensors) {
    std::vector<at::Tensor> one{t};
    works.push_back(launch(one));
  }
  // One deadline for the lot: a stuck peer ends the call after the timeout, not once per bucket.
  auto deadline = std::chrono::steady_clock::now() + g->timeout;
  std::exception_ptr first;
  for (auto &w : works) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    try {
      w->wait(std::max(left, std::chrono::milliseconds(1)));
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

} // namespace

extern "C" {

// Connects to (rank 0 of a launch without torchrun's agent store: hosts) the TCPStore at
// host:port, then forms a Gloo group of `world` ranks under `prefix`. Every wait is bounded by
// `timeout_ms`.
char *samix_pg_new(const char *host, uint16_t port, int rank, int world, bool host_store, const char *prefix,
                   int64_t timeout_ms, void **out) {
  return samix::guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = host_store;
    opts.numWorkers = world;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new Group{store, backend, timeout};
  });
}

void samix_pg_free(void *g) { delete static_cast<Group *>(g); }

// In place: op 0 = sum, 1 = max. Each tensor is its own collective (a bucket).
char *samix_pg_allreduce(void *g, at::Tensor **ts, size_t n, int op) {
  return samix::guarded([&] {
    auto *group = static_cast<Group *>(g);
    auto tensors = samix::tensor_list(ts, n);
    c10d::AllreduceOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
    o.timeout = group->timeout;
    run_each(group, tensors, [&](std::vector<at::Tensor> &one) { return group->backend->allreduce(one, o); });
  });
}

// In place: every tensor takes rank `root`'s values.
char *samix_pg_broadcast(void *g, at::Tensor **ts, size_t n, int root) {
  return samix::guarded([&] {
    auto *group = static_cast<Group *>(g);
    auto tensors = samix::tensor_list(ts, n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = group->timeout;
    run_each(group, tensors, [&](std::vector<at::Tensor> &one) { return group->backend->broadcast(one, o); });
  });
}

// `out` (world × input's shape, contiguous) receives every rank's `input` in rank order.
char *samix_pg_allgather(void *g, at::Tensor *input, at::Tensor *out) {
  return samix::guarded([&] {
    auto *group = static_cast<Group *>(g);
    c10d::AllgatherOptions o;
    o.timeout = group->timeout;
    auto work = group->backend->_allgather_base(*out, *input, o);
    work->wait(group->timeout);
  });
}

char *samix_pg_barrier(void *g) {
  return samix::guarded([&] {
    auto *group = static_cast<Group *>(g);
    c10d::BarrierOptions o;
    o.timeout = group->timeout;
    group->backend->barrier(o)->wait(group->timeout);
  });
}

} // extern "C"
