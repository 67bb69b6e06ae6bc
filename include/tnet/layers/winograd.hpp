// tnet/layers/winograd.hpp: 3x3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3 x 3).
//
// The output is cut into tiles of m x m pixels. Each tile's (m + 2) x (m + 2) input window d and
// each 3 x 3 kernel slice g are transformed, V = B^T d B and U = G g G^T, after which the tile's
// output is Y = A^T M A with M = sum over input channels of U (.) V, element by element: for each
// of the (m + 2)^2 positions xi, M_xi = V_xi U_xi is a matrix product (tiles x C) by (C x F), done
// by tnet's GEMM kernels. F(4x4, 3x3) multiplies 36 times per tile and channel pair where the
// direct convolution multiplies 144 (4x fewer); F(2x2, 3x3) 16 where it multiplies 36.
//   Tiles are taken in blocks small enough for their V and M to stay in the cache: a block's
// input transform, its (m + 2)^2 products and its output transform run one after another on one
// thread, and blocks are shared among threads, so every output is computed by the same operations
// whatever the thread count. The transforms run over 16 channels at a time (so C and F must be
// multiples of 16) and are compiled for the instruction set of the kernels Isa (run_for,
// core/targets.hpp). Rounding: F(2x2, 3x3)'s is the direct convolution's, F(4x4, 3x3)'s about
// 10x larger (its transforms scale by 4, 5 and 8), a few millionths of the output's size;
// Conv2D trains with the first and infers with the second (tests/test_layers.cpp measures both
// against the direct convolution in double). Matrices from Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks" (2016).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include "../core/gemm.hpp"

namespace tnet::detail {

template <int M>
struct Winograd;

// F(2x2, 3x3): points 0, 1, -1.
template <>
struct Winograd<2> {
  static constexpr int alpha = 4;
  template <class V>  // V: an array of lanes; d and v are alpha of them
  [[gnu::always_inline]] static void input(const V* d, V* v) {
    for (std::size_t l = 0; l < std::size(d[0]); ++l) {
      v[0][l] = d[0][l] - d[2][l];
      v[1][l] = d[1][l] + d[2][l];
      v[2][l] = d[2][l] - d[1][l];
      v[3][l] = d[1][l] - d[3][l];
    }
  }
  template <class G, class U>
  [[gnu::always_inline]] static void kernel(const G* g, U* u) {
    for (std::size_t l = 0; l < std::size(g[0]); ++l) {
      u[0][l] = g[0][l];
      u[1][l] = (g[0][l] + g[1][l] + g[2][l]) * 0.5f;
      u[2][l] = (g[0][l] - g[1][l] + g[2][l]) * 0.5f;
      u[3][l] = g[2][l];
    }
  }
  template <class V>
  [[gnu::always_inline]] static void output(const V* m, V* y) {
    for (std::size_t l = 0; l < std::size(m[0]); ++l) {
      y[0][l] = m[0][l] + m[1][l] + m[2][l];
      y[1][l] = m[1][l] - m[2][l] - m[3][l];
    }
  }
};

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
};

/// A 3x3 stride-1 convolution: y (batch, OH, OW, F) = the convolution of x (batch, H, W, C) with
/// kernel (3, 3, C, F), output pixel (oy, ox) reading input rows oy - top .. oy - top + 2 and
/// columns ox - left .. (zero outside), then `epilogue` (bias, ReLU, affine). C and F multiples of 16.
struct WinogradConv {
  const float* x;
  int batch, H, W, C, OH, OW, F, top, left;
};

// Row c of U_xi (C x F each) = G g G^T for every output channel f: g the 3 x 3 kernel slice (c, f).
template <int M, class Isa>
[[gnu::always_inline]] inline void kernel_rows(const float* kernel, int C, int F, bool flipped, int c, float* U) {
  using T = Winograd<M>;
  constexpr int alpha = T::alpha, L = 16;
  for (int f0 = 0; f0 < F; f0 += L) {
    float g[3][3][L], rows[3][alpha][L], u[alpha][alpha][L];
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx)
        for (int l = 0; l < L; ++l)
          g[ky][kx][l] = flipped ? kernel[((std::ptrdiff_t(2 - ky) * 3 + (2 - kx)) * F + f0 + l) * C + c]
                                 : kernel[((std::ptrdiff_t(ky) * 3 + kx) * C + c) * F + f0 + l];
    for (int ky = 0; ky < 3; ++ky) T::kernel(g[ky], rows[ky]);  // along x
    for (int j = 0; j < alpha; ++j) {                           // along y
      float column[3][L], out[alpha][L];
      for (int ky = 0; ky < 3; ++ky)
        for (int l = 0; l < L; ++l) column[ky][l] = rows[ky][j][l];
      T::kernel(column, out);
      for (int i = 0; i < alpha; ++i)
        for (int l = 0; l < L; ++l) u[i][j][l] = out[i][l];
    }
    for (int i = 0; i < alpha; ++i)
      for (int j = 0; j < alpha; ++j)
        for (int l = 0; l < L; ++l) U[(std::ptrdiff_t(i * alpha + j) * C + c) * F + f0 + l] = u[i][j][l];
  }
}

/// A convolution kernel (3, 3, C, F) transformed for F(m x m, 3 x 3) and packed as the GEMM
/// kernels' B operand, one position xi after another; kept by the layer and remade only when the
/// kernel it was made from changes (inference reuses it: a batch-1 forward costs less than the
/// transform). `flipped`: the transform of the input gradient's kernel, which reads (ky, kx, c, f)
/// as (2 - ky, 2 - kx, f, c) of the forward's (3, 3, F, C).
struct WinogradKernel {
  Buffer source, transformed, panels;  // the kernel it was made from; U_xi (C x F each); U packed
  int tile = 0, width = 0;

  template <int M, class Isa>
  const float* get(const float* kernel, int C, int F, bool flipped) {
    using T = Winograd<M>;
    constexpr int alpha = T::alpha, points = alpha * alpha, NR = Isa::NR;
    const std::size_t size = std::size_t(9) * C * F;
    if (tile == M && width == NR && source.size() == size && std::equal(kernel, kernel + size, source.data())) return panels.data();
    source.assign(kernel, kernel + size);
    tile = M, width = NR;
    const std::ptrdiff_t padded_f = (F + NR - 1) / NR * NR;
    ensure_size(transformed, std::size_t(points) * C * F);
    float* U = transformed.data();
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; ++c) run_for<Isa::target>([](auto... a) { kernel_rows<M, Isa>(a...); }, kernel, C, F, flipped, c, U);
    ensure_size(panels, std::size_t(points * padded_f * C));
#pragma omp parallel for schedule(static)
    for (int xi = 0; xi < points; ++xi)
      pack_steps<NR>(Operand{U + std::ptrdiff_t(xi) * C * F, 1, F}, F, C, kernel_depth, panels.data() + std::ptrdiff_t(xi) * padded_f * C);
    return panels.data();
  }
};

// V_xi[t][c] = (B^T d B)_xi for tiles first .. first + count - 1 of p (t from 0), d each tile's
// (m + 2) x (m + 2) input window, zero outside the images (`zeros`: C zeros); xi's tiles start at
// V + xi * block * C.
template <int M>
[[gnu::always_inline]] inline void winograd_input(const WinogradConv& p, std::ptrdiff_t first, std::ptrdiff_t count, std::ptrdiff_t block,
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
      float d[alpha][alpha][L], rows[alpha][alpha][L];
      for (int i = 0; i < alpha; ++i)
        for (int j = 0; j < alpha; ++j)
          for (int l = 0; l < L; ++l) d[i][j][l] = at[i][j][c0 + l];
      for (int i = 0; i < alpha; ++i) T::input(d[i], rows[i]);  // along x
      for (int j = 0; j < alpha; ++j) {                         // along y
        float column[alpha][L], out[alpha][L];
        for (int i = 0; i < alpha; ++i)
          for (int l = 0; l < L; ++l) column[i][l] = rows[i][j][l];
        T::input(column, out);
        for (int i = 0; i < alpha; ++i)
          for (int l = 0; l < L; ++l) V[(std::ptrdiff_t(i * alpha + j) * block + t) * C + c0 + l] = out[i][l];
      }
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
  ensure_size(v_buffer, std::size_t(points * block * C));
  ensure_size(m_buffer, std::size_t(points * block * F));
  if (zeros.size() < std::size_t(C)) zeros.assign(std::size_t(C), 0.0f);
  float* V = v_buffer.data();
  float* Mx = m_buffer.data();
  const std::ptrdiff_t first = b * block, count = std::min(block, tiles - first);
  winograd_input<M>(p, first, count, block, zeros.data(), V);
  // M_xi = V_xi U_xi.
  for (int xi = 0; xi < points; ++xi) {
    const Operand a{V + std::ptrdiff_t(xi) * block * C, C, 1};
    packed_product<Isa>(erase(a), 0, 0, Operand{nullptr, 1, F}, count, F, C, Mx + std::ptrdiff_t(xi) * block * F, F, false,
                        panels + std::ptrdiff_t(xi) * padded_f * C);
  }
  // Output transform, then the epilogue, into the tile's pixels that lie in y.
  for (std::ptrdiff_t t = 0; t < count; ++t) {
    const std::ptrdiff_t tile = first + t, n = tile / (tiles_y * tiles_x);
    const int ty = int(tile % (tiles_y * tiles_x)) / tiles_x, tx = int(tile % (tiles_y * tiles_x)) % tiles_x;
    float* out_image = y + n * p.OH * p.OW * F;
    for (int f0 = 0; f0 < F; f0 += L) {
      float m[alpha][alpha][L], rows[alpha][M][L];
      for (int i = 0; i < alpha; ++i)
        for (int j = 0; j < alpha; ++j)
          for (int l = 0; l < L; ++l) m[i][j][l] = Mx[(std::ptrdiff_t(i * alpha + j) * block + t) * F + f0 + l];
      for (int i = 0; i < alpha; ++i) T::output(m[i], rows[i]);  // along x
      for (int j = 0; j < M; ++j) {                              // along y
        const int ox = tx * M + j;
        if (ox >= p.OW) break;
        float column[alpha][L], out[M][L];
        for (int i = 0; i < alpha; ++i)
          for (int l = 0; l < L; ++l) column[i][l] = rows[i][j][l];
        T::output(column, out);
        for (int i = 0; i < M; ++i) {
          const int oy = ty * M + i;
          if (oy >= p.OH) break;
          float* dst = out_image + (std::ptrdiff_t(oy) * p.OW + ox) * F + f0;
          for (int l = 0; l < L; ++l) {
            float value = out[i][l];
            if (epilogue.bias) value += epilogue.bias[f0 + l];
            if (epilogue.relu) value = std::max(value, 0.0f);
            if (epilogue.scale) value = value * epilogue.scale[f0 + l] + epilogue.shift[f0 + l];
            dst[l] = value;
          }
        }
      }
    }
  }
}

/// y = the convolution p describes, its kernel given transformed (WinogradKernel), then `epilogue`.
template <int M, class Isa>
void winograd_conv3x3(const WinogradConv& p, const float* panels, float* y, const Epilogue& epilogue) {
  constexpr int alpha = Winograd<M>::alpha, points = alpha * alpha;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  // Tiles per block: V and M of a block (points x block x (C + F) floats) within about 512 KB.
  const std::ptrdiff_t block = std::clamp<std::ptrdiff_t>((131072 / (points * (C + F))) / 8 * 8, 8, 64);
  const std::ptrdiff_t blocks = (tiles + block - 1) / block;
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t b = 0; b < blocks; ++b)
    run_for<Isa::target>([](auto... a) { conv_block<M, Isa>(a...); }, p, panels, y, epilogue, b, block);
}

// Chunk `chunk` of winograd_kernel_gradient (blocks of `block` tiles): its dL/dU_xi into sum.
template <int M, class Isa>
[[gnu::always_inline]] inline void grad_chunk(const WinogradConv& p, const float* dy, float* sum, std::ptrdiff_t chunk,
                                              std::ptrdiff_t block, std::ptrdiff_t blocks_per_chunk, std::ptrdiff_t blocks) {
  constexpr int alpha = 4, points = 16, L = 16;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  static thread_local Buffer v_buffer, w_buffer, zeros;
  ensure_size(v_buffer, std::size_t(points * block * C));
  ensure_size(w_buffer, std::size_t(points * block * F));
  if (zeros.size() < std::size_t(C)) zeros.assign(std::size_t(C), 0.0f);
  float *V = v_buffer.data(), *Wt = w_buffer.data();
  for (std::ptrdiff_t b = chunk * blocks_per_chunk; b < std::min(blocks, (chunk + 1) * blocks_per_chunk); ++b) {
    const std::ptrdiff_t first = b * block, count = std::min(block, tiles - first);
    winograd_input<M>(p, first, count, block, zeros.data(), V);
    // W_xi[t][f] = (A dy A^T)_xi, A = [1 0; 1 1; 1 -1; 0 -1]; outputs past the edges are 0.
    for (std::ptrdiff_t t = 0; t < count; ++t) {
      const std::ptrdiff_t tile = first + t, n = tile / (tiles_y * tiles_x);
      const int ty = int(tile % (tiles_y * tiles_x)) / tiles_x, tx = int(tile % (tiles_y * tiles_x)) % tiles_x;
      const float* at[2][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const int oy = ty * M + i, ox = tx * M + j;
          at[i][j] = oy < p.OH && ox < p.OW ? dy + ((n * p.OH + oy) * p.OW + ox) * F : nullptr;
        }
      for (int f0 = 0; f0 < F; f0 += L) {
        float g[2][2][L], w[alpha][alpha][L];
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j)
            for (int l = 0; l < L; ++l) g[i][j][l] = at[i][j] ? at[i][j][f0 + l] : 0.0f;
        for (int l = 0; l < L; ++l) {
          float r[2][alpha];  // along x
          for (int i = 0; i < 2; ++i)
            r[i][0] = g[i][0][l], r[i][1] = g[i][0][l] + g[i][1][l], r[i][2] = g[i][0][l] - g[i][1][l], r[i][3] = -g[i][1][l];
          for (int j = 0; j < alpha; ++j)  // along y
            w[0][j][l] = r[0][j], w[1][j][l] = r[0][j] + r[1][j], w[2][j][l] = r[0][j] - r[1][j], w[3][j][l] = -r[1][j];
        }
        for (int i = 0; i < alpha; ++i)
          for (int j = 0; j < alpha; ++j)
            for (int l = 0; l < L; ++l) Wt[(std::ptrdiff_t(i * alpha + j) * block + t) * F + f0 + l] = w[i][j][l];
      }
    }
    // dL/dU_xi (C x F) += V_xi^T W_xi, both operands read where they lie (32 KB each at most).
    for (int xi = 0; xi < points; ++xi) {
      const Operand a{V + std::ptrdiff_t(xi) * block * C, 1, C, true};
      packed_product<Isa>(erase(a), 0, 0, Operand{Wt + std::ptrdiff_t(xi) * block * F, 1, F}, C, F, count, sum + xi * std::ptrdiff_t(C) * F,
                          F, b > chunk * blocks_per_chunk, nullptr, true);
    }
  }
}

// Row c of dL/dkernel: the chunks' sums of dL/dU in chunk order, then G^T (dL/dU) G,
// G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
template <int M, class Isa>
[[gnu::always_inline]] inline void grad_finish(int C, int F, const float* partial, std::ptrdiff_t chunks, int c, float* grad) {
  constexpr int alpha = 4, points = 16, L = 16;
  const std::ptrdiff_t per_chunk = std::ptrdiff_t(points) * C * F;
  for (int f0 = 0; f0 < F; f0 += L) {
    float u[alpha][alpha][L];
    for (int xi = 0; xi < points; ++xi)
      for (int l = 0; l < L; ++l) {
        float total = 0.0f;
        for (std::ptrdiff_t chunk = 0; chunk < chunks; ++chunk)
          total += partial[chunk * per_chunk + (std::ptrdiff_t(xi) * C + c) * F + f0 + l];
        u[xi / alpha][xi % alpha][l] = total;
      }
    for (int l = 0; l < L; ++l) {
      float r[alpha][3];  // along x
      for (int i = 0; i < alpha; ++i) {
        const float u0 = u[i][0][l], u1 = u[i][1][l], u2 = u[i][2][l], u3 = u[i][3][l];
        r[i][0] = u0 + 0.5f * (u1 + u2), r[i][1] = 0.5f * (u1 - u2), r[i][2] = 0.5f * (u1 + u2) + u3;
      }
      for (int kx = 0; kx < 3; ++kx) {  // along y
        const float r0 = r[0][kx], r1 = r[1][kx], r2 = r[2][kx], r3 = r[3][kx];
        const float column[3] = {r0 + 0.5f * (r1 + r2), 0.5f * (r1 - r2), 0.5f * (r1 + r2) + r3};
        for (int ky = 0; ky < 3; ++ky) grad[((std::ptrdiff_t(ky) * 3 + kx) * C + c) * F + f0 + l] = column[ky];
      }
    }
  }
}

/// dL/dkernel (3, 3, C, F) of the convolution p describes, given dy (batch, OH, OW, F), by the
/// adjoint of F(2x2, 3x3): Y = A^T (U (.) V) A, U = G g G^T, so dL/dU_xi = sum over tiles of
/// V_xi (.) W_xi with W = A dy A^T (each tile's 2 x 2 of dy), a product (C x tiles) by
/// (tiles x F) for each of the 16 positions xi, and dL/dg = G^T (dL/dU) G. Tiles are summed in
/// fixed chunks of blocks whose partial sums are then added in chunk order, so the result does not
/// depend on the thread count.
template <class Isa>
void winograd_kernel_gradient(const WinogradConv& p, const float* dy, float* grad) {
  constexpr int M = 2, points = 16;
  const int C = p.C, F = p.F, tiles_y = (p.OH + M - 1) / M, tiles_x = (p.OW + M - 1) / M;
  const std::ptrdiff_t tiles = std::ptrdiff_t(p.batch) * tiles_y * tiles_x;
  const std::ptrdiff_t block = std::clamp<std::ptrdiff_t>((131072 / (points * (C + F))) / 8 * 8, 8, 64);
  // About 8 chunks: work for 8 threads, and 8 partial sums of 16 x C x F to add.
  const std::ptrdiff_t blocks = (tiles + block - 1) / block, blocks_per_chunk = (blocks + 7) / 8;
  const std::ptrdiff_t chunks = (blocks + blocks_per_chunk - 1) / blocks_per_chunk;
  const std::ptrdiff_t per_chunk = std::ptrdiff_t(points) * C * F;
  static thread_local Buffer partials;  // the calling thread's; every thread writes its chunks' part
  ensure_size(partials, std::size_t(chunks * per_chunk));
  float* partial = partials.data();
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t chunk = 0; chunk < chunks; ++chunk)
    run_for<Isa::target>([](auto... a) { grad_chunk<2, Isa>(a...); }, p, dy, partial + chunk * per_chunk, chunk, block, blocks_per_chunk,
                         blocks);
  // The chunks' sums in chunk order, then dL/dg = G^T (dL/dU) G.
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) run_for<Isa::target>([](auto... a) { grad_finish<2, Isa>(a...); }, C, F, partial, chunks, c, grad);
}

}  // namespace tnet::detail
