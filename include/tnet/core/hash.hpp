// tnet/core/hash.hpp: FNV-1a-64, the checksum of model files and image caches, and the fingerprint
// processes compare (tnet/dist/mpi.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tnet::detail {

inline constexpr std::uint64_t fnv1a64_basis = 0xcbf29ce484222325ull;

// FNV-1a-64 of `size` bytes, continuing from `h` (the hash of the bytes before them).
inline std::uint64_t fnv1a64(const char* data, std::size_t size, std::uint64_t h = fnv1a64_basis) {
  for (std::size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace tnet::detail
