// tnet/layers/batch_norm.hpp: batch normalisation (Keras BatchNormalization).
//
// Contract: x (N, H, W, C) -> y, same shape, normalised per channel over N*H*W values (over N
// after a Dense layer). Training (and calibration): y = gamma * (x - mean) / sqrt(var + eps) + beta
// with the batch's mean and biased variance, and the moving statistics updated. Inference: the
// moving statistics replace the batch's. Learns gamma (1s) and beta (0s); keeps moving_mean and
// moving_variance (Keras's two non-trainable weights). In data-parallel training (Pass::reducer)
// the batch is the global batch: the processes' sums are added, so the statistics and gradients
// do not depend on how many processes share it.
//
// The moving statistics follow Keras 2.1.3-2.2.5 with TensorFlow exactly: an exponential moving
// average with zero-debiasing (moving = biased / (1 - momentum^t), so after one batch it equals
// the batch's statistic), fed with the variance scaled by n / (n - (1 + eps)), Keras's
// "unbiased" correction.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../core/gemm.hpp"
#include "../core/reducer.hpp"
#include "../core/vectorise.hpp"
#include "layer.hpp"

namespace tnet {

template <float Momentum, float Epsilon>
struct BatchNormWith : LayerSpec {
  static_assert(Momentum >= 0.0f && Momentum < 1.0f, "tnet::BatchNorm: momentum must be in [0, 1)");
  static_assert(Epsilon > 0.0f, "tnet::BatchNorm: epsilon must be positive");

  template <class In>
  class Layer {
   public:
    static constexpr int C = In::channels;
    static constexpr int pixels = In::height * In::width;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool backward_reads_output = false;  // it recomputes xhat from x
    static constexpr std::size_t non_trainable_count = 2 * std::size_t(C);

    static std::string describe() { return "BatchNorm"; }

    Layer()
        : moving_mean_(C, 0.0f),
          moving_variance_(C, 1.0f),
          biased_mean_(C, 0.0f),
          biased_variance_(C, 0.0f),
          inv_std_(C),
          sums_(C + 1),
          sums2_(C) {}

    static std::array<TensorSize, 2> parameter_tensors() { return {{{"gamma", std::size_t(C)}, {"beta", std::size_t(C)}}}; }
    void bind(float* values, float* grads) {
      gamma_ = values, beta_ = values + C;
      grad_gamma_ = grads, grad_beta_ = grads + C;
    }

    void init(Rng) {
      std::fill(gamma_, gamma_ + C, 1.0f);
      std::fill(beta_, beta_ + C, 0.0f);
      std::fill(moving_mean_.begin(), moving_mean_.end(), 0.0f);
      std::fill(moving_variance_.begin(), moving_variance_.end(), 1.0f);
      std::fill(biased_mean_.begin(), biased_mean_.end(), 0.0f);
      std::fill(biased_variance_.begin(), biased_variance_.end(), 0.0f);
      updates_[0] = 0;
    }

    /// Forgets the moving statistics: the next training batch sets them to its own (see the
    /// zero-debiasing above), later ones average in. To re-estimate them for the final weights.
    void reset_moving_statistics() {
      std::fill(biased_mean_.begin(), biased_mean_.end(), 0.0f);
      std::fill(biased_variance_.begin(), biased_variance_.end(), 0.0f);
      updates_[0] = 0;
    }

    /// y = gamma * ((x - mean) * inv_std) + beta for x in channel c, as forward computes it.
    struct Normalisation {
      const float *mean, *inv_std, *gamma, *beta;
      float operator()(float v, int c) const { return gamma[c] * ((v - mean[c]) * inv_std[c]) + beta[c]; }
    };

    void forward(const float* x, float* y, int batch, Pass pass) { forward(x, y, batch, pass, Epilogue{}); }
    /// forward, each output then put through `epilogue` (its clamp, affine and added tensor; a ReLU
    /// after this layer in training: model/rules/activation_in_epilogue.hpp).
    void forward(const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * pixels;
      if (pass.mode == Mode::infer) {
        // Its own scale: the batch's, kept for backward, stays untouched.
        std::array<float, C> inv_std;
        for (int c = 0; c < C; ++c) inv_std[c] = 1.0f / std::sqrt(moving_variance_[c] + Epsilon);
        normalise(x, y, rows, {moving_mean_.data(), inv_std.data(), gamma_, beta_}, epilogue);
        return;
      }
      statistics(x, batch, pass);
      normalise(x, y, rows, normalisation(), epilogue);
    }

    /// A training (or calibration) forward short of writing y: the batch's statistics, kept for
    /// backward, and the moving statistics updated. normalisation() is then the map forward would
    /// have applied, for a max pool after this layer to apply as it reads x (model/rules/).
    void statistics(const float* x, int batch, Pass pass) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * pixels;
      equal_weights_ = pass.mode == Mode::calibrate;
      // One pass over x for the sums of d = x - shift and of d^2, in double, with shift the moving
      // mean (the same in every process), near the batch's mean, so that the variance, mean(d^2)
      // - mean(d)^2, does not lose its digits to cancellation; before the first update, the
      // batch's own mean, from a pass of its own. In data-parallel training each sum, and the
      // count of rows, is the global batch's (summed by the reducer).
      reducer_ = pass.reducer;
      choose_shift(x, rows);
      const double* shift = shift_.data();
      sum_over_rows(
          rows, C, sums_.data(), [x, shift](std::ptrdiff_t r, std::ptrdiff_t c) { return double(x[r * C + c]) - shift[c]; }, sums2_.data(),
          [x, shift](std::ptrdiff_t r, std::ptrdiff_t c) {
            const double d = double(x[r * C + c]) - shift[c];
            return d * d;
          });
      finish_statistics(rows);
    }
    /// statistics() in two halves, for sums taken by another pass over x (a max pool choosing
    /// as it reads: model/rules/normalise_then_pool.hpp). statistics_shift chooses what the sums
    /// measure x from and returns it (per channel); the other pass writes, per image n and
    /// channel c, the sum of d = x - shift[c] at image_sums(batch)[n * 2C + c] and of d^2 at
    /// [n * 2C + C + c]; statistics_from then adds them up, in the order of the images.
    const double* statistics_shift(const float* x, int batch, Pass pass) {
      reducer_ = pass.reducer;
      equal_weights_ = pass.mode == Mode::calibrate;
      choose_shift(x, std::ptrdiff_t(batch) * pixels);
      return shift_.data();
    }
    double* image_sums(int batch) {
      if (per_image_.size() < std::size_t(batch) * 2 * C) per_image_.resize(std::size_t(batch) * 2 * C);
      return per_image_.data();
    }
    void statistics_from(const double* sums, int batch) {
      std::fill(sums_.begin(), sums_.end(), 0.0);
      std::fill(sums2_.begin(), sums2_.end(), 0.0);
      for (int n = 0; n < batch; ++n)  // in the order of the images, whatever the threads
        for (int c = 0; c < C; ++c) {
          sums_[c] += sums[std::size_t(n) * 2 * C + c];
          sums2_[c] += sums[std::size_t(n) * 2 * C + C + c];
        }
      finish_statistics(std::ptrdiff_t(batch) * pixels);
    }
    /// The map of the last training forward's batch statistics.
    Normalisation normalisation() const { return {mean_f_.data(), inv_std_.data(), gamma_, beta_}; }

    /// Inference's y = gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta as
    /// x * scale + shift (in double, then rounded), for folding into the layer before.
    void inference_affine(float* scale, float* shift) const {
      for (int c = 0; c < C; ++c) {
        const double s = double(gamma_[c]) / std::sqrt(double(moving_variance_[c]) + double(Epsilon));
        scale[c] = static_cast<float>(s);
        shift[c] = static_cast<float>(double(beta_[c]) - double(moving_mean_[c]) * s);
      }
    }

    void backward(const float* x, const float*, const float* dy, float* dx, int batch) { backward_masked<false>(x, dy, dx, batch); }
    /// backward with dx zeroed where x <= 0: after a ReLU, that ReLU's gradient too.
    void backward_where_positive(const float* x, const float*, const float* dy, float* dx, int batch) {
      backward_masked<true>(x, dy, dx, batch);
    }
    /// backward when dy is zero but at one input of each image per output of a tiling of it (a
    /// max pool's choices, whose windows do not overlap): `per_image` values per image, the
    /// k-th at offset at[k] within its image, with value chosen[k] and gradient dy[k]. This
    /// layer's own dy is never written. dx is zeroed where x <= 0 when `where_positive`.
    void backward_at(const float* x, const std::int32_t* at, const float* chosen, int per_image, const float* dy, float* dx, int batch,
                     bool where_positive) {
      if (where_positive) backward_chosen<true>(x, at, chosen, per_image / C, dy, dx, batch);
      else backward_chosen<false>(x, at, chosen, per_image / C, dy, dx, batch);
    }

    template <class Visit>
    void visit_state(Visit&& visit) {
      visit("moving_mean", std::span<float>(moving_mean_));
      visit("moving_variance", std::span<float>(moving_variance_));
      visit("biased_mean", std::span<float>(biased_mean_));
      visit("biased_variance", std::span<float>(biased_variance_));
      visit("updates", std::span<std::uint64_t>(updates_));
    }

    float* gamma() { return gamma_; }
    float* beta() { return beta_; }
    const float* moving_mean() const { return moving_mean_.data(); }
    const float* moving_variance() const { return moving_variance_.data(); }
    const float* grad_gamma() const { return grad_gamma_; }
    const float* grad_beta() const { return grad_beta_; }

   private:
    // shift_: the moving mean, or before the first update the batch's own mean (a pass over x).
    void choose_shift(const float* x, std::ptrdiff_t rows) {
      if (updates_[0] == 0) {
        sum_over_rows(rows, C, sums_.data(), [x](std::ptrdiff_t r, std::ptrdiff_t c) { return double(x[r * C + c]); });
        sums_[C] = double(rows);
        if (reducer_) reducer_->sum(sums_);
        for (int c = 0; c < C; ++c) shift_[c] = sums_[c] / sums_[C];
      } else {
        for (int c = 0; c < C; ++c) shift_[c] = moving_mean_[c];
      }
    }
    // From the sums of d (sums_) and d^2 (sums2_) over this process's `rows`: the batch's mean
    // and inverse deviation, and the moving statistics updated.
    void finish_statistics(std::ptrdiff_t rows) {
      const double* shift = shift_.data();
      sums_[C] = double(rows);
      if (reducer_) reducer_->sum(sums_), reducer_->sum(sums2_);
      rows_ = sums_[C];
      // From here sums_ holds the mean and sums2_ the sum of squared deviations from it.
      for (int c = 0; c < C; ++c) {
        const double mean_d = sums_[c] / rows_;
        sums_[c] = shift[c] + mean_d;
        sums2_[c] = std::max(sums2_[c] - mean_d * mean_d * rows_, 0.0);  // a NaN stays one
        const double variance = sums2_[c] / rows_;
        inv_std_[c] = static_cast<float>(1.0 / std::sqrt(variance + double(Epsilon)));
        mean_f_[c] = static_cast<float>(sums_[c]);
      }
      update_moving_statistics(rows_);
    }

    template <bool ThroughRelu>
    void backward_masked(const float* x, const float* dy, float* dx, int batch) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * pixels;
      // xhat, the normalised input, is recomputed from x rather than kept from forward.
      const float* mean = mean_f_.data();
      const float* inv_std = inv_std_.data();
      auto xhat = [x, mean, inv_std](std::ptrdiff_t r, std::ptrdiff_t c) { return (x[r * C + c] - mean[c]) * inv_std[c]; };
      // dL/dbeta = sum dy ; dL/dgamma = sum dy * xhat.
      sum_over_rows(
          rows, C, sums_.data(), [dy](std::ptrdiff_t r, std::ptrdiff_t c) { return double(dy[r * C + c]); }, sums2_.data(),
          [dy, xhat](std::ptrdiff_t r, std::ptrdiff_t c) { return double(dy[r * C + c]) * xhat(r, c); });
      if (!input_gradient_factors(dx)) return;
      const float *scale = scale_.data(), *mean_dy = mean_dy_.data(), *mean_dy_xhat = mean_dy_xhat_.data();
      for_blocks(rows, rows_per_block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t r = begin; r < end; ++r)
          for (int c = 0; c < C; ++c) {
            const float g = scale[c] * (dy[r * C + c] - mean_dy[c] - xhat(r, c) * mean_dy_xhat[c]);
            if constexpr (ThroughRelu) dx[r * C + c] = detail::select(x[r * C + c] > 0.0f, g, 0.0f);
            else dx[r * C + c] = g;
          }
      });
    }

    // backward_at: dy is zero but at the chosen positions, so the sums run over those (their
    // values given), and dx is written with dy = 0, then at each chosen position (once: the
    // tiling's windows do not overlap) with its dy; each as backward_masked computes it.
    template <bool ThroughRelu>
    void backward_chosen(const float* x, const std::int32_t* where, const float* chosen, int pooled, const float* dy, float* dx,
                         int batch) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * pooled;
      const float* mean = mean_f_.data();
      const float* inv_std = inv_std_.data();
      auto xhat = [chosen, mean, inv_std](std::ptrdiff_t r, std::ptrdiff_t c) { return (chosen[r * C + c] - mean[c]) * inv_std[c]; };
      sum_over_rows(
          rows, C, sums_.data(), [dy](std::ptrdiff_t r, std::ptrdiff_t c) { return double(dy[r * C + c]); }, sums2_.data(),
          [dy, xhat](std::ptrdiff_t r, std::ptrdiff_t c) { return double(dy[r * C + c]) * xhat(r, c); });
      if (!input_gradient_factors(dx)) return;
      const float *scale = scale_.data(), *mean_dy = mean_dy_.data(), *mean_dy_xhat = mean_dy_xhat_.data();
      auto gradient = [=](float dy_value, float x_value, int c) {
        const float g = scale[c] * (dy_value - mean_dy[c] - (x_value - mean[c]) * inv_std[c] * mean_dy_xhat[c]);
        if constexpr (ThroughRelu) return detail::select(x_value > 0.0f, g, 0.0f);
        else return g;
      };
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        float* grad = dx + n * In::size;
        for (std::ptrdiff_t r = 0; r < pixels; ++r)
          for (int c = 0; c < C; ++c) grad[r * C + c] = gradient(0.0f, image[r * C + c], c);
        for (std::ptrdiff_t r = n * pooled; r < (n + 1) * pooled; ++r)
          for (int c = 0; c < C; ++c) grad[where[r * C + c]] = gradient(dy[r * C + c], chosen[r * C + c], c);
      });
    }

    // The parameter gradients from sums_ (of dy) and sums2_ (of dy * xhat), then, when dx is
    // wanted, the factors of dL/dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)):
    // the batch statistics' own dependence on x included, means over the global batch.
    bool input_gradient_factors(const float* dx) {
      // This process's share of the parameter gradients (the network sums them over processes).
      for (int c = 0; c < C; ++c) {
        grad_beta_[c] = static_cast<float>(sums_[c]);
        grad_gamma_[c] = static_cast<float>(sums2_[c]);
      }
      if (!dx) return false;
      if (reducer_) {
        reducer_->sum(std::span(sums_).first(C));
        reducer_->sum(sums2_);
      }
      for (int c = 0; c < C; ++c) {
        mean_dy_[c] = static_cast<float>(sums_[c] / rows_);
        mean_dy_xhat_[c] = static_cast<float>(sums2_[c] / rows_);
        scale_[c] = gamma_[c] * inv_std_[c];
      }
      return true;
    }

    static void normalise(const float* x, float* y, std::ptrdiff_t rows, Normalisation map, const Epilogue& epilogue) {
      if (epilogue.empty())
        return for_blocks(rows, rows_per_block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t r = begin; r < end; ++r)
            for (int c = 0; c < C; ++c) y[r * C + c] = map(x[r * C + c], c);
        });
      const Epilogue e = epilogue;
      for_blocks(rows, rows_per_block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t r = begin; r < end; ++r) {
          for (int c = 0; c < C; ++c) y[r * C + c] = map(x[r * C + c], c);
          e.finish_row(y + r * C, C, nullptr, e.scale, e.shift, e.added_at(r, 0));
        }
      });
    }

    // Training: the exponential moving average above. Calibration (Mode::calibrate, after
    // reset_moving_statistics): every batch weighs the same, the running mean of the batches'
    // statistics, as PyTorch's update_bn does; with momentum 0.9 (PyTorch's 0.1) an average that
    // decays would hold little but the last ten batches of a pass that goes class by class.
    void update_moving_statistics(double rows) {
      const double n = rows;
      const double t = double(++updates_[0]);
      const double m = equal_weights_ ? (t - 1.0) / t : double(Momentum);
      const double debias = equal_weights_ ? 1.0 : 1.0 - std::pow(m, t);
      for (int c = 0; c < C; ++c) {
        const double variance = sums2_[c] / n * (n / (n - (1.0 + double(Epsilon))));
        biased_mean_[c] = static_cast<float>(biased_mean_[c] * m + sums_[c] * (1.0 - m));
        biased_variance_[c] = static_cast<float>(biased_variance_[c] * m + variance * (1.0 - m));
        moving_mean_[c] = static_cast<float>(biased_mean_[c] / debias);
        moving_variance_[c] = static_cast<float>(biased_variance_[c] / debias);
      }
    }

    static constexpr std::ptrdiff_t rows_per_block = std::max(1, 16384 / C);  // for_blocks: about 64 KB of floats each

    float *gamma_ = nullptr, *beta_ = nullptr, *grad_gamma_ = nullptr, *grad_beta_ = nullptr;  // views (bind)
    Buffer moving_mean_, moving_variance_, biased_mean_, biased_variance_;
    std::uint64_t updates_[1] = {0};  // batches seen: t in the zero-debiasing above
    bool equal_weights_ = false;      // the moving statistics: the batches' plain mean (calibration)
    Buffer inv_std_;
    std::array<float, C> mean_f_{}, mean_dy_{}, mean_dy_xhat_{}, scale_{};
    std::array<double, C> shift_{};     // what statistics() measures x from
    std::vector<double> sums_, sums2_;  // per channel (sums_ also the row count, in forward)
    std::vector<double> per_image_;     // image_sums: the sums of each image
    Reducer* reducer_ = nullptr;        // of the last training forward: backward sums with it too
    double rows_ = 0;                   // rows the last training forward's statistics are over
  };
};

/// Keras's defaults: momentum 0.99, epsilon 1e-3.
using BatchNorm = BatchNormWith<0.99f, 1e-3f>;

}  // namespace tnet
