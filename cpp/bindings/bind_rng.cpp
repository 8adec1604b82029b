// The noise stream, exposed so tests can check it against independent sources (Random123
// known-answer vectors, the numpy reference). Argument checks: see the rule in module.cpp.
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings.hpp"
#include "gensamp/philox.hpp"
#include "noise.hpp"

using namespace gensamp_py;

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
        if (d < 1) throw py::value_error("d must be >= 1");
        py::array_t<float> out(d);
        gensamp::tile_normals(seed, chain, 1, step, d, out.mutable_data(), 1);
        return out;
      },
      py::arg("seed"), py::arg("chain"), py::arg("step"), py::arg("d"));
  m.def(
      "uniforms",
      [](uint64_t seed, uint64_t chain, uint32_t step, int d) {
        if (d < 1) throw py::value_error("d must be >= 1");
        py::array_t<double> out(d);
        gensamp::chain_uniforms(seed, chain, step, d, out.mutable_data());
        return out;
      },
      py::arg("seed"), py::arg("chain"), py::arg("step"), py::arg("d"));
  m.attr("init_step") = gensamp::kInitStep;
}
