// pybind11 module pcoreset._C_cuda: thin bindings over the CUDA k-center
// state. No torch C++ ABI: the caller passes the pool's device pointer
// (tensor.data_ptr()) and, at every call, its current stream handle
// (torch.cuda.current_stream().cuda_stream) as ints. Every index and shape
// is checked here so that no input can crash the interpreter; the Python
// layer (pcoreset/backends/cuda.py, pcoreset/select.py) gives the
// user-facing messages.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kcenter_cuda.h"
#include "pcoreset/bind_checks.h"

namespace py = pybind11;
using pcoreset::StepResult;
namespace pc = pcoreset::cuda;

namespace {

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

void* as_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }
py::tuple as_tuple(const StepResult& r) { return py::make_tuple(r.row, r.dist2); }

pc::StepMode step_mode_of(const std::string& s) {
  if (s == "auto") return pc::StepMode::kAuto;
  if (s == "persistent") return pc::StepMode::kPersistent;
  if (s == "graph") return pc::StepMode::kGraph;
  if (s == "launches") return pc::StepMode::kLaunches;
  throw py::value_error("steps='" + s + "' is not one of auto, persistent, graph, launches");
}

pc::PassVariant pass_of(const std::string& s) {
  if (s == "prefetch") return pc::PassVariant::kPrefetch;
  if (s == "plain") return pc::PassVariant::kPlain;
  throw py::value_error("pass_variant='" + s + "' is not one of prefetch, plain");
}

class PyCudaState {
 public:
  PyCudaState(std::uintptr_t x, const std::string& dtype, int64_t n, int64_t c, bool from_logits, double temperature,
              bool prune, int device, std::uintptr_t stream, const std::string& steps, const std::string& pass) {
    pc::StateOptions o;
    o.dtype = dtype;
    o.params.n = n;
    o.params.c = c;
    o.params.from_logits = from_logits;
    o.params.temperature = temperature;
    o.params.prune = prune;
    o.device = device;
    o.steps = step_mode_of(steps);
    o.pass = pass_of(pass);
    py::gil_scoped_release nogil;
    state_ = pc::make_state(reinterpret_cast<const void*>(x), o, as_stream(stream));
  }

  int64_t n() const { return state_->params().n; }
  int64_t c() const { return state_->params().c; }
  int64_t num_centers() const { return state_->num_centers(); }
  size_t device_bytes() const { return state_->device_bytes(); }

  void check_row(int64_t i, const char* what) const {
    if (i < 0 || i >= n())
      throw py::index_error(std::string(what) + "=" + std::to_string(i) + " is out of range for " +
                            std::to_string(n()) + " rows");
  }
  void check_rows(const I64Array& rows, const char* what) const {
    if (rows.ndim() != 1) throw py::value_error(std::string(what) + " must be 1-D");
    auto r = rows.unchecked<1>();
    for (py::ssize_t k = 0; k < r.shape(0); ++k) check_row(r(k), what);
  }
  void check_candidates(const I64Array& cand) const {
    if (cand.ndim() != 2 || cand.shape(0) != n())
      throw py::value_error("candidates must have shape (" + std::to_string(n()) + ", k)");
  }
  void check_vectors(const F64Array& v) const {
    if (v.ndim() != 2 || v.shape(1) != c())
      throw py::value_error("vectors must have shape (k, " + std::to_string(c()) + ")");
  }
  void check_vec(const F64Array& v) const {
    if (v.ndim() != 1 || v.shape(0) != c())
      throw py::value_error("vector must have shape (" + std::to_string(c()) + ",)");
  }

  void seed_rows(I64Array rows, std::uintptr_t stream) {
    check_rows(rows, "labeled row");
    py::gil_scoped_release nogil;
    state_->seed_rows(rows.data(), rows.shape(0), as_stream(stream));
  }

  void seed_rows_with_candidates(I64Array rows, I64Array cand, std::uintptr_t stream) {
    check_rows(rows, "labeled row");
    check_candidates(cand);
    py::gil_scoped_release nogil;
    state_->seed_rows_with_candidates(rows.data(), rows.shape(0), cand.data(), cand.shape(1), as_stream(stream));
  }

  void seed_vectors(F64Array vecs, std::uintptr_t stream) {
    check_vectors(vecs);
    py::gil_scoped_release nogil;
    state_->seed_vectors(vecs.data(), vecs.shape(0), as_stream(stream));
  }

  void seed_vectors_with_candidates(F64Array vecs, I64Array cand, std::uintptr_t stream) {
    check_vectors(vecs);
    check_candidates(cand);
    py::gil_scoped_release nogil;
    state_->seed_vectors_with_candidates(vecs.data(), vecs.shape(0), cand.data(), cand.shape(1), as_stream(stream));
  }

  void exclude(I64Array rows, std::uintptr_t stream) {
    check_rows(rows, "row");
    py::gil_scoped_release nogil;
    state_->exclude(rows.data(), rows.shape(0), as_stream(stream));
  }

  void take(int64_t i, std::uintptr_t stream) {
    check_row(i, "row");
    py::gil_scoped_release nogil;
    state_->exclude(&i, 1, as_stream(stream));
  }

  py::tuple push_row(int64_t i, std::uintptr_t stream) {
    check_row(i, "row");
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->push_row(i, as_stream(stream));
    }
    return as_tuple(r);
  }

  py::tuple push_center(F64Array vec, std::uintptr_t stream) {
    check_vec(vec);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->push_center(vec.data(), as_stream(stream));
    }
    return as_tuple(r);
  }

  py::tuple current_best(std::uintptr_t stream) {
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->current_best(as_stream(stream));
    }
    return as_tuple(r);
  }

  py::tuple farthest_from(F64Array vec, std::uintptr_t stream) {
    check_vec(vec);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = state_->farthest_from(vec.data(), as_stream(stream));
    }
    return as_tuple(r);
  }

  F64Array row_vector(int64_t i, std::uintptr_t stream) {
    check_row(i, "row");
    F64Array out(c());
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      state_->row_vector(i, o, as_stream(stream));
    }
    return out;
  }

  void rows_values(I64Array rows, std::uintptr_t out, std::uintptr_t stream) {
    check_rows(rows, "row");
    if (rows.shape(0) > 0 && !out) throw py::value_error("out is a null device pointer");
    py::gil_scoped_release nogil;
    state_->rows_values(rows.data(), rows.shape(0), reinterpret_cast<void*>(out), as_stream(stream));
  }

  F64Array mean_vector(std::uintptr_t stream) {
    F64Array out(c());
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      state_->mean_vector(o, as_stream(stream));
    }
    return out;
  }

  // The whole greedy loop without the GIL. Between segments of steps the
  // GIL is taken to check for Ctrl-C and to call `progress`. The picks live
  // on this object, so when the run raises (Ctrl-C, the callback raised, the
  // pool ran out of rows) last_run() still has the steps that finished.
  py::tuple run(int64_t budget, py::object progress, std::uintptr_t stream) {
    if (budget < 0) throw py::value_error("budget must be >= 0, got " + std::to_string(budget));
    run_picks_.assign(static_cast<size_t>(budget), 0);
    run_radii2_.assign(static_cast<size_t>(budget), 0.0);
    run_count_ = 0;
    auto check = [&](int64_t done) -> bool {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) return false;
      if (!progress.is_none()) {
        try {
          progress(done);
        } catch (py::error_already_set& e) {
          e.restore();
          return false;
        }
      }
      return true;
    };
    pc::RunEnd end;
    {
      py::gil_scoped_release nogil;
      end = state_->run(budget, run_picks_.data(), run_radii2_.data(), &run_count_, check, as_stream(stream));
    }
    if (end == pc::RunEnd::kStopped) throw py::error_already_set();
    if (end == pc::RunEnd::kExhausted)
      throw std::runtime_error("pcoreset: pool exhausted inside the kernel (no eligible row after " +
                               std::to_string(run_count_) + " of " + std::to_string(budget) + " picks)");
    if (!progress.is_none()) progress(budget);
    return last_run();
  }

  // (picks, radii2) of the latest run(), also of one that raised: every pick
  // but possibly the last is a center (the last is one unless the budget
  // ended the run; num_centers tells).
  py::tuple last_run() const {
    const size_t k = static_cast<size_t>(run_count_);
    I64Array p(static_cast<py::ssize_t>(k));
    F64Array r(static_cast<py::ssize_t>(k));
    if (k) {
      std::memcpy(p.mutable_data(), run_picks_.data(), k * sizeof(int64_t));
      std::memcpy(r.mutable_data(), run_radii2_.data(), k * sizeof(double));
    }
    return py::make_tuple(p, r);
  }

  py::tuple export_state(std::uintptr_t stream) {
    const int64_t k = state_->num_centers();
    F64Array mind(n());
    I64Array nearest(n());
    F64Array centers({static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(c())});
    double* m = mind.mutable_data();
    int64_t* nr = nearest.mutable_data();
    double* ct = centers.mutable_data();
    {
      py::gil_scoped_release nogil;
      state_->export_state(m, nr, ct, as_stream(stream));
    }
    return py::make_tuple(mind, nearest, centers);
  }

  // The same checks as the CPU state's load_state (pcoreset/bind_checks.h).
  void load_state(F64Array mind, I64Array nearest, F64Array centers, std::uintptr_t stream) {
    pcoreset::check_state_arrays(mind, nearest, centers, n(), c());
    const int64_t k = centers.shape(0);
    py::gil_scoped_release nogil;
    state_->load_state(mind.data(), nearest.data(), centers.data(), k, as_stream(stream));
  }

  F64Array min_dist2(std::uintptr_t stream) {
    F64Array out(n());
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      state_->min_dist2(o, as_stream(stream));
    }
    return out;
  }

  py::dict stats(std::uintptr_t stream) {
    pc::CudaStats s;
    {
      py::gil_scoped_release nogil;
      s = state_->stats(as_stream(stream));
    }
    py::dict d;
    d["steps"] = s.counts.steps;
    d["rows_computed"] = s.counts.rows_computed;
    d["rows_visited"] = s.counts.rows_visited;
    d["center_dists"] = s.counts.center_dists;
    d["step_mode"] = s.step_mode;
    d["cuda_graph"] = s.cuda_graph;
    d["pass"] = s.pass;
    d["segments"] = s.segments;
    d["grid_blocks"] = s.grid_blocks;
    d["note"] = s.note;
    return d;
  }

 private:
  std::unique_ptr<pc::State> state_;
  std::vector<int64_t> run_picks_;
  std::vector<double> run_radii2_;
  int64_t run_count_ = 0;
};

py::dict build_info() {
  py::dict d;
  d["archs"] = pc::compiled_archs();
  d["cuda_runtime"] = pc::cuda_runtime_version();
  d["nvcc"] = pc::nvcc_version();
  d["fmad"] = false;
  d["lanes"] = 32;
  d["state"] = true;
  d["step_modes"] = py::make_tuple("auto", "persistent", "graph", "launches");
  d["pass_variants"] = py::make_tuple("prefetch", "plain");
  return d;
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pcoreset CUDA kernel (fused, device-resident k-center greedy state)";
  // A failed device allocation leaves the state unchanged: the Python layer
  // frees torch's cached blocks and retries once.
  py::register_exception<pc::DeviceOutOfMemory>(m, "DeviceOutOfMemory", PyExc_MemoryError);
  const auto s = py::arg("stream") = 0;
  py::class_<PyCudaState>(m, "KCenterState")
      .def(py::init<std::uintptr_t, const std::string&, int64_t, int64_t, bool, double, bool, int, std::uintptr_t,
                    const std::string&, const std::string&>(),
           py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("from_logits") = false,
           py::arg("temperature") = 1.0, py::arg("prune") = true, py::arg("device") = 0, s,
           py::arg("steps") = "auto", py::arg("pass_variant") = "prefetch",
           "x: device pointer of an (n, c) C-contiguous pool that stays alive and unchanged while the state exists")
      .def_property_readonly("n", &PyCudaState::n)
      .def_property_readonly("c", &PyCudaState::c)
      .def_property_readonly("num_centers", &PyCudaState::num_centers)
      .def_property_readonly("device_bytes", &PyCudaState::device_bytes)
      .def("seed_rows", &PyCudaState::seed_rows, py::arg("rows"), s)
      .def("seed_rows_with_candidates", &PyCudaState::seed_rows_with_candidates, py::arg("rows"),
           py::arg("candidates"), s)
      .def("seed_vectors", &PyCudaState::seed_vectors, py::arg("vectors"), s)
      .def("seed_vectors_with_candidates", &PyCudaState::seed_vectors_with_candidates, py::arg("vectors"),
           py::arg("candidates"), s)
      .def("exclude", &PyCudaState::exclude, py::arg("rows"), s)
      .def("take", &PyCudaState::take, py::arg("row"), s)
      .def("push_row", &PyCudaState::push_row, py::arg("row"), s)
      .def("push_center", &PyCudaState::push_center, py::arg("vector"), s)
      .def("current_best", &PyCudaState::current_best, s)
      .def("farthest_from", &PyCudaState::farthest_from, py::arg("vector"), s)
      .def("row_vector", &PyCudaState::row_vector, py::arg("row"), s)
      .def("rows_values", &PyCudaState::rows_values, py::arg("rows"), py::arg("out"), s)
      .def("mean_vector", &PyCudaState::mean_vector, s)
      .def("run", &PyCudaState::run, py::arg("budget"), py::arg("progress") = py::none(), s)
      .def("last_run", &PyCudaState::last_run)
      .def("export_state", &PyCudaState::export_state, s)
      .def("load_state", &PyCudaState::load_state, py::arg("mind"), py::arg("nearest"), py::arg("centers"), s)
      .def("min_dist2", &PyCudaState::min_dist2, s)
      .def("stats", &PyCudaState::stats, s);
  m.def("state_bytes", &pc::state_bytes, py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("from_logits"),
        py::arg("n_centers"), py::arg("budget"));
  m.def("build_info", &build_info);
}
