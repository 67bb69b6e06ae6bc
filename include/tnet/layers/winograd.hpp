// tnet/layers/winograd.hpp: 3x3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3 x 3),
// here F(4x4, 3x3).
//
// The output is cut into tiles of m x m pixels. Each tile's (m + 2) x (m + 2) input window d and
// each 3 x 3 kernel slice g are transformed, V = B^T d B and U = G g G^T, after which the tile's
// output is Y = A^T M A with M = sum over input channels of U (.) V, element by element: for each
// of the (m + 2)^2 positions xi, M_xi = V_xi U_xi is a matrix product (tiles x C) by (C x F), done
// by tnet's GEMM kernels. F(4x4, 3x3) multiplies 36 times per tile and channel pair where the
// direct convolution multiplies 144 (4x fewer). The kernel gradient is the adjoint of the same
// algorithm (winograd_kernel_gradient), the input gradient the convolution of dy with the flipped
// kernel.
//   Tiles are taken in blocks small enough for their V and M to stay in the cache: a block's
// input transform, its (m + 2)^2 products and its output transform run one after another on one
// thread, and blocks are shared among threads, so every output is computed by the same operations
// whatever the thread count. The transforms run over 16 channels at a time (so C and F must be
// multiples of 16) and are compiled for the instruction set of the kernels Isa (run_for,
// core/targets.hpp). Rounding: about 10x the direct convolution's (the transforms scale by 4, 5
// and 8), a few millionths of the largest output or gradient (tests/test_layers.cpp measures the
// output and all three gradients against the direct convolution in double). Matrices from Lavin
// and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/threads.hpp"

namespace tnet::detail {

template <int M>
struct Winograd;

// F(4x4, 3x3): points 0, 1, -1, 2, -2.
template <>
struct Winograd<4> {
  static constexpr int alpha = 6;
  template <class V>
  [[gnu::always_inline]] static void input(const V* d, V* v) {
    for (std::size_t l = 0; l < std::size(d[0]); ++l) {
      const float d0 = d[0][l], d1 = d[1][l], d2 = d[2][l], d3 = d[3][l], d4 = d[4][l], d5 = d[5][l];
      v[0][l] = 4 * d0 - 5 * d2 + d4;
      v[1][l] = -4 * (d1 + d2) + d3 + d4;
      v[2][l] = 4 * (d1 - d2) - d3 + d4;
      v[3][l] = 2 * (d3 - d1) - d2 + d4;
      v[4][l] = 2 * (d1 - d3) - d2 + d4;
      v[5][l] = 4 * d1 - 5 * d3 + d5;
    }
  }
  template <class G, class U>
  [[gnu::always_inline]] static void kernel(const G* g, U* u) {
    for (std::size_t l = 0; l < std::size(g[0]); ++l) {
      const float g0 = g[0][l], g1 = g[1][l], g2 = g[2][l];
      u[0][l] = g0 * 0.25f;
      u[1][l] = (g0 + g1 + g2) * (-1.0f / 6);
      u[2][l] = (g0 - g1 + g2) * (-1.0f / 6);
      u[3][l] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
      u[4][l] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
      u[5][l] = g2;
    }
  }
  template <class V>
  [[gnu::always_inline]] static void output(const V* m, V* y) {
    for (std::size_t l = 0; l < std::size(m[0]); ++l) {
      const float m0 = m[0][l], m1 = m[1][l], m2 = m[2][l], m3 = m[3][l], m4 = m[4][l], m5 = m[5][l];
      const float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
      y[0][l] = m0 + s12 + s34;
      y[1][l] = d12 + 2 * d34;
      y[2][l] = s12 + 4 * s34;
      y[3][l] = d12 + 8 * d34 + m5;
    }
  }
  // The adjoints, for the kernel gradient: dL/dm = A dL/dy, dL/dg = G^T dL/du. A's row 1 is
  // all ones, so position (1, 1) of A dy A^T is the sum of the tile's dy.
  static constexpr int sum_row = 1;
  template <class Y, class V>
  [[gnu::always_inline]] static void output_adjoint(const Y* y, V* m) {
    for (std::size_t l = 0; l < std::size(y[0]); ++l) {
      const float y0 = y[0][l], y1 = y[1][l], y2 = y[2][l], y3 = y[3][l];
      const float even = y0 + y2, odd = y1 + y3, even4 = y0 + 4 * y2, odd4 = 2 * y1 + 8 * y3;
      m[0][l] = y0;
      m[1][l] = even + odd;
      m[2][l] = even - odd;
      m[3][l] = even4 + odd4;
      m[4][l] = even4 - odd4;
      m[5][l] = y3;
    }
  }
  template <class U, class G>
  [[gnu::always_inline]] static void kernel_adjoint(const U* u, G* g) {
    for (std::size_t l = 0; l < std::size(u[0]); ++l) {
      const float u0 = u[0][l], s12 = u[1][l] + u[2][l], d12 = u[2][l] - u[1][l], s34 = u[3][l] + u[4][l], d34 = u[3][l] - u[4][l];
      g[0][l] = u0 * 0.25f - s12 * (1.0f / 6) + s34 * (1.0f / 24);
      g[1][l] = d12 * (1.0f / 6) + d34 * (1.0f / 12);
      g[2][l] = (s34 - s12) * (1.0f / 6) + u[5][l];
    }
  }
};

// Z = T X T^T over 16 lanes, for a 1-D transform T from In values to Out (one of Winograd<M>'s):
// load(i, row) reads row i of X (In x In) into row[In][16], transform(in, out) runs along it (x),
// its outputs are kept by column, and then transform runs along each column (y); store(j, z)
// takes column j of Z (z[i] its row i), for j = 0 .. Out - 1. Each value is loaded and stored
// once a pass: a row at a time stays in registers.
template <int In, int Out, class Load, class Transform, class Store>
[[gnu::always_inline]] inline void transform_2d(Load load, Transform transform, Store store) {
  alignas(64) float columns[Out][In][16];  // columns[j][i]: output j of row i
  for (int i = 0; i < In; ++i) {
    alignas(64) float row[In][16], out[Out][16];
    load(i, row);
    transform(row, out);
    for (int j = 0; j < Out; ++j)
      for (int l = 0; l < 16; ++l) columns[j][i][l] = out[j][l];
  }
  for (int j = 0; j < Out; ++j) {
    alignas(64) float z[Out][16];
    transform(columns[j], z);
    store(j, z);
  }
}

/// A 3x3 stride-1 convolution: y (batch, OH, OW, F) = the convolution of x (batch, H, W, C) with
/// kernel (3, 3, C, F), output pixel (oy, ox) reading input rows oy - top .. oy - top + 2 and
/// columns ox - left .. (zero outside), then `epilogue` (bias, ReLU, affine). C and F multiples of 16.
struct WinogradConv {
  const float* x;
  int batch, H, W, C, OH, OW, F, top, left;
};

// Row c of U_xi (C x F each) = G g G^T for every output channel f: g the 3 x 3 kernel slice (c, f),
// written where pack_steps<NR> would put it: position xi's matrix at panels + xi * padded_f * C,
// in steps of kernel_depth rows, each a run of panels of NR columns (row k of a panel at k * NR).
template <int M, class Isa>
[[gnu::always_inline]] inline void kernel_rows(const float* kernel, int C, int F, bool flipped, int c, float* panels) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, L = 16, NR = Isa::NR;
  static_assert(NR % L == 0, "tnet: a transform's 16 lanes lie in one panel");
  const std::ptrdiff_t padded_f = (F + NR - 1) / NR * NR, step = c / kernel_depth, k = c % kernel_depth;
  const std::ptrdiff_t depth = std::min<std::ptrdiff_t>(kernel_depth, C - step * kernel_depth);  // of this step
  float* row = panels + step * kernel_depth * padded_f + k * NR;
  for (int f0 = 0; f0 < F; f0 += L) {
    float* at = row + (f0 / NR) * NR * depth + f0 % NR;
    transform_2d<3, alpha>(
        [&](int ky, auto& g) {
          for (int kx = 0; kx < 3; ++kx)
            for (int l = 0; l < L; ++l)
              g[kx][l] = flipped ? kernel[((std::ptrdiff_t(2 - ky) * 3 + (2 - kx)) * F + f0 + l) * C + c]
                                 : kernel[((std::ptrdiff_t(ky) * 3 + kx) * C + c) * F + f0 + l];
        },
        [](const auto* in, auto* out) { T::kernel(in, out); },
        [&](int j, const auto& u) {
          for (int i = 0; i < alpha; ++i)
            for (int l = 0; l < L; ++l) at[std::ptrdiff_t(i * alpha + j) * padded_f * C + l] = u[i][l];
        });
  }
}

/// A convolution kernel (3, 3, C, F) transformed for F(m x m, 3 x 3) and packed as the GEMM
/// kernels' B operand, one position xi after another; kept by the layer and remade only when the
/// kernel it was made from changes (inference reuses it: a batch-1 forward costs less than the
/// transform). `flipped`: the transform of the input gradient's kernel, which reads (ky, kx, c, f)
/// as (2 - ky, 2 - kx, f, c) of the forward's (3, 3, F, C).
struct WinogradKernel {
  Buffer source, panels;  // the kernel it was made from; U_xi (C x F each) packed
  int tile = 0, width = 0;

  /// The panels made last, if for F(M x M, 3 x 3) and Isa's panels; else null. For a caller that
  /// knows the kernel has not changed since (an inference of a prepared network: Pass::prepared).
  template <int M, class Isa>
  const float* made() const {
    return tile == M && width == Isa::NR && !panels.empty() ? panels.data() : nullptr;
  }
  template <int M, class Isa>
  const float* get(const float* kernel, int C, int F, bool flipped) {
    using T = Winograd<M>;
    constexpr int alpha = T::alpha, points = alpha * alpha, NR = Isa::NR;
    const std::size_t size = std::size_t(9) * C * F;
    const bool same_layout = tile == M && width == NR && source.size() == size;
    if (same_layout && std::equal(kernel, kernel + size, source.data())) return panels.data();
    source.assign(kernel, kernel + size);
    tile = M, width = NR;
    // The panels' columns past F stay zero: kernel_rows writes only the first F.
    const std::ptrdiff_t padded_f = (F + NR - 1) / NR * NR;
    if (!same_layout) panels.assign(std::size_t(points * padded_f * C), 0.0f);
    float* out = panels.data();
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; ++c) run_for<Isa::target>([](auto... a) { kernel_rows<M, Isa>(a...); }, kernel, C, F, flipped, c, out);
    return panels.data();
  }
};

// Floats between two positions' matrices of `size` floats: one cache line more, so that the
// (m + 2)^2 rows a tile's transform writes (or reads) do not fall into one set of the caches.
constexpr std::ptrdiff_t skewed(std::ptrdiff_t size) { return size + 16; }

// V_xi[t][c] = (B^T d B)_xi for tiles first .. first + count - 1 of p (t from 0), d each tile's
// (m + 2) x (m + 2) input window, zero outside the images (`zeros`: C zeros); xi's tiles start at
// V + xi * stride.
template <int M>
[[gnu::always_inline]] inline void winograd_input(const WinogradConv& p, std::ptrdiff_t first, std::ptrdiff_t count, std::ptrdiff_t stride,
                                                  const float* zeros, float* V) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, L = 16;
  const int C = p.C, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  for (std::ptrdiff_t t = 0; t < count; ++t) {
    const std::ptrdiff_t tile = first + t, n = tile / (tiles_y * tiles_x);
    const int ty = int(tile % (tiles_y * tiles_x)) / tiles_x, tx = int(tile % (tiles_y * tiles_x)) % tiles_x;
    const int iy0 = ty * M - p.top, ix0 = tx * M - p.left;
    const float* image = p.x + n * p.H * p.W * C;
    const float* at[alpha][alpha];
    for (int i = 0; i < alpha; ++i)
      for (int j = 0; j < alpha; ++j) {
        const int iy = iy0 + i, ix = ix0 + j;
        at[i][j] = iy >= 0 && iy < p.H && ix >= 0 && ix < p.W ? image + (std::ptrdiff_t(iy) * p.W + ix) * C : zeros;
      }
    for (int c0 = 0; c0 < C; c0 += L) {
      transform_2d<alpha, alpha>(
          [&](int i, auto& d) {
            for (int j = 0; j < alpha; ++j)
              for (int l = 0; l < L; ++l) d[j][l] = at[i][j][c0 + l];
          },
          [](const auto* in, auto* out) { T::input(in, out); },
          [&](int j, const auto& v) {
            for (int i = 0; i < alpha; ++i)
              for (int l = 0; l < L; ++l) V[std::ptrdiff_t(i * alpha + j) * stride + t * C + c0 + l] = v[i][l];
          });
    }
  }
}

// Block b of tiles (`block` a block) of winograd_conv3x3: input transform, the products, output
// transform and epilogue.
template <int M, class Isa>
[[gnu::always_inline]] inline void conv_block(const WinogradConv& p, const float* panels, float* y, const Epilogue& epilogue,
                                              std::ptrdiff_t b, std::ptrdiff_t block) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, points = alpha * alpha, L = 16, NR = Isa::NR;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t padded_f = (F + NR - 1) / NR * NR, tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  static thread_local Buffer v_buffer, m_buffer, zeros;
  const std::ptrdiff_t v_stride = skewed(block * C), m_stride = skewed(block * F);
  ensure_size(v_buffer, std::size_t(points * v_stride));
  ensure_size(m_buffer, std::size_t(points * m_stride));
  if (zeros.size() < std::size_t(C)) zeros.assign(std::size_t(C), 0.0f);
  float* V = v_buffer.data();
  float* Mx = m_buffer.data();
  const std::ptrdiff_t first = b * block, count = std::min(block, tiles - first);
  winograd_input<M>(p, first, count, v_stride, zeros.data(), V);
  // M_xi = V_xi U_xi.
  for (int xi = 0; xi < points; ++xi) {
    const Operand a{V + xi * v_stride, C, 1};
    packed_product<Isa>(erase(a), 0, 0, Operand{nullptr, 1, F}, count, F, C, Mx + xi * m_stride, F, false,
                        panels + std::ptrdiff_t(xi) * padded_f * C);
  }
  // Output transform, then the epilogue, into the tile's pixels that lie in y.
  const bool has_bias = epilogue.bias, has_scale = epilogue.scale;
  for (std::ptrdiff_t t = 0; t < count; ++t) {
    const std::ptrdiff_t tile = first + t, n = tile / (tiles_y * tiles_x);
    const int ty = int(tile % (tiles_y * tiles_x)) / tiles_x, tx = int(tile % (tiles_y * tiles_x)) % tiles_x;
    float* out_image = y + n * p.OH * p.OW * F;
    for (int f0 = 0; f0 < F; f0 += L) {
      float bias[L], scale[L], shift[L];  // the epilogue's, for these channels
      for (int l = 0; l < L; ++l) {
        bias[l] = has_bias ? epilogue.bias[f0 + l] : 0.0f;
        scale[l] = has_scale ? epilogue.scale[f0 + l] : 1.0f;
        shift[l] = has_scale ? epilogue.shift[f0 + l] : 0.0f;
      }
      transform_2d<alpha, M>(
          [&](int i, auto& m) {
            for (int j = 0; j < alpha; ++j)
              for (int l = 0; l < L; ++l) m[j][l] = Mx[std::ptrdiff_t(i * alpha + j) * m_stride + t * F + f0 + l];
          },
          [](const auto* in, auto* out) { T::output(in, out); },
          [&](int j, const auto& out) {
            const int ox = tx * M + j;
            if (ox >= p.OW) return;
            for (int i = 0; i < M && ty * M + i < p.OH; ++i) {
              const std::ptrdiff_t pixel = (n * p.OH + ty * M + i) * p.OW + ox;
              float* dst = out_image + (std::ptrdiff_t(ty * M + i) * p.OW + ox) * F + f0;
              alignas(64) float value[L];
              for (int l = 0; l < L; ++l) value[l] = out[i][l];
              epilogue.finish_row(value, L, has_bias ? bias : nullptr, scale, shift, epilogue.added_at(pixel, f0));
              std::copy(value, value + L, dst);
            }
          });
    }
  }
}

/// y = the convolution p describes, its kernel given transformed (WinogradKernel), then `epilogue`.
template <int M, class Isa>
void winograd_conv3x3(const WinogradConv& p, const float* panels, float* y, const Epilogue& epilogue) {
  constexpr int alpha = Winograd<M>::alpha, points = alpha * alpha;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  // Tiles per block: V and M of a block (points x block x (C + F) floats) within about 512 KB;
  // where that gives few blocks (a batch-1 inference), smaller ones, as many for each thread. A
  // tile's output does not depend on the block it is in.
  std::ptrdiff_t block = std::clamp<std::ptrdiff_t>((131072 / (points * (C + F))) / 8 * 8, 8, 64);
  std::ptrdiff_t blocks = (tiles + block - 1) / block;
  if (const std::ptrdiff_t threads = num_threads(); blocks < 4 * threads && blocks % threads != 0) {
    blocks = std::min(tiles, (blocks + threads - 1) / threads * threads);
    block = (tiles + blocks - 1) / blocks;
    blocks = (tiles + block - 1) / block;
  }
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t b = 0; b < blocks; ++b)
    run_for<Isa::target>([](auto... a) { conv_block<M, Isa>(a...); }, p, panels, y, epilogue, b, block);
}

// W_xi[t][f] = (A dy A^T)_xi for tiles first .. first + count - 1 of p (t from 0), the adjoint of
// the output transform over each tile's m x m of dy (outputs past the edges are 0, `zeros`: F
// zeros); xi's tiles start at Wt + xi * stride. Adds each tile's sum of dy (position sum_row,
// sum_row of W) into bias unless it is null.
template <int M>
[[gnu::always_inline]] inline void winograd_output_adjoint(const WinogradConv& p, const float* dy, std::ptrdiff_t first,
                                                           std::ptrdiff_t count, std::ptrdiff_t stride, const float* zeros, float* Wt,
                                                           double* bias) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, L = 16;
  const int F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  for (std::ptrdiff_t t = 0; t < count; ++t) {
    const std::ptrdiff_t tile = first + t, n = tile / (tiles_y * tiles_x);
    const int ty = int(tile % (tiles_y * tiles_x)) / tiles_x, tx = int(tile % (tiles_y * tiles_x)) % tiles_x;
    const float* at[M][M];
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < M; ++j) {
        const int oy = ty * M + i, ox = tx * M + j;
        at[i][j] = oy < p.OH && ox < p.OW ? dy + ((n * p.OH + oy) * p.OW + ox) * F : zeros;
      }
    for (int f0 = 0; f0 < F; f0 += L) {
      transform_2d<M, alpha>(
          [&](int i, auto& g) {
            for (int j = 0; j < M; ++j)
              for (int l = 0; l < L; ++l) g[j][l] = at[i][j][f0 + l];
          },
          [](const auto* in, auto* out) { T::output_adjoint(in, out); },
          [&](int j, const auto& w) {
            for (int i = 0; i < alpha; ++i)
              for (int l = 0; l < L; ++l) Wt[std::ptrdiff_t(i * alpha + j) * stride + t * F + f0 + l] = w[i][l];
            if (bias && j == T::sum_row)
              for (int l = 0; l < L; ++l) bias[f0 + l] += w[T::sum_row][l];
          });
    }
  }
}

// Chunk `chunk` of winograd_kernel_gradient (blocks of `block` tiles): its dL/dU_xi into sum, its
// sum of dy (dL/dbias) into bias.
template <int M, class Isa>
[[gnu::always_inline]] inline void grad_chunk(const WinogradConv& p, const float* dy, float* sum, double* bias, std::ptrdiff_t chunk,
                                              std::ptrdiff_t block, std::ptrdiff_t blocks_per_chunk, std::ptrdiff_t blocks) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, points = alpha * alpha;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  static thread_local Buffer v_buffer, w_buffer, zeros;
  const std::ptrdiff_t v_stride = skewed(block * C), w_stride = skewed(block * F);
  ensure_size(v_buffer, std::size_t(points * v_stride));
  ensure_size(w_buffer, std::size_t(points * w_stride));
  if (zeros.size() < std::size_t(std::max(C, F))) zeros.assign(std::size_t(std::max(C, F)), 0.0f);
  float *V = v_buffer.data(), *Wt = w_buffer.data();
  std::fill(bias, bias + F, 0.0);
  for (std::ptrdiff_t b = chunk * blocks_per_chunk; b < std::min(blocks, (chunk + 1) * blocks_per_chunk); ++b) {
    const std::ptrdiff_t first = b * block, count = std::min(block, tiles - first);
    winograd_input<M>(p, first, count, v_stride, zeros.data(), V);
    winograd_output_adjoint<M>(p, dy, first, count, w_stride, zeros.data(), Wt, bias);
    // dL/dU_xi (C x F) += V_xi^T W_xi, both operands read where they lie.
    for (int xi = 0; xi < points; ++xi) {
      const Operand a{V + xi * v_stride, 1, C, true};
      packed_product<Isa>(erase(a), 0, 0, Operand{Wt + xi * w_stride, 1, F}, C, F, count, sum + xi * std::ptrdiff_t(C) * F, F,
                          b > chunk * blocks_per_chunk, nullptr, true);
    }
  }
}

// Row c of dL/dkernel: the chunks' sums of dL/dU in chunk order (each position's row of F read
// whole, chunk after chunk), then G^T (dL/dU) G.
template <int M, class Isa>
[[gnu::always_inline]] inline void grad_finish(int C, int F, const float* partial, std::ptrdiff_t chunks, int c, float* grad) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, points = alpha * alpha, L = 16;
  const std::ptrdiff_t per_chunk = std::ptrdiff_t(points) * C * F;
  static thread_local Buffer sums;
  ensure_size(sums, std::size_t(points) * F);
  float* total = sums.data();
  for (int xi = 0; xi < points; ++xi) {
    const float* row = partial + (std::ptrdiff_t(xi) * C + c) * F;
    std::copy(row, row + F, total + xi * F);
    for (std::ptrdiff_t chunk = 1; chunk < chunks; ++chunk)
      for (int f = 0; f < F; ++f) total[xi * F + f] += row[chunk * per_chunk + f];
  }
  for (int f0 = 0; f0 < F; f0 += L) {
    transform_2d<alpha, 3>(
        [&](int i, auto& u) {
          for (int j = 0; j < alpha; ++j)
            for (int l = 0; l < L; ++l) u[j][l] = total[(i * alpha + j) * F + f0 + l];
        },
        [](const auto* in, auto* out) { T::kernel_adjoint(in, out); },
        [&](int kx, const auto& g) {
          for (int ky = 0; ky < 3; ++ky)
            for (int l = 0; l < L; ++l) grad[((std::ptrdiff_t(ky) * 3 + kx) * C + c) * F + f0 + l] = g[ky][l];
        });
  }
}

// winograd_kernel_gradient for few tiles against large sums dL/dU (points x C x F): every tile's V
// and W first (blocks of tiles shared among threads), then each position's product over all the
// tiles, (C x tiles) by (tiles x F), its rows shared among threads, then G^T (dL/dU) G. dL/dU is
// written once, with no partial sums to add, and every thread has a share of the products however
// few the tiles. Each sum runs over the tiles in order whatever the thread count.
template <int M, class Isa>
void winograd_kernel_gradient_whole(const WinogradConv& p, const float* dy, float* grad, float* grad_bias) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, points = alpha * alpha, MR = Isa::MR;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  const std::ptrdiff_t v_stride = skewed(tiles * C), w_stride = skewed(tiles * F);
  static thread_local Buffer v_buffer, w_buffer, sums, zeros;  // the calling thread's
  ensure_size(v_buffer, std::size_t(points * v_stride));
  ensure_size(w_buffer, std::size_t(points * w_stride));
  ensure_size(sums, std::size_t(points) * C * F);
  if (zeros.size() < std::size_t(std::max(C, F))) zeros.assign(std::size_t(std::max(C, F)), 0.0f);
  float *V = v_buffer.data(), *Wt = w_buffer.data(), *sum = sums.data();
  const float* zero = zeros.data();
  constexpr std::ptrdiff_t block = 8;  // tiles a transform task takes
  const std::ptrdiff_t blocks = (tiles + block - 1) / block;
  // Rows of a position's product a task takes: a multiple of the micro-kernel's, about 4 tasks a
  // thread (a row's sums do not depend on the rows beside it).
  const std::ptrdiff_t pieces = std::clamp<std::ptrdiff_t>((4 * num_threads() + points - 1) / points, 1, (C + MR - 1) / MR);
  const std::ptrdiff_t piece = ((C + pieces - 1) / pieces + MR - 1) / MR * MR, per_point = (C + piece - 1) / piece;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (std::ptrdiff_t b = 0; b < blocks; ++b)
      run_for<Isa::target>(
          [](const WinogradConv& p, const float* dy, std::ptrdiff_t first, std::ptrdiff_t count, std::ptrdiff_t v_stride,
             std::ptrdiff_t w_stride, const float* zero, float* V, float* Wt) {
            winograd_input<M>(p, first, count, v_stride, zero, V + first * p.C);
            winograd_output_adjoint<M>(p, dy, first, count, w_stride, zero, Wt + first * p.F, nullptr);
          },
          p, dy, b * block, std::min(block, tiles - b * block), v_stride, w_stride, zero, V, Wt);
    // dL/dU_xi (C x F) = V_xi^T W_xi, both operands read where they lie.
#pragma omp for schedule(static)
    for (std::ptrdiff_t task = 0; task < points * per_point; ++task) {
      const std::ptrdiff_t xi = task / per_point, r0 = task % per_point * piece, rows = std::min(piece, C - r0);
      const Operand a{V + xi * v_stride, 1, C, true};
      packed_product<Isa>(erase(a), r0, 0, Operand{Wt + xi * w_stride, 1, F}, rows, F, tiles, sum + (xi * C + r0) * F, F, false, nullptr,
                          true);
    }
#pragma omp for schedule(static)
    for (int c = 0; c < C; ++c) run_for<Isa::target>([](auto... a) { grad_finish<M, Isa>(a...); }, C, F, sum, std::ptrdiff_t(1), c, grad);
  }
  // dL/dbias: each tile's sum of dy (position sum_row, sum_row of W) in tile order, in double.
  const float* tile_sums = Wt + (T::sum_row * alpha + T::sum_row) * w_stride;
  for (int f = 0; f < F; ++f) {
    double total = 0;
    for (std::ptrdiff_t t = 0; t < tiles; ++t) total += tile_sums[t * F + f];
    grad_bias[f] = static_cast<float>(total);
  }
}

/// How winograd_kernel_gradient sums over `tiles` tiles for C input and F output channels, with
/// `points` positions xi: in `chunks` chunks of `blocks_per_chunk` blocks of `block` tiles, or, where
/// `whole`, over the whole batch at once (winograd_kernel_gradient_whole). Depends on the shapes
/// only, so the sums are the same for any thread count.
struct WinogradGradientPlan {
  std::ptrdiff_t block, blocks, blocks_per_chunk, chunks;
  bool whole;
};
inline WinogradGradientPlan winograd_gradient_plan(std::ptrdiff_t tiles, int C, int F, int points) {
  // Tiles per block: V and W of a block within about 512 KB, as in winograd_conv3x3, unless the
  // sums dL/dU_xi are too large to stay in a core's L2 cache (1 MB and more): then 64, so that
  // each pass over them adds 64 products to each.
  const std::ptrdiff_t sums = std::ptrdiff_t(points) * C * F;
  const std::ptrdiff_t block = sums > 262144 ? 64 : std::clamp<std::ptrdiff_t>((131072 / (points * (C + F))) / 8 * 8, 8, 64);
  // About 8 chunks: work for 8 threads, and 8 partial sums of points x C x F to add.
  const std::ptrdiff_t blocks = (tiles + block - 1) / block, blocks_per_chunk = (blocks + 7) / 8;
  const std::ptrdiff_t chunks = (blocks + blocks_per_chunk - 1) / blocks_per_chunk;
  // Few tiles against large sums (ResNet18's 12x12 and 6x6 stages at 96x96): every tile's V and W
  // take no more floats than the chunks' partial sums, and the chunks are few to share among
  // threads (2 at 6x6, whose sums are 9.4 MB each). Measured on ResNet18's shapes at batch 32
  // (benchmarks/RESULTS.md, 2026-12-06, fourth session).
  const bool whole = std::ptrdiff_t(points) * tiles * (C + F) <= chunks * sums;
  return {block, blocks, blocks_per_chunk, chunks, whole};
}

/// dL/dkernel (3, 3, C, F) and dL/dbias (F) of the convolution p describes, given dy (batch, OH,
/// OW, F), by the adjoint of F(m x m, 3 x 3): Y = A^T (U (.) V) A, U = G g G^T, so dL/dU_xi = sum
/// over tiles of V_xi (.) W_xi with W = A dy A^T (each tile's m x m of dy), a product (C x tiles)
/// by (tiles x F) for each of the (m + 2)^2 positions xi, and dL/dg = G^T (dL/dU) G; dL/dbias is
/// the sum over tiles of one position of W (the tile's sum of dy), in double. Tiles are summed in
/// fixed chunks of blocks whose partial sums are then added in chunk order, or all at once
/// (winograd_gradient_plan), so the result does not depend on the thread count.
template <int M, class Isa>
void winograd_kernel_gradient(const WinogradConv& p, const float* dy, float* grad, float* grad_bias) {
  constexpr int alpha = Winograd<M>::alpha, points = alpha * alpha;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  // Named one by one, not as a structured binding: clang's OpenMP cannot capture those yet.
  const WinogradGradientPlan plan = winograd_gradient_plan(tiles, C, F, points);
  if (plan.whole) return winograd_kernel_gradient_whole<M, Isa>(p, dy, grad, grad_bias);
  const std::ptrdiff_t block = plan.block, blocks = plan.blocks, blocks_per_chunk = plan.blocks_per_chunk, chunks = plan.chunks;
  const std::ptrdiff_t per_chunk = std::ptrdiff_t(points) * C * F;
  // The calling thread's; every thread writes its chunks' part.
  static thread_local Buffer partials;
  static thread_local std::vector<double> bias_partials;
  ensure_size(partials, std::size_t(chunks * per_chunk));
  if (bias_partials.size() < std::size_t(chunks * F)) bias_partials.resize(std::size_t(chunks * F));
  float* partial = partials.data();
  double* bias_partial = bias_partials.data();
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t chunk = 0; chunk < chunks; ++chunk)
    run_for<Isa::target>([](auto... a) { grad_chunk<M, Isa>(a...); }, p, dy, partial + chunk * per_chunk, bias_partial + chunk * F, chunk,
                         block, blocks_per_chunk, blocks);
  // The chunks' sums in chunk order, then dL/dg = G^T (dL/dU) G.
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) run_for<Isa::target>([](auto... a) { grad_finish<M, Isa>(a...); }, C, F, partial, chunks, c, grad);
  for (int f = 0; f < F; ++f) {
    double total = 0;
    for (std::ptrdiff_t chunk = 0; chunk < chunks; ++chunk) total += bias_partial[chunk * F + f];
    grad_bias[f] = static_cast<float>(total);
  }
}

}  // namespace tnet::detail
