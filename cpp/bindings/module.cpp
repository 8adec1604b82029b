// The extension module only wires up the binding areas; each lives in its own bind_*.cpp.
//
// Where arguments are checked: once, at the Python edge. python/gensamp (samplers.py,
// weights.py, mixture.py, _arrays.py) validates every user argument and says what is wrong with
// it. The binding trusts those values and checks only what memory safety needs, since _core can
// be called directly: array ranks and shapes, the sizes that size buffers (n, d, a non-empty
// schedule, a decoder's even output width) and that no buffer is read uninitialised. The C++
// core's model constructors keep their own shape invariants (their C++ callers have no Python
// in front of them). One value check remains here, pinned by tests/test_errors.py: weights that
// are not finite.
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "gensamp's C++ chain engine (use the gensamp package, not this module directly)";
  register_models(m);
  register_samplers(m);
  register_density(m);
  register_rng(m);
  register_build(m);
}
