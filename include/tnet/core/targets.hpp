// tnet/core/targets.hpp: code compiled for the instruction set of the CPU the program runs on.
//
// A binary built for any x86-64 (the default) is compiled for SSE2: 4 floats or 2 doubles at a
// time, no fused multiply-add, no 64-bit multiply. run_for<target>(body, args...) runs body
// inlined (`flatten`) into a function compiled for `target` with a GCC / Clang `target` attribute:
// AVX-512 (x86-64-v4's subsets) or AVX2 + FMA, or the build's own instruction set. tnet's kernels
// (core/gemm_kernels.hpp) and the loops around them (core/vectorise.hpp) are all run this way, so
// a portable binary computes as wide as one built for the host; in a build for the host
// (-march=native) the copies are alike. Calls inside body that are marked noinline, or compiled
// for another target, stay calls.
//
// body runs on the calling thread: call run_for inside parallel loops, once per piece of work
// (OpenMP's outlined loop bodies do not inherit a target attribute).
//
// A program built for the machine it runs on (-march=native) can say so with TNET_NATIVE=1 (CMake's
// TNET_NATIVE does, for tnet's own programs): then no code is compiled for AVX-512 unless the
// build's instruction set has it, as such code could never run. Every AVX-512 copy is then the
// AVX2 one (detail::Avx512 is detail::Avx2), which the CPU checks never pick instead, so results
// are those of the same program built without it; it only compiles faster. TNET_NO_AVX512=1 does
// the same in a portable build: tnet's quick tests use it on a machine without AVX-512, where
// that code could not run.
#pragma once

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define TNET_X86_KERNELS 1
#include <immintrin.h>
#else
#define TNET_X86_KERNELS 0
#endif

/// Whether code for AVX-512 is compiled (see above).
#if TNET_X86_KERNELS && !(defined(TNET_NO_AVX512) && TNET_NO_AVX512) && \
    (!defined(TNET_NATIVE) || TNET_NATIVE == 0 ||                       \
     (defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)))
#define TNET_AVX512_KERNELS 1
#else
#define TNET_AVX512_KERNELS 0
#endif

namespace tnet::detail {

/// What code is compiled for: the build's instruction set, AVX2 + FMA, or AVX-512 (x86-64-v4).
enum class Target { build, avx2, avx512 };

#if TNET_X86_KERNELS
/// Whether the CPU runs x86-64-v4's AVX-512 subsets (what -march=x86-64-v4 enables): 64-bit
/// multiplies (DQ), 8/16-bit lanes (BW) and masked 128/256-bit forms (VL) as well as AVX-512F.
/// Every AVX-512 CPU since Skylake does; Target::avx512 needs them.
inline bool runs_x86_64_v4() {
  static const bool v4 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return v4;
}
// body and its arguments are taken by value (run_build's too): a copy of a closure is the
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
#else
inline bool runs_x86_64_v4() { return false; }
#endif
template <class Body, class... Args>
void run_build(Body body, Args... args) {
  body(args...);
}

/// body(args...) compiled for `target`, which the CPU must run (elsewhere than on x86-64, every
/// target is the build's). Body and arguments are copied: a lambda capturing by value, pointers
/// and numbers as arguments.
template <Target target, class Body, class... Args>
void run_for(const Body& body, Args... args) {
#if TNET_X86_KERNELS
  // Without AVX-512 code, Target::avx512 is never picked: its copy is the AVX2 one.
  if constexpr (target == Target::avx512 && TNET_AVX512_KERNELS) return run_avx512(body, args...);
  if constexpr (target == Target::avx2 || target == Target::avx512) return run_avx2(body, args...);
#endif
  run_build(body, args...);
}

/// The same with the target known only at run time: body is compiled for each.
template <class Body, class... Args>
void run_for(Target target, const Body& body, Args... args) {
  switch (target) {
    case Target::avx512:
      return run_for<Target::avx512>(body, args...);
    case Target::avx2:
      return run_for<Target::avx2>(body, args...);
    default:
      return run_for<Target::build>(body, args...);
  }
}

}  // namespace tnet::detail
