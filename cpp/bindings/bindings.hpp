// What the bind_*.cpp files share: the array types they accept, how engine calls release the
// GIL and poll for Ctrl-C, and the register_*() entry points module.cpp calls, one per binding
// area.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>

namespace gensamp_py {

namespace py = pybind11;

// C-contiguous arrays; forcecast converts any numeric array (a copy only when needed).
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline F32 rows(int64_t n, int d) { return F32({py::ssize_t(n), py::ssize_t(d)}); }

// Engine work without the GIL, in place of py::gil_scoped_release: released on construction,
// taken back on destruction, except once the interpreter is exiting, when the thread never
// returns into Python (see exit_guard.cpp for why).
class WithoutGil {
 public:
  WithoutGil();
  ~WithoutGil();
  WithoutGil(const WithoutGil&) = delete;
  WithoutGil& operator=(const WithoutGil&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

// The engine's poll (RunOptions::poll, set-up's StopFn), called inside a WithoutGil: takes the
// GIL briefly so that Python runs its signal handlers. True when one raised (Ctrl-C: the
// KeyboardInterrupt is pending, to be raised once the GIL is back) or the interpreter is
// exiting.
bool poll_signals();
// The same, then progress(fraction) when progress is not None; an exception it raises cancels
// the run and is raised by the caller once the GIL is back.
bool poll_signals(const py::object& progress, double fraction);

// poll_signals() at most every 50 ms, for callers that ask far more often; a true sticks.
class ThrottledPoll {
 public:
  bool operator()();

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  bool cancelled_ = false;
};

// Registers the atexit callback behind WithoutGil; once, at import.
void install_exit_guard();

}  // namespace gensamp_py

void register_models(pybind11::module_& m);    // bind_models.cpp
void register_samplers(pybind11::module_& m);  // bind_samplers.cpp
void register_rng(pybind11::module_& m);       // bind_rng.cpp
void register_build(pybind11::module_& m);     // bind_build.cpp
void register_density(pybind11::module_& m);   // bind_density.cpp
