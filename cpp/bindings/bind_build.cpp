// Facts about this build and machine: version, SIMD levels, OpenMP.
#include <pybind11/stl.h>

#include <map>
#include <string>

#include "activations.hpp"
#include "bindings.hpp"
#include "cpu_features.hpp"
#include "gemm.hpp"
#include "noise.hpp"

#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif

using namespace gensamp_py;

namespace {

void bind_simd(py::module_& m) {
  m.def("simd_level", [] { return gensamp::simd_level_name(gensamp::simd_level()); });
  // What each kernel family actually runs: all of them must equal simd_level().
  m.def("simd_levels", [] {
    using gensamp::simd_level_name;
    return std::map<std::string, std::string>{
        {"layer", simd_level_name(gensamp::layer_kernel_level())},
        {"narrow", simd_level_name(gensamp::narrow_kernel_level())},
        {"noise", simd_level_name(gensamp::noise_level())},
        {"activations", simd_level_name(gensamp::activation_level())},
    };
  });
}

void bind_openmp(py::module_& m) {
  m.def("max_threads", [] {
#ifdef GENSAMP_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });
#ifdef GENSAMP_HAVE_OPENMP
  m.attr("have_openmp") = true;
#else
  m.attr("have_openmp") = false;
#endif
}

}  // namespace

void register_build(py::module_& m) {
  m.attr("__version__") = GENSAMP_VERSION;  // pyproject.toml's, passed in by CMakeLists.txt
  bind_simd(m);
  bind_openmp(m);
}
