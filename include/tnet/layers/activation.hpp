// tnet/layers/activation.hpp: element-wise and per-pixel activations.
//
// ReLU:    y = max(x, 0);               dx = dy where y > 0, else 0.
// Sigmoid: y = 1 / (1 + exp(-x));       dx = dy * y * (1 - y). As a network's last layer, training
//          fuses it with binary cross-entropy (train/loss.hpp) and never calls this backward.
// Softmax: y = exp(x) / sum exp(x) over channels; dx = y * (dy - sum(dy * y)). As a last layer,
//          training fuses it with categorical cross-entropy.
// ReLU6:     y = min(max(x, 0), 6);      dx = dy where 0 < y < 6, else 0.
// LeakyReLU: y = x where x > 0, else slope * x (PyTorch's default slope 0.01, Keras's 0.3);
//            dx = dy where x > 0, else slope * dy. With slope >= 0, y > 0 exactly where x > 0,
//            so backward reads y and the layer works in place; with a negative slope it reads x.
// SiLU:      y = x * sigmoid(x) (Keras's "swish"); dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x).
// HardSwish: y = x * relu6(x + 3) / 6 (PyTorch's, MobileNetV3's); dx = 0 where x <= -3,
//            dy * (x / 3 + 0.5) where -3 < x < 3, dy where x >= 3.
// The gradients at the kinks are PyTorch's: ReLU6's is 0 at x = 0 and at x = 6, LeakyReLU's is
// the slope at x = 0, HardSwish's is 0 at x = -3 and 1 at x = 3 (the outer pieces', as PyTorch 2
// has them; PyTorch 1.13 gave -0.5 at -3, and 1.5 or 1 at 3 depending on its code path).
// SiLU and HardSwish read x in backward (never y): the next layer may write over their output.
// Each has `static float value(float x)`, the function of one value.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

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
    static constexpr float clamp_max = std::numeric_limits<float>::infinity();
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

struct ReLU6 : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool in_place = true;
    static constexpr float clamp_max = 6.0f;
    static std::string describe() { return "ReLU6"; }
    static float value(float x) { return std::min(std::max(x, 0.0f), 6.0f); }

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = value(x[i]);
      });
    }
    void backward(const float*, const float* y, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          const float g = dy[i];
          dx[i] = y[i] > 0.0f && y[i] < 6.0f ? g : 0.0f;
        }
      });
    }
  };
};

template <float Slope = 0.01f>
struct LeakyReLU : ElementwiseSpec {
  static_assert(-std::numeric_limits<float>::max() <= Slope && Slope <= std::numeric_limits<float>::max(),
                "tnet::LeakyReLU: the slope must be a finite number");

  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    // From y alone where the slope keeps the sign (see the top of this file); else from x.
    static constexpr bool in_place = Slope >= 0.0f, backward_reads_output = in_place;
    static constexpr float slope = Slope;
    static std::string describe() {
      char digits[32];
      const auto end = std::to_chars(digits, digits + sizeof digits, Slope).ptr;  // the shortest that reads back as Slope
      return "LeakyReLU(slope " + std::string(digits, end) + ")";
    }
    static float value(float x) { return detail::select(x > 0.0f, x, Slope * x); }

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = value(x[i]);
      });
    }
    void backward(const float* x, const float* y, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      const float* sign = in_place ? y : x;  // positive exactly where x is
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          const float g = dy[i];
          dx[i] = detail::select(sign[i] > 0.0f, g, Slope * g);
        }
      });
    }
  };
};

struct SiLU : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool backward_reads_output = false;
    static std::string describe() { return "SiLU"; }
    static float value(float x) { return x * sigmoid(x); }

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = value(x[i]);
      });
    }
    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          const float s = sigmoid(x[i]);
          dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
      });
    }
  };
};

struct HardSwish : ElementwiseSpec {
  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool backward_reads_output = false;
    static std::string describe() { return "HardSwish"; }
    static float value(float x) { return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f; }  // PyTorch's order

    void forward(const float* x, float* y, int batch, Pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = value(x[i]);
      });
    }
    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          const float v = x[i], g = dy[i];
          dx[i] = detail::select(v <= -3.0f, 0.0f, detail::select(v < 3.0f, g * (v / 3.0f + 0.5f), g));
        }
      });
    }
  };
};

}  // namespace tnet
