// The error convention of samix's C++ shims: every entry point catches each C++ exception and
// returns its message malloc'd (NULL on success) for the caller to free with samix_free_error.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace samix {

inline char *error_message(const char *what) {
  size_t n = std::strlen(what) + 1;
  char *out = static_cast<char *>(std::malloc(n));
  if (out != nullptr) std::memcpy(out, what, n);
  return out;
}

template <typename F> char *guarded(F &&f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception &e) {
    return error_message(e.what());
  } catch (...) {
    return error_message("unknown C++ exception");
  }
}

inline std::vector<at::Tensor> tensor_list(at::Tensor **ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

} // namespace samix
