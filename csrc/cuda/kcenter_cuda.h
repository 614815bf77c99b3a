// Host interface of the CUDA k-center kernel: a device-resident state that
// mirrors the CPU KCenterState (pcoreset/kcenter.h), driven call by call
// from Python. Plain C++: the pybind11 module (bind_cuda.cpp) includes it
// without CUDA headers.
//
// Every method takes the caller's stream (a cudaStream_t as void*, 0 = the
// legacy default stream). The state works on a private stream joined to the
// caller's at both ends of every call: its work starts after everything the
// caller queued before the call (for instance the writes that filled the
// pool) and the caller's later work starts after it. Methods return when
// their results are on the host; run() synchronises once at the end (and
// once per segment of steps for progress reports), never per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "pcoreset/kcenter.h"

namespace pcoreset {
namespace cuda {

// How run() launches its greedy steps.
enum class StepMode {
  kAuto,        // persistent when the device and the pool allow it, else graph
  kPersistent,  // one cooperative kernel per segment of steps, grid barriers between phases
  kGraph,       // three kernels per step (prep, dcc, pass) replayed as a captured CUDA graph
  kLaunches,    // the same three kernels launched one by one (debugging, profiling)
};

// Which fused pass the steps use (the same picks and bits either way).
enum class PassVariant {
  kPrefetch,  // the next chunk of a row loaded before this chunk's math
  kPlain,     // a chunk loaded, then its math, then the next chunk: kept for the
              // side-by-side comparison in benchmarks/gpu_bench.py only
};

// How run() ended.
enum class RunEnd {
  kFinished,   // every pick of the budget made
  kStopped,    // progress asked to stop
  kExhausted,  // a step found no eligible row (a budget above the eligible rows)
};

struct StateOptions {
  std::string dtype;     // float16, bfloat16, float32, float64
  KCenterParams params;  // n, c, from_logits, temperature, prune
  int device = 0;        // CUDA device ordinal of the pool
  StepMode steps = StepMode::kAuto;
  PassVariant pass = PassVariant::kPrefetch;
};

// Counters and how the last run() went.
struct CudaStats {
  KCenterStats counts;             // as the CPU state counts them
  std::string step_mode = "none";  // persistent, graph, launches, or none (no run with steps yet)
  bool cuda_graph = false;         // the last run's steps ran as replays of a captured graph
  std::string pass;                // prefetch or plain
  int64_t segments = 0;            // launches of the persistent kernel / segments of the last run
  int grid_blocks = 0;             // blocks of the step kernels
  std::string note;                // why a requested mode was not used, if it was not
};

// A device allocation failed. Raised before the state changes, so the call
// can be retried after memory is freed (the Python layer empties torch's cache).
class DeviceOutOfMemory : public std::runtime_error {
 public:
  DeviceOutOfMemory(size_t bytes, const std::string& what)
      : std::runtime_error("pcoreset CUDA: cannot allocate " + std::to_string(bytes) + " bytes of device memory for " +
                           what),
        bytes(bytes) {}
  size_t bytes;
};

// The k-center state over a pool in device memory. The pool is borrowed: it
// must stay alive and unchanged while the state exists. Row and center
// indices are checked by the binding before they get here.
class State {
 public:
  virtual ~State() = default;
  // Labeled rows become centers (never picked); every other row gets its
  // exact nearest center among them.
  virtual void seed_rows(const int64_t* rows, int64_t count, void* stream) = 0;
  // Same, the nearest center chosen among k candidates per row ((n, k),
  // indices into `rows`, -1 = none), their distances recomputed exactly.
  virtual void seed_rows_with_candidates(const int64_t* rows, int64_t count, const int64_t* cand, int64_t k,
                                         void* stream) = 0;
  // External centers (count x c, row-major, float64) that are not pool rows.
  virtual void seed_vectors(const double* vecs, int64_t count, void* stream) = 0;
  virtual void seed_vectors_with_candidates(const double* vecs, int64_t count, const int64_t* cand, int64_t k,
                                            void* stream) = 0;
  // Rows become ineligible (never picked) without becoming centers.
  virtual void exclude(const int64_t* rows, int64_t count, void* stream) = 0;
  // Row i becomes a center (and ineligible); one fused step; the next farthest row.
  virtual StepResult push_row(int64_t i, void* stream) = 0;
  // An external center vector (c values, float64); one fused step.
  virtual StepResult push_center(const double* vec, void* stream) = 0;
  // The farthest eligible row now (row -1, dist2 0 when none, as on the CPU).
  virtual StepResult current_best(void* stream) = 0;
  // The eligible row farthest from a vector (no state change).
  virtual StepResult farthest_from(const double* vec, void* stream) = 0;
  // Row i as the kernel sees it, in float64.
  virtual void row_vector(int64_t i, double* out, void* stream) = 0;
  // Rows as the kernel sees them in the accumulation type, count x c,
  // written to device memory `out_device` (float, or double for float64 pools).
  virtual void rows_values(const int64_t* rows, int64_t count, void* out_device, void* stream) = 0;
  // Mean of the rows as the kernel sees them (the CPU kernel's block order).
  virtual void mean_vector(double* out, void* stream) = 0;
  // `budget` greedy picks continuing from the current state (as the CPU
  // state's run: with no center at all the first pick is the row farthest
  // from the pool mean, radius +inf; the last pick is not pushed).
  // *recorded: the picks written to picks/radii2, also when the run stops
  // early (progress asked to stop, a step found no row): each of them is a
  // center, except the last pick of a run that made all `budget`, and the
  // state is the one an uninterrupted run of those steps leaves. When the
  // run throws (an error inside the steps), *recorded still counts the picks
  // made, and every later call of the state throws.
  virtual RunEnd run(int64_t budget, int64_t* picks, double* radii2, int64_t* recorded, const ProgressFn& progress,
                     void* stream) = 0;
  // The state as arrays, as the CPU state exports it: running minimum (n,
  // float64; taken rows -1), nearest center (n, int64; -1 = none), center
  // values (num_centers x c, float64). load_state restores it (radii
  // recomputed exactly); nearest indices are checked by the binding.
  virtual void export_state(double* mind, int64_t* nearest, double* centers, void* stream) = 0;
  virtual void load_state(const double* mind, const int64_t* nearest, const double* centers, int64_t n_centers,
                          void* stream) = 0;
  // Squared distance of every row to its nearest center (0 for taken rows).
  virtual void min_dist2(double* out, void* stream) = 0;
  virtual CudaStats stats(void* stream) = 0;
  virtual const KCenterParams& params() const = 0;
  virtual int64_t num_centers() const = 0;
  // Device bytes the state holds now.
  virtual size_t device_bytes() const = 0;
};

// Creates the state; x is the (n, c) C-contiguous pool in device memory.
// Throws std::invalid_argument on bad options, DeviceOutOfMemory, and
// std::runtime_error naming a failed CUDA call.
std::unique_ptr<State> make_state(const void* x, const StateOptions& options, void* stream);

// Device bytes a state of this size holds after starting with `n_centers` centers
// and running `budget` steps (for error messages and estimates).
size_t state_bytes(const std::string& dtype, int64_t n, int64_t c, bool from_logits, int64_t n_centers,
                   int64_t budget);

// Compile-time facts for pcoreset.info(): architectures, CUDA version.
std::string compiled_archs();
int cuda_runtime_version();  // CUDART_VERSION the module was built with
int nvcc_version();          // major * 1000 + minor * 10

}  // namespace cuda
}  // namespace pcoreset
