// The k-center greedy state shared by the bindings, the CPU kernel and (for
// its parameters) the CUDA kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pcoreset {

// The CPU kernel's projection bound (csrc/cpu/projection.h): the cost model
// considers it only for rows of at least kProjectionMinC values (at C = 100
// its checks cost about what the early-exit distances they save cost,
// measured), and projects onto projection_dims(c) directions (d + 3 floats
// a row kept in RAM). Exported by build_info for the memory estimate.
constexpr int64_t kProjectionMinC = 256;
constexpr int64_t projection_dims(int64_t c) { return c < 256 ? 16 : 32; }

// What a k-center run needs to know about its pool. Rows are C-contiguous.
struct KCenterParams {
  int64_t n = 0;             // rows in the pool
  int64_t c = 0;             // values per row (classes, or feature dim)
  bool from_logits = false;  // rows are logits: the kernel uses softmax(row / temperature)
  double temperature = 1.0;  // > 0; only read when from_logits
  bool prune = true;         // triangle-inequality pruning and early exit (never changes a pick)
  int num_threads = 0;       // OpenMP threads; 0 = the OpenMP default
  // The pool is a file-backed mapping (a memmapped .npy): passes run in row
  // tiles and hand each tile's pages back (madvise MADV_DONTNEED) once read,
  // so resident memory stays bounded by a tile, not the pool. CPU only.
  bool release_pages = false;
};

// Counters a benchmark can read: how much of the pool each step touched.
struct KCenterStats {
  int64_t steps = 0;          // update passes run
  int64_t rows_computed = 0;  // rows whose distance to the new center was computed
  int64_t rows_visited = 0;   // rows looked at (n per dense pass; members of visited cells)
  int64_t center_dists = 0;   // center-to-center distances computed for pruning
  int64_t dense_steps = 0;    // steps run as a pass over every row
  int64_t cell_steps = 0;     // steps run over the cells near the new center only
  int64_t cells_visited = 0;  // cells whose members were looked at (cell steps)
  int64_t parallel_steps = 0; // steps that ran on more than one thread
  int64_t cell_builds = 0;    // times the cell structure was (re)built from the running minimum
  int64_t cell_switches = 0;  // switches between cell and dense steps (the cost model)
  // cell steps over long rows that computed their rows in pool order (a
  // file-backed pool, or one cell holding much of the step's rows) rather
  // than cell by cell
  int64_t row_sorted_steps = 0;
  // What each bound rejects, summed over the steps: rows_eligible (rows that
  // could still be picked), rows_in_reach (those whose cell or center the
  // step could not rule out whole: the members of the cells visited, or in a
  // dense step the rows of centers not skipped whole); rows_in_reach -
  // rows_computed were ruled out by their own triangle test (and the picked
  // row, which leaves its cell).
  int64_t rows_eligible = 0;
  int64_t rows_in_reach = 0;
  // The projection bound (CPU, long rows): rows it was asked about (those
  // in reach that the row's own triangle test kept) and rows it proved
  // unchanged (never read); rows_computed counts neither. proj_builds:
  // passes that projected every row; proj_bases: bases computed from a
  // sample of rows (the look ahead needs one).
  int64_t proj_checked = 0;
  int64_t proj_rejected = 0;
  int64_t proj_builds = 0;
  int64_t proj_bases = 0;
};

struct StepResult {
  int64_t row = -1;   // farthest eligible row, -1 when none is left
  double dist2 = 0;   // its squared distance to the nearest center
};

// Called between steps with the number of picks so far; returns false to stop
// (the caller raised, e.g. KeyboardInterrupt).
using ProgressFn = std::function<bool(int64_t)>;

// A pool and its running nearest-center state. The pool memory is borrowed:
// it must stay alive and unchanged while the state exists.
class KCenterState {
 public:
  virtual ~KCenterState() = default;
  // Mark rows as labeled centers (never picked) and set every row's nearest
  // center among them. Exact; rows x centers work, tiled.
  virtual void seed_rows(const int64_t* rows, int64_t count) = 0;
  // Same, given for each row `k` candidate centers (indices into the
  // labeled list of seed_rows, -1 = none), found approximately elsewhere
  // (a GEMM, FAISS): distances to the candidates are recomputed exactly here.
  virtual void seed_rows_with_candidates(const int64_t* rows, int64_t count,
                                         const int64_t* cand, int64_t k) = 0;
  // Add external center vectors (row-major, count x c, in double): centers
  // that are not rows of this pool (another shard's labeled rows).
  virtual void seed_vectors(const double* vecs, int64_t count) = 0;
  // Same, with k candidate centers per row (indices into vecs, -1 = none)
  // found approximately elsewhere; distances to them are recomputed exactly.
  virtual void seed_vectors_with_candidates(const double* vecs, int64_t count,
                                            const int64_t* cand, int64_t k) = 0;
  // Row i as the kernel sees it (probabilities when from_logits), in double.
  virtual void row_vector(int64_t i, double* out) const = 0;
  // Rows as the kernel sees them, in the accumulation type (float, or double
  // for float64 pools), row-major count x c into out.
  virtual void rows_values(const int64_t* rows, int64_t count, void* out) const = 0;
  // Bytes of one value of the accumulation type (4 or 8).
  virtual int accum_bytes() const = 0;
  // The eligible row farthest from a vector (used with the pool mean).
  virtual StepResult farthest_from(const double* vec) = 0;
  // Mean of the rows as the kernel sees them (deterministic order).
  virtual void mean_vector(double* out) const = 0;
  // The current farthest eligible row, without an update.
  virtual StepResult current_best() = 0;
  // Mark row i as picked (it stops being eligible).
  virtual void take(int64_t i) = 0;
  // Rows that may never be picked and are not centers (a person could not
  // label them): they stop being eligible.
  virtual void exclude(const int64_t* rows, int64_t count) = 0;
  // Centers so far (labeled rows, vectors, picks).
  virtual int64_t num_centers() const = 0;
  // The state as arrays: running minimum (n, float64; taken rows -1),
  // nearest center (n, int64; -1 = none) and center vectors (num_centers x c,
  // float64). load_state restores it exactly (the cells are rebuilt).
  virtual void export_state(double* mind, int64_t* nearest, double* centers) const = 0;
  virtual void load_state(const double* mind, const int64_t* nearest, const double* centers,
                          int64_t n_centers) = 0;
  // Add a center (a vector in double) and run the fused update + argmax pass.
  virtual StepResult push_center(const double* vec) = 0;
  // Add row i as a center (marks it picked) and run the fused pass.
  virtual StepResult push_row(int64_t i) = 0;
  // The full greedy loop: `budget` picks, order and squared radii out.
  // Returns false when progress asked to stop.
  // With stop_dist2 >= 0 the loop stops before the first pick whose squared
  // radius is <= stop_dist2 (a coverage radius reached; fewer picks).
  virtual bool run(int64_t budget, std::vector<int64_t>* picks, std::vector<double>* radii2,
                   const ProgressFn& progress, double stop_dist2 = -1.0) = 0;
  virtual void min_dist2(double* out) const = 0;
  // The projection bound (CPU only): p is d x c (row-major, double) with
  // rows close to orthonormal; steps may then skip rows whose projected
  // distance proves them unchanged. Never changes a pick.
  virtual void set_projection(const double* p, int64_t d) {
    (void)p;
    (void)d;
  }
  virtual const KCenterStats& stats() const = 0;
  virtual const KCenterParams& params() const = 0;
};

// The instruction set the CPU kernel runs with on this processor.
const char* cpu_simd_level();

// Threads to use now: `requested` when > 0, else the cores that other
// processes leave free (the load-adaptive rule, csrc/cpu/thread_policy.h).
int available_threads(int requested);
// The cores this process may use (affinity, cgroup CPU quota), and the quota
// rule itself over given files (csrc/cpu/thread_policy.h).
int cpu_cores();
int cgroup_cpu_quota(const std::string& proc_cgroup, const std::string& root_v2, const std::string& root_v1);

// dtype: "float16", "bfloat16", "float32" or "float64".
std::unique_ptr<KCenterState> make_cpu_state(const void* data, const std::string& dtype,
                                             const KCenterParams& params);

}  // namespace pcoreset
