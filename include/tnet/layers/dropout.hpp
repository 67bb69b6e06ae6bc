// tnet/layers/dropout.hpp: inverted dropout (Keras Dropout).
//
// Contract: x -> y, same shape. Training: each value is kept with probability 1 - rate and then
// scaled by 1 / (1 - rate), or zeroed. Inference and calibration: the identity. Element i of training step t is
// kept when Rng(seed).derive(layer).derive(t).uniform(i) >= rate: masks are reproducible and do
// not depend on the thread count, nor on how many processes share the batch (i counts from the
// global batch's first element).
#pragma once

#include <algorithm>

#include "../core/vectorise.hpp"
#include "layer.hpp"

namespace tnet {

template <float Rate>
struct Dropout : ElementwiseSpec {
  static_assert(Rate >= 0.0f && Rate < 1.0f, "tnet::Dropout: rate must be in [0, 1)");

  template <class In>
  class Layer : public Elementwise<In> {
   public:
    using Elementwise<In>::Elementwise;
    using input_shape = In;
    using output_shape = In;
    static constexpr bool in_place = true, backward_reads_output = false;

    static std::string describe() { return "Dropout(" + std::to_string(Rate).substr(0, 4) + ")"; }

    void init(Rng rng) { rng_ = rng; }
    void reseed(Rng rng) { rng_ = rng; }

    void forward(const float* x, float* y, int batch, Pass pass) {
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      if (pass.mode != Mode::train) {
        if (y != x) std::copy(x, x + count, y);
        return;
      }
      ensure_size(mask_, count);
      const Rng step = rng_.derive(pass.step);
      const float scale = 1.0f / (1.0f - Rate);
      float* mask = mask_.data();
      // Elements are numbered within the global batch, so a process holding a slice of it draws
      // that slice's masks (core/reducer.hpp).
      const std::uint64_t first = pass.sample_offset * std::uint64_t(this->sample_size());
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) {
          mask[i] = step.uniform(first + std::uint64_t(i)) >= Rate ? scale : 0.0f;
          y[i] = x[i] * mask[i];
        }
      });
    }

    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * this->sample_size();
      const float* mask = mask_.data();
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) dx[i] = dy[i] * mask[i];
      });
    }

    const float* mask() const { return mask_.data(); }

   private:
    Rng rng_;
    Buffer mask_;  // 0 or 1 / (1 - rate) per element of the last training batch
  };
};

}  // namespace tnet
