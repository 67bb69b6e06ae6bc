// tnet/layers/depthwise_conv2d.hpp: depthwise 2-D convolution (Keras DepthwiseConv2D; PyTorch
// Conv2d with groups = in_channels).
//
// Contract: x (N, H, W, C) -> y (N, OH, OW, C * M), each input channel c convolved with M kernels
// of its own: y[.., c * M + m] = sum over the K x K window of x[.., c] * kernel[ky, kx, c, m] +
// bias[c * M + m]. Padding (layers/padding.hpp) as Conv2D's: same, valid or pad(p). Learns kernel
// (K, K, C, M) in Keras's layout (PyTorch's weight (C * M, 1, K, K) transposed) and bias (C * M);
// kernel glorot-uniform as Keras draws it (fan_in K*K*C, fan_out K*K*M), bias zero.
// Computed directly, as a few loops over NHWC with the channels innermost (they vectorise), in
// parallel over output rows; the ReLU and the batch normalisation a chain folds into it (an
// Epilogue) are applied as each output pixel is written. The kernel and bias gradients are summed
// in a fixed number of fixed pieces of the output rows, added in piece order: the same bits with
// any number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/vectorise.hpp"
#include "layer.hpp"
#include "padding.hpp"

namespace tnet {

template <int Kernel, int Stride = 1, Padding Pad = Padding::same, int Multiplier = 1>
struct DepthwiseConv2D : LayerSpec {
  static_assert(Kernel > 0 && Stride > 0 && Multiplier > 0, "tnet::DepthwiseConv2D: kernel, stride and multiplier must be positive");
  static_assert(Pad.amount >= 0 && Pad.amount < Kernel, "tnet::DepthwiseConv2D: pad(p) needs 0 <= p < kernel");

  template <class In>
  static constexpr bool accepts = !In::is_dynamic && Pad.fits(In::height, Kernel) && Pad.fits(In::width, Kernel);
  template <class In>
  using needs = Shape<std::max(In::height, Kernel - 2 * Pad.amount), std::max(In::width, Kernel - 2 * Pad.amount), In::channels>;

  template <class In>
  class Layer {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels, K = Kernel, S = Stride, M = Multiplier;
    static constexpr int F = C * M;  // output channels
    static constexpr int OH = Pad.output_size(H, K, S), OW = Pad.output_size(W, K, S);
    static constexpr int pad_top = Pad.before(H, K, S), pad_left = Pad.before(W, K, S);
    static constexpr std::size_t kernel_size = std::size_t(K) * K * F;
    using input_shape = In;
    using output_shape = Shape<OH, OW, F>;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t non_trainable_count = 0;
    /// Floating-point operations of one sample's forward pass (a multiply-add counts 2).
    static constexpr double forward_flops() { return 2.0 * OH * OW * K * K * F; }

    static std::string describe() {
      return "DepthwiseConv2D(" + std::to_string(K) + "x" + std::to_string(K) + ", stride " + std::to_string(S) + ", " + Pad.str() +
             ", multiplier " + std::to_string(M) + ")";
    }

    static std::array<TensorSize, 2> parameter_tensors() { return {{{"kernel", kernel_size}, {"bias", std::size_t(F)}}}; }
    void bind(float* values, float* grads) {
      kernel_ = values, bias_ = values + kernel_size;
      grad_kernel_ = grads, grad_bias_ = grads + kernel_size;  // one after the other, as the pieces' sums are laid out
    }

    void init(Rng rng) {
      const float limit = static_cast<float>(std::sqrt(6.0 / (double(K) * K * C + double(K) * K * M)));
      for (std::size_t i = 0; i < kernel_size; ++i) kernel_[i] = rng.symmetric(i, limit);
      std::fill(bias_, bias_ + F, 0.0f);
    }

    // y = bias + sum over the window's taps inside the image of x * kernel, then the epilogue
    // (core/gemm_kernels.hpp).
    void forward(const float* x, float* y, int batch, Pass, const Epilogue& epilogue = {}) {
      if constexpr (M == 1) return forward_channels(x, y, batch, epilogue);
      const float *kernel = kernel_, *bias = bias_, *scale = epilogue.scale, *shift = epilogue.shift;
      for_blocks(std::ptrdiff_t(batch) * OH, 1, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t row = begin; row < end; ++row) {
          const std::ptrdiff_t n = row / OH;
          const int oy = int(row % OH);
          const float* image = x + n * In::size;
          float* out = y + row * OW * F;
          for (int ox = 0; ox < OW; ++ox, out += F) {
            // Aligned by hand, as every local float array of the loops run_for compiles for AVX-512
            // (core/targets.hpp): there GCC 12 at -O2 stored to a plain float[F] with 16-byte
            // aligned moves at an address 8 bytes off (a crash).
            alignas(64) float sum[F];
            std::copy(bias, bias + F, sum);
            for_taps(oy, ox, [&](int iy, int ix, int tap) {
              const float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
              const float* weights = kernel + std::ptrdiff_t(tap) * F;
              for (int c = 0; c < C; ++c)
                for (int m = 0; m < M; ++m) sum[c * M + m] += pixel[c] * weights[c * M + m];
            });
            const float* added = epilogue.added_at(row * OW + ox, 0);
            epilogue.finish_row(sum, F, nullptr, scale, shift, added);
            std::copy(sum, sum + F, out);
          }
        }
      });
    }

    // dL/dx[c] = sum over the outputs whose windows cover the pixel of sum_m dy[c * M + m] *
    // kernel[tap, c, m], one image per task; dL/dkernel[tap, c, m] = sum of x[c] * dy[c * M + m]
    // and dL/dbias = sum of dy over the output pixels, in pieces.
    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      kernel_gradient(x, dy, batch);
      if (!dx) return;
      if constexpr (M == 1) return input_gradient_channels(dy, dx, batch);
      const float* kernel = kernel_;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        float* image = dx + n * In::size;
        std::fill(image, image + In::size, 0.0f);
        const float* grad = dy + n * output_shape::size;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, grad += F)
            for_taps(oy, ox, [&](int iy, int ix, int tap) {
              float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
              const float* weights = kernel + std::ptrdiff_t(tap) * F;
              for (int c = 0; c < C; ++c) {
                float sum = 0.0f;
                for (int m = 0; m < M; ++m) sum += grad[c * M + m] * weights[c * M + m];
                pixel[c] += sum;
              }
            });
      });
    }

    /// Whether forward_row computes this layer's output rows from its input's rows wherever they
    /// lie (a band a fused producer keeps: model/rules/pointwise_then_depthwise.hpp): a
    /// multiplier of 1, channels in multiples of 8, the x86 kernels built.
    static constexpr bool rows_anywhere = TNET_X86_KERNELS && M == 1 && C % 8 == 0;
    /// Whether forward_row may be called now: tnet's own kernels chosen (gemm_kernel()).
    static bool rows_anywhere_now() { return rows_anywhere && detail::target_of(gemm_kernel()) != detail::Target::build; }
    /// One output row of an image into `out` (OW x F), as forward computes it with `epilogue`
    /// (which adds nothing): rows[ky] is the input row under the window's row ky (for output row
    /// oy, row oy * S - pad_top + ky of the image), null where that lies outside the image.
    void forward_row(const float* const* rows, float* out, const Epilogue& epilogue) const
      requires rows_anywhere
    {
#if TNET_X86_KERNELS
      bool inside[K];
      for (int ky = 0; ky < K; ++ky) inside[ky] = rows[ky] != nullptr;
      row_avx2(rows, inside, kernel_, bias_, epilogue, nullptr, out);
#endif
    }

    template <class Visit>
    void visit_state(Visit&&) {}

    float* kernel() { return kernel_; }
    float* bias() { return bias_; }
    const float* grad_kernel() const { return grad_kernel_; }
    const float* grad_bias() const { return grad_bias_; }

   private:
    // The output rows are cut into at most `pieces` runs, fixed by the batch alone; each run's sums
    // (kernel then bias, as grads are laid out) are added into a slice of partials_.
    static constexpr std::ptrdiff_t pieces = 32, gradient_size = std::ptrdiff_t(kernel_size) + F;

    // Channels computed together with a multiplier of 1: one or two vector registers, in which a
    // sum stays over the window's taps. The last block of channels may be shorter.
    static constexpr int lanes = 16;

    // forward with a multiplier of 1, in parallel over output rows. Where the kernels run AVX2
    // (gemm_kernel()), row_avx2 computes the row's channels eight at a time, and the last C % 8
    // as below; elsewhere, for each output pixel, the window's taps inside the image, then each
    // block of channels summed over them (bias first, taps in order) and put through the epilogue
    // as it is written. Both sum in the same order.
    void forward_channels(const float* x, float* y, int batch, const Epilogue& epilogue) {
      const float *kernel = kernel_, *bias = bias_;
      const Epilogue e = epilogue;
      [[maybe_unused]] const bool wide = TNET_X86_KERNELS && detail::target_of(gemm_kernel()) != detail::Target::build;
      for_blocks(std::ptrdiff_t(batch) * OH, 1, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t row = begin; row < end; ++row) {
          const float* image = x + row / OH * In::size;
          const int oy = int(row % OH);
          float* out = y + row * OW * F;
#if TNET_X86_KERNELS
          if (wide) {
            row_avx2(image, oy, kernel, bias, e, e.added_at(row * OW, 0), out);
            if constexpr (C % 8 != 0) pixels_from<C / 8 * 8>(image, row, oy, kernel, bias, e, out);
            continue;
          }
#endif
          pixels_from<0>(image, row, oy, kernel, bias, e, out);
        }
      });
    }
    // Channels [From, C) of output row `row` (oy of its image), pixel by pixel.
    template <int From>
    static void pixels_from(const float* image, std::ptrdiff_t row, int oy, const float* kernel, const float* bias, const Epilogue& e,
                            float* out) {
      constexpr int tail = (C - From) % lanes;  // the channels after the last whole block
      for (int ox = 0; ox < OW; ++ox, out += F) {
        const float* added = e.added_at(row * OW + ox, 0);
        const int top = oy * S - pad_top, left = ox * S - pad_left;
        if (top >= 0 && left >= 0 && top + K <= H && left + K <= W) {
          const float* corner = image + (std::ptrdiff_t(top) * W + left) * C;
          for (int c0 = From; c0 < C; c0 += lanes) {
            if (c0 + lanes <= C) window_block<lanes>(c0, bias, corner, kernel, e, added, out);
            else window_block<tail>(c0, bias, corner, kernel, e, added, out);
          }
          continue;
        }
        const float* pixels[K * K];
        const float* weights[K * K];
        int taps = 0;
        for_taps(oy, ox, [&](int iy, int ix, int tap) {
          pixels[taps] = image + (std::ptrdiff_t(iy) * W + ix) * C, weights[taps] = kernel + std::ptrdiff_t(tap) * C, ++taps;
        });
        for (int c0 = From; c0 < C; c0 += lanes) {
          if (c0 + lanes <= C) channel_block<lanes>(c0, bias, pixels, weights, taps, e, added, out);
          else channel_block<tail>(c0, bias, pixels, weights, taps, e, added, out);
        }
      }
    }
#if TNET_X86_KERNELS
    // The output columns whose windows lie inside the image's columns: [inner_begin, inner_end);
    // row_avx2 takes four of them at a time up to inner_rest.
    static constexpr int inner_begin = std::min(OW, (pad_left + S - 1) / S);
    static constexpr int inner_end = W - K + pad_left < 0 ? inner_begin : std::max(inner_begin, std::min(OW, (W - K + pad_left) / S + 1));
    static constexpr int inner_groups = (inner_end - inner_begin) / 4, inner_rest = inner_begin + 4 * inner_groups;

    // Output row oy of `image`, channels [0, C - C % 8), with AVX2: for each block of eight
    // channels, its K x K weights held in registers along the whole row, and four output pixels
    // computed at a time where their windows lie inside the image's columns (one at a time at
    // the edges). Each value is bias + the products of the window's taps inside the image, in tap
    // order, then the epilogue, as channel_block computes it. `added`: the epilogue's added values
    // of the row's first pixel, or null.
    static void row_avx2(const float* image, int oy, const float* kernel, const float* bias, const Epilogue& e, const float* added,
                         float* out) {
      const int top = oy * S - pad_top;
      bool inside[K];  // whether the window's row ky lies inside the image
      const float* rows[K];
      for (int ky = 0; ky < K; ++ky) {
        inside[ky] = top + ky >= 0 && top + ky < H;
        rows[ky] = image + std::ptrdiff_t(inside[ky] ? top + ky : 0) * W * C;
      }
      row_avx2(rows, inside, kernel, bias, e, added, out);
    }
    // The same, the window's rows given: rows[ky] where inside[ky], wherever they lie.
    __attribute__((target("avx2,fma"))) static void row_avx2(const float* const* rows, const bool* inside, const float* kernel,
                                                             const float* bias, const Epilogue& e, const float* added, float* out) {
      const std::ptrdiff_t added_step = e.added_stride;
      for (int c0 = 0; c0 + 8 <= C; c0 += 8) {
        __m256 w[K * K];
        for (int t = 0; t < K * K; ++t) w[t] = _mm256_loadu_ps(kernel + std::ptrdiff_t(t) * C + c0);
        const __m256 b = _mm256_loadu_ps(bias + c0);
        auto add = [=](int ox) { return added ? added + ox * added_step + c0 : nullptr; };
        auto at = [=](int ox) { return out + std::ptrdiff_t(ox) * F + c0; };
        // Loops of trip counts known when compiling (GCC warns of overflow in `ox + 4 <= end`).
        for (int ox = 0; ox < inner_begin; ++ox) _mm256_storeu_ps(at(ox), finish8(edge8(rows, inside, ox, c0, w, b), c0, e, add(ox)));
        for (int group = 0; group < inner_groups; ++group) {
          const int ox = inner_begin + 4 * group;
          __m256 s0 = b, s1 = b, s2 = b, s3 = b;
          const std::ptrdiff_t left = std::ptrdiff_t(ox * S - pad_left) * C + c0;
          for (int ky = 0; ky < K; ++ky) {
            if (!inside[ky]) continue;
            const float* p = rows[ky] + left;
            for (int kx = 0; kx < K; ++kx, p += C) {
              const __m256 wt = w[ky * K + kx];
              s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), wt, s0);
              s1 = _mm256_fmadd_ps(_mm256_loadu_ps(p + S * C), wt, s1);
              s2 = _mm256_fmadd_ps(_mm256_loadu_ps(p + 2 * S * C), wt, s2);
              s3 = _mm256_fmadd_ps(_mm256_loadu_ps(p + 3 * S * C), wt, s3);
            }
          }
          _mm256_storeu_ps(at(ox), finish8(s0, c0, e, add(ox)));
          _mm256_storeu_ps(at(ox + 1), finish8(s1, c0, e, add(ox + 1)));
          _mm256_storeu_ps(at(ox + 2), finish8(s2, c0, e, add(ox + 2)));
          _mm256_storeu_ps(at(ox + 3), finish8(s3, c0, e, add(ox + 3)));
        }
        for (int ox = inner_rest; ox < OW; ++ox) _mm256_storeu_ps(at(ox), finish8(edge8(rows, inside, ox, c0, w, b), c0, e, add(ox)));
      }
    }
    // The sum of output pixel ox's channels c0..c0 + 7, whose window may pass the image's left or
    // right edge: b + the products of its taps inside the image, in tap order.
    [[gnu::always_inline]] __attribute__((target("avx2,fma"))) static __m256 edge8(const float* const* rows, const bool* inside, int ox,
                                                                                   int c0, const __m256* w, __m256 sum) {
      const int left = ox * S - pad_left;
      for (int ky = 0; ky < K; ++ky) {
        if (!inside[ky]) continue;
        for (int kx = 0; kx < K; ++kx)
          if (left + kx >= 0 && left + kx < W)
            sum = _mm256_fmadd_ps(_mm256_loadu_ps(rows[ky] + std::ptrdiff_t(left + kx) * C + c0), w[ky * K + kx], sum);
      }
      return sum;
    }
    // finish() of eight sums of channels c0.. (`add`: their added values, or null).
    [[gnu::always_inline]] __attribute__((target("avx2,fma"))) static __m256 finish8(__m256 v, int c0, const Epilogue& e,
                                                                                     const float* add) {
      const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(e.relu_max);
      if (e.relu && !e.affine_first) v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
      if (e.scale) v = _mm256_fmadd_ps(v, _mm256_loadu_ps(e.scale + c0), _mm256_loadu_ps(e.shift + c0));
      if (add) v = _mm256_add_ps(v, _mm256_loadu_ps(add));
      if (e.relu && e.affine_first) v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
      return v;
    }
#endif
    // Channels [c0, c0 + Lanes) of one output pixel: bias + taps' products, then the epilogue
    // (`added`: the pixel's values of the epilogue's added tensor, or null).
    template <int Lanes>
    static void channel_block(int c0, const float* bias, const float* const* pixels, const float* const* weights, int taps,
                              const Epilogue& e, const float* added, float* out) {
      if constexpr (Lanes > 0) {
        alignas(64) float sum[Lanes];
        for (int l = 0; l < Lanes; ++l) sum[l] = bias[c0 + l];
        for (int t = 0; t < taps; ++t) {
          const float *p = pixels[t] + c0, *w = weights[t] + c0;
          for (int l = 0; l < Lanes; ++l) sum[l] += p[l] * w[l];
        }
        finish(sum, c0, e, added);
        for (int l = 0; l < Lanes; ++l) out[c0 + l] = sum[l];
      }
    }
    // channel_block for an output pixel whose whole window lies inside the image (`corner`: its
    // top-left input pixel): the same sums in the same order, the taps at offsets known when
    // compiling. (Given run-time lists of taps, GCC gathers across them, several times slower.)
    template <int Lanes>
    static void window_block(int c0, const float* bias, const float* corner, const float* kernel, const Epilogue& e, const float* added,
                             float* out) {
      if constexpr (Lanes > 0) {
        alignas(64) float sum[Lanes];
        for (int l = 0; l < Lanes; ++l) sum[l] = bias[c0 + l];
        for (int ky = 0; ky < K; ++ky)
          for (int kx = 0; kx < K; ++kx) {
            const float *p = corner + (std::ptrdiff_t(ky) * W + kx) * C + c0, *w = kernel + std::ptrdiff_t(ky * K + kx) * C + c0;
            for (int l = 0; l < Lanes; ++l) sum[l] += p[l] * w[l];
          }
        finish(sum, c0, e, added);
        for (int l = 0; l < Lanes; ++l) out[c0 + l] = sum[l];
      }
    }
    // The epilogue (but for the bias) of Lanes sums of channels c0.., each kind of epilogue a loop of its own.
    template <int Lanes>
    static void finish(float (&sum)[Lanes], int c0, const Epilogue& e, const float* added) {
      const float top = e.relu_max;
      auto clamp = [&] {
        for (int l = 0; l < Lanes; ++l) sum[l] = std::min(std::max(sum[l], 0.0f), top);
      };
      if (e.relu && !e.affine_first) clamp();
      if (e.scale)
        for (int l = 0; l < Lanes; ++l) sum[l] = sum[l] * e.scale[c0 + l] + e.shift[c0 + l];
      if (added)
        for (int l = 0; l < Lanes; ++l) sum[l] += added[c0 + l];
      if (e.relu && e.affine_first) clamp();
    }

    // dL/dx with a multiplier of 1, in parallel over input rows: for each input pixel, the output
    // pixels whose windows cover it and their taps, then each block of channels summed over them.
    void input_gradient_channels(const float* dy, float* dx, int batch) {
      const float* kernel = kernel_;
      for_blocks(std::ptrdiff_t(batch) * H, 1, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t row = begin; row < end; ++row) {
          const float* grad = dy + row / H * output_shape::size;
          const int iy = int(row % H);
          float* out = dx + row * W * C;
          for (int ix = 0; ix < W; ++ix, out += C) {
            if constexpr (S == 1) {
              // Every tap's output pixel inside the output: tap (ky, kx) reads the gradient at
              // (iy + pad_top - ky, ix + pad_left - kx).
              const int ty = iy + pad_top, tx = ix + pad_left;
              if (ty - (K - 1) >= 0 && tx - (K - 1) >= 0 && ty < OH && tx < OW) {
                const float* first = grad + (std::ptrdiff_t(ty) * OW + tx) * F;
                for (int c0 = 0; c0 < C; c0 += lanes) {
                  if (c0 + lanes <= C) window_gradient_block<lanes>(c0, first, kernel, out);
                  else window_gradient_block<C % lanes>(c0, first, kernel, out);
                }
                continue;
              }
            }
            const float* grads[K * K];
            const float* weights[K * K];
            int taps = 0;
            for (int ky = 0; ky < K; ++ky) {
              const int ty = iy + pad_top - ky;  // oy * S
              if (ty < 0 || ty % S || ty / S >= OH) continue;
              for (int kx = 0; kx < K; ++kx) {
                const int tx = ix + pad_left - kx;
                if (tx < 0 || tx % S || tx / S >= OW) continue;
                grads[taps] = grad + (std::ptrdiff_t(ty / S) * OW + tx / S) * F, weights[taps] = kernel + std::ptrdiff_t(ky * K + kx) * C;
                ++taps;
              }
            }
            for (int c0 = 0; c0 < C; c0 += lanes) {
              if (c0 + lanes <= C) gradient_block<lanes>(c0, grads, weights, taps, out);
              else gradient_block<C % lanes>(c0, grads, weights, taps, out);
            }
          }
        }
      });
    }
    template <int Lanes>
    static void gradient_block(int c0, const float* const* grads, const float* const* weights, int taps, float* out) {
      if constexpr (Lanes > 0) {
        float sum[Lanes] = {};
        for (int t = 0; t < taps; ++t) {
          const float *g = grads[t] + c0, *w = weights[t] + c0;
          for (int l = 0; l < Lanes; ++l) sum[l] += g[l] * w[l];
        }
        for (int l = 0; l < Lanes; ++l) out[c0 + l] = sum[l];
      }
    }

    // gradient_block for an input pixel that every tap's output pixel covers, at stride 1 (`first`:
    // the gradient of tap (0, 0)'s output pixel): the same sums in the same order.
    template <int Lanes>
    static void window_gradient_block(int c0, const float* first, const float* kernel, float* out) {
      if constexpr (Lanes > 0) {
        float sum[Lanes] = {};
        for (int ky = 0; ky < K; ++ky)
          for (int kx = 0; kx < K; ++kx) {
            const float *g = first - (std::ptrdiff_t(ky) * OW + kx) * F + c0, *w = kernel + std::ptrdiff_t(ky * K + kx) * C + c0;
            for (int l = 0; l < Lanes; ++l) sum[l] += g[l] * w[l];
          }
        for (int l = 0; l < Lanes; ++l) out[c0 + l] = sum[l];
      }
    }

    // One output row's terms of the kernel and bias gradient sums with a multiplier of 1, added in
    // the order of its pixels: for each tap, each block of channels summed along the row in
    // registers, over the output pixels whose window has that tap inside the image.
    static void row_kernel_gradient(const float* image, const float* grad, int oy, float* sums, float* bias_sums) {
      for (int ox = 0; ox < OW; ++ox)
        for (int f = 0; f < F; ++f) bias_sums[f] += grad[std::ptrdiff_t(ox) * F + f];
      for (int ky = 0; ky < K; ++ky) {
        const int iy = oy * S - pad_top + ky;
        if (iy < 0 || iy >= H) continue;
        const float* x_row = image + std::ptrdiff_t(iy) * W * C;
        for (int kx = 0; kx < K; ++kx) {
          // the output pixels whose ix = ox * S - pad_left + kx lies in [0, W)
          const int before = pad_left - kx, span = W - 1 + pad_left - kx;  // ox * S must be in [before, span]
          const int first = before <= 0 ? 0 : (before + S - 1) / S, last = span < 0 ? -1 : std::min(OW - 1, span / S);
          if (first > last) continue;
          float* weights = sums + std::ptrdiff_t(ky * K + kx) * C;
          const float* x0 = x_row + (std::ptrdiff_t(first) * S - pad_left + kx) * C;
          const float* g0 = grad + std::ptrdiff_t(first) * F;
          for (int c0 = 0; c0 < C; c0 += lanes) {
            if (c0 + lanes <= C) tap_block<lanes>(c0, x0, g0, last - first + 1, weights);
            else tap_block<C % lanes>(c0, x0, g0, last - first + 1, weights);
          }
        }
      }
    }
    template <int Lanes>
    static void tap_block(int c0, const float* x, const float* grad, int count, float* weights) {
      if constexpr (Lanes > 0) {
        alignas(64) float sum[Lanes];
        for (int l = 0; l < Lanes; ++l) sum[l] = weights[c0 + l];
        for (int i = 0; i < count; ++i, x += std::ptrdiff_t(S) * C, grad += F)
          for (int l = 0; l < Lanes; ++l) sum[l] += x[c0 + l] * grad[c0 + l];
        for (int l = 0; l < Lanes; ++l) weights[c0 + l] = sum[l];
      }
    }

    // visit(iy, ix, tap) for each tap (ky * K + kx) of output pixel (oy, ox)'s window inside the image.
    template <class Visit>
    static void for_taps(int oy, int ox, const Visit& visit) {
      const int top = oy * S - pad_top, left = ox * S - pad_left;
      const int ky0 = std::max(0, -top), ky1 = std::min(K, H - top), kx0 = std::max(0, -left), kx1 = std::min(K, W - left);
      for (int ky = ky0; ky < ky1; ++ky)
        for (int kx = kx0; kx < kx1; ++kx) visit(top + ky, left + kx, ky * K + kx);
    }

    void kernel_gradient(const float* x, const float* dy, int batch) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH, runs = std::min(rows, pieces);
      ensure_size(partials_, std::size_t(runs * gradient_size));
      float* partials = partials_.data();
      for_blocks(runs, 1, [=](std::ptrdiff_t run, std::ptrdiff_t) {
        float* sums = partials + run * gradient_size;
        float* bias_sums = sums + kernel_size;
        std::fill(sums, sums + gradient_size, 0.0f);
        for (std::ptrdiff_t row = run * rows / runs; row < (run + 1) * rows / runs; ++row) {
          const std::ptrdiff_t n = row / OH;
          const int oy = int(row % OH);
          const float* image = x + n * In::size;
          const float* grad = dy + row * OW * F;
          if constexpr (M == 1) {
            row_kernel_gradient(image, grad, oy, sums, bias_sums);
            continue;
          }
          for (int ox = 0; ox < OW; ++ox, grad += F) {
            for (int f = 0; f < F; ++f) bias_sums[f] += grad[f];
            for_taps(oy, ox, [&](int iy, int ix, int tap) {
              const float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
              float* weights = sums + std::ptrdiff_t(tap) * F;
              for (int c = 0; c < C; ++c)
                for (int m = 0; m < M; ++m) weights[c * M + m] += pixel[c] * grad[c * M + m];
            });
          }
        }
      });
      float* grads = grad_kernel_;  // grad_bias_ follows it
      constexpr std::ptrdiff_t block = 4096;
      for_blocks(gradient_size, block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          double total = 0.0;
          for (std::ptrdiff_t run = 0; run < runs; ++run) total += partials[run * gradient_size + i];
          grads[i] = static_cast<float>(total);
        }
      });
    }

    float *kernel_ = nullptr, *bias_ = nullptr, *grad_kernel_ = nullptr, *grad_bias_ = nullptr;  // views (bind)
    Buffer partials_;  // the pieces' gradient sums; grows once, at the first backward
  };
};

}  // namespace tnet
