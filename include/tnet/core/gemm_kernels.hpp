// tnet/core/gemm_kernels.hpp: tnet's own matrix-product kernels for x86-64, chosen at run time.
//
// Eigen picks its vector width when a program is compiled: a binary built for any x86-64 (the
// default) multiplies with SSE2 even on a CPU with AVX-512, a quarter of its vector width. These kernels
// are compiled for AVX2 + FMA and for AVX-512 in every build (GCC / Clang `target` attributes) and
// the widest one the CPU runs is picked when the program starts; elsewhere gemm() uses Eigen.
//
// The scheme is the usual packed one (Goto / BLIS). A block of C (rows m0.., columns n0..) is
// computed in steps of at most `kernel_depth` along K: the step's rows of op(A) are read where
// they lie when contiguous along K, else copied into panels of MR rows, [k][row] (or gathered
// from images: layers/conv2d.hpp), and its columns of op(B) copied into panels of NR columns,
// [k][column], zero-padded (or read where they lie when large and contiguous); then a
// micro-kernel multiplies MR rows of A by one B panel with MR x NR accumulators held in vector
// registers and adds the result to C (or writes it, on the first step unless accumulating).
// Every element of C is thus the same sequence of fused multiply-adds whatever the thread count:
// k in order within a step, steps added to C in order.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bfloat16.hpp"
#include "config.hpp"
#include "targets.hpp"

namespace tnet {

/// The kernels gemm() can multiply with: Eigen's (vectorised for the compile-time target), or
/// tnet's own for AVX2 + FMA or AVX-512.
enum class GemmKernel { eigen, avx2, avx512 };

inline const char* name(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::avx2:
      return "avx2";
    case GemmKernel::avx512:
      return "avx512";
    default:
      return "eigen";
  }
}

/// Whether this CPU (and operating system) runs `kernel`: AVX-512 kernels need x86-64-v4's
/// subsets, and a program that has them (core/targets.hpp: TNET_NATIVE).
inline bool supported(GemmKernel kernel) {
#if TNET_X86_KERNELS
  __builtin_cpu_init();
  switch (kernel) {
    case GemmKernel::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmKernel::avx512:
      return TNET_AVX512_KERNELS && detail::runs_x86_64_v4();
    default:
      return true;
  }
#else
  return kernel == GemmKernel::eigen;
#endif
}

namespace detail {
/// The instruction set `kernel`, and the loops around it (core/vectorise.hpp), are compiled for.
inline Target target_of(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::avx512:
      return Target::avx512;
    case GemmKernel::avx2:
      return Target::avx2;
    default:
      return Target::build;
  }
}
inline GemmKernel best_gemm_kernel() {
  for (GemmKernel kernel : {GemmKernel::avx512, GemmKernel::avx2})
    if (supported(kernel)) return kernel;
  return GemmKernel::eigen;
}
inline std::atomic<GemmKernel>& gemm_kernel_choice() {
  static std::atomic<GemmKernel> choice{best_gemm_kernel()};
  return choice;
}
}  // namespace detail

/// The kernel gemm() multiplies with: the widest this CPU runs unless use_gemm_kernel chose another.
inline GemmKernel gemm_kernel() { return detail::gemm_kernel_choice().load(std::memory_order_relaxed); }

/// Makes gemm() use `kernel` from now on, if this CPU runs it; returns whether it does. For tests
/// and benchmarks: results differ between kernels in the last bits (the order of additions).
inline bool use_gemm_kernel(GemmKernel kernel) {
  if (!supported(kernel)) return false;
  detail::gemm_kernel_choice().store(kernel, std::memory_order_relaxed);
  return true;
}

/// What a product does to each value v of row r and column c of C once it is complete (every
/// step along K added): v + bias[c] when `bias` is set; then the clamp min(max(v, 0), relu_max)
/// when `relu` and not `affine_first`; the per-channel affine v * scale[c] + shift[c] when `scale`
/// is set; v + added[r * added_stride + c] when `added` is set; and the clamp when `relu` and
/// `affine_first`. A layer's bias and the activation and batch normalisation after it, in either
/// order, and a residual block's shortcut added before the ReLU after the block (model/rules/), so
/// that its output is written once.
struct Epilogue {
  bool relu = false;
  const float* scale = nullptr;
  const float* shift = nullptr;
  const float* bias = nullptr;
  const float* added = nullptr;  // a tensor laid out as C's rows, added_stride apart
  std::ptrdiff_t added_stride = 0;
  float relu_max = std::numeric_limits<float>::infinity();  // 6 for ReLU6
  bool affine_first = false;                                // the clamp after the affine and the added tensor
  bool empty() const { return !relu && !scale && !bias && !added; }
  bool clamps_above() const { return relu && relu_max < std::numeric_limits<float>::infinity(); }
  /// The same for the columns from `column` on.
  Epilogue from(std::ptrdiff_t column) const {
    Epilogue e = *this;
    if (scale) e.scale += column, e.shift += column;
    if (bias) e.bias += column;
    if (added) e.added += column;
    return e;
  }
  /// The same for the rows from `row` on and the columns from `column` on.
  Epilogue at(std::ptrdiff_t row, std::ptrdiff_t column) const {
    Epilogue e = from(column);
    if (added) e.added += row * added_stride;
    return e;
  }
  /// Where the added value of row r, column c is; null when nothing is added.
  const float* added_at(std::ptrdiff_t r, std::ptrdiff_t c) const { return added ? added + r * added_stride + c : nullptr; }
  /// v put through the epilogue but for the bias; `add` points at the value added, or is null.
  float finish(float v, float scale_c, float shift_c, const float* add = nullptr) const {
    if (relu && !affine_first) v = std::min(std::max(v, 0.0f), relu_max);
    if (scale) v = v * scale_c + shift_c;
    if (add) v += *add;
    if (relu && affine_first) v = std::min(std::max(v, 0.0f), relu_max);
    return v;
  }
  /// finish() of `n` consecutive values of a row, in place: v[j] + bias[j] when `bias` is given
  /// (this epilogue's own bias is not read), then finish(v[j], scale[j], shift[j], add + j), with
  /// nothing added when `add` is null. Each step is one loop over the row, tested once, so that
  /// the loops vectorise: a loop around finish() keeps its tests for every value and stays scalar,
  /// and so do loops of a few values unrolled before the vectoriser sees them (hence `unroll 1`).
  void finish_row(float* v, std::ptrdiff_t n, const float* bias, const float* scale_row, const float* shift_row, const float* add) const {
    auto each = [v, n](auto step) {
#pragma GCC unroll 1
      for (std::ptrdiff_t j = 0; j < n; ++j) v[j] = step(v[j], j);
    };
    const float top = relu_max;
    auto clamp = [top](float x, std::ptrdiff_t) { return std::min(std::max(x, 0.0f), top); };
    if (bias) each([bias](float x, std::ptrdiff_t j) { return x + bias[j]; });
    if (relu && !affine_first) each(clamp);
    if (scale) each([scale_row, shift_row](float x, std::ptrdiff_t j) { return x * scale_row[j] + shift_row[j]; });
    if (add) each([add](float x, std::ptrdiff_t j) { return x + add[j]; });
    if (relu && affine_first) each(clamp);
  }
};

namespace detail {

/// A block of the A operand as a micro-kernel reads it: the panel starting at row i (a multiple of
/// MR) starts at base + i * per_row, and holds element (i', k) at [i' * row + k * depth].
struct ABlock {
  const float* base;
  std::ptrdiff_t per_row, row, depth;
};

// The packed operands of one block, owned by the calling thread, and the packed B shared by a
// gemm's blocks; they only grow.
inline Buffer& packed_a() {
  static thread_local Buffer panels;
  return panels;
}
inline Buffer& packed_b() {
  static thread_local Buffer panels;
  return panels;
}
inline Buffer& shared_packed_b() {
  static thread_local Buffer panels;
  return panels;
}

/// Puts `rows` rows of `cols` values (ldc apart) through `e`, in parallel when there are many, one
/// loop per kind of epilogue so that each vectorises without tests inside. For the products whose
/// last step cannot finish in the kernels (Eigen's; K cut into chunks; a few rows).
inline void apply_epilogue(float* c, std::ptrdiff_t rows, std::ptrdiff_t cols, std::ptrdiff_t ldc, const Epilogue& e) {
  const float *bias = e.bias, *scale = e.scale, *shift = e.shift, *added = e.added;
  const std::ptrdiff_t added_stride = e.added_stride;
  const float top = e.relu_max;
  auto each = [&](auto with_bias, auto with_relu, auto with_scale, auto affine_first, auto with_added) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
      float* row = c + r * ldc;
      [[maybe_unused]] const float* add = with_added ? added + r * added_stride : nullptr;
      for (std::ptrdiff_t j = 0; j < cols; ++j) {
        float v = row[j];
        if constexpr (with_bias) v += bias[j];
        if constexpr (with_relu && !affine_first) v = std::min(std::max(v, 0.0f), top);
        if constexpr (with_scale) v = v * scale[j] + shift[j];
        if constexpr (with_added) v += add[j];
        if constexpr (with_relu && affine_first) v = std::min(std::max(v, 0.0f), top);
        row[j] = v;
      }
    }
  };
  auto relu_scale = [&](auto with_bias, auto with_added) {
    using yes = std::true_type;
    using no = std::false_type;
    if (e.relu && scale && e.affine_first) each(with_bias, yes{}, yes{}, yes{}, with_added);
    else if (e.relu && scale) each(with_bias, yes{}, yes{}, no{}, with_added);
    else if (e.relu && with_added && e.affine_first) each(with_bias, yes{}, no{}, yes{}, with_added);
    else if (e.relu) each(with_bias, yes{}, no{}, no{}, with_added);
    else if (scale) each(with_bias, no{}, yes{}, no{}, with_added);
    else if (with_bias || with_added) each(with_bias, no{}, no{}, no{}, with_added);
  };
  auto adding = [&](auto with_bias) {
    if (added) relu_scale(with_bias, std::true_type{});
    else relu_scale(with_bias, std::false_type{});
  };
  if (bias) adding(std::true_type{});
  else adding(std::false_type{});
}

template <int Panel>
struct Packer;

/// One operand of a product as the kernels read it: element (r, k) of op(A), or of op(B)
/// transposed (r a column of C), is data[r * row_step + k * depth_step].
/// As the A operand (any class with at() and block() does): at(r, k) is the operand from row r and
/// depth k on, block<MR>(rows, k0, kc) the rows x [k0, k0 + kc) block as the micro-kernels read it:
/// where it lies when rows are contiguous along k (or columns_in_place), else packed into panels
/// of MR rows.
struct Operand {
  const float* data;
  std::ptrdiff_t row_step, depth_step;
  /// As the A operand with rows contiguous at each depth (row_step 1): read where it lies, not
  /// packed. For a small block already in cache, read once or twice (Winograd's kernel gradient).
  bool columns_in_place = false;
  /// As the B operand only: the values in bfloat16 (core/bfloat16.hpp), element (r, k) at
  /// bf16[r * row_step + k * depth_step], `data` null. Widened to float as B is packed or read.
  const std::uint16_t* bf16 = nullptr;
  Operand at(std::ptrdiff_t r, std::ptrdiff_t k) const {
    const std::ptrdiff_t offset = r * row_step + k * depth_step;
    if (bf16) return {nullptr, row_step, depth_step, columns_in_place, bf16 + offset};
    return {data + offset, row_step, depth_step, columns_in_place};
  }
  template <int MR>
  ABlock block(std::ptrdiff_t rows, std::ptrdiff_t k0, std::ptrdiff_t kc) const {
    if (depth_step == 1) return {data + k0, row_step, row_step, 1};
    if (columns_in_place && row_step == 1) return {data + k0 * depth_step, 1, 1, depth_step};
    ensure_size(packed_a(), std::size_t((rows + MR - 1) / MR * MR * kc));
    Packer<MR>::pack(at(0, k0), rows, kc, packed_a().data());
    return {packed_a().data(), kc, 1, MR};
  }
};

// Copies rows [0, rows) x depths [0, kc) of `op` into panels of Panel rows, each [k][row], the last
// one zero-padded; panel p starts at out + p * Panel * kc.
template <int Panel>
struct Packer {
  static void pack(const Operand& op, std::ptrdiff_t rows, std::ptrdiff_t kc, float* out) {
    if (op.bf16) pack_values(op.bf16, op, rows, kc, out);
    else pack_values(op.data, op, rows, kc, out);
  }

 private:
  static float widen(float v) { return v; }
  static float widen(std::uint16_t v) { return from_bfloat16(v); }
  template <class T>
  static void pack_values(const T* values, const Operand& op, std::ptrdiff_t rows, std::ptrdiff_t kc, float* out) {
    if (op.row_step == 1) {
      // Rows contiguous at each depth: panel by panel, each written in one sweep, Panel values of
      // a depth at a time. (Depth by depth, dealing each depth's values out to all the panels,
      // would store to addresses Panel * kc floats apart, which share a cache set.)
      for (std::ptrdiff_t p = 0; p < rows; p += Panel, out += Panel * kc) {
        const std::ptrdiff_t n = std::min<std::ptrdiff_t>(Panel, rows - p);
        const T* src = values + p;
        for (std::ptrdiff_t k = 0; k < kc; ++k, src += op.depth_step) {
          float* dst = out + k * Panel;
          if constexpr (std::is_same_v<T, float>) {
            if (n == Panel) {
              std::memcpy(dst, src, Panel * sizeof(float));
              continue;
            }
          }
          for (int i = 0; i < Panel; ++i) dst[i] = i < n ? widen(src[i]) : 0.0f;
        }
      }
      return;
    }
    // Each row contiguous along k: the rows transposed into the panels.
    for (std::ptrdiff_t p = 0; p < rows; p += Panel, out += Panel * kc) {
      const std::ptrdiff_t n = std::min<std::ptrdiff_t>(Panel, rows - p);
      for (std::ptrdiff_t i = 0; i < Panel; ++i) {
        const T* src = values + (p + i) * op.row_step;
        if (i < n)
          for (std::ptrdiff_t k = 0; k < kc; ++k) out[k * Panel + i] = widen(src[k * op.depth_step]);
        else
          for (std::ptrdiff_t k = 0; k < kc; ++k) out[k * Panel + i] = 0.0f;
      }
    }
  }
};

// Panels of a whole operand, cut along k into steps of `depth`: step s's panels start at
// s * depth * padded_rows, panel p of it at p * Panel * (that step's depth).
template <int Panel>
void pack_steps(const Operand& op, std::ptrdiff_t rows, std::ptrdiff_t K, std::ptrdiff_t depth, float* out) {
  const std::ptrdiff_t padded = (rows + Panel - 1) / Panel * Panel, steps = (K + depth - 1) / depth;
#pragma omp parallel for schedule(static) if (steps > 1 && rows * K > (1 << 16))
  for (std::ptrdiff_t s = 0; s < steps; ++s)
    Packer<Panel>::pack(op.at(0, s * depth), rows, std::min(depth, K - s * depth), out + s * depth * padded);
}

#if TNET_X86_KERNELS
// The end of an AVX-512 micro-kernel: its Rows x n (n <= 32) sums, 16 columns to a vector, added to
// C when `add`, put through `finish` when set, and stored at c (rows ldc apart).
template <int Rows>
[[gnu::always_inline]] __attribute__((target("avx512f"))) inline void store_avx512(__m512 (&acc0)[Rows], __m512 (&acc1)[Rows], float* c,
                                                                                   std::ptrdiff_t ldc, int n, bool add,
                                                                                   const Epilogue* finish) {
  const __mmask16 mask0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 mask1 = n >= 32 ? __mmask16(0xFFFF) : n <= 16 ? __mmask16(0) : __mmask16((1u << (n - 16)) - 1);
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    if (add) {
      acc0[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(mask0, row), acc0[i]);
      acc1[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(mask1, row + 16), acc1[i]);
    }
  }
  if (finish) {
    const Epilogue& e = *finish;
    const __m512 zero = _mm512_setzero_ps();
    if (e.bias) {
      const __m512 bias0 = _mm512_maskz_loadu_ps(mask0, e.bias), bias1 = _mm512_maskz_loadu_ps(mask1, e.bias + 16);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_add_ps(acc0[i], bias0), acc1[i] = _mm512_add_ps(acc1[i], bias1);
    }
    const __m512 top = _mm512_set1_ps(e.relu_max);
    if (e.relu && !e.affine_first) {  // the clamp, before the affine (or alone)
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_max_ps(acc0[i], zero), acc1[i] = _mm512_max_ps(acc1[i], zero);
      if (e.clamps_above())
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_min_ps(acc0[i], top), acc1[i] = _mm512_min_ps(acc1[i], top);
    }
    if (e.scale) {
      const __m512 scale0 = _mm512_maskz_loadu_ps(mask0, e.scale), scale1 = _mm512_maskz_loadu_ps(mask1, e.scale + 16);
      const __m512 shift0 = _mm512_maskz_loadu_ps(mask0, e.shift), shift1 = _mm512_maskz_loadu_ps(mask1, e.shift + 16);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_fmadd_ps(acc0[i], scale0, shift0), acc1[i] = _mm512_fmadd_ps(acc1[i], scale1, shift1);
    }
    if (e.added) {
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) {
        const float* add = e.added + i * e.added_stride;
        acc0[i] = _mm512_add_ps(acc0[i], _mm512_maskz_loadu_ps(mask0, add));
        acc1[i] = _mm512_add_ps(acc1[i], _mm512_maskz_loadu_ps(mask1, add + 16));
      }
    }
    if (e.relu && e.affine_first) {  // after them
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_max_ps(acc0[i], zero), acc1[i] = _mm512_max_ps(acc1[i], zero);
      if (e.clamps_above())
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) acc0[i] = _mm512_min_ps(acc0[i], top), acc1[i] = _mm512_min_ps(acc1[i], top);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    _mm512_mask_storeu_ps(row, mask0, acc0[i]);
    _mm512_mask_storeu_ps(row + 16, mask1, acc1[i]);
  }
}

// C[Rows x n] (+)= A (Rows x kc) * B (kc x n), n <= 32: A's element (i, k) at a[i * a_row + k * a_depth],
// B's (k, j) at b[k * b_depth + j] (a packed panel, or B itself: loads are masked to n columns);
// then `finish`, when set (the product's last step), from these columns on.
template <int Rows>
__attribute__((target("avx512f"))) inline void micro_avx512(std::ptrdiff_t kc, const float* a, std::ptrdiff_t a_row, std::ptrdiff_t a_depth,
                                                            const float* b, std::ptrdiff_t b_depth, float* c, std::ptrdiff_t ldc, int n,
                                                            bool add, const Epilogue* finish) {
  const __mmask16 mask0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 mask1 = n >= 32 ? __mmask16(0xFFFF) : n <= 16 ? __mmask16(0) : __mmask16((1u << (n - 16)) - 1);
  __m512 acc0[Rows], acc1[Rows];
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (std::ptrdiff_t k = 0; k < kc; ++k, a += a_depth, b += b_depth) {
    const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b), b1 = _mm512_maskz_loadu_ps(mask1, b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * a_row]);
      acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
    }
  }
  store_avx512<Rows>(acc0, acc1, c, ldc, n, add, finish);
}

// Columns of B as floats: 16 under a mask, from floats or widened from bfloat16.
__attribute__((target("avx512f"))) inline __m512 load_avx512(__mmask16 mask, const float* b) { return _mm512_maskz_loadu_ps(mask, b); }
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load_avx512(__mmask16 mask, const std::uint16_t* b) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, b)), 16));
}

// One row of C, n <= 128 columns, from B read where it lies (b_depth apart; floats or bfloat16):
// a batch-1 dense layer, bound by reading B, which is read row by row, 512 bytes at a time. Even
// and odd k are summed apart, then added.
template <class T>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void row_avx512(std::ptrdiff_t kc, const float* a, const T* b,
                                                                            std::ptrdiff_t b_depth, float* c, int n, bool add) {
  __mmask16 mask[8];
  for (int v = 0; v < 8; ++v) {
    const int left = std::clamp(n - 16 * v, 0, 16);
    mask[v] = left == 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  }
  __m512 even[8], odd[8];
  for (int v = 0; v < 8; ++v) even[v] = odd[v] = _mm512_setzero_ps();
  std::ptrdiff_t k = 0;
  for (; k + 2 <= kc; k += 2, a += 2, b += 2 * b_depth) {
    const __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]);
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) {
      even[v] = _mm512_fmadd_ps(a0, load_avx512(mask[v], b + 16 * v), even[v]);
      odd[v] = _mm512_fmadd_ps(a1, load_avx512(mask[v], b + b_depth + 16 * v), odd[v]);
    }
  }
  if (k < kc) {
    const __m512 a0 = _mm512_set1_ps(a[0]);
    for (int v = 0; v < 8; ++v) even[v] = _mm512_fmadd_ps(a0, load_avx512(mask[v], b + 16 * v), even[v]);
  }
  for (int v = 0; v < 8; ++v) {
    __m512 sum = _mm512_add_ps(even[v], odd[v]);
    if (add) sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], c + 16 * v), sum);
    _mm512_mask_storeu_ps(c + 16 * v, mask[v], sum);
  }
}

// As micro_avx512 with 16 columns of 8-wide vectors.
template <int Rows>
__attribute__((target("avx2,fma"))) inline void micro_avx2(std::ptrdiff_t kc, const float* a, std::ptrdiff_t a_row, std::ptrdiff_t a_depth,
                                                           const float* b, std::ptrdiff_t b_depth, float* c, std::ptrdiff_t ldc, int n,
                                                           bool add, const Epilogue* finish) {
  alignas(32) static constexpr int lanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const __m256i count = _mm256_set1_epi32(n);
  const __m256i mask0 = _mm256_cmpgt_epi32(count, _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)));
  const __m256i mask1 = _mm256_cmpgt_epi32(count, _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8)));
  __m256 acc0[Rows], acc1[Rows];
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  if (n == 16) {
    for (std::ptrdiff_t k = 0; k < kc; ++k, a += a_depth, b += b_depth) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i * a_row);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  } else {
    for (std::ptrdiff_t k = 0; k < kc; ++k, a += a_depth, b += b_depth) {
      const __m256 b0 = _mm256_maskload_ps(b, mask0), b1 = _mm256_maskload_ps(b + 8, mask1);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i * a_row);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    if (add && n == 16) {
      acc0[i] = _mm256_add_ps(_mm256_loadu_ps(row), acc0[i]);
      acc1[i] = _mm256_add_ps(_mm256_loadu_ps(row + 8), acc1[i]);
    } else if (add) {
      acc0[i] = _mm256_add_ps(_mm256_maskload_ps(row, mask0), acc0[i]);
      acc1[i] = _mm256_add_ps(_mm256_maskload_ps(row + 8, mask1), acc1[i]);
    }
  }
  if (finish) {
    const Epilogue& e = *finish;
    const __m256 zero = _mm256_setzero_ps();
    if (e.bias) {
      const __m256 bias0 = _mm256_maskload_ps(e.bias, mask0), bias1 = _mm256_maskload_ps(e.bias + 8, mask1);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_add_ps(acc0[i], bias0), acc1[i] = _mm256_add_ps(acc1[i], bias1);
    }
    const __m256 top = _mm256_set1_ps(e.relu_max);
    if (e.relu && !e.affine_first) {  // the clamp, before the affine (or alone)
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_max_ps(acc0[i], zero), acc1[i] = _mm256_max_ps(acc1[i], zero);
      if (e.clamps_above())
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_min_ps(acc0[i], top), acc1[i] = _mm256_min_ps(acc1[i], top);
    }
    if (e.scale) {
      const __m256 scale0 = _mm256_maskload_ps(e.scale, mask0), scale1 = _mm256_maskload_ps(e.scale + 8, mask1);
      const __m256 shift0 = _mm256_maskload_ps(e.shift, mask0), shift1 = _mm256_maskload_ps(e.shift + 8, mask1);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_fmadd_ps(acc0[i], scale0, shift0), acc1[i] = _mm256_fmadd_ps(acc1[i], scale1, shift1);
    }
    if (e.added) {
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) {
        const float* add = e.added + i * e.added_stride;
        if (n == 16) {
          acc0[i] = _mm256_add_ps(acc0[i], _mm256_loadu_ps(add));
          acc1[i] = _mm256_add_ps(acc1[i], _mm256_loadu_ps(add + 8));
        } else {
          acc0[i] = _mm256_add_ps(acc0[i], _mm256_maskload_ps(add, mask0));
          acc1[i] = _mm256_add_ps(acc1[i], _mm256_maskload_ps(add + 8, mask1));
        }
      }
    }
    if (e.relu && e.affine_first) {  // after them
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_max_ps(acc0[i], zero), acc1[i] = _mm256_max_ps(acc1[i], zero);
      if (e.clamps_above())
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) acc0[i] = _mm256_min_ps(acc0[i], top), acc1[i] = _mm256_min_ps(acc1[i], top);
    }
  }
  if (n == 16) {  // a whole panel: plain stores (masked ones are slow on some CPUs, AMD's among them)
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
      float* row = c + i * ldc;
      _mm256_storeu_ps(row, acc0[i]);
      _mm256_storeu_ps(row + 8, acc1[i]);
    }
    return;
  }
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    _mm256_maskstore_ps(row, mask0, acc0[i]);
    _mm256_maskstore_ps(row + 8, mask1, acc1[i]);
  }
}

// 8 columns of B as floats, from floats or widened from bfloat16; with a mask (`left` of them, as
// many as the mask's lanes) where B may end.
__attribute__((target("avx2,fma"))) inline __m256 load_avx2(const float* b) { return _mm256_loadu_ps(b); }
__attribute__((target("avx2,fma"))) inline __m256 load_avx2(const std::uint16_t* b) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b))), 16));
}
__attribute__((target("avx2,fma"))) inline __m256 load_avx2(const float* b, __m256i mask, int) { return _mm256_maskload_ps(b, mask); }
__attribute__((target("avx2,fma"))) inline __m256 load_avx2(const std::uint16_t* b, __m256i, int left) {
  if (left >= 8) return load_avx2(b);
  alignas(16) std::uint16_t part[8] = {};
  for (int i = 0; i < left; ++i) part[i] = b[i];
  return load_avx2(part);
}

// As row_avx512, n <= 64 columns in eight 8-wide vectors (eight chains of multiply-adds).
template <class T>
__attribute__((target("avx2,fma"))) inline void row_avx2(std::ptrdiff_t kc, const float* a, const T* b, std::ptrdiff_t b_depth, float* c,
                                                         int n, bool add) {
  __m256i mask[8];
  for (int v = 0; v < 8; ++v) mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[8];
  for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
  if (n == 64) {
    for (std::ptrdiff_t k = 0; k < kc; ++k, b += b_depth) {
      const __m256 ak = _mm256_broadcast_ss(a + k);
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(ak, load_avx2(b + 8 * v), acc[v]);
    }
  } else {
    for (std::ptrdiff_t k = 0; k < kc; ++k, b += b_depth) {
      const __m256 ak = _mm256_broadcast_ss(a + k);
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(ak, load_avx2(b + 8 * v, mask[v], n - 8 * v), acc[v]);
    }
  }
  for (int v = 0; v < 8; ++v) {
    if (add) acc[v] = _mm256_add_ps(_mm256_maskload_ps(c + 8 * v, mask[v]), acc[v]);
    _mm256_maskstore_ps(c + 8 * v, mask[v], acc[v]);
  }
}

// Rows [k, k + G) of B (b_depth apart) times columns k .. k + G - 1 of A (Rows rows, a_row apart)
// added to C (Rows x n, ldc apart), in k order: sweep_avx2's pass over C.
template <int Rows, int G, class T>
__attribute__((target("avx2,fma"))) inline void sweep_pass_avx2(const float* a, std::ptrdiff_t a_row, const T* row, std::ptrdiff_t b_depth,
                                                                float* c, std::ptrdiff_t ldc, std::ptrdiff_t n) {
  __m256 ak[Rows][G];
#pragma GCC unroll 4
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) ak[i][j] = _mm256_broadcast_ss(a + i * a_row + j);
  const std::ptrdiff_t full = n / 8 * 8;
  for (std::ptrdiff_t v = 0; v < full; v += 8) {
    __m256 acc[Rows];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) acc[i] = _mm256_loadu_ps(c + i * ldc + v);
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) {
      const __m256 w = load_avx2(row + j * b_depth + v);
#pragma GCC unroll 4
      for (int i = 0; i < Rows; ++i) acc[i] = _mm256_fmadd_ps(ak[i][j], w, acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) _mm256_storeu_ps(c + i * ldc + v, acc[i]);
  }
  if (const int left = int(n - full)) {
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 acc[Rows];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) acc[i] = _mm256_maskload_ps(c + i * ldc + full, tail);
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) {
      const __m256 w = load_avx2(row + j * b_depth + full, tail, left);
#pragma GCC unroll 4
      for (int i = 0; i < Rows; ++i) acc[i] = _mm256_fmadd_ps(ak[i][j], w, acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) _mm256_maskstore_ps(c + i * ldc + full, tail, acc[i]);
  }
}

// C (Rows x n, ldc apart) = A (Rows x kc, a_row apart) * B (kc x n, b_depth apart; floats or
// bfloat16), B read a whole row after another, from its first row to its last: one stream through
// memory, which the prefetchers serve at full speed, where strips of columns would read a few
// hundred bytes of each row (a new page each time). C, the accumulators, stays in L1. Each value
// of C sums its k in order. AVX2 for every kernel: it is bound by reading B.
template <int Rows, class T>
__attribute__((target("avx2,fma"))) inline void sweep_avx2(std::ptrdiff_t kc, const float* a, std::ptrdiff_t a_row, const T* b,
                                                           std::ptrdiff_t b_depth, float* c, std::ptrdiff_t ldc, std::ptrdiff_t n) {
  static_assert(Rows >= 1 && Rows <= 4, "tnet: sweep_avx2 takes 1 to 4 rows");
  constexpr int group = Rows <= 2 ? 4 : 2;  // rows of B per pass over C: A's broadcasts stay in registers
  for (int i = 0; i < Rows; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  std::ptrdiff_t k = 0;
  for (; k + group <= kc; k += group) sweep_pass_avx2<Rows, group>(a + k, a_row, b + k * b_depth, b_depth, c, ldc, n);
  for (; k < kc; ++k) sweep_pass_avx2<Rows, 1>(a + k, a_row, b + k * b_depth, b_depth, c, ldc, n);
}
#else  // elsewhere only Eigen's kernel is supported and these are never called
template <int Rows, class T>
inline void sweep_avx2(std::ptrdiff_t, const float*, std::ptrdiff_t, const T*, std::ptrdiff_t, float*, std::ptrdiff_t, std::ptrdiff_t) {}
template <int Rows>
inline void micro_avx512(std::ptrdiff_t, const float*, std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, float*, std::ptrdiff_t,
                         int, bool, const Epilogue*) {}
template <int Rows>
inline void micro_avx2(std::ptrdiff_t, const float*, std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, float*, std::ptrdiff_t,
                       int, bool, const Epilogue*) {}
template <class T>
inline void row_avx512(std::ptrdiff_t, const float*, const T*, std::ptrdiff_t, float*, int, bool) {}
template <class T>
inline void row_avx2(std::ptrdiff_t, const float*, const T*, std::ptrdiff_t, float*, int, bool) {}
#endif

// An instruction set's kernels: `micro` for every row count up to MR, so that a block's last rows
// cost only what they compute, and `row` for a single row times B where it lies (a batch-1 dense
// layer).
template <class Code>
struct Kernels {
  static constexpr int MR = Code::MR, NR = Code::NR, row_width = Code::row_width;
  static constexpr Target target = Code::target;  // what the code around the kernels is compiled for
  template <class T>                              // B's values: float, or bfloat16 bits
  static void row(std::ptrdiff_t K, const float* a, const T* b, std::ptrdiff_t b_depth, float* c, int n, bool add) {
    Code::template row<T>(K, a, b, b_depth, c, n, add);
  }
  template <int Rows = MR>
  static void run(int rows, std::ptrdiff_t kc, const float* a, std::ptrdiff_t a_row, std::ptrdiff_t a_depth, const float* b,
                  std::ptrdiff_t b_depth, float* c, std::ptrdiff_t ldc, int n, bool add, const Epilogue* finish) {
    if constexpr (Rows > 1)
      if (rows < Rows) return run<Rows - 1>(rows, kc, a, a_row, a_depth, b, b_depth, c, ldc, n, add, finish);
    Code::template micro<Rows>(kc, a, a_row, a_depth, b, b_depth, c, ldc, n, add, finish);
  }
};
struct Avx512Code {
  static constexpr int MR = 8, NR = 32, row_width = 128;
  static constexpr Target target = Target::avx512;
  template <int Rows>
  static constexpr auto micro = micro_avx512<Rows>;
  template <class T>
  static constexpr auto row = row_avx512<T>;
};
struct Avx2Code {
  static constexpr int MR = 6, NR = 16, row_width = 64;
  static constexpr Target target = Target::avx2;
  template <int Rows>
  static constexpr auto micro = micro_avx2<Rows>;
  template <class T>
  static constexpr auto row = row_avx2<T>;
};
using Avx2 = Kernels<Avx2Code>;
// Without AVX-512 code (TNET_AVX512_KERNELS, core/targets.hpp), never picked: the AVX2 kernels,
// so that code written for both compiles one.
using Avx512 = std::conditional_t<TNET_AVX512_KERNELS, Kernels<Avx512Code>, Avx2>;

/// The depth of one step along K: a B panel (depth x NR) stays in L1, a block of A in L2.
inline constexpr std::ptrdiff_t kernel_depth = 256;

/// The A operand of packed_product, whatever it is (an Operand, or the patches of an image:
/// layers/conv2d.hpp), behind one function pointer: the products are compiled once per kernel, not
/// once per kind of operand (compile time is part of a user's wait). block(object, r0, k0, rows,
/// kc, MR) is source.at(r0, k0).block<MR>(rows, 0, kc); `matrix` is set when A is an Operand.
struct ASource {
  const Operand* matrix;
  const void* object;
  ABlock (*block)(const void* object, std::ptrdiff_t r0, std::ptrdiff_t k0, std::ptrdiff_t rows, std::ptrdiff_t kc, int MR);
};

template <class Source>
ASource erase(const Source& source) {
  const Operand* matrix = nullptr;
  if constexpr (std::is_same_v<Source, Operand>) matrix = &source;
  return {matrix, &source, [](const void* object, std::ptrdiff_t r0, std::ptrdiff_t k0, std::ptrdiff_t rows, std::ptrdiff_t kc, int MR) {
            // Gathered or packed in code compiled for the kernels' instruction set.
            auto gather = []<int Rows>(std::integral_constant<int, Rows>, const Source* source, std::ptrdiff_t r0, std::ptrdiff_t k0,
                                       std::ptrdiff_t rows, std::ptrdiff_t kc,
                                       ABlock* block) { *block = source->at(r0, k0).template block<Rows>(rows, 0, kc); };
            const Source* source = static_cast<const Source*>(object);
            ABlock block;
            if (MR == Avx512::MR)
              run_for<Avx512::target>(gather, std::integral_constant<int, Avx512::MR>{}, source, r0, k0, rows, kc, &block);
            else run_for<Avx2::target>(gather, std::integral_constant<int, Avx2::MR>{}, source, r0, k0, rows, kc, &block);
            return block;
          }};
}

// packed_product's work, inlined into code compiled for Isa's instruction set.
template <class Isa>
inline void packed_product_steps(const ASource& a, std::ptrdiff_t r0, std::ptrdiff_t k_first, const Operand& b, std::ptrdiff_t rows,
                                 std::ptrdiff_t cols, std::ptrdiff_t K, float* c, std::ptrdiff_t ldc, bool accumulate,
                                 const float* b_panels, bool b_in_place, const Epilogue* finish, std::ptrdiff_t b_panels_width,
                                 std::ptrdiff_t b_panels_column) {
  constexpr int MR = Isa::MR, NR = Isa::NR;
  static_assert(MR == 8 || MR == 6, "tnet: ASource::block knows panels of 8 and 6 rows");
  constexpr std::ptrdiff_t depth = kernel_depth;
  if (K == 0) {
    if (!accumulate)
      for (std::ptrdiff_t i = 0; i < rows; ++i) std::fill(c + i * ldc, c + i * ldc + cols, 0.0f);
    if (finish) apply_epilogue(c, rows, cols, ldc, *finish);
    return;
  }
  const std::ptrdiff_t padded_cols = (cols + NR - 1) / NR * NR;
  const bool b_contiguous = !b_panels && b.row_step == 1;
  if (a.matrix && b_contiguous && a.matrix->depth_step == 1 && rows <= MR) {  // a few rows, B read where it lies, in wide strips
    const Operand matrix = a.matrix->at(r0, k_first);
    for (std::ptrdiff_t i = 0; i < rows; ++i)
      for (std::ptrdiff_t j = 0; j < cols; j += Isa::row_width) {
        const int n = int(std::min<std::ptrdiff_t>(Isa::row_width, cols - j));
        const float* a_row = matrix.data + i * matrix.row_step;
        if (b.bf16) Isa::row(K, a_row, b.bf16 + j, b.depth_step, c + i * ldc + j, n, accumulate);
        else Isa::row(K, a_row, b.data + j, b.depth_step, c + i * ldc + j, n, accumulate);
      }
    if (finish) apply_epilogue(c, rows, cols, ldc, *finish);
    return;
  }
  // The micro-kernels read B where it lies only in floats.
  const bool direct_b = b_contiguous && !b.bf16 && (b_in_place || rows <= MR);
  if (!direct_b && !b_panels) ensure_size(packed_b(), std::size_t(padded_cols * std::min(depth, K)));
  for (std::ptrdiff_t k0 = 0; k0 < K; k0 += depth) {
    const std::ptrdiff_t kc = std::min(depth, K - k0);
    const ABlock block = a.block(a.object, r0, k_first + k0, rows, kc, MR);
    const float* pb = b_panels ? b_panels + k0 * (b_panels_width ? b_panels_width : padded_cols) + b_panels_column * kc : packed_b().data();
    if (!direct_b && !b_panels) Packer<NR>::pack(b.at(0, k0), cols, kc, packed_b().data());
    const bool add = accumulate || k0 > 0, last = k0 + kc == K;
    for (std::ptrdiff_t j = 0; j < cols; j += NR) {
      const int n = int(std::min<std::ptrdiff_t>(NR, cols - j));
      const float* b_panel = direct_b ? b.data + j + k0 * b.depth_step : pb + j * kc;
      const std::ptrdiff_t b_depth = direct_b ? b.depth_step : NR;
      const Epilogue panel_finish = finish && last ? finish->from(j) : Epilogue{};
      const Epilogue* finish_here = finish && last ? &panel_finish : nullptr;
      for (std::ptrdiff_t i = 0; i < rows; i += MR) {
        Epilogue rows_finish;  // an added tensor's rows from i on
        if (finish_here && finish_here->added) rows_finish = finish_here->at(i, 0);
        Isa::run(int(std::min<std::ptrdiff_t>(MR, rows - i)), kc, block.base + i * block.per_row, block.row, block.depth, b_panel, b_depth,
                 c + i * ldc + j, ldc, n, add, finish_here && finish_here->added ? &rows_finish : finish_here);
      }
    }
  }
}

/// C (rows x cols, leading dimension ldc) = A (rows x K) * B (K x cols), or C += ... when
/// `accumulate`, with Isa's micro-kernel; A is rows r0.. and depths k0.. of `a`. B is packed
/// unless `b_panels` holds it already (pack_steps<NR> of exactly these columns and depths; or,
/// when `b_panels_width` is set, of b_panels_width columns, of which B's are those from
/// b_panels_column on, a multiple of NR), or its
/// columns are contiguous and either `b_in_place` asks for it to be read where it lies or a single
/// panel of A makes packing it cost more than it saves. `finish`, when set, is applied to every
/// value of C once complete (from C's first column on): K must then be the whole product's depth.
/// Runs compiled for Isa's instruction set, packing and gathering included (core/targets.hpp):
/// one copy per Isa, called, never inlined (compile time is part of a user's wait).
template <class Isa>
[[gnu::noinline]] void packed_product(const ASource& a, std::ptrdiff_t r0, std::ptrdiff_t k_first, const Operand& b, std::ptrdiff_t rows,
                                      std::ptrdiff_t cols, std::ptrdiff_t K, float* c, std::ptrdiff_t ldc, bool accumulate,
                                      const float* b_panels = nullptr, bool b_in_place = false, const Epilogue* finish = nullptr,
                                      std::ptrdiff_t b_panels_width = 0, std::ptrdiff_t b_panels_column = 0) {
  run_for<Isa::target>([](auto... args) { packed_product_steps<Isa>(args...); }, a, r0, k_first, b, rows, cols, K, c, ldc, accumulate,
                       b_panels, b_in_place, finish, b_panels_width, b_panels_column);
}
}  // namespace detail
}  // namespace tnet
