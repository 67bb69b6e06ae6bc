// tnet/layers/max_pool.hpp: max pooling (Keras MaxPooling2D, padding valid).
//
// Contract: x (N, H, W, C) -> y (N, (H - P) / S + 1, (W - P) / S + 1, C), each output the largest
// value of its P x P window, per channel. Needs H, W >= P. The gradient flows to the first
// largest value of each window (the position remembered in training).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/vectorise.hpp"
#include "layer.hpp"

namespace tnet {

template <int Pool, int Stride = Pool>
struct MaxPool2D : LayerSpec {
  static_assert(Pool > 0 && Stride > 0, "tnet::MaxPool2D: pool and stride must be positive");

  template <class In>
  static constexpr bool accepts = In::height >= Pool && In::width >= Pool;
  template <class In>
  using needs = Shape<std::max(In::height, Pool), std::max(In::width, Pool), In::channels>;

  template <class In>
  class Layer : public Stateless {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels;
    static constexpr int OH = (H - Pool) / Stride + 1, OW = (W - Pool) / Stride + 1;
    using input_shape = In;
    using output_shape = Shape<OH, OW, C>;
    static constexpr bool backward_reads_output = false;  // the positions it remembered suffice

    static std::string describe() {
      return "MaxPool2D(" + std::to_string(Pool) + "x" + std::to_string(Pool) + ", stride " + std::to_string(Stride) + ")";
    }

    void forward(const float* x, float* y, int batch, Pass pass) {
      const bool remember = pass.mode == Mode::train;
      if (remember && argmax_.size() < std::size_t(batch) * output_shape::size) argmax_.resize(std::size_t(batch) * output_shape::size);
      std::int32_t* argmax = remember ? argmax_.data() : nullptr;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        float* out = y + n * output_shape::size;
        std::int32_t* where = argmax ? argmax + n * output_shape::size : nullptr;
        // Channels innermost, in local arrays, and selects written as arithmetic rather than
        // branches: comparisons of random values mispredict, and this way the channels vectorise.
        float best[C];
        std::int32_t best_at[C];
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox) {
            const std::int32_t first = ((oy * Stride) * W + ox * Stride) * C;
            for (int c = 0; c < C; ++c) best[c] = image[first + c], best_at[c] = first + c;
            for (int py = 0; py < Pool; ++py)
              for (int px = 0; px < Pool; ++px) {
                const std::int32_t at = ((oy * Stride + py) * W + ox * Stride + px) * C;
                for (int c = 0; c < C; ++c) {
                  const float v = image[at + c];
                  const std::int32_t larger = -std::int32_t(v > best[c]);  // all ones or zero; the first of equal maxima is kept
                  best[c] = std::max(best[c], v);                          // the same select: best < v ? v : best
                  best_at[c] ^= (best_at[c] ^ (at + c)) & larger;
                }
              }
            const int o = (oy * OW + ox) * C;
            std::copy(best, best + C, out + o);
            if (where) std::copy(best_at, best_at + C, where + o);
          }
      });
    }

    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::int32_t* argmax = argmax_.data();
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        float* image = dx + n * In::size;
        std::fill(image, image + In::size, 0.0f);
        const float* grad = dy + n * output_shape::size;
        const std::int32_t* where = argmax + n * output_shape::size;
        for (int o = 0; o < output_shape::size; ++o) image[where[o]] += grad[o];
      });
    }

   private:
    std::vector<std::int32_t> argmax_;  // per output: offset of the chosen input within its image
  };
};

}  // namespace tnet
