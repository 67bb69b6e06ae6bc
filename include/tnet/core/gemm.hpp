// tnet/core/gemm.hpp: the matrix products every layer is built on, and deterministic reductions.
//
// gemm() computes C = op(A) * op(B) (or C += ...) on row-major matrices with tnet's own AVX2 or
// AVX-512 kernels, picked at run time (core/gemm_kernels.hpp), or Eigen's elsewhere. It cuts C
// into tiles along its longer side and, when that gives few tiles for a long inner dimension K (a
// weight gradient: 27 x 32 summed over 300,000 rows), also cuts K into chunks whose products are
// added afterwards in chunk order. The cuts depend only on M, N and K, each piece is one
// single-threaded product, and OpenMP hands pieces to threads. Every element of C is thus
// computed by the same sequence of operations whatever the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "config.hpp"
#include "gemm_kernels.hpp"
#include "vectorise.hpp"

namespace tnet {

enum class Transpose { no, yes };

namespace detail {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixView = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstMatrixView = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

// The least depth of a chunk of K: a product whose K is shorter than twice it is never cut.
inline constexpr std::ptrdiff_t min_chunk_depth = 2048;

// Tile boundaries for a dimension of length n: about 128 wide, multiples of 16 (one AVX-512 row).
// When `few_pieces` (K is not cut into chunks, so the tiles are all the work threads share) and
// that makes few tiles, which threads would share unevenly: more and narrower ones, multiples of
// `align`, of one width, as few as cut n's `align`-wide units evenly in a count 6 threads share
// evenly (so 2 and 3 do), else 2, at most 24; else one a unit where there are at most 24 units.
// The count never depends on the threads.
inline std::ptrdiff_t tile_width(std::ptrdiff_t n, std::ptrdiff_t align, bool few_pieces) {
  constexpr std::ptrdiff_t target = 128, few = 12, most = 2 * few;
  const std::ptrdiff_t tiles = std::max<std::ptrdiff_t>(1, (n + target - 1) / target), units = (n + align - 1) / align;
  auto fewest = [&](std::ptrdiff_t share) -> std::ptrdiff_t {  // 0 when none
    for (std::ptrdiff_t t = (tiles + share - 1) / share * share; t <= std::min(units, most); t += share)
      if (units % t == 0) return t;
    return 0;
  };
  if (few_pieces && tiles < few && units > 1) {
    std::ptrdiff_t even = fewest(6);
    if (!even) even = fewest(2);
    if (!even && units <= most) even = units;
    if (even) return units / even * align;
  }
  const std::ptrdiff_t width = (n + tiles - 1) / tiles;
  return (width + 15) / 16 * 16;
}

// How many chunks K is cut into for `tiles` tiles of C: enough for about 16 independent products
// when K is long, each chunk at least min_chunk_depth deep; 1 otherwise.
inline std::ptrdiff_t k_chunks(std::ptrdiff_t tiles, std::ptrdiff_t K) {
  constexpr std::ptrdiff_t wanted = 16;
  if (tiles >= wanted || K < 2 * min_chunk_depth) return 1;
  return std::min((wanted + tiles - 1) / tiles, K / min_chunk_depth);
}

// The partial products of a K-cut gemm, owned by the calling thread; it only grows.
inline Buffer& gemm_workspace() {
  static thread_local Buffer partials;
  return partials;
}
}  // namespace detail

namespace detail {
// C^T of a product computed transposed (gemm), owned by the calling thread; it only grows.
inline Buffer& transposed_product() {
  static thread_local Buffer product;
  return product;
}

// Cuts of C: along its longer side into tiles, and K into chunks when that gives few tiles.
struct Cuts {
  bool split_rows;
  std::ptrdiff_t width, tiles, chunks, depth;
  // `panel`: the columns of a panel of packed B (the kernels' NR); the narrower tiles of a product
  // of few pieces are multiples of it in columns, so that each starts a panel, and of 8 in rows
  // (an AVX-512 panel of A, four AVX2 ones for every three).
  Cuts(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, bool kernel_steps, std::ptrdiff_t panel) : split_rows(M >= N) {
    const std::ptrdiff_t length = split_rows ? M : N;
    width = tile_width(length, split_rows ? 8 : panel, K < 2 * min_chunk_depth);
    tiles = (length + width - 1) / width;
    chunks = k_chunks(tiles, K);
    depth = (K + chunks - 1) / chunks;
    if (kernel_steps) {  // tnet's kernels: chunks start at a kernel step, so that each can read its part of a packed B
      depth = std::max<std::ptrdiff_t>(1, (depth + kernel_depth - 1) / kernel_depth) * kernel_depth;
      chunks = std::max<std::ptrdiff_t>(1, (K + depth - 1) / depth);
    }
  }
};

// Runs piece(m0, mn, n0, nn, k0, kn, c, add) for every piece of C (in parallel), each writing
// its product to c (C's block, or its chunk's partial product) with leading dimension N, then
// adds the chunks' partial products in chunk order. Pieces are dealt out round-robin, always to
// the same threads, so that each thread's workspaces have their size after a first product of a
// shape and a training step allocates nothing afterwards (tests/step_allocations.cpp).
template <class Piece>
void for_each_piece(const Cuts& cuts, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, float* C, bool accumulate, Piece piece) {
  const std::ptrdiff_t chunks = cuts.chunks, length = cuts.split_rows ? M : N;
  float* partials = nullptr;
  if (chunks > 1) {
    ensure_size(gemm_workspace(), std::size_t(chunks * M * N));
    partials = gemm_workspace().data();
  }
#pragma omp parallel for schedule(static, 1) if (cuts.tiles * chunks > 1)
  for (std::ptrdiff_t p = 0; p < cuts.tiles * chunks; ++p) {
    const std::ptrdiff_t t = p / chunks, k = p % chunks;
    const std::ptrdiff_t begin = t * cuts.width, end = std::min(length, begin + cuts.width), n = end - begin;
    const std::ptrdiff_t m0 = cuts.split_rows ? begin : 0, mn = cuts.split_rows ? n : M;
    const std::ptrdiff_t n0 = cuts.split_rows ? 0 : begin, nn = cuts.split_rows ? N : n;
    const std::ptrdiff_t k0 = k * cuts.depth, kn = std::min(K, k0 + cuts.depth) - k0;
    piece(m0, mn, n0, nn, k0, kn, chunks > 1 ? partials + k * M * N + m0 * N + n0 : C + m0 * N + n0, accumulate && chunks == 1);
  }
  if (chunks > 1) {
    const std::ptrdiff_t size = M * N;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < size; ++i) {
      float sum = accumulate ? C[i] : 0.0f;
      for (std::ptrdiff_t k = 0; k < chunks; ++k) sum += partials[k * size + i];
      C[i] = sum;
    }
  }
}

// C (M x N) (+)= A * op(B) with tnet's kernel Isa, A any source of the kernels' A operand (an
// Operand, or the patches of an image: layers/conv2d.hpp), then `epilogue`: in the kernels as each
// block of C is completed, or in a pass of its own when K is cut into chunks. In tiles of rows,
// op(B) is packed once for all tiles when it is small (a convolution's kernel), or read where it
// lies when it is large and its columns are contiguous (a weight gradient's dy: packing it would
// only add a pass).
// `b` is op(B) transposed as the kernels read it: element (column n, depth k) of op(B).
// `prepacked`, when set, holds pack_steps<Isa::NR>(b, N, K, kernel_depth) already (PackedB): B is
// then read from it, not packed again; the same products, the same bits.
template <class Isa>
void kernel_gemm(const ASource& a, const Operand& b, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, float* C, bool accumulate,
                 const Epilogue& epilogue, const float* prepacked = nullptr) {
  const Cuts cuts(M, N, K, true, Isa::NR);
  const bool in_kernels = cuts.chunks == 1 && !epilogue.empty();
  const bool b_in_place = !prepacked && cuts.split_rows && b.row_step == 1 && !b.bf16 && K * N > (1 << 18);
  const float* b_panels = prepacked;
  constexpr int NR = Isa::NR;
  const std::ptrdiff_t padded_n = (N + NR - 1) / NR * NR;
  if (cuts.split_rows && !b_in_place && !prepacked) {
    ensure_size(shared_packed_b(), std::size_t(padded_n * K));
    pack_steps<NR>(b, N, K, kernel_depth, shared_packed_b().data());
    b_panels = shared_packed_b().data();
  }
  for_each_piece(cuts, M, N, K, C, accumulate,
                 [&](std::ptrdiff_t m0, std::ptrdiff_t mn, std::ptrdiff_t n0, std::ptrdiff_t nn, std::ptrdiff_t k0, std::ptrdiff_t kn,
                     float* c, bool add) {
                   const Epilogue finish = epilogue.at(m0, n0);
                   // A piece of columns reads the whole product's panels where its first column starts one.
                   const bool panels_here = b_panels && n0 % NR == 0;
                   packed_product<Isa>(a, m0, k0, b.at(n0, k0), mn, nn, kn, c, N, add, panels_here ? b_panels + k0 * padded_n : nullptr,
                                       b_in_place, in_kernels ? &finish : nullptr, panels_here ? padded_n : 0, panels_here ? n0 : 0);
                 });
  if (!in_kernels) apply_epilogue(C, M, N, N, epilogue);
}

/// A product's B operand packed once for all as tnet's kernels read it (a layer's kernel, for
/// inference): pack_steps of the panel width of the kernels it was packed for.
struct PackedB {
  Buffer panels;
  GemmKernel kernel = GemmKernel::eigen;  // what it was packed for; eigen: nothing packed
  /// Packs B (K x N, row-major) for gemm_kernel(), or forgets it (`pack` false, or Eigen's kernels).
  void pack(bool pack, const float* B, std::ptrdiff_t N, std::ptrdiff_t K) {
    kernel = pack ? gemm_kernel() : GemmKernel::eigen;
    if (kernel == GemmKernel::eigen) return;
    const int NR = kernel == GemmKernel::avx512 ? Avx512::NR : Avx2::NR;
    ensure_size(panels, std::size_t((N + NR - 1) / NR * NR * K));
    const Operand b{B, 1, N};
    if (NR == Avx512::NR) pack_steps<Avx512::NR>(b, N, K, kernel_depth, panels.data());
    else pack_steps<Avx2::NR>(b, N, K, kernel_depth, panels.data());
  }
  /// The panels, when packed for the kernels gemm_kernel() names; else null.
  const float* get() const { return kernel != GemmKernel::eigen && kernel == gemm_kernel() ? panels.data() : nullptr; }
};

// kernel_gemm with the kernel gemm_kernel() names, which must be one of tnet's; `a` is an Operand
// or any other source of A blocks (see ASource). `prepacked`: B's panels for that kernel, or null.
inline void kernel_gemm_erased(const ASource& a, const Operand& b, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, float* C,
                               bool accumulate, const Epilogue& epilogue, const float* prepacked = nullptr) {
  if (gemm_kernel() == GemmKernel::avx512) kernel_gemm<Avx512>(a, b, M, N, K, C, accumulate, epilogue, prepacked);
  else kernel_gemm<Avx2>(a, b, M, N, K, C, accumulate, epilogue, prepacked);
}
// B row-major, K x N (N x K when tb); `prepacked` as kernel_gemm_erased's.
template <class Source>
void kernel_gemm(const Source& a, bool tb, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* B, float* C,
                 bool accumulate = false, const Epilogue& epilogue = {}, const float* prepacked = nullptr) {
  kernel_gemm_erased(erase(a), Operand{B, tb ? K : 1, tb ? 1 : N}, M, N, K, C, accumulate, epilogue, prepacked);
}
}  // namespace detail

/// C (M x N) = op(A) (M x K) * op(B) (K x N), or C += ... when `accumulate`, then every value of
/// C put through `epilogue` (a bias, ReLU, per-column affine map). All row-major and dense: A is
/// M x K (K x M when transposed), B is K x N (N x K when transposed).
inline void gemm(Transpose trans_a, Transpose trans_b, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B,
                 float* C, bool accumulate = false, const Epilogue& epilogue = {}) {
  using detail::ConstMatrixView;
  using detail::MatrixView;
  const bool ta = trans_a == Transpose::yes, tb = trans_b == Transpose::yes;
  const GemmKernel kernel = gemm_kernel();
  if (kernel != GemmKernel::eigen) {
    if (tb && M <= 64 && N >= 8 * M && N * K > (1 << 18)) {
      // A few rows times a large transposed B (a dense layer's input gradient, dy kernel^T):
      // packing B would transpose all of it, so compute C^T = B op(A)^T, where B is read as it
      // lies, then transpose that into C.
      Buffer& transposed = detail::transposed_product();
      ensure_size(transposed, std::size_t(N * M));
      detail::kernel_gemm(detail::Operand{B, K, 1}, !ta, N, M, K, A, transposed.data());
      const float* t = transposed.data();
#pragma omp parallel for schedule(static) if (M * N > (1 << 15))
      for (std::ptrdiff_t m = 0; m < M; ++m)
        for (std::ptrdiff_t n = 0; n < N; ++n) C[m * N + n] = (accumulate ? C[m * N + n] : 0.0f) + t[n * M + m];
      return detail::apply_epilogue(C, M, N, N, epilogue);
    }
    return detail::kernel_gemm(detail::Operand{A, ta ? 1 : K, ta ? M : 1}, tb, M, N, K, B, C, accumulate, epilogue);
  }
  detail::for_each_piece(detail::Cuts(M, N, K, false, 16), M, N, K, C, accumulate,
                         [&](std::ptrdiff_t m0, std::ptrdiff_t mn, std::ptrdiff_t n0, std::ptrdiff_t nn, std::ptrdiff_t k0,
                             std::ptrdiff_t kn, float* c_origin, bool add) {
                           // Rows m0.. of op(A) and columns n0.. of op(B), over k0..k0+kn, as strided views: nothing is copied here.
                           ConstMatrixView a = ta ? ConstMatrixView(A + k0 * M + m0, kn, mn, Eigen::OuterStride<>(M))
                                                  : ConstMatrixView(A + m0 * K + k0, mn, kn, Eigen::OuterStride<>(K));
                           ConstMatrixView b = tb ? ConstMatrixView(B + n0 * K + k0, nn, kn, Eigen::OuterStride<>(K))
                                                  : ConstMatrixView(B + k0 * N + n0, kn, nn, Eigen::OuterStride<>(N));
                           MatrixView c(c_origin, mn, nn, Eigen::OuterStride<>(N));
                           if (ta && tb) {
                             if (add) c.noalias() += a.transpose() * b.transpose();
                             else c.noalias() = a.transpose() * b.transpose();
                           } else if (ta) {
                             if (add) c.noalias() += a.transpose() * b;
                             else c.noalias() = a.transpose() * b;
                           } else if (tb) {
                             if (add) c.noalias() += a * b.transpose();
                             else c.noalias() = a * b.transpose();
                           } else {
                             if (add) c.noalias() += a * b;
                             else c.noalias() = a * b;
                           }
                         });
  detail::apply_epilogue(C, M, N, N, epilogue);
}

/// C (M x N) = A (M x K) * B (K x N), then `epilogue`, with B's values in bfloat16 (row-major;
/// core/bfloat16.hpp), widened to float as they are read: half the bytes of B to read, products
/// and sums in float. Only with tnet's own kernels: throws std::logic_error when gemm_kernel() is
/// Eigen's.
inline void gemm_bf16(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const std::uint16_t* B, float* C,
                      const Epilogue& epilogue = {}) {
  if (gemm_kernel() == GemmKernel::eigen) throw std::logic_error("tnet::gemm_bf16: needs tnet's own kernels; gemm_kernel() is Eigen's");
  const detail::Operand a{A, K, 1}, b{nullptr, 1, N, false, B};
  detail::kernel_gemm_erased(detail::erase(a), b, M, N, K, C, false, epilogue);
}

namespace detail {
/// The most rows of A sweep_gemm takes.
inline constexpr std::ptrdiff_t sweep_rows = 4;
// The depth of sweep_gemm's chunks of K: about 16 chunks for threads to share, each at least 256
// rows of B deep (K's alone decides).
inline std::ptrdiff_t sweep_depth(std::ptrdiff_t K) {
  const std::ptrdiff_t chunks = std::clamp<std::ptrdiff_t>(K / 256, 1, 16);
  return std::max<std::ptrdiff_t>(1, (K + chunks - 1) / chunks);
}
}  // namespace detail

/// C (M x N) = A (M x K) * B (K x N), then `epilogue`, for a few rows of A (1 <= M <= 4) times a
/// large B (row-major), in floats or bfloat16 (core/bfloat16.hpp), read in one sweep from its first
/// row to its last, each row whole, as memory serves it fastest: a dense layer's inference at a
/// batch of 1 to 4, which waits for B to be read. K is cut into chunks (by K alone), each one
/// product on one thread, added in chunk order: the result does not depend on the thread count.
/// `backwards` takes each thread's chunks in the opposite order, with the same bits, so that
/// calls that alternate begin with what the one before read last, which may still be in the
/// cache. Only with tnet's own kernels: throws std::logic_error when gemm_kernel() is Eigen's.
template <class T>
void sweep_gemm(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const T* B, float* C, const Epilogue& epilogue = {},
                bool backwards = false) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, std::uint16_t>, "tnet::sweep_gemm: B in floats or bfloat16 bits");
  if (gemm_kernel() == GemmKernel::eigen) throw std::logic_error("tnet::sweep_gemm: needs tnet's own kernels; gemm_kernel() is Eigen's");
  if (M < 1 || M > detail::sweep_rows)
    throw std::invalid_argument("tnet::sweep_gemm: 1 to " + std::to_string(detail::sweep_rows) + " rows, got " + std::to_string(M));
  const std::ptrdiff_t depth = detail::sweep_depth(K), chunks = std::max<std::ptrdiff_t>(1, (K + depth - 1) / depth);
  ensure_size(detail::gemm_workspace(), std::size_t(chunks * M * N));
  float* partials = detail::gemm_workspace().data();
#pragma omp parallel if (chunks > 1 && N * K > (1 << 16))
  {
    int threads = 1, thread = 0;
#ifdef _OPENMP
    threads = omp_get_num_threads(), thread = omp_get_thread_num();
#endif
    // This thread's chunks, then (once every thread's are done) its share of C's columns.
    const std::ptrdiff_t first = chunks * thread / threads, last = chunks * (thread + 1) / threads;
    for (std::ptrdiff_t i = first; i < last; ++i) {
      const std::ptrdiff_t chunk = backwards ? first + last - 1 - i : i, k0 = chunk * depth, kc = std::min(depth, K - k0);
      const float* a = A + k0;
      const T* b = B + k0 * N;
      float* c = partials + chunk * M * N;
      switch (M) {
        case 1:
          detail::sweep_avx2<1>(kc, a, K, b, N, c, N, N);
          break;
        case 2:
          detail::sweep_avx2<2>(kc, a, K, b, N, c, N, N);
          break;
        case 3:
          detail::sweep_avx2<3>(kc, a, K, b, N, c, N, N);
          break;
        default:
          detail::sweep_avx2<4>(kc, a, K, b, N, c, N, N);
      }
    }
#pragma omp barrier
    const std::ptrdiff_t from = N * thread / threads, to = N * (thread + 1) / threads;
    for (std::ptrdiff_t m = 0; m < M; ++m) {
      float* row = C + m * N;
      std::copy(partials + m * N + from, partials + m * N + to, row + from);
      for (std::ptrdiff_t chunk = 1; chunk < chunks; ++chunk) {
        const float* part = partials + chunk * M * N + m * N;
        for (std::ptrdiff_t n = from; n < to; ++n) row[n] += part[n];
      }
      for (std::ptrdiff_t n = from; n < to; ++n)
        row[n] = epilogue.finish(epilogue.bias ? row[n] + epilogue.bias[n] : row[n], epilogue.scale ? epilogue.scale[n] : 1.0f,
                                 epilogue.scale ? epilogue.shift[n] : 0.0f);
    }
  }
}

namespace detail {
// Scratch for sum_over_rows, owned by the calling thread and shared by every instantiation; it
// only grows, so steady-state calls do not allocate.
inline double* reduction_workspace(std::size_t size) {
  static thread_local std::vector<double> partial;
  if (partial.size() < size) partial.resize(size);
  return partial.data();
}
}  // namespace detail

/// out[c] = sum over rows r < R of term(r, c) for c < C, accumulated in double. Rows are summed
/// in fixed chunks (in parallel) whose partial sums are then added in chunk order, so the result
/// does not depend on the thread count. `term` is called as term(r, c) -> double.
template <class Term>
void sum_over_rows(std::ptrdiff_t R, std::ptrdiff_t C, double* out, Term term) {
  constexpr std::ptrdiff_t chunk = 256;
  const std::ptrdiff_t chunks = (R + chunk - 1) / chunk;
  double* part = detail::reduction_workspace(std::size_t(chunks * C));

#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::ptrdiff_t k = 0; k < chunks; ++k) {
    double* acc = part + k * C;
    const std::ptrdiff_t end = std::min(R, (k + 1) * chunk);
    vectorised(
        [C, term](double* acc, std::ptrdiff_t begin, std::ptrdiff_t end) {
          std::fill(acc, acc + C, 0.0);
          for (std::ptrdiff_t r = begin; r < end; ++r)
            for (std::ptrdiff_t c = 0; c < C; ++c) acc[c] += term(r, c);
        },
        acc, k * chunk, end);
  }
  std::fill(out, out + C, 0.0);
  for (std::ptrdiff_t k = 0; k < chunks; ++k)
    for (std::ptrdiff_t c = 0; c < C; ++c) out[c] += part[k * C + c];
}

/// Two such sums in one pass over the rows, out_a[c] of a(r, c) and out_b[c] of b(r, c), each
/// added in the order sum_over_rows adds it (the same bits).
template <class TermA, class TermB>
void sum_over_rows(std::ptrdiff_t R, std::ptrdiff_t C, double* out_a, TermA a, double* out_b, TermB b) {
  constexpr std::ptrdiff_t chunk = 256;
  const std::ptrdiff_t chunks = (R + chunk - 1) / chunk;
  double* part = detail::reduction_workspace(std::size_t(2 * chunks * C));

#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::ptrdiff_t k = 0; k < chunks; ++k) {
    double* acc_a = part + 2 * k * C;
    double* acc_b = acc_a + C;
    const std::ptrdiff_t end = std::min(R, (k + 1) * chunk);
    vectorised(
        [C, a, b](double* acc_a, double* acc_b, std::ptrdiff_t begin, std::ptrdiff_t end) {
          std::fill(acc_a, acc_a + C, 0.0);
          std::fill(acc_b, acc_b + C, 0.0);
          for (std::ptrdiff_t r = begin; r < end; ++r)
            for (std::ptrdiff_t c = 0; c < C; ++c) {
              acc_a[c] += a(r, c);
              acc_b[c] += b(r, c);
            }
        },
        acc_a, acc_b, k * chunk, end);
  }
  std::fill(out_a, out_a + C, 0.0);
  std::fill(out_b, out_b + C, 0.0);
  for (std::ptrdiff_t k = 0; k < chunks; ++k)
    for (std::ptrdiff_t c = 0; c < C; ++c) out_a[c] += part[2 * k * C + c], out_b[c] += part[(2 * k + 1) * C + c];
}

}  // namespace tnet
