// tnet/layers/max_pool.hpp: max pooling (Keras MaxPooling2D, padding valid).
//
// Contract: x (N, H, W, C) -> y (N, (H - P) / S + 1, (W - P) / S + 1, C), each output the largest
// value of its P x P window, per channel. Needs H, W >= P. The gradient flows to the first
// largest value of each window (the position remembered in training).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
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
    static constexpr bool windows_overlap = Stride < Pool;

    static std::string describe() {
      return "MaxPool2D(" + std::to_string(Pool) + "x" + std::to_string(Pool) + ", stride " + std::to_string(Stride) + ")";
    }

    void forward(const float* x, float* y, int batch, Pass pass) { forward_mapped(x, y, batch, pass, Unmapped{}); }

    /// forward of map(x, c) for each value x of channel c: pooling applied to the output of a
    /// per-channel map before it (a batch normalisation in training: Sequential), read as it goes.
    /// Training then also keeps the input x chosen for each output (chosen_inputs).
    template <class Map>
    void forward_mapped(const float* x, float* y, int batch, Pass pass, const Map& map) {
      constexpr bool mapped = !std::is_same_v<Map, Unmapped>;
      const bool remember = pass.mode == Mode::train;
      const std::size_t outputs = std::size_t(batch) * output_shape::size;
      if (remember && argmax_.size() < outputs) argmax_.resize(outputs);
      if (remember && mapped) ensure_size(chosen_, outputs);
      std::int32_t* argmax = remember ? argmax_.data() : nullptr;
      float* chosen = remember && mapped ? chosen_.data() : nullptr;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        float* out = y + n * output_shape::size;
        std::int32_t* where = argmax ? argmax + n * output_shape::size : nullptr;
        // Channels innermost, and selects written as arithmetic rather than branches: comparisons
        // of random values mispredict, and this way the channels vectorise. Through a map, in
        // groups of 16 channels when they divide C (one AVX-512 vector: the running maxima, the
        // inputs chosen and their positions stay in registers over the window: 1.9 -> 1.5 ms at
        // 96x96x32 here); without one, all C at once (grouped, inference was 1.4x slower).
        constexpr int G = mapped && C % 16 == 0 ? 16 : C;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox) {
            const std::int32_t first = ((oy * Stride) * W + ox * Stride) * C;
            const int o = (oy * OW + ox) * C;
            for (int c0 = 0; c0 < C; c0 += G) {
              float best[G], best_x[G];  // best_x: the input whose map is best (when mapped)
              std::int32_t best_at[G];
              for (int g = 0; g < G; ++g) best_x[g] = image[first + c0 + g], best[g] = map(best_x[g], c0 + g), best_at[g] = first + c0 + g;
              for (int py = 0; py < Pool; ++py)
                for (int px = 0; px < Pool; ++px) {
                  const std::int32_t at = ((oy * Stride + py) * W + ox * Stride + px) * C + c0;
                  for (int g = 0; g < G; ++g) {
                    const float v = map(image[at + g], c0 + g);
                    const std::int32_t larger = -std::int32_t(v > best[g]);  // all ones or zero; the first of equal maxima is kept
                    if constexpr (mapped) best_x[g] = v > best[g] ? image[at + g] : best_x[g];
                    best[g] = std::max(best[g], v);  // the same select: best < v ? v : best
                    best_at[g] ^= (best_at[g] ^ (at + g)) & larger;
                  }
                }
              std::copy(best, best + G, out + o + c0);
              if (where) std::copy(best_at, best_at + G, where + o + c0);
              if constexpr (mapped)
                if (chosen) std::copy(best_x, best_x + G, chosen + n * output_shape::size + o + c0);
            }
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

    /// Per output of the last training forward, the offset within its image of the input chosen;
    /// after forward_mapped, also the input itself (before the map).
    const std::int32_t* argmax() const { return argmax_.data(); }
    const float* chosen_inputs() const { return chosen_.data(); }

   private:
    struct Unmapped {
      float operator()(float v, int) const { return v; }
    };
    std::vector<std::int32_t> argmax_;  // per output: offset of the chosen input within its image
    Buffer chosen_;                     // per output: that input, when forward_mapped
  };
};

}  // namespace tnet
