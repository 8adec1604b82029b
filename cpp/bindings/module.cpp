// The extension module only wires up the binding areas; each lives in its own bind_*.cpp.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_rng(py::module_& m);
void register_samplers(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "gensamp's C++ chain engine (use the gensamp package, not this module directly)";
  register_rng(m);
  register_samplers(m);
}
