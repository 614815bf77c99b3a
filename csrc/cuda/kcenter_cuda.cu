// CUDA k-center greedy: the factory of the device-resident state (state.cuh,
// instantiated per storage type in kcenter_<dtype>.cu) and build facts.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kcenter_cuda.h"
#include "kernels.cuh"
#include "state.cuh"

#ifndef PCS_CUDA_ARCHS
#define PCS_CUDA_ARCHS "unknown"
#endif

namespace pcoreset {
namespace cuda {

namespace {

void check_options(const void* x, const StateOptions& o) {
  const KCenterParams& p = o.params;
  auto bad = [](const std::string& m) { throw std::invalid_argument("pcoreset CUDA: " + m); };
  if (o.dtype != "float16" && o.dtype != "bfloat16" && o.dtype != "float32" && o.dtype != "float64")
    bad("dtype='" + o.dtype + "' is not one of float16, bfloat16, float32, float64");
  if (p.n < 1 || p.c < 1)
    bad("x must be non-empty, got shape (" + std::to_string(p.n) + ", " + std::to_string(p.c) + ")");
  // packed argmax keys and the pass's 32-bit row indices: n < 2^32 - 64
  if (p.n >= (int64_t(1) << 32) - 64) bad("x has too many rows: " + std::to_string(p.n) + " (at most 2^32 - 65)");
  if (p.c >= int64_t(1) << 31) bad("x has too many columns: " + std::to_string(p.c));
  if (!(p.temperature > 0.0)) bad("temperature must be > 0, got " + std::to_string(p.temperature));
  if (!x) bad("x is a null device pointer");
  if (o.device < 0) bad("device must be >= 0, got " + std::to_string(o.device));
}

}  // namespace

std::unique_ptr<State> make_state(const void* x, const StateOptions& o, void* stream) {
  check_options(x, o);
  if (o.dtype == "float32") return make_state_f32(x, o, stream);
  if (o.dtype == "float64") return make_state_f64(x, o, stream);
  if (o.dtype == "float16") return make_state_f16(x, o, stream);
  return make_state_bf16(x, o, stream);
}

size_t state_bytes(const std::string& dtype, int64_t n, int64_t c, bool from_logits, int64_t n_centers,
                   int64_t budget) {
  const size_t a = dtype == "float64" ? 8 : 4;
  const size_t un = static_cast<size_t>(n), uc = static_cast<size_t>(c);
  const size_t centers = static_cast<size_t>(std::max<int64_t>(64, n_centers + budget));
  size_t b = un * (a + 4) + uc * a + (from_logits ? un * 2 * a : 0);  // mind, nearest, cvec, softmax
  b += centers * (uc + 2) * a;                                         // center values, radius, dcc
  b += static_cast<size_t>(std::max<int64_t>(64, budget + 1)) * (8 + 8 + (a == 8 ? 16 : 8));  // picks, radii, slots
  if (a == 8) b += kMaxGridBlocks * 16;
  return b + sizeof(Ctl);
}

std::string compiled_archs() { return PCS_CUDA_ARCHS; }
int cuda_runtime_version() { return CUDART_VERSION; }
int nvcc_version() { return __CUDACC_VER_MAJOR__ * 1000 + __CUDACC_VER_MINOR__ * 10; }

}  // namespace cuda
}  // namespace pcoreset
