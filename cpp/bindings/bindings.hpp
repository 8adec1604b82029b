// What the bind_*.cpp files share: the array types they accept, and the register_*() entry
// points module.cpp calls, one per binding area.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

namespace gensamp_py {

namespace py = pybind11;

// C-contiguous arrays; forcecast converts any numeric array (a copy only when needed).
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline F32 rows(int64_t n, int d) { return F32({py::ssize_t(n), py::ssize_t(d)}); }

}  // namespace gensamp_py

void register_models(pybind11::module_& m);    // bind_models.cpp
void register_samplers(pybind11::module_& m);  // bind_samplers.cpp
void register_rng(pybind11::module_& m);       // bind_rng.cpp
void register_build(pybind11::module_& m);     // bind_build.cpp
