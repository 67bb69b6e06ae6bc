// tnet/core/rng.hpp: a counter-based random generator.
//
// Every random number tnet draws is uniform(key, index) = splitmix64(key ^ splitmix64(index)),
// a pure function of its key and position. That makes initialisation and dropout independent of
// the thread count and of the order work is done in, and lets tests/fixtures/make_fixtures.py
// reproduce tnet's weights and dropout masks exactly in numpy.
#pragma once

#include <cstdint>

namespace tnet {

constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  constexpr explicit Rng(std::uint64_t seed = 0) : key_(splitmix64(seed)) {}

  /// An independent generator for a sub-stream (a layer, a training step).
  constexpr Rng derive(std::uint64_t stream) const { return from_key(bits(stream)); }

  /// 64 random bits at position `index`.
  constexpr std::uint64_t bits(std::uint64_t index) const { return splitmix64(key_ ^ splitmix64(index)); }

  /// Uniform in [0, 1) with 24 random bits: exactly representable as a float. (Converted from a
  /// signed integer, which vectorises: x86 has no unsigned 64-bit conversion before AVX-512.)
  constexpr float uniform(std::uint64_t index) const { return static_cast<float>(static_cast<std::int32_t>(bits(index) >> 40)) * 0x1p-24f; }

  /// Uniform in [-limit, limit).
  constexpr float symmetric(std::uint64_t index, float limit) const { return (2.0f * uniform(index) - 1.0f) * limit; }

  constexpr std::uint64_t key() const { return key_; }

 private:
  static constexpr Rng from_key(std::uint64_t key) {
    Rng r;
    r.key_ = key;
    return r;
  }
  std::uint64_t key_;
};

}  // namespace tnet
