// tnet/core/vectorise.hpp: element-wise loops compiled for the CPU the program runs on.
//
// A binary built for any x86-64 (the default) vectorises its loops for SSE2: 4 floats or 2
// doubles at a time, no 64-bit multiply. The GEMM kernels are compiled for AVX2 + FMA and AVX-512
// as well and picked at run time (core/gemm_kernels.hpp); vectorised(body) does the same for the
// loops around them (batch normalisation, pooling, dropout, the optimisers, reductions): body is
// compiled three times, inlined into functions with `target` attributes (`flatten`), and the
// copy for the instruction set of gemm_kernel() runs. One switch, use_gemm_kernel, thus selects
// every kernel's instruction set, in tests and benchmarks too. In a build for the host
// (-march=native) the copies are alike.
//
// body runs on the calling thread: call vectorised inside parallel loops, once per piece of work
// (OpenMP's outlined loop bodies do not inherit a target attribute). for_blocks does both.
#pragma once

#include <algorithm>
#include <cstddef>

#include "gemm_kernels.hpp"

namespace tnet {

namespace detail {
#if TNET_X86_KERNELS
// x86-64-v4's AVX-512 subsets (what -march=x86-64-v4 enables): 64-bit multiplies (DQ), 8/16-bit
// lanes (BW) and masked 128/256-bit forms (VL) as well as AVX-512F.
inline bool runs_x86_64_v4() {
  static const bool v4 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return v4;
}
// body and its arguments are taken by value (run_default's too): a copy of a closure is the
// function's own, so the compiler keeps its captures in registers, where stores through the
// captured pointers could otherwise (for all it knows) change them, and loops would not vectorise.
template <class Body, class... Args>
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"), flatten)) void run_avx512(Body body, Args... args) {
  body(args...);
}
template <class Body, class... Args>
__attribute__((target("avx2,fma"), flatten)) void run_avx2(Body body, Args... args) {
  body(args...);
}
#endif
template <class Body, class... Args>
void run_default(Body body, Args... args) {
  body(args...);
}
}  // namespace detail

/// Runs body(args...) compiled for the instruction set of gemm_kernel(): AVX-512 (when the CPU
/// has x86-64-v4's subsets, else AVX2), AVX2 + FMA, or the build's own for Eigen's kernels. Body
/// and arguments are copied (a lambda capturing by value, pointers and numbers as arguments).
template <class Body, class... Args>
void vectorised(const Body& body, Args... args) {
#if TNET_X86_KERNELS
  switch (gemm_kernel()) {
    case GemmKernel::avx512:
      if (detail::runs_x86_64_v4()) return detail::run_avx512(body, args...);
      return detail::run_avx2(body, args...);
    case GemmKernel::avx2:
      return detail::run_avx2(body, args...);
    default:
      break;
  }
#endif
  detail::run_default(body, args...);
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
