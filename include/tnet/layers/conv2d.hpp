// tnet/layers/conv2d.hpp: 2-D convolution (Keras Conv2D).
//
// Contract: x (N, H, W, C) -> y (N, OH, OW, F), y = sum over the K x K window of x * kernel + bias.
// padding same: OH = ceil(H / S), zero padding split as Keras does (the extra row at the bottom);
// valid: OH = (H - K) / S + 1, needs H, W >= K. Learns kernel (K, K, C, F) in Keras's HWIO order
// and bias (F); kernel glorot-uniform, bias zero.
// Computed as one GEMM over the whole batch: im2col turns x into `columns` (N*OH*OW rows of
// K*K*C), then y = columns * kernel. Backward rebuilds the columns from x rather than keeping
// them (they are the largest buffers of a network), then reuses them for the input gradient. The
// columns live in one workspace per calling thread, shared by every convolution of every network
// (detail::conv_workspace), so it is as large as the largest convolution's, not their sum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/gemm.hpp"
#include "layer.hpp"

namespace tnet {

enum class Padding { same, valid };

namespace detail {
// One inline function, hence one buffer per thread in the whole program: a static inside the
// class template would be one per convolution shape.
inline Buffer& conv_workspace() {
  static thread_local Buffer columns;  // grows to the largest convolution seen, then stays
  return columns;
}
}  // namespace detail

template <int Filters, int Kernel, int Stride = 1, Padding Pad = Padding::same>
struct Conv2D : LayerSpec {
  static_assert(Filters > 0 && Kernel > 0 && Stride > 0, "tnet::Conv2D: filters, kernel and stride must be positive");

  static constexpr int output_size(int in) { return Pad == Padding::same ? (in + Stride - 1) / Stride : (in - Kernel) / Stride + 1; }
  // Keras/TensorFlow "same": total padding so that the output is ceil(in / stride), the smaller
  // half before, the larger after.
  static constexpr int padding_before(int in) {
    if (Pad == Padding::valid) return 0;
    const int total = std::max((output_size(in) - 1) * Stride + Kernel - in, 0);
    return total / 2;
  }

  template <class In>
  static constexpr bool accepts = Pad == Padding::same || (In::height >= Kernel && In::width >= Kernel);
  template <class In>
  using needs = Shape<std::max(In::height, Kernel), std::max(In::width, Kernel), In::channels>;

  template <class In>
  class Layer {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels, F = Filters, K = Kernel, S = Stride;
    static constexpr int OH = output_size(H), OW = output_size(W);
    static constexpr int pad_top = padding_before(H), pad_left = padding_before(W);
    static constexpr int patch = K * K * C;  // one row of the im2col matrix
    using input_shape = In;
    using output_shape = Shape<OH, OW, F>;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t non_trainable_count = 0;
    /// Floating-point operations of one sample's forward pass (a multiply-add counts 2).
    static constexpr double forward_flops() { return 2.0 * OH * OW * patch * F; }

    static std::string describe() {
      return "Conv2D(" + std::to_string(F) + ", " + std::to_string(K) + "x" + std::to_string(K) + ", stride " + std::to_string(S) +
             (Pad == Padding::same ? ", same)" : ", valid)");
    }

    Layer() : bias_sums_(F) {}

    static std::array<TensorSize, 2> parameter_tensors() { return {{{"kernel", std::size_t(patch) * F}, {"bias", std::size_t(F)}}}; }
    void bind(float* values, float* grads) {
      kernel_ = values, bias_ = values + std::size_t(patch) * F;
      grad_kernel_ = grads, grad_bias_ = grads + std::size_t(patch) * F;
    }

    void init(Rng rng) {
      const float limit = static_cast<float>(std::sqrt(6.0 / (double(K * K * C) + double(K * K * F))));
      for (std::size_t i = 0; i < std::size_t(patch) * F; ++i) kernel_[i] = rng.symmetric(i, limit);
      std::fill(bias_, bias_ + F, 0.0f);
    }

    void forward(const float* x, float* y, int batch, Pass, const Epilogue& epilogue = {}) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH * OW;
      float* columns = im2col(x, batch);
      gemm(Transpose::no, Transpose::no, rows, F, patch, columns, kernel_, y);
      add_bias(y, rows, F, bias_, epilogue);
    }

    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH * OW;
      // dL/dkernel = columns^T dy ; dL/dbias = sum of dy over rows.
      float* columns = im2col(x, batch);
      gemm(Transpose::yes, Transpose::no, patch, F, rows, columns, dy, grad_kernel_);
      sum_over_rows(rows, F, bias_sums_.data(), [dy](std::ptrdiff_t r, std::ptrdiff_t f) { return double(dy[r * F + f]); });
      for (int f = 0; f < F; ++f) grad_bias_[f] = static_cast<float>(bias_sums_[f]);
      if (!dx) return;
      // dL/dcolumns = dy kernel^T, written over the columns (no longer needed), then folded back.
      gemm(Transpose::no, Transpose::yes, rows, patch, F, dy, kernel_, columns);
      col2im(columns, dx, batch);
    }

    template <class Visit>
    void visit_state(Visit&&) {}

    float* kernel() { return kernel_; }
    float* bias() { return bias_; }
    const float* grad_kernel() const { return grad_kernel_; }
    const float* grad_bias() const { return grad_bias_; }

   private:
    // The im2col matrix of x in the calling thread's workspace. Row (n, oy, ox) holds the K x K x C
    // window under output pixel (oy, ox), in the kernel's (ky, kx, c) order; padding is zero.
    static float* im2col(const float* x, int batch) {
      Buffer& workspace = detail::conv_workspace();
      ensure_size(workspace, std::size_t(batch) * OH * OW * patch);
      float* columns = workspace.data();
#pragma omp parallel for schedule(static)
      for (int n = 0; n < batch; ++n) {
        const float* image = x + std::ptrdiff_t(n) * H * W * C;
        float* row = columns + std::ptrdiff_t(n) * OH * OW * patch;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, row += patch)
            for (int ky = 0; ky < K; ++ky) {
              const int iy = oy * S - pad_top + ky;
              for (int kx = 0; kx < K; ++kx) {
                const int ix = ox * S - pad_left + kx;
                float* dst = row + (ky * K + kx) * C;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) std::fill(dst, dst + C, 0.0f);
                else std::memcpy(dst, image + (std::ptrdiff_t(iy) * W + ix) * C, sizeof(float) * C);
              }
            }
      }
      return columns;
    }

    // The adjoint of im2col: every window's gradient is added back onto the pixels it was read from.
    static void col2im(const float* columns, float* dx, int batch) {
#pragma omp parallel for schedule(static)
      for (int n = 0; n < batch; ++n) {
        float* image = dx + std::ptrdiff_t(n) * H * W * C;
        std::fill(image, image + H * W * C, 0.0f);
        const float* row = columns + std::ptrdiff_t(n) * OH * OW * patch;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, row += patch)
            for (int ky = 0; ky < K; ++ky) {
              const int iy = oy * S - pad_top + ky;
              if (iy < 0 || iy >= H) continue;
              for (int kx = 0; kx < K; ++kx) {
                const int ix = ox * S - pad_left + kx;
                if (ix < 0 || ix >= W) continue;
                const float* src = row + (ky * K + kx) * C;
                float* dst = image + (std::ptrdiff_t(iy) * W + ix) * C;
                for (int c = 0; c < C; ++c) dst[c] += src[c];
              }
            }
      }
    }

    float *kernel_ = nullptr, *bias_ = nullptr, *grad_kernel_ = nullptr, *grad_bias_ = nullptr;  // views (bind)
    std::vector<double> bias_sums_;
  };
};

}  // namespace tnet
