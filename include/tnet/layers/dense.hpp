// tnet/layers/dense.hpp: fully connected layer (Keras Dense).
//
// Contract: x (N, K) -> y (N, U), y = x * kernel + bias. Needs a flat input (put Flatten before
// it). Learns kernel (K, U), Keras's layout, glorot-uniform, and bias (U), zero.
#pragma once

#include <cmath>

#include "../core/gemm.hpp"
#include "layer.hpp"

namespace tnet {

template <int Units>
struct Dense : LayerSpec {
  static_assert(Units > 0, "tnet::Dense: units must be positive");

  template <class In>
  static constexpr bool accepts = In::flat;
  template <class In>
  using needs = Shape<1, 1, In::size>;

  template <class In>
  class Layer {
   public:
    static constexpr int K = In::size, U = Units;
    using input_shape = In;
    using output_shape = Shape<1, 1, U>;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t trainable_count = std::size_t(K) * U + U;
    static constexpr std::size_t non_trainable_count = 0;
    /// Floating-point operations of one sample's forward pass (a multiply-add counts 2).
    static constexpr double forward_flops = 2.0 * K * U;

    static std::string describe() { return "Dense(" + std::to_string(U) + ")"; }

    Layer() : kernel_(std::size_t(K) * U), bias_(U), grad_kernel_(std::size_t(K) * U), grad_bias_(U), bias_sums_(U) {}

    void init(Rng rng) {
      const float limit = static_cast<float>(std::sqrt(6.0 / (double(K) + double(U))));
      for (std::size_t i = 0; i < kernel_.size(); ++i) kernel_[i] = rng.symmetric(i, limit);
      std::fill(bias_.begin(), bias_.end(), 0.0f);
    }

    void forward(const float* x, float* y, int batch, Pass) {
      gemm(Transpose::no, Transpose::no, batch, U, K, x, kernel_.data(), y);
      for (int n = 0; n < batch; ++n)
        for (int u = 0; u < U; ++u) y[std::ptrdiff_t(n) * U + u] += bias_[u];
    }

    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      // dL/dkernel = x^T dy ; dL/dbias = sum of dy over the batch ; dL/dx = dy kernel^T.
      gemm(Transpose::yes, Transpose::no, K, U, batch, x, dy, grad_kernel_.data());
      sum_over_rows(batch, U, bias_sums_.data(), [dy](std::ptrdiff_t n, std::ptrdiff_t u) { return double(dy[n * U + u]); });
      for (int u = 0; u < U; ++u) grad_bias_[u] = static_cast<float>(bias_sums_[u]);
      if (dx) gemm(Transpose::no, Transpose::yes, batch, K, U, dy, kernel_.data(), dx);
    }

    template <class Visit>
    void visit_parameters(Visit&& visit) {
      visit("kernel", kernel_.data(), grad_kernel_.data(), kernel_.size());
      visit("bias", bias_.data(), grad_bias_.data(), bias_.size());
    }
    template <class Visit>
    void visit_state(Visit&&) {}

    float* kernel() { return kernel_.data(); }
    float* bias() { return bias_.data(); }
    const float* grad_kernel() const { return grad_kernel_.data(); }
    const float* grad_bias() const { return grad_bias_.data(); }

   private:
    Buffer kernel_, bias_, grad_kernel_, grad_bias_;
    std::vector<double> bias_sums_;
  };
};

}  // namespace tnet
