// pybind11 module pcoreset._C_cuda: thin bindings over the CUDA k-center
// run. No torch C++ ABI: the caller passes device pointers (tensor.data_ptr())
// and its stream handle (torch.cuda.current_stream().cuda_stream) as ints.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "kcenter_cuda.h"

namespace py = pybind11;

namespace {

template <typename T> T* as_ptr(std::uintptr_t p) { return reinterpret_cast<T*>(p); }

void run(std::uintptr_t x, const std::string& dtype, int64_t n, int64_t c, bool from_logits, double temperature,
         bool prune, std::uintptr_t labeled, int64_t n_labeled, std::uintptr_t candidates, int64_t k, int64_t budget,
         std::uintptr_t picks, std::uintptr_t radii2, std::uintptr_t stats, std::uintptr_t workspace,
         std::size_t workspace_size, int device, std::uintptr_t stream, bool use_graphs) {
  pcoreset::cuda::CudaRunArgs a;
  a.x = as_ptr<const void>(x);
  a.dtype = dtype;
  a.params.n = n;
  a.params.c = c;
  a.params.from_logits = from_logits;
  a.params.temperature = temperature;
  a.params.prune = prune;
  a.labeled = as_ptr<const int64_t>(labeled);
  a.n_labeled = n_labeled;
  a.candidates = candidates ? as_ptr<const int64_t>(candidates) : nullptr;
  a.k = k;
  a.budget = budget;
  a.picks = as_ptr<int64_t>(picks);
  a.radii2 = as_ptr<double>(radii2);
  a.stats = as_ptr<int64_t>(stats);
  a.workspace = as_ptr<void>(workspace);
  a.workspace_size = workspace_size;
  a.device = device;
  a.stream = as_ptr<void>(stream);
  a.use_graphs = use_graphs;
  py::gil_scoped_release nogil;
  pcoreset::cuda::run(a);
}

py::dict build_info() {
  py::dict d;
  d["archs"] = pcoreset::cuda::compiled_archs();
  d["cuda_runtime"] = pcoreset::cuda::cuda_runtime_version();
  d["nvcc"] = pcoreset::cuda::nvcc_version();
  d["fmad"] = false;
  d["lanes"] = 32;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pcoreset CUDA kernel (fused, device-resident k-center greedy)";
  m.def("workspace_bytes", &pcoreset::cuda::workspace_bytes, py::arg("dtype"), py::arg("n"), py::arg("c"),
        py::arg("from_logits"), py::arg("n_labeled"), py::arg("budget"));
  m.def("run", &run, py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("from_logits"),
        py::arg("temperature"), py::arg("prune"), py::arg("labeled"), py::arg("n_labeled"), py::arg("candidates"),
        py::arg("k"), py::arg("budget"), py::arg("picks"), py::arg("radii2"), py::arg("stats"), py::arg("workspace"),
        py::arg("workspace_size"), py::arg("device"), py::arg("stream"), py::arg("use_graphs") = true);
  m.def("build_info", &build_info);
}
