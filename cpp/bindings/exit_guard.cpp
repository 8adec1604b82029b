// Engine calls and interpreter exit.
//
// An engine call releases the GIL while it works; its Ctrl-C poll takes the GIL back briefly,
// and so does its return into Python. Once CPython is finalising, a thread other than the
// finalising one that asks for the GIL is ended on the spot with pthread_exit (3.14 parks it
// instead). glibc ends a thread by unwinding it with abi::__forced_unwind, which C++ frames
// cannot survive here: inside an OpenMP region it cannot propagate (std::terminate), caught it
// aborts the process ("FATAL: exception not rethrown"), through a destructor it terminates.
// That was the exit status 134 of a program that ended while a daemon thread sampled.
//
// So an engine thread never asks for the GIL once exit has begun. atexit callbacks run before
// finalisation, while every thread can still take the GIL; the one registered here raises a
// flag and, with the GIL released, waits (at most kExitWait) for the engine calls in flight to
// end. Their polls see the flag and cancel them without taking the GIL; a thread that had
// already decided to take it is let through first. A call that ends after the flag is up never
// returns into Python: its thread parks until the process ends, as CPython 3.14 does with such
// threads. The thread running the atexit callbacks (the main one) is never held back.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "bindings.hpp"

namespace gensamp_py {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kExitWait = std::chrono::seconds(2);  // cancelled runs end within milliseconds

std::atomic<bool> g_exiting{false};
std::atomic<int> g_in_engine{0};   // calls between releasing the GIL and taking it back
std::atomic<int> g_taking_gil{0};  // threads allowed to take the GIL that do not have it yet
std::atomic<unsigned long> g_main_thread{0};
thread_local bool t_runs_exit = false;  // this thread runs the atexit callbacks

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Whether this thread may still ask for the GIL. Besides the flag, a finalising interpreter
// (atexit callbacks cleared, so the flag was never raised) holds back every thread but the main
// one, which is the one that finalises.
bool may_take_gil() {
  if (t_runs_exit) return true;
  if (g_exiting.load()) return false;
  return !(finalizing() && PyThread_get_thread_ident() != g_main_thread.load());
}

[[noreturn]] void park() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

// Registered with atexit: runs with the GIL held, before finalisation.
void on_interpreter_exit() {
  t_runs_exit = true;
  g_exiting.store(true);
  if (g_in_engine.load() == 0 && g_taking_gil.load() == 0) return;
  py::gil_scoped_release nogil;
  const auto deadline = Clock::now() + kExitWait;
  while (g_in_engine.load() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Not bounded: these threads only wait for the GIL, which is free.
  while (g_taking_gil.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void reset_in_child() {
  // Only the forking thread lives on, and it held the GIL, so it was in no engine call.
  g_in_engine = 0;
  g_taking_gil = 0;
}

}  // namespace

void install_exit_guard() {
  g_main_thread =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  py::module_::import("atexit").attr("register")(py::cpp_function(&on_interpreter_exit));
  // Once per process, like the fork guard in bind_samplers.cpp.
  static const bool installed = pthread_atfork(nullptr, nullptr, reset_in_child) == 0;
  (void)installed;
}

WithoutGil::WithoutGil() {
  if (!may_take_gil()) {  // a daemon thread starting a call after exit began
    PyEval_SaveThread();
    park();
  }
  ++g_in_engine;
  state_ = PyEval_SaveThread();
}

WithoutGil::~WithoutGil() {
  // seq_cst on both sides: either this thread sees the flag, or the exit callback sees this
  // thread on its way to the GIL and waits for it.
  ++g_taking_gil;
  if (!may_take_gil()) {
    --g_taking_gil;
    --g_in_engine;
    park();
  }
  PyEval_RestoreThread(state_);
  --g_taking_gil;
  --g_in_engine;
}

bool poll_signals() {
  ++g_taking_gil;
  if (!may_take_gil()) {
    --g_taking_gil;
    return true;  // cancel: the interpreter is exiting
  }
  py::gil_scoped_acquire g;
  --g_taking_gil;
  return PyErr_CheckSignals() != 0;
}

bool poll_signals(const py::object& progress, double fraction) {
  ++g_taking_gil;
  if (!may_take_gil()) {
    --g_taking_gil;
    return true;
  }
  py::gil_scoped_acquire g;
  --g_taking_gil;
  if (PyErr_CheckSignals() != 0) return true;
  if (progress.is_none()) return false;
  try {
    progress(fraction);
  } catch (py::error_already_set& e) {
    e.restore();  // raised by the caller once the run has stopped, like a KeyboardInterrupt
    return true;
  }
  return false;
}

bool ThrottledPoll::operator()() {
  const auto now = Clock::now();
  if (now - last_ < std::chrono::milliseconds(50)) return cancelled_;
  last_ = now;
  cancelled_ = cancelled_ || poll_signals();
  return cancelled_;
}

}  // namespace gensamp_py
