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
      const float *kernel = kernel_, *bias = bias_, *scale = epilogue.scale, *shift = epilogue.shift;
      for_blocks(std::ptrdiff_t(batch) * OH, 1, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t row = begin; row < end; ++row) {
          const std::ptrdiff_t n = row / OH;
          const int oy = int(row % OH);
          const float* image = x + n * In::size;
          float* out = y + row * OW * F;
          for (int ox = 0; ox < OW; ++ox, out += F) {
            float sum[F];
            std::copy(bias, bias + F, sum);
            for_taps(oy, ox, [&](int iy, int ix, int tap) {
              const float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
              const float* weights = kernel + std::ptrdiff_t(tap) * F;
              for (int c = 0; c < C; ++c)
                for (int m = 0; m < M; ++m) sum[c * M + m] += pixel[c] * weights[c * M + m];
            });
            if (epilogue.empty()) std::copy(sum, sum + F, out);
            else
              for (int f = 0; f < F; ++f) out[f] = epilogue.finish(sum[f], scale ? scale[f] : 1.0f, scale ? shift[f] : 0.0f);
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
