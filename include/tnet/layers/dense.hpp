// tnet/layers/dense.hpp: fully connected layer (Keras Dense).
//
// Contract: x (N, K) -> y (N, U), y = x * kernel + bias. Needs a flat input (put Flatten before
// it). Learns kernel (K, U), Keras's layout, glorot-uniform, and bias (U), zero.
// Dense<dynamic> takes U when the network is constructed (Sequential(Outputs{U}, seed)): the layer that
// maps features to labels, whose width is the data's label count rather than the architecture's.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/gemm_bf16.hpp"
#include "layer.hpp"

namespace tnet {

template <int Units>
struct Dense : LayerSpec {
  static_assert(Units > 0 || Units == dynamic, "tnet::Dense: units must be positive, or tnet::dynamic");

  template <class In>
  static constexpr bool accepts = In::flat && !In::is_dynamic;
  template <class In>
  using needs = Shape<1, 1, sample_size<In>(1)>;

  template <class In>
  class Layer {
   public:
    static constexpr int K = In::size;
    using input_shape = In;
    using output_shape = Shape<1, 1, Units>;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t non_trainable_count = 0;

    Layer()
      requires(Units != dynamic)
        : Layer(Units) {}
    explicit Layer(int units) : units_(units), bias_sums_(std::size_t(std::max(units, 0))) {
      if (units < 1 || (Units != dynamic && units != Units))
        throw std::invalid_argument("tnet::Dense: " + std::to_string(units) + " units; expected " +
                                    (Units == dynamic ? std::string("at least 1") : std::to_string(Units)));
    }

    std::string describe() const { return "Dense(" + std::to_string(units_) + ")"; }
    std::array<TensorSize, 2> parameter_tensors() const { return {{{"kernel", std::size_t(K) * units_}, {"bias", std::size_t(units_)}}}; }
    /// Floating-point operations of one sample's forward pass (a multiply-add counts 2).
    double forward_flops() const { return 2.0 * K * units_; }

    void bind(float* values, float* grads) {
      kernel_ = values, bias_ = values + std::size_t(K) * units_;
      grad_kernel_ = grads, grad_bias_ = grads + std::size_t(K) * units_;
      prepare_inference(false);
    }

    void init(Rng rng) {
      prepare_inference(false);
      const float limit = static_cast<float>(std::sqrt(6.0 / (double(K) + double(units_))));
      for (std::size_t i = 0; i < std::size_t(K) * units_; ++i) kernel_[i] = rng.symmetric(i, limit);
      std::fill(bias_, bias_ + units_, 0.0f);
    }

    void forward(const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue = {}) {
      Epilogue finish = epilogue;
      finish.bias = bias_;
      if (pass.mode == Mode::infer && gemm_kernel() != GemmKernel::eigen) {
        if (batch <= detail::sweep_rows && units_ >= sweep_units) {  // the kernel read in one sweep, each call the other way
          backwards_ = !backwards_;
          if (!rounded_.empty()) return sweep_gemm(batch, units_, K, x, rounded_.data(), y, finish, backwards_);
          return sweep_gemm(batch, units_, K, x, kernel_, y, finish, backwards_);
        }
        if (!rounded_.empty()) {
          // With AVX512_BF16, in bfloat16 (core/gemm_bf16.hpp; x rounded as it is read), from a
          // copy in pairs made by the first inference that reads it; elsewhere the rounded kernel
          // widened to float as it is read.
          if (!bf16_products()) return gemm_bf16(batch, units_, K, x, rounded_.data(), y, finish);
          if (!pairs_current_) pairs_.pack(kernel_, units_, K), pairs_current_ = true;
          return detail::kernel_gemm_bf16(detail::Operand{x, K, 1}, pairs_, batch, y, finish);
        }
        // More rows than the kernels take with B read where it lies: the kernel packed once until
        // the weights change, by the first batch that reads it so.
        if (pass.prepared && batch > (gemm_kernel() == GemmKernel::avx512 ? detail::Avx512::MR : detail::Avx2::MR)) {
          if (!packed_.get()) packed_.pack(true, kernel_, units_, K);
          return detail::kernel_gemm(detail::Operand{x, K, 1}, false, batch, units_, K, kernel_, y, false, finish, packed_.get());
        }
      }
      gemm(Transpose::no, Transpose::no, batch, units_, K, x, kernel_, y, false, finish);
    }

    /// Forgets the kernel's copy packed for inference. Sequential calls it with `prepare` true
    /// before an inference after anything that may have changed the weights (Conv2D's
    /// prepare_inference); the copy is then made by the first inference that reads it, so that a
    /// program that only ever predicts a few images at a time never holds it. The same bits as
    /// packing the kernel at each product.
    void prepare_inference(bool) { packed_.pack(false, nullptr, 0, 0); }

    /// Makes inference read the kernel rounded to bfloat16 (core/bfloat16.hpp), from a copy made
    /// now, with tnet's own kernels (Eigen's read the float kernel), and with AVX512_BF16 compute
    /// inferences of more than detail::sweep_rows rows in bfloat16; or, `round` false, read the
    /// kernel itself again. Half the bytes to read: what a batch-1 forward of a large layer waits
    /// for. The copy does not follow the kernel by itself: Sequential remakes it whenever the
    /// weights may have changed (set_inference_precision).
    void round_kernel(bool round) {
      pairs_current_ = false;  // remade, in the same memory, by the next inference that reads it
      if (!round) return pairs_.clear(), std::vector<std::uint16_t>().swap(rounded_);
      const std::ptrdiff_t size = std::ptrdiff_t(K) * units_;
      rounded_.resize(std::size_t(size));
      std::uint16_t* out = rounded_.data();
      const float* kernel = kernel_;
#pragma omp parallel for schedule(static) if (size > (1 << 16))
      for (std::ptrdiff_t i = 0; i < size; ++i) out[i] = to_bfloat16(kernel[i]);
    }

    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      // dL/dkernel = x^T dy ; dL/dbias = sum of dy over the batch ; dL/dx = dy kernel^T.
      const int units = units_;  // captured by value below
      gemm(Transpose::yes, Transpose::no, K, units_, batch, x, dy, grad_kernel_);
      sum_over_rows(batch, units_, bias_sums_.data(),
                    [dy, units](std::ptrdiff_t n, std::ptrdiff_t u) { return double(dy[n * units + u]); });
      for (int u = 0; u < units_; ++u) grad_bias_[u] = static_cast<float>(bias_sums_[std::size_t(u)]);
      if (dx) gemm(Transpose::no, Transpose::yes, batch, K, units_, dy, kernel_, dx);
    }

    template <class Visit>
    void visit_state(Visit&&) {}

    int units() const { return units_; }
    float* kernel() { return kernel_; }
    float* bias() { return bias_; }
    const float* grad_kernel() const { return grad_kernel_; }
    const float* grad_bias() const { return grad_bias_; }

   private:
    // Inference of a batch of at most detail::sweep_rows reads the kernel in one sweep
    // (sweep_gemm) when it has this many units at least; fewer, in strips of columns.
    static constexpr int sweep_units = 32;
    int units_;
    bool backwards_ = false;  // which way the last sweep went
    float *kernel_ = nullptr, *bias_ = nullptr, *grad_kernel_ = nullptr, *grad_bias_ = nullptr;
    std::vector<double> bias_sums_;
    std::vector<std::uint16_t> rounded_;  // the kernel in bfloat16 for inference (round_kernel), or empty
    detail::PackedBf16 pairs_;            // rounded_ as bf16 products read it, once an inference of many rows has
    bool pairs_current_ = false;          // pairs_ made since the last round_kernel
    detail::PackedB packed_;              // the kernel packed for inference (prepare_inference), or nothing
  };
};

}  // namespace tnet
