// tnet/layers/global_average_pool.hpp: global average pooling (Keras GlobalAveragePooling2D,
// PyTorch AdaptiveAvgPool2d(1) then flatten).
//
// Contract: x (N, H, W, C) -> y (N, C), y[n, c] = the mean of x[n, ., ., c] over the H * W
// pixels, summed in double in pixel order (the same bits for any thread count). The output is
// flat: a Dense takes it directly. Backward: dx[n, h, w, c] = dy[n, c] / (H * W). No parameters;
// backward reads neither x nor y.
#pragma once

#include <string>

#include "../core/vectorise.hpp"
#include "layer.hpp"

namespace tnet {

struct GlobalAveragePooling2D : LayerSpec {
  template <class In>
  class Layer : public Stateless {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels, pixels = H * W;
    using input_shape = In;
    using output_shape = Shape<1, 1, C>;
    static constexpr bool backward_reads_output = false;
    static std::string describe() { return "GlobalAveragePooling2D"; }

    void forward(const float* x, float* y, int batch, Pass) {
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        double sum[C] = {};
        for (int p = 0; p < pixels; ++p)
          for (int c = 0; c < C; ++c) sum[c] += image[p * C + c];
        for (int c = 0; c < C; ++c) y[n * C + c] = static_cast<float>(sum[c] / pixels);
      });
    }

    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        alignas(64) float share[C];
        for (int c = 0; c < C; ++c) share[c] = dy[n * C + c] / float(pixels);
        float* image = dx + n * In::size;
        for (int p = 0; p < pixels; ++p)
          for (int c = 0; c < C; ++c) image[p * C + c] = share[c];
      });
    }
  };
};

}  // namespace tnet
