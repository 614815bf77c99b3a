// Checks shared by the pybind11 modules pcoreset._C and pcoreset._C_cuda
// (pybind11 only: not included by kernel code).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace pcoreset {

// The arrays a state's load_state takes (as export_state gives them): one
// running minimum and one nearest center per row, (k, c) center values, and
// every row's nearest center one of them (or -1 for a row with no center).
template <typename F64Array, typename I64Array>
void check_state_arrays(const F64Array& mind, const I64Array& nearest, const F64Array& centers, int64_t n,
                        int64_t c) {
  namespace py = pybind11;
  if (mind.ndim() != 1 || mind.shape(0) != n || nearest.ndim() != 1 || nearest.shape(0) != n)
    throw py::value_error("mind and nearest must have one value per row (" + std::to_string(n) + ")");
  if (centers.ndim() != 2 || centers.shape(1) != c)
    throw py::value_error("centers must have shape (k, " + std::to_string(c) + ")");
  const int64_t k = centers.shape(0);
  auto nr = nearest.template unchecked<1>();
  auto md = mind.template unchecked<1>();
  for (py::ssize_t i = 0; i < nr.shape(0); ++i) {
    if (nr(i) < -1 || nr(i) >= k)
      throw py::value_error("nearest[" + std::to_string(i) + "]=" + std::to_string(nr(i)) + " is not a center");
    if (!(md(i) == md(i)) || (md(i) >= 0 && nr(i) < 0 && k > 0))
      throw py::value_error("mind[" + std::to_string(i) + "] is inconsistent with nearest");
  }
}

}  // namespace pcoreset
