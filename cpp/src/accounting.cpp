#include <cstdint>
#include <limits>

#include "gensamp/model.hpp"

namespace gensamp {

uint64_t sat_add(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

uint64_t sat_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a)
    return std::numeric_limits<uint64_t>::max();
  return a * b;
}

uint64_t block_bytes(uint64_t count, uint64_t size) {
  return count == 0 ? 0 : sat_add(sat_mul(count, size), kBlockOverhead);
}

}  // namespace gensamp
