// Lets set-up loops ask "stop now?" per item of work without paying for a call (and the clock
// read behind it) per item: the StopFn is called once some amount of work has been done.
#pragma once
#include <cstdint>

#include "gensamp/model.hpp"

namespace gensamp {

class StopCheck {
 public:
  explicit StopCheck(const StopFn& stop) : stop_(stop) {}
  // Counts `units` of work (about a multiply-add each); true once the StopFn said stop.
  bool operator()(uint64_t units) {
    done_ += units;
    if (done_ < kUnits) return false;
    done_ = 0;
    return stop_ && stop_();
  }

 private:
  static constexpr uint64_t kUnits = uint64_t(1) << 16;  // well under a millisecond
  const StopFn& stop_;
  uint64_t done_ = 0;
};

}  // namespace gensamp
