// tnet/core/hash.hpp: FNV-1a-64, the checksum of model files and the fingerprint processes compare
// (tnet/dist/mpi.hpp); XXH64, the checksum of image caches (data/cache.hpp), fast enough to check
// every image as it is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tnet {

/// FNV-1a-64's offset basis: the hash of no bytes, where a hash of several pieces starts.
inline constexpr std::uint64_t fnv1a64_basis = 0xcbf29ce484222325ull;

/// FNV-1a-64 of `size` bytes, continuing from `h` (the hash of the bytes before them): a cheap
/// fingerprint, not a cryptographic hash. Hashing pieces in turn, each from the last's result,
/// gives the hash of their concatenation.
inline std::uint64_t fnv1a64(const char* data, std::size_t size, std::uint64_t h = fnv1a64_basis) {
  for (std::size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace tnet

namespace tnet::detail {

// XXH64 (xxHash, 64 bits) of `size` bytes with `seed`, as the reference implementation computes
// it: four lanes of 8-byte words multiplied and rotated, then mixed, at several bytes a cycle.
inline std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0) {
  constexpr std::uint64_t p1 = 0x9E3779B185EBCA87ull, p2 = 0xC2B2AE3D27D4EB4Full, p3 = 0x165667B19E3779F9ull, p4 = 0x85EBCA77C2B2AE63ull,
                          p5 = 0x27D4EB2F165667C5ull;
  auto rotl = [](std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  auto read64 = [](const unsigned char* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;  // little-endian machines only (as every tnet file)
  };
  auto round = [&](std::uint64_t acc, std::uint64_t input) { return rotl(acc + input * p2, 31) * p1; };
  auto merge = [&](std::uint64_t acc, std::uint64_t lane) { return (acc ^ round(0, lane)) * p1 + p4; };
  const unsigned char* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  std::uint64_t h;
  if (size >= 32) {
    std::uint64_t v1 = seed + p1 + p2, v2 = seed + p2, v3 = seed, v4 = seed - p1;
    for (; end - p >= 32; p += 32) {
      v1 = round(v1, read64(p));
      v2 = round(v2, read64(p + 8));
      v3 = round(v3, read64(p + 16));
      v4 = round(v4, read64(p + 24));
    }
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = seed + p5;
  }
  h += size;
  for (; end - p >= 8; p += 8) h = rotl(h ^ round(0, read64(p)), 27) * p1 + p4;
  if (end - p >= 4) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    h = rotl(h ^ (std::uint64_t(v) * p1), 23) * p2 + p3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl(h ^ (*p * p5), 11) * p1;
  h ^= h >> 33;
  h *= p2;
  h ^= h >> 29;
  h *= p3;
  return h ^ (h >> 32);
}

}  // namespace tnet::detail
