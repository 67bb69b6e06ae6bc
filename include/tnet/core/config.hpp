// tnet/core/config.hpp: the one place that includes Eigen, so its configuration is tnet's.
//
// tnet partitions every GEMM itself (core/gemm.hpp) into tiles whose shapes depend only on the
// matrix sizes, never on the thread count, so results are bit-identical for any thread count.
// Eigen's own OpenMP parallelisation would pick blocking sizes from the thread count, so it is
// switched off.
#pragma once

#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif

#include <Eigen/Core>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

#include <bit>

static_assert(std::endian::native == std::endian::little, "tnet: model files and fixtures are little-endian; this platform is not");

namespace tnet {

/// Allocates on cache-line (64-byte) boundaries, whatever instruction set the program is built
/// for. (Eigen's aligned_allocator aligns only as far as the build's own vectors need: 16 bytes in
/// a portable build, where tnet's AVX-512 kernels then load and store 64 bytes across two cache
/// lines, which costs most in products that write much.) Through malloc, so that whatever watches
/// malloc sees these allocations too (tests/step_allocations.cpp).
template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::size_t alignment = 64;
  CacheAligned() = default;
  template <class U>
  constexpr CacheAligned(const CacheAligned<U>&) noexcept {}
  // `alignment` bytes more than asked; malloc's own pointer is kept just before the aligned block
  // (malloc aligns to at least 8 bytes, so the block starts at least 8 bytes past it).
  T* allocate(std::size_t n) {
    if (n > (std::numeric_limits<std::size_t>::max() - alignment) / sizeof(T)) throw std::bad_array_new_length();
    void* raw = std::malloc(n * sizeof(T) + alignment);
    if (!raw) throw std::bad_alloc();
    const std::uintptr_t aligned = (reinterpret_cast<std::uintptr_t>(raw) + alignment) & ~std::uintptr_t(alignment - 1);
    reinterpret_cast<void**>(aligned)[-1] = raw;
    return reinterpret_cast<T*>(aligned);
  }
  void deallocate(T* p, std::size_t) noexcept {
    if (p) std::free(reinterpret_cast<void**>(p)[-1]);
  }
  template <class U>
  bool operator==(const CacheAligned<U>&) const noexcept {
    return true;
  }
};

/// One contiguous float buffer on a cache-line boundary: an activation, a parameter, a workspace.
using Buffer = std::vector<float, CacheAligned<float>>;

/// Grows `buffer` to at least `size` elements, discarding its contents when it grows: for
/// workspaces, which only ever grow, so a training step at a batch size seen before allocates
/// nothing. The old buffer is freed before the new one is taken, and the new one is exactly
/// `size` long (a vector's resize would copy the old contents and may double the capacity).
inline void ensure_size(Buffer& buffer, std::size_t size) {
  if (buffer.size() >= size) return;
  Buffer().swap(buffer);
  buffer.reserve(size);
  buffer.resize(size);
}

/// What a forward pass is for.
///   train:     batch statistics, dropout, moving averages updated, caches kept for backward
///   infer:     moving statistics, no dropout
///   calibrate: batch statistics and moving averages updated as in training, but no dropout, as
///              in inference: re-estimates batch-norm statistics under the conditions they will
///              be used in (Sequential::reset_batch_norm_statistics)
enum class Mode { train, infer, calibrate };

/// How inference computes (Sequential::set_inference_precision): in float (fp32), or in bfloat16
/// where it pays (bf16): the dense layers' kernels rounded to bfloat16, half the bytes to read,
/// and on CPUs with AVX512_BF16 the convolutions' products that Winograd's do not take, and the
/// dense layers' of more than 4 rows, computed from rounded kernels and activations
/// (core/gemm_bf16.hpp); every sum in float.
enum class Precision { fp32, bf16 };

class Reducer;

/// What a layer needs to know about the pass it is part of. `step` numbers training passes; it
/// makes dropout masks a pure function of (seed, layer, step, element), so they are independent of
/// the thread count and a resumed run draws the masks the uninterrupted one would have.
/// In data-parallel training (core/reducer.hpp) the batch is one process's slice of a global
/// batch: its first sample is sample `sample_offset` of the global batch (dropout draws the
/// global batch's masks), and `reducer` sums what must be the global batch's over the processes
/// (batch normalisation's statistics). Null: the batch is the whole batch.
/// `prepared`: the layers' copies of their weights for inference (a convolution's packed kernel:
/// prepare_inference) are current, and an inference may read them; Sequential's inference says so.
struct Pass {
  Mode mode = Mode::infer;
  std::uint64_t step = 0;
  Reducer* reducer = nullptr;
  std::uint64_t sample_offset = 0;
  bool prepared = false;
};

}  // namespace tnet
