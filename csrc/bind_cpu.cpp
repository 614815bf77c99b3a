// pybind11 module pcoreset._C: thin bindings over the CPU k-center state.
// Every argument is checked here so that no input can crash the interpreter;
// the Python layer (pcoreset/select.py) gives the user-facing messages.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "pcoreset/certify.h"
#include "pcoreset/bind_checks.h"
#include "pcoreset/kcenter.h"
#include "cpu/thread_policy.h"

namespace py = pybind11;
using pcoreset::KCenterParams;
using pcoreset::KCenterState;
using pcoreset::StepResult;

namespace {

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

size_t itemsize_of(const std::string& dtype) {
  if (dtype == "float16" || dtype == "bfloat16") return 2;
  if (dtype == "float32") return 4;
  if (dtype == "float64") return 8;
  throw py::value_error("dtype='" + dtype + "' is not one of float16, bfloat16, float32, float64");
}

py::tuple as_tuple(const StepResult& r) { return py::make_tuple(r.row, r.dist2); }

// Every call into the kernel returns with the upper halves of the vector
// registers cleared (vzeroupper, where the CPU has AVX). The cell steps
// could return with them dirty (which path was not found; with the C
// library's AVX-512 string routines turned off it did not happen); the
// caller's SSE code (NumPy's non-AVX loops, the interpreter) then pays a
// state transition on every instruction: NumPy's row sums of a 200k x 3
// array took 33-44 ms instead of 3-4 ms after a selection, until some AVX
// routine happened to clear them.
struct CleanVectorState {
  CleanVectorState() = default;
  CleanVectorState(const CleanVectorState&) = delete;
  CleanVectorState& operator=(const CleanVectorState&) = delete;
  ~CleanVectorState() { clear(); }
  static void clear() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    static const bool avx = __builtin_cpu_supports("avx");
    if (avx) __asm__ __volatile__("vzeroupper" ::: "memory");
#endif
  }
};
using Clean = py::call_guard<CleanVectorState>;

// For the tests: 1 if the upper halves of the vector registers are in use
// (XINUSE bit 2, read with XGETBV ECX=1), 0 if clear, -1 where the CPU
// cannot tell.
int upper_vector_state() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return -1;  // OSXSAVE
  if (!__get_cpuid_count(0xD, 1, &a, &b, &c, &d) || !(a & (1u << 2))) return -1;  // XGETBV ECX=1
  unsigned lo = 0, hi = 0;
  __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
  return (lo >> 2) & 1u;
#else
  return -1;
#endif
}

// Owns the Python buffer the kernel reads, so the pool outlives the state.
class PyState {
 public:
  PyState(py::buffer x, const std::string& dtype, bool from_logits, double temperature, bool prune,
          int num_threads, bool release_pages)
      : owner_(x) {
    py::buffer_info info = x.request();
    if (info.ndim != 2)
      throw py::value_error("x must be 2-D, got ndim=" + std::to_string(info.ndim));
    const size_t item = itemsize_of(dtype);
    if (static_cast<size_t>(info.itemsize) != item)
      throw py::value_error("x itemsize " + std::to_string(info.itemsize) + " does not match dtype='" +
                            dtype + "'");
    const int64_t n = info.shape[0], c = info.shape[1];
    if (c < 1) throw py::value_error("x must have at least one column, got shape (" +
                                     std::to_string(n) + ", " + std::to_string(c) + ")");
    if (n >= int64_t(0xFFFFFFFE)) throw py::value_error("x has too many rows: " + std::to_string(n));
    if ((n > 1 && info.strides[0] != static_cast<py::ssize_t>(c * item)) ||
        info.strides[1] != static_cast<py::ssize_t>(item))
      throw py::value_error("x must be C-contiguous");
    if (!(temperature > 0.0)) throw py::value_error("temperature must be > 0, got " + std::to_string(temperature));
    KCenterParams p;
    p.n = n;
    p.c = c;
    p.from_logits = from_logits;
    p.temperature = temperature;
    p.prune = prune;
    p.num_threads = num_threads;
    p.release_pages = release_pages;
    state_ = pcoreset::make_cpu_state(info.ptr, dtype, p);
  }

  int64_t n() const { return state_->params().n; }
  int64_t c() const { return state_->params().c; }

  void check_row(int64_t i, const char* what) const {
    if (i < 0 || i >= n())
      throw py::index_error(std::string(what) + "=" + std::to_string(i) + " is out of range for " +
                            std::to_string(n()) + " rows");
  }

  void seed_rows(I64Array rows) {
    auto r = rows.unchecked<1>();
    for (py::ssize_t k = 0; k < r.shape(0); ++k) check_row(r(k), "labeled row");
    py::gil_scoped_release nogil;
    state_->seed_rows(rows.data(), rows.shape(0));
  }

  void seed_rows_with_candidates(I64Array rows, I64Array cand) {
    auto r = rows.unchecked<1>();
    for (py::ssize_t k = 0; k < r.shape(0); ++k) check_row(r(k), "labeled row");
    if (cand.ndim() != 2 || cand.shape(0) != n())
      throw py::value_error("candidates must have shape (" + std::to_string(n()) + ", k)");
    py::gil_scoped_release nogil;
    state_->seed_rows_with_candidates(rows.data(), rows.shape(0), cand.data(), cand.shape(1));
  }

  void seed_vectors(F64Array vecs) {
    if (vecs.ndim() != 2 || vecs.shape(1) != c())
      throw py::value_error("vectors must have shape (k, " + std::to_string(c()) + ")");
    py::gil_scoped_release nogil;
    state_->seed_vectors(vecs.data(), vecs.shape(0));
  }

  void seed_vectors_with_candidates(F64Array vecs, I64Array cand) {
    if (vecs.ndim() != 2 || vecs.shape(1) != c())
      throw py::value_error("vectors must have shape (k, " + std::to_string(c()) + ")");
    if (cand.ndim() != 2 || cand.shape(0) != n())
      throw py::value_error("candidates must have shape (" + std::to_string(n()) + ", k)");
    py::gil_scoped_release nogil;
    state_->seed_vectors_with_candidates(vecs.data(), vecs.shape(0), cand.data(), cand.shape(1));
  }

  F64Array row_vector(int64_t i) const {
    check_row(i, "row");
    F64Array out(c());
    state_->row_vector(i, out.mutable_data());
    return out;
  }

  // Rows as the kernel sees them, in its accumulation type (float32, or
  // float64 for float64 pools): what the start's candidate search compares.
  py::array rows_values(I64Array rows) const {
    auto r = rows.unchecked<1>();
    for (py::ssize_t k = 0; k < r.shape(0); ++k) check_row(r(k), "row");
    const py::ssize_t count = rows.shape(0);
    py::array out = state_->accum_bytes() == 8
                        ? py::array(py::dtype::of<double>(), {count, static_cast<py::ssize_t>(c())})
                        : py::array(py::dtype::of<float>(), {count, static_cast<py::ssize_t>(c())});
    void* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      state_->rows_values(rows.data(), count, o);
    }
    return out;
  }

  void set_projection(F64Array p) {
    if (p.ndim() != 2 || p.shape(1) != c())
      throw py::value_error("projection must be (d, " + std::to_string(c()) + ")");
    try {
      state_->set_projection(p.data(), p.shape(0));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }

  F64Array mean_vector() const {
    F64Array out(c());
    double* o = out.mutable_data();
    py::gil_scoped_release nogil;
    state_->mean_vector(o);
    return out;
  }

  void check_vec(const F64Array& v) const {
    if (v.ndim() != 1 || v.shape(0) != c())
      throw py::value_error("vector must have shape (" + std::to_string(c()) + ",)");
  }

  py::tuple farthest_from(F64Array vec) {
    check_vec(vec);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->farthest_from(vec.data());
    }
    return as_tuple(r);
  }

  py::tuple current_best() {
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->current_best();
    }
    return as_tuple(r);
  }

  void take(int64_t i) {
    check_row(i, "row");
    state_->take(i);
  }

  void exclude(I64Array rows) {
    auto r = rows.unchecked<1>();
    for (py::ssize_t k = 0; k < r.shape(0); ++k) check_row(r(k), "row");
    state_->exclude(rows.data(), rows.shape(0));
  }

  int64_t num_centers() const { return state_->num_centers(); }

  // The state as arrays (running minimum, nearest center, center vectors),
  // and its exact restoration: what Selector.state_dict saves.
  py::tuple export_state() const {
    const int64_t k = state_->num_centers();
    F64Array mind(n());
    I64Array nearest(n());
    F64Array centers({static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(c())});
    state_->export_state(mind.mutable_data(), nearest.mutable_data(), centers.mutable_data());
    return py::make_tuple(mind, nearest, centers);
  }

  void load_state(F64Array mind, I64Array nearest, F64Array centers) {
    pcoreset::check_state_arrays(mind, nearest, centers, n(), c());
    const int64_t k = centers.shape(0);
    py::gil_scoped_release nogil;
    state_->load_state(mind.data(), nearest.data(), centers.data(), k);
  }

  py::tuple push_center(F64Array vec) {
    check_vec(vec);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->push_center(vec.data());
    }
    return as_tuple(r);
  }

  py::tuple push_row(int64_t i) {
    check_row(i, "row");
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->push_row(i);
    }
    return as_tuple(r);
  }

  // The whole greedy loop without the GIL. Between steps (at most every
  // 100 ms) the GIL is taken to check for Ctrl-C and to call `progress`.
  // The picks live on this object, so when the run raises (Ctrl-C, or the
  // callback did) last_run() still has the steps that finished: pcoreset.Selector
  // keeps them instead of losing centers the kernel already holds.
  py::tuple run(int64_t budget, py::object progress, double stop_dist2) {
    if (budget < 0) throw py::value_error("budget must be >= 0, got " + std::to_string(budget));
    std::vector<int64_t>& picks = run_picks_;
    std::vector<double>& radii2 = run_radii2_;
    picks.clear();
    radii2.clear();
    picks.reserve(static_cast<size_t>(budget));
    radii2.reserve(static_cast<size_t>(budget));
    bool interrupted = false;
    auto check = [&](int64_t done) -> bool {
      CleanVectorState::clear();  // Python runs next, on this thread
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {
        interrupted = true;
        return false;
      }
      if (!progress.is_none()) {
        try {
          progress(done);
        } catch (py::error_already_set&) {
          interrupted = true;
          throw;
        }
      }
      return true;
    };
    bool finished;
    {
      py::gil_scoped_release nogil;
      finished = state_->run(budget, &picks, &radii2, check, stop_dist2);
    }
    if (!finished) throw py::error_already_set();
    return last_run();
  }

  // (picks, radii2) of the latest run(), also of one that raised: every pick
  // but possibly the last is a center (the last is one unless the budget
  // ended the run; num_centers tells).
  py::tuple last_run() const {
    I64Array p(static_cast<py::ssize_t>(run_picks_.size()));
    F64Array r(static_cast<py::ssize_t>(run_radii2_.size()));
    if (!run_picks_.empty()) {
      std::memcpy(p.mutable_data(), run_picks_.data(), run_picks_.size() * sizeof(int64_t));
      std::memcpy(r.mutable_data(), run_radii2_.data(), run_radii2_.size() * sizeof(double));
    }
    return py::make_tuple(p, r);
  }

  F64Array min_dist2() const {
    F64Array out(n());
    state_->min_dist2(out.mutable_data());
    return out;
  }

  py::dict stats() const {
    const auto& s = state_->stats();
    py::dict d;
    d["steps"] = s.steps;
    d["rows_computed"] = s.rows_computed;
    d["rows_visited"] = s.rows_visited;
    d["center_dists"] = s.center_dists;
    d["dense_steps"] = s.dense_steps;
    d["cell_steps"] = s.cell_steps;
    d["cells_visited"] = s.cells_visited;
    d["parallel_steps"] = s.parallel_steps;
    d["cell_builds"] = s.cell_builds;
    d["cell_switches"] = s.cell_switches;
    d["row_sorted_steps"] = s.row_sorted_steps;
    d["rows_eligible"] = s.rows_eligible;
    d["rows_in_reach"] = s.rows_in_reach;
    d["proj_checked"] = s.proj_checked;
    d["proj_rejected"] = s.proj_rejected;
    d["proj_builds"] = s.proj_builds;
    d["proj_bases"] = s.proj_bases;
    return d;
  }

 private:
  py::object owner_;
  std::unique_ptr<KCenterState> state_;
  std::vector<int64_t> run_picks_;
  std::vector<double> run_radii2_;
};

// The certified start's bounds (see certify.h).
static pcoreset::CertifyBounds certify_bounds(double kappa, double tiny, double kernel_rel, int64_t k) {
  pcoreset::CertifyBounds b;
  b.kappa = kappa;
  b.tiny = tiny;
  b.kernel_rel = kernel_rel;
  b.k = k;
  return b;
}

// The projected bound's terms (see certify.h).
static pcoreset::ProjBounds proj_bounds(const float* gp, const double* row, const double* col, double e, double ea,
                                        double ea0) {
  pcoreset::ProjBounds pb;
  pb.gp = gp;
  pb.row = row;
  pb.col = col;
  pb.e = e;
  pb.ea = ea;
  pb.ea0 = ea0;
  return pb;
}

static I64Array as_array(const std::vector<int64_t>& v) {
  I64Array out(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

// The certified start's fused epilogue over one GEMM tile (see certify.h).
template <typename A>
py::tuple certify_tile_t(py::array_t<A, py::array::c_style> g, py::array_t<A, py::array::c_style> nx2,
                         py::array_t<A, py::array::c_style> ny2, F64Array nx, F64Array ny, double kappa, double tiny, double kernel_rel, int64_t k,
                         int num_threads) {
  if (g.ndim() != 2) throw py::value_error("g must be 2-D");
  const int64_t rows = g.shape(0), cols = g.shape(1);
  if (cols < 1) throw py::value_error("g must have at least one column");
  if (nx2.ndim() != 1 || nx2.shape(0) != rows || nx.ndim() != 1 || nx.shape(0) != rows)
    throw py::value_error("nx2 and nx must have one value per row of g");
  if (ny.ndim() != 1 || ny.shape(0) != cols || ny2.ndim() != 1 || ny2.shape(0) != cols)
    throw py::value_error("ny2 and ny must have one value per column of g");
  if (k < 1) throw py::value_error("k must be >= 1");
  I64Array cand({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  I64Array counts(static_cast<py::ssize_t>(rows));
  std::vector<int64_t> over_rows, over_cols;
  const pcoreset::CertifyBounds b = certify_bounds(kappa, tiny, kernel_rel, k);
  {
    py::gil_scoped_release nogil;
    pcoreset::certify_tile<A>(g.data(), nx2.data(), ny2.data(), nx.data(), ny.data(), rows, cols, b,
                              cand.mutable_data(), counts.mutable_data(), &over_rows, &over_cols, num_threads);
  }
  return py::make_tuple(cand, counts, as_array(over_rows), as_array(over_cols));
}

// The certified start's tile search under the projected bound (see
// certify.h): (cand, counts, over_rows, over_cols, pairs kept).
template <typename A>
py::tuple certify_tile_proj_t(py::array_t<A, py::array::c_style> x, py::array_t<A, py::array::c_style> y,
                              py::array_t<A, py::array::c_style> nx2, py::array_t<A, py::array::c_style> ny2,
                              F64Array nx, F64Array ny, py::array_t<float, py::array::c_style> gp, F64Array row,
                              F64Array col, double e, double ea, double ea0, int rounds, double frac, double kappa, double tiny, double kernel_rel, int64_t k) {
  if (x.ndim() != 2 || y.ndim() != 2 || x.shape(1) != y.shape(1))
    throw py::value_error("x and y must be 2-D with the same number of columns");
  const int64_t rows = x.shape(0), cols = y.shape(0), c = x.shape(1);
  if (cols < 1) throw py::value_error("y must have at least one row");
  if (nx2.ndim() != 1 || nx2.shape(0) != rows || nx.ndim() != 1 || nx.shape(0) != rows)
    throw py::value_error("nx2 and nx must have one value per row of x");
  if (ny.ndim() != 1 || ny.shape(0) != cols || ny2.ndim() != 1 || ny2.shape(0) != cols)
    throw py::value_error("ny2 and ny must have one value per row of y");
  if (gp.ndim() != 2 || gp.shape(0) != rows || gp.shape(1) != cols)
    throw py::value_error("gp must be (rows of x, rows of y)");
  if (row.ndim() != 2 || row.shape(0) != rows || row.shape(1) != 5) throw py::value_error("row must be (rows of x, 5)");
  if (col.ndim() != 2 || col.shape(0) != 4 || col.shape(1) != cols) throw py::value_error("col must be (4, rows of y)");
  if (k < 1) throw py::value_error("k must be >= 1");
  I64Array cand({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  I64Array counts(static_cast<py::ssize_t>(rows));
  std::vector<int64_t> over_rows, over_cols;
  const pcoreset::CertifyBounds b = certify_bounds(kappa, tiny, kernel_rel, k);
  int64_t kept = 0;
  pcoreset::ProjBounds pb = proj_bounds(gp.data(), row.data(), col.data(), e, ea, ea0);
  if (rounds < 0 || !(frac > 0.0 && frac <= 1.0)) throw py::value_error("rounds must be >= 0 and frac in (0, 1]");
  pb.rounds = rounds;
  pb.frac = frac;
  pb.kept = &kept;
  {
    py::gil_scoped_release nogil;
    pcoreset::certify_tile_proj<A>(x.data(), y.data(), c, nx2.data(), ny2.data(), nx.data(), ny.data(), rows, cols,
                                   pb, b, cand.mutable_data(), counts.mutable_data(), &over_rows, &over_cols);
  }
  return py::make_tuple(cand, counts, as_array(over_rows), as_array(over_cols), kept);
}

// The projected bound's compared values (see certify.h): (v, off).
py::tuple proj_bound_terms_t(py::array_t<float, py::array::c_style> gp, F64Array row, F64Array col, double e,
                             double ea, double ea0) {
  if (gp.ndim() != 2) throw py::value_error("gp must be 2-D");
  const int64_t rows = gp.shape(0), cols = gp.shape(1);
  if (row.ndim() != 2 || row.shape(0) != rows || row.shape(1) != 5) throw py::value_error("row must be (rows of gp, 5)");
  if (col.ndim() != 2 || col.shape(0) != 4 || col.shape(1) != cols) throw py::value_error("col must be (4, columns of gp)");
  pcoreset::ProjBounds pb = proj_bounds(gp.data(), row.data(), col.data(), e, ea, ea0);
  py::array_t<float> v({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
  F64Array off(static_cast<py::ssize_t>(rows));
  {
    py::gil_scoped_release nogil;
    pcoreset::proj_bound_terms(pb, rows, cols, v.mutable_data(), off.mutable_data());
  }
  return py::make_tuple(v, off);
}

// The certified start's pivot assignment (see certify.h): (pivot, s2).
template <typename A>
py::tuple assign_pivots_t(py::array_t<A, py::array::c_style> x, py::array_t<A, py::array::c_style> g,
                          py::array_t<A, py::array::c_style> r, py::array_t<A, py::array::c_style> rn2) {
  if (x.ndim() != 2 || g.ndim() != 2 || r.ndim() != 2 || rn2.ndim() != 1)
    throw py::value_error("x, g and r must be 2-D, rn2 1-D");
  const int64_t rows = x.shape(0), c = x.shape(1), p = r.shape(0);
  if (p < 1 || r.shape(1) != c || g.shape(0) != rows || g.shape(1) != p || rn2.shape(0) != p)
    throw py::value_error("x (rows, c), g (rows, p), r (p, c), rn2 (p,) with p >= 1");
  py::array_t<int32_t> pivot(static_cast<py::ssize_t>(rows));
  py::array_t<A> s2(static_cast<py::ssize_t>(rows));
  {
    py::gil_scoped_release nogil;
    pcoreset::assign_pivots<A>(x.data(), g.data(), r.data(), rn2.data(), rows, p, c, pivot.mutable_data(),
                               s2.mutable_data());
  }
  return py::make_tuple(pivot, s2);
}

// (float64 norms, squared norms in A) of the rows of a (see certify.h).
template <typename A>
py::tuple row_norms_t(py::array_t<A, py::array::c_style> a) {
  if (a.ndim() != 2) throw py::value_error("a must be 2-D");
  const int64_t rows = a.shape(0), c = a.shape(1);
  F64Array norm(static_cast<py::ssize_t>(rows));
  py::array_t<A> norm2(static_cast<py::ssize_t>(rows));
  {
    py::gil_scoped_release nogil;
    pcoreset::row_norms<A>(a.data(), rows, c, norm.mutable_data(), norm2.mutable_data());
  }
  return py::make_tuple(norm, norm2);
}

// float32 values of float16 bit patterns (see certify.h), into out (same size).
void half_to_float_t(py::array_t<uint16_t, py::array::c_style> in, py::array_t<float, py::array::c_style> out) {
  if (in.size() != out.size()) throw py::value_error("half_to_float: in and out differ in size");
  const uint16_t* src = in.data();
  float* dst = out.mutable_data();
  const int64_t n = static_cast<int64_t>(in.size());
  py::gil_scoped_release nogil;
  pcoreset::half_to_float(src, n, dst);
}

py::dict build_info() {
  py::dict d;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
#ifdef _OPENMP
  d["openmp"] = true;
  d["openmp_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["openmp_threads"] = 1;
#endif
  d["simd"] = pcoreset::cpu_simd_level();
#ifdef PCORESET_HAVE_AVX2
  d["simd_variants"] = py::make_tuple("baseline", "avx2+f16c");
#else
  d["simd_variants"] = py::make_tuple("baseline");
#endif
  d["lanes"] = 32;
  d["projection_min_c"] = pcoreset::kProjectionMinC;
  d["projection_dims"] = py::make_tuple(pcoreset::projection_dims(pcoreset::kProjectionMinC - 1),
                                        pcoreset::projection_dims(pcoreset::kProjectionMinC));
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pcoreset CPU kernel (k-center greedy with running minimum and exact pruning)";
  py::class_<PyState>(m, "KCenterState")
      .def(py::init<py::buffer, const std::string&, bool, double, bool, int, bool>(), Clean(), py::arg("x"),
           py::arg("dtype"), py::arg("from_logits") = false, py::arg("temperature") = 1.0,
           py::arg("prune") = true, py::arg("num_threads") = 0, py::arg("release_pages") = false,
           "release_pages: x is a shared file mapping (a memmapped .npy); read it in row tiles "
           "and drop each tile's pages once read (bounded resident memory)")
      .def_property_readonly("n", &PyState::n)
      .def_property_readonly("c", &PyState::c)
      .def("seed_rows", &PyState::seed_rows, Clean(), py::arg("rows"))
      .def("seed_rows_with_candidates", &PyState::seed_rows_with_candidates, Clean(), py::arg("rows"),
           py::arg("candidates"))
      .def("seed_vectors", &PyState::seed_vectors, Clean(), py::arg("vectors"))
      .def("seed_vectors_with_candidates", &PyState::seed_vectors_with_candidates, Clean(), py::arg("vectors"),
           py::arg("candidates"))
      .def("row_vector", &PyState::row_vector, Clean(), py::arg("row"))
      .def("rows_values", &PyState::rows_values, Clean(), py::arg("rows"))
      .def("mean_vector", &PyState::mean_vector, Clean())
      .def("set_projection", &PyState::set_projection, Clean(), py::arg("basis"),
           "basis: (d, c) float64 with rows close to orthonormal (1 <= d <= 64); steps then skip "
           "rows whose projected distance proves they keep their nearest center")
      .def("farthest_from", &PyState::farthest_from, Clean(), py::arg("vector"))
      .def("current_best", &PyState::current_best, Clean())
      .def("take", &PyState::take, Clean(), py::arg("row"))
      .def("exclude", &PyState::exclude, Clean(), py::arg("rows"))
      .def_property_readonly("num_centers", &PyState::num_centers)
      .def_property_readonly("supports_stop", [](const PyState&) { return true; })
      .def("export_state", &PyState::export_state, Clean())
      .def("load_state", &PyState::load_state, Clean(), py::arg("mind"), py::arg("nearest"), py::arg("centers"))
      .def("push_center", &PyState::push_center, Clean(), py::arg("vector"))
      .def("push_row", &PyState::push_row, Clean(), py::arg("row"))
      .def("run", &PyState::run, Clean(), py::arg("budget"), py::arg("progress") = py::none(),
           py::arg("stop_dist2") = -1.0)
      .def("last_run", &PyState::last_run)
      .def("min_dist2", &PyState::min_dist2, Clean())
      .def("stats", &PyState::stats);
  m.def("build_info", &build_info);
  m.def("_upper_vector_state", &upper_vector_state);
  m.def("available_threads", &pcoreset::available_threads, py::arg("requested") = 0,
        "threads to use now: requested when > 0, else the cores that other processes leave free");
  m.def(
      "_thread_rule_script",
      [](int max, const std::vector<std::pair<double, int>>& script) {
        // the kernel's adaptive thread rule over scripted (milliseconds,
        // reading) pairs: for each, the count it gives and whether it read
        auto policy = pcoreset::ThreadPolicy::adaptive(max);
        const auto t0 = std::chrono::steady_clock::time_point{};
        std::vector<std::pair<int, bool>> out;
        for (const auto& [ms, reading] : script) {
          bool used = false;
          const auto t = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double, std::milli>(ms));
          const int n = policy.at(t, [&] {
            used = true;
            return reading;
          });
          out.emplace_back(n, used);
        }
        return out;
      },
      py::arg("max"), py::arg("script"));
  m.def("cpu_cores", &pcoreset::cpu_cores,
        "the cores this process may use: its CPU affinity, fewer under a cgroup CPU quota");
  m.def("cgroup_cpu_quota", &pcoreset::cgroup_cpu_quota, py::arg("proc_cgroup"), py::arg("root_v2"),
        py::arg("root_v1"), "the CPU quota in cores (rounded up; 0: none) that proc_cgroup's cgroups set");
  m.def("certify_tile", &certify_tile_t<float>, Clean(), py::arg("g"), py::arg("nx2"), py::arg("ny2"), py::arg("nx"),
        py::arg("ny"),
        py::arg("kappa"), py::arg("tiny"), py::arg("kernel_rel"), py::arg("k"), py::arg("num_threads") = 0);
  m.def("certify_tile", &certify_tile_t<double>, Clean(), py::arg("g"), py::arg("nx2"), py::arg("ny2"), py::arg("nx"),
        py::arg("ny"),
        py::arg("kappa"), py::arg("tiny"), py::arg("kernel_rel"), py::arg("k"), py::arg("num_threads") = 0);
  m.def("certify_tile_proj", &certify_tile_proj_t<float>, Clean(), py::arg("x"), py::arg("y"), py::arg("nx2"),
        py::arg("ny2"), py::arg("nx"), py::arg("ny"), py::arg("gp").noconvert(), py::arg("row"), py::arg("col"),
        py::arg("e"), py::arg("ea"), py::arg("ea0"), py::arg("rounds"), py::arg("frac"), py::arg("kappa"), py::arg("tiny"), py::arg("kernel_rel"), py::arg("k"));
  m.def("certify_tile_proj", &certify_tile_proj_t<double>, Clean(), py::arg("x"), py::arg("y"), py::arg("nx2"),
        py::arg("ny2"), py::arg("nx"), py::arg("ny"), py::arg("gp").noconvert(), py::arg("row"), py::arg("col"),
        py::arg("e"), py::arg("ea"), py::arg("ea0"), py::arg("rounds"), py::arg("frac"), py::arg("kappa"), py::arg("tiny"), py::arg("kernel_rel"), py::arg("k"));
  m.def("proj_bound_terms", &proj_bound_terms_t, Clean(), py::arg("gp").noconvert(), py::arg("row"), py::arg("col"),
        py::arg("e"), py::arg("ea"), py::arg("ea0"));
  m.def("assign_pivots", &assign_pivots_t<float>, Clean(), py::arg("x"), py::arg("g"), py::arg("r"), py::arg("rn2"));
  m.def("assign_pivots", &assign_pivots_t<double>, Clean(), py::arg("x"), py::arg("g"), py::arg("r"), py::arg("rn2"));
  m.def("row_norms", &row_norms_t<float>, Clean(), py::arg("a"));
  m.def("row_norms", &row_norms_t<double>, Clean(), py::arg("a"));
  // out is written in place: never a converted copy (noconvert: a float32
  // C-contiguous array or a TypeError)
  m.def("half_to_float", &half_to_float_t, Clean(), py::arg("bits"), py::arg("out").noconvert());
}
