// The noise stream and build facts, exposed so tests can check them against independent
// sources (Random123 known-answer vectors, the numpy reference).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <map>
#include <stdexcept>
#include <string>

#include "activations.hpp"
#include "cpu_features.hpp"
#include "gemm.hpp"
#include "gensamp/philox.hpp"
#include "noise.hpp"

#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

void register_rng(py::module_& m) {
  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
        const auto r = gensamp::philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
        return std::array<uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key"));
  m.def(
      "normals",
      [](uint64_t seed, uint64_t chain, uint32_t step, int d) {
        if (d < 1) throw std::invalid_argument("d must be >= 1");
        py::array_t<float> out(d);
        gensamp::tile_normals(seed, chain, 1, step, d, out.mutable_data(), 1);
        return out;
      },
      py::arg("seed"), py::arg("chain"), py::arg("step"), py::arg("d"));
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
  m.def("max_threads", [] {
#ifdef GENSAMP_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });
  m.attr("have_openmp") =
#ifdef GENSAMP_HAVE_OPENMP
      true;
#else
      false;
#endif
  m.attr("init_step") = gensamp::kInitStep;
}
