// tnet/core/gemm_bf16.hpp: matrix products in bfloat16 on CPUs with AVX512_BF16, for inference.
//
// vdpbf16ps multiplies 16 pairs of bfloat16 values (core/bfloat16.hpp) by 16 others and adds each
// pair's two products to a float sum: two steps along K in one instruction where a fused
// multiply-add takes one. A product's B (a layer's kernel) is rounded to bfloat16 once
// (PackedBf16), its A (the activations) as each block of it is gathered, and every sum stays in
// float: the result is the product of the two rounded operands, up to float's rounding of the
// sums (a product of two bfloat16 values is exact in float). Rounding is to nearest, ties to even,
// as to_bfloat16's.
//
// The scheme is gemm()'s (core/gemm_kernels.hpp): steps of kernel_depth along K, each A block
// gathered as floats by its source (a convolution's patches, or pixels) and rounded into rows of
// bfloat16 pairs, B's panels of 32 columns read by a micro-kernel with 8 x 32 float sums in
// registers, the epilogue applied as the last step stores C. Cuts and threads are gemm()'s too:
// every value of C is the same sequence of operations whatever the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bfloat16.hpp"
#include "gemm.hpp"

namespace tnet {

/// Whether products in bfloat16 run here: a CPU with AVX512_BF16 (and x86-64-v4's subsets), a
/// program with AVX-512 code (core/targets.hpp), and tnet's AVX-512 kernels in use (gemm_kernel()).
inline bool bf16_products() {
#if TNET_X86_KERNELS && TNET_AVX512_KERNELS
  static const bool cpu = [] {
    __builtin_cpu_init();
    return detail::runs_x86_64_v4() && __builtin_cpu_supports("avx512bf16");
  }();
  return cpu && gemm_kernel() == GemmKernel::avx512;
#else
  return false;
#endif
}

namespace detail {

// The micro-kernel's rows (the A panel height gathers produce: Avx512::MR) and columns.
inline constexpr int bf16_mr = 8, bf16_nr = 32;

/// A product's B (K x N, row-major floats) rounded to bfloat16 as the bf16 products read it: cut
/// along K into steps of kernel_depth; in each step, panels of bf16_nr columns, each a [k / 2]
/// [column] array of 32-bit words holding the values at depths k (low half) and k + 1 (high half),
/// zero past N and past an odd step's last depth.
struct PackedBf16 {
  std::vector<std::uint32_t> words;
  std::ptrdiff_t N = 0, K = 0, padded_n = 0;

  bool empty() const { return words.empty(); }
  void clear() {
    std::vector<std::uint32_t>().swap(words);
    N = K = padded_n = 0;
  }
  void pack(const float* B, std::ptrdiff_t n, std::ptrdiff_t k) {
    N = n, K = k, padded_n = (n + bf16_nr - 1) / bf16_nr * bf16_nr;
    const std::ptrdiff_t steps = (K + kernel_depth - 1) / kernel_depth, panels = padded_n / bf16_nr;
    words.assign(std::size_t(steps * (kernel_depth / 2) * padded_n), 0u);
#pragma omp parallel for schedule(static) if (K * N > (1 << 16))
    for (std::ptrdiff_t job = 0; job < steps * panels; ++job) {
      const std::ptrdiff_t k0 = job / panels * kernel_depth, n0 = job % panels * bf16_nr;
      const std::ptrdiff_t kc = std::min(kernel_depth, K - k0), columns = std::min<std::ptrdiff_t>(bf16_nr, N - n0);
      std::uint32_t* panel = words.data() + (at(k0, n0) - words.data());
      for (std::ptrdiff_t p = 0; p < (kc + 1) / 2; ++p)
        for (std::ptrdiff_t j = 0; j < columns; ++j) {
          const float* even = B + (k0 + 2 * p) * N + n0 + j;
          const std::uint32_t low = to_bfloat16(*even), high = 2 * p + 1 < kc ? to_bfloat16(even[N]) : 0u;
          panel[p * bf16_nr + j] = low | high << 16;
        }
    }
  }
  /// The panel of the step from depth k0 (a multiple of kernel_depth) and of the columns from n0
  /// (a multiple of bf16_nr).
  const std::uint32_t* at(std::ptrdiff_t k0, std::ptrdiff_t n0) const {
    const std::ptrdiff_t pairs = (std::min(kernel_depth, K - k0) + 1) / 2;
    return words.data() + k0 / 2 * padded_n + n0 * pairs;
  }
};

#if TNET_X86_KERNELS && TNET_AVX512_KERNELS
#define TNET_BF16_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma")))

// C[Rows x n] (+)= A (Rows x 2 * pairs) * B (2 * pairs x n), n <= 32, in bfloat16 pairs: A's
// pair p of row i at a[i * a_row + p], B's panel [p][32]; then `finish` (store_avx512).
template <int Rows>
TNET_BF16_TARGET inline void micro_bf16(std::ptrdiff_t pairs, const std::uint32_t* a, std::ptrdiff_t a_row, const std::uint32_t* b,
                                        float* c, std::ptrdiff_t ldc, int n, bool add, const Epilogue* finish) {
  __m512 acc0[Rows], acc1[Rows];
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (std::ptrdiff_t p = 0; p < pairs; ++p, b += bf16_nr) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i * a_row + p]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
    }
  }
  store_avx512<Rows>(acc0, acc1, c, ldc, n, add, finish);
}

template <int Rows = bf16_mr>
TNET_BF16_TARGET inline void run_bf16(int rows, std::ptrdiff_t pairs, const std::uint32_t* a, std::ptrdiff_t a_row, const std::uint32_t* b,
                                      float* c, std::ptrdiff_t ldc, int n, bool add, const Epilogue* finish) {
  if constexpr (Rows > 1)
    if (rows < Rows) return run_bf16<Rows - 1>(rows, pairs, a, a_row, b, c, ldc, n, add, finish);
  micro_bf16<Rows>(pairs, a, a_row, b, c, ldc, n, add, finish);
}

// Rows [0, rows) x depths [0, kc) of an A block (ABlock, panels of bf16_mr rows) rounded into
// bfloat16 pairs, row i's pair p at out[i * row_words + p], an odd kc's last pair zero above.
TNET_BF16_TARGET inline void round_rows(const ABlock& block, std::ptrdiff_t rows, std::ptrdiff_t kc, std::uint32_t* out,
                                        std::ptrdiff_t row_words) {
  for (std::ptrdiff_t i = 0; i < rows; ++i, out += row_words) {
    const float* row = block.base + i / bf16_mr * bf16_mr * block.per_row + i % bf16_mr * block.row;
    if (block.depth != 1) {
      for (std::ptrdiff_t p = 0; 2 * p < kc; ++p) {
        const float* even = row + 2 * p * block.depth;
        out[p] = std::uint32_t(to_bfloat16(*even)) | (2 * p + 1 < kc ? std::uint32_t(to_bfloat16(even[block.depth])) << 16 : 0u);
      }
      continue;
    }
    for (std::ptrdiff_t k = 0; k < kc; k += 32) {  // 32 values, 16 words, at a time; masked at the end
      const std::ptrdiff_t left = std::min<std::ptrdiff_t>(32, kc - k);
      const __mmask16 low = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
      const __mmask16 high = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
      const __mmask16 words = left >= 32 ? __mmask16(0xFFFF) : __mmask16((1u << ((left + 1) / 2)) - 1);
      const __m512bh pairs = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(high, row + k + 16), _mm512_maskz_loadu_ps(low, row + k));
      _mm512_mask_storeu_epi32(out + k / 2, words, (__m512i)pairs);
    }
  }
}

// The calling thread's rows of A rounded to bfloat16 pairs; it only grows.
inline std::vector<std::uint32_t>& rounded_a() {
  static thread_local std::vector<std::uint32_t> words;
  return words;
}

/// C (rows x cols, leading dimension ldc) = A (rows x K) * B (K x cols), or C += ... when
/// `accumulate`, in bfloat16: A is rows r0.. and depths k_first.. of `a` (gathered in panels of
/// bf16_mr rows), B the columns n0.. (a multiple of bf16_nr) and depths k_first.. (a multiple of
/// kernel_depth) of `b`. `finish`, when set, is applied to every value of C once complete (K must
/// then reach the end of the product's depth). Compiled for AVX512_BF16, which the CPU must have
/// (bf16_products()); called, never inlined.
[[gnu::noinline]] TNET_BF16_TARGET inline void bf16_product(const ASource& a, std::ptrdiff_t r0, std::ptrdiff_t k_first,
                                                            const PackedBf16& b, std::ptrdiff_t n0, std::ptrdiff_t rows,
                                                            std::ptrdiff_t cols, std::ptrdiff_t K, float* c, std::ptrdiff_t ldc,
                                                            bool accumulate, const Epilogue* finish) {
  const std::ptrdiff_t row_words = std::min(kernel_depth, K) / 2 + 1;
  std::vector<std::uint32_t>& rounded = rounded_a();
  if (rounded.size() < std::size_t(rows * row_words)) rounded.resize(std::size_t(rows * row_words));
  for (std::ptrdiff_t k0 = 0; k0 < K; k0 += kernel_depth) {
    const std::ptrdiff_t kc = std::min(kernel_depth, K - k0), pairs = (kc + 1) / 2;
    round_rows(a.block(a.object, r0, k_first + k0, rows, kc, bf16_mr), rows, kc, rounded.data(), row_words);
    const bool add = accumulate || k0 > 0, last = k0 + kc == K;
    for (std::ptrdiff_t j = 0; j < cols; j += bf16_nr) {
      const int n = int(std::min<std::ptrdiff_t>(bf16_nr, cols - j));
      const std::uint32_t* panel = b.at(k_first + k0, n0 + j);
      const Epilogue panel_finish = finish && last ? finish->from(j) : Epilogue{};
      const Epilogue* finish_here = finish && last ? &panel_finish : nullptr;
      for (std::ptrdiff_t i = 0; i < rows; i += bf16_mr) {
        Epilogue rows_finish;  // an added tensor's rows from i on
        if (finish_here && finish_here->added) rows_finish = finish_here->at(i, 0);
        run_bf16(int(std::min<std::ptrdiff_t>(bf16_mr, rows - i)), pairs, rounded.data() + i * row_words, row_words, panel, c + i * ldc + j,
                 ldc, n, add, finish_here && finish_here->added ? &rows_finish : finish_here);
      }
    }
  }
}
#undef TNET_BF16_TARGET
#else  // never called: bf16_products() is false
inline void bf16_product(const ASource&, std::ptrdiff_t, std::ptrdiff_t, const PackedBf16&, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                         std::ptrdiff_t, float*, std::ptrdiff_t, bool, const Epilogue*) {}
#endif

/// C (M x N) = A (M x K, any source of A blocks: ASource) * B, then `epilogue`, in bfloat16, B
/// packed in `b`: as kernel_gemm cuts and runs it (the epilogue in the kernels, or in a pass of its
/// own when K is cut into chunks). Needs bf16_products().
inline void kernel_gemm_bf16(const ASource& a, const PackedBf16& b, std::ptrdiff_t M, float* C, const Epilogue& epilogue) {
  const std::ptrdiff_t N = b.N, K = b.K;
  const Cuts cuts(M, N, K, true, bf16_nr);
  const bool in_kernels = cuts.chunks == 1 && !epilogue.empty();
  for_each_piece(cuts, M, N, K, C, false,
                 [&](std::ptrdiff_t m0, std::ptrdiff_t mn, std::ptrdiff_t n0, std::ptrdiff_t nn, std::ptrdiff_t k0, std::ptrdiff_t kn,
                     float* c, bool add) {
                   const Epilogue finish = epilogue.at(m0, n0);
                   bf16_product(a, m0, k0, b, n0, mn, nn, kn, c, N, add, in_kernels ? &finish : nullptr);
                 });
  if (!in_kernels) apply_epilogue(C, M, N, N, epilogue);
}
template <class Source>
void kernel_gemm_bf16(const Source& a, const PackedBf16& b, std::ptrdiff_t M, float* C, const Epilogue& epilogue = {}) {
  kernel_gemm_bf16(erase(a), b, M, C, epilogue);
}

}  // namespace detail
}  // namespace tnet
