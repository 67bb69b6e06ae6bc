// tnet/layers/average_pool.hpp: average pooling (Keras AveragePooling2D; PyTorch AvgPool2d).
//
// Contract: x (N, H, W, C) -> y (N, OH, OW, C), each output the mean of its P x P window, per
// channel. Padding (layers/padding.hpp) valid, the default: OH = (H - P) / S + 1, needs H, W >= P;
// pad(p), PyTorch's padding=p (p <= P / 2): OH = (H + 2p - P) / S + 1, the padded zeros counted
// (PyTorch's default count_include_pad=True: every window divides by P * P); same, Keras's:
// OH = ceil(H / S), the padded positions not counted (each window divides by the inputs it
// covers). No parameters. The gradient of each output is shared equally by the inputs its window
// covers (dy / the same divisor).
#pragma once

#include <algorithm>
#include <string>

#include "../core/vectorise.hpp"
#include "layer.hpp"
#include "padding.hpp"

namespace tnet {

template <int Pool, int Stride = Pool, Padding Pad = Padding::valid>
struct AveragePooling2D : LayerSpec {
  static_assert(Pool > 0 && Stride > 0, "tnet::AveragePooling2D: pool and stride must be positive");
  static_assert(Pad.amount >= 0 && 2 * Pad.amount <= Pool, "tnet::AveragePooling2D: pad(p) needs 0 <= p <= pool / 2");

  template <class In>
  static constexpr bool accepts = !In::is_dynamic && Pad.fits(In::height, Pool) && Pad.fits(In::width, Pool);
  template <class In>
  using needs = Shape<std::max(In::height, Pool - 2 * Pad.amount), std::max(In::width, Pool - 2 * Pad.amount), In::channels>;

  template <class In>
  class Layer : public Stateless {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels;
    static constexpr int OH = Pad.output_size(H, Pool, Stride), OW = Pad.output_size(W, Pool, Stride);
    static constexpr int pad_top = Pad.before(H, Pool, Stride), pad_left = Pad.before(W, Pool, Stride);
    /// Whether padded zeros count in the mean (pad(p)), or only the inputs a window covers (same).
    static constexpr bool counts_padding = Pad.is_explicit();
    using input_shape = In;
    using output_shape = Shape<OH, OW, C>;
    static constexpr bool backward_reads_output = false;

    static std::string describe() {
      return "AveragePooling2D(" + std::to_string(Pool) + "x" + std::to_string(Pool) + ", stride " + std::to_string(Stride) + ", " +
             Pad.str() + ")";
    }

    void forward(const float* x, float* y, int batch, Pass) {
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        float* out = y + n * output_shape::size;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, out += C) {
            float sum[C] = {};
            const float divisor = for_window(oy, ox, [&](int iy, int ix) {
              const float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
              for (int c = 0; c < C; ++c) sum[c] += pixel[c];
            });
            for (int c = 0; c < C; ++c) out[c] = sum[c] / divisor;
          }
      });
    }

    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        float* image = dx + n * In::size;
        std::fill(image, image + In::size, 0.0f);
        const float* grad = dy + n * output_shape::size;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, grad += C) {
            int iy0 = 0, ix0 = 0, rows = 0, columns = 0;
            const float divisor = window(oy, ox, iy0, ix0, rows, columns);
            for (int iy = iy0; iy < iy0 + rows; ++iy)
              for (int ix = ix0; ix < ix0 + columns; ++ix) {
                float* pixel = image + (std::ptrdiff_t(iy) * W + ix) * C;
                for (int c = 0; c < C; ++c) pixel[c] += grad[c] / divisor;
              }
          }
      });
    }

   private:
    // Output pixel (oy, ox)'s window within the image, rows [iy0, iy0 + rows) and columns
    // [ix0, ix0 + columns); returns the mean's divisor.
    static float window(int oy, int ox, int& iy0, int& ix0, int& rows, int& columns) {
      const int top = oy * Stride - pad_top, left = ox * Stride - pad_left;
      iy0 = std::max(top, 0), ix0 = std::max(left, 0);
      rows = std::min(top + Pool, H) - iy0, columns = std::min(left + Pool, W) - ix0;
      return float(counts_padding ? Pool * Pool : rows * columns);
    }
    // visit(iy, ix) for each input of the window; returns the divisor.
    template <class Visit>
    static float for_window(int oy, int ox, const Visit& visit) {
      int iy0 = 0, ix0 = 0, rows = 0, columns = 0;
      const float divisor = window(oy, ox, iy0, ix0, rows, columns);
      for (int iy = iy0; iy < iy0 + rows; ++iy)
        for (int ix = ix0; ix < ix0 + columns; ++ix) visit(iy, ix);
      return divisor;
    }
  };
};

}  // namespace tnet
