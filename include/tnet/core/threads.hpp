// tnet/core/threads.hpp: the thread count every tnet kernel uses.
//
// tnet parallelises with OpenMP. Without a call to set_num_threads, OpenMP's default applies,
// which honours OMP_NUM_THREADS. Results never depend on the count: work is split into pieces
// whose boundaries depend only on the problem size, and sums are combined in a fixed order.
#pragma once

#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tnet {

/// Sets the number of threads tnet's kernels use (n >= 1).
inline void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("tnet::set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

/// The number of threads a parallel kernel started now would use.
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace tnet
