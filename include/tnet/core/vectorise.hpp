// tnet/core/vectorise.hpp: element-wise loops compiled for the CPU the program runs on.
//
// The GEMM kernels are compiled for AVX2 + FMA and AVX-512 as well as the build's instruction set
// and picked at run time (core/gemm_kernels.hpp); vectorised(body) does the same for the loops
// around them (batch normalisation, pooling, dropout, the optimisers, reductions): body is
// compiled for each target (core/targets.hpp), and the copy for the instruction set of
// gemm_kernel() runs. One switch, use_gemm_kernel, thus selects every kernel's instruction set, in
// tests and benchmarks too.
//
// body runs on the calling thread: call vectorised inside parallel loops, once per piece of work
// (OpenMP's outlined loop bodies do not inherit a target attribute). for_blocks does both.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "gemm_kernels.hpp"

namespace tnet {

namespace detail {
/// condition ? yes : no, as bit masks: a select between values computed either way, which the
/// compiler vectorises (a ?: whose arm multiplies it keeps as a branch, as the product might trap;
/// on random signs the branch mispredicts, and the loop around it stays scalar).
inline float select(bool condition, float yes, float no) {
  const std::uint32_t mask = -std::uint32_t(condition);
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(yes) & mask) | (std::bit_cast<std::uint32_t>(no) & ~mask));
}
}  // namespace detail

/// Runs body(args...) compiled for the instruction set of gemm_kernel(): AVX-512, AVX2 + FMA, or
/// the build's own for Eigen's kernels. Body and arguments are copied (a lambda capturing by
/// value, pointers and numbers as arguments).
template <class Body, class... Args>
void vectorised(const Body& body, Args... args) {
  detail::run_for(detail::target_of(gemm_kernel()), body, args...);
}

/// body(begin, end) for consecutive blocks of `block` indices covering [0, count), in parallel,
/// each run as vectorised() runs it. The blocks depend only on count and block.
template <class Body>
void for_blocks(std::ptrdiff_t count, std::ptrdiff_t block, const Body& body) {
  const std::ptrdiff_t blocks = (count + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (std::ptrdiff_t b = 0; b < blocks; ++b) {
    const std::ptrdiff_t begin = b * block, end = std::min(count, begin + block);
    vectorised(body, begin, end);
  }
}

}  // namespace tnet
