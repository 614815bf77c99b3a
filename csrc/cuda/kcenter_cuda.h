// Host interface of the CUDA k-center kernel (kcenter_cuda.cu). Plain C++:
// the pybind11 module (bind_cuda.cpp) includes it without CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pcoreset/kcenter.h"

namespace pcoreset {
namespace cuda {

// One greedy run. Every pointer is device memory on `device` (the pool,
// labeled rows, candidates, outputs and workspace); the caller owns all of
// it (PyTorch tensors) and keeps it alive until run() returns.
struct CudaRunArgs {
  const void* x = nullptr;          // (n, c) C-contiguous pool in `dtype`
  std::string dtype;                // float16, bfloat16, float32, float64
  KCenterParams params;             // n, c, from_logits, temperature, prune
  const int64_t* labeled = nullptr; // (n_labeled,) unique rows, the initial centers
  int64_t n_labeled = 0;
  const int64_t* candidates = nullptr;  // (n, k) indices into labeled (-1 = none), or null: exact start
  int64_t k = 0;
  int64_t budget = 0;
  int64_t* picks = nullptr;         // (budget,) out: rows in pick order
  double* radii2 = nullptr;         // (budget,) out: squared radius at each pick (+inf: mean start)
  int64_t* stats = nullptr;         // (4,) out: [1] rows computed, [3] center distances ([0], [2]: caller)
  void* workspace = nullptr;        // workspace_bytes(...) bytes
  size_t workspace_size = 0;
  int device = 0;                   // CUDA device ordinal of all the memory above
  void* stream = nullptr;           // the caller's cudaStream_t (0 = legacy default stream)
  bool use_graphs = true;           // replay the per-step launches as a CUDA graph
};

// Bytes of device workspace a run needs (running minimum, nearest center,
// softmax parameters, center bookkeeping, reduction slots).
size_t workspace_bytes(const std::string& dtype, int64_t n, int64_t c, bool from_logits,
                       int64_t n_labeled, int64_t budget);

// Runs the whole greedy selection on the device; returns when the picks are
// written (one host synchronisation, at the end). Throws std::runtime_error
// naming the failed launch, std::invalid_argument on bad arguments.
void run(const CudaRunArgs& args);

// Compile-time facts for pcoreset.info(): architectures, CUDA version.
std::string compiled_archs();
int cuda_runtime_version();  // CUDART_VERSION the module was built with
int nvcc_version();          // major * 1000 + minor * 10

}  // namespace cuda
}  // namespace pcoreset
