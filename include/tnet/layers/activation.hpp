// tnet/layers/activation.hpp: element-wise and per-pixel activations.
//
// ReLU:    y = max(x, 0);               dx = dy where y > 0, else 0.
// Sigmoid: y = 1 / (1 + exp(-x));       dx = dy * y * (1 - y). As a network's last layer, training
//          fuses it with binary cross-entropy (train/loss.hpp) and never calls this backward.
// Softmax: y = exp(x) / sum exp(x) over channels; dx = y * (dy - sum(dy * y)). As a last layer,
//          training fuses it with categorical cross-entropy.
#pragma once

#include <algorithm>
#include <cmath>

#include "../core/vectorise.hpp"
#include "layer.hpp"

namespace tnet {

/// The logistic function, without overflow for large |x|.
inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

struct ReLU : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool in_place = true;
    static constexpr bool folds_as_relu = true;
    static std::string describe() { return "ReLU"; }

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = std::max(x[i], 0.0f);
      });
    }
    void backward(const float*, const float* y, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          const float g = dy[i];  // read whatever y is: a select, not a branch (random signs mispredict)
          dx[i] = y[i] > 0.0f ? g : 0.0f;
        }
      });
    }
  };
};

struct Sigmoid : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static std::string describe() { return "Sigmoid"; }

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for (std::ptrdiff_t i = 0; i < count; ++i) y[i] = sigmoid(x[i]);
    }
    void backward(const float*, const float* y, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for (std::ptrdiff_t i = 0; i < count; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
    }
  };
};

// Over the channels of each pixel: a flat input's channels are all its values.
struct Softmax : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static std::string describe() { return "Softmax"; }

    void forward(const float* x, float* y, int batch, Pass) {
      const int C = channels();
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * In::height * In::width;
      for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const float* in = x + r * C;
        float* out = y + r * C;
        const float top = *std::max_element(in, in + C);  // exp of at most 0: no overflow
        float total = 0.0f;
        for (int c = 0; c < C; ++c) total += out[c] = std::exp(in[c] - top);
        for (int c = 0; c < C; ++c) out[c] /= total;
      }
    }
    void backward(const float*, const float* y, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const int C = channels();
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * In::height * In::width;
      for (std::ptrdiff_t r = 0; r < rows; ++r) {
        float dot = 0.0f;
        for (int c = 0; c < C; ++c) dot += dy[r * C + c] * y[r * C + c];
        for (int c = 0; c < C; ++c) dx[r * C + c] = y[r * C + c] * (dy[r * C + c] - dot);
      }
    }

   private:
    int channels() const { return this->sample_size() / (In::height * In::width); }
  };
};

}  // namespace tnet
