// tnet/layers/flatten.hpp: (N, H, W, C) -> (N, H*W*C), in NHWC order (Keras's channels-last
// Flatten). The values are copied unchanged (in a network, not even copied: it works in place);
// so are the gradients.
#pragma once

#include <algorithm>

#include "layer.hpp"

namespace tnet {

struct Flatten : LayerSpec {
  template <class In>
  class Layer : public Stateless {
   public:
    using input_shape = In;
    using output_shape = Shape<1, 1, In::size>;
    static constexpr bool in_place = true, backward_reads_output = false;
    static std::string describe() { return "Flatten"; }

    void forward(const float* x, float* y, int batch, Pass) {
      if (y != x) std::copy(x, x + std::ptrdiff_t(batch) * In::size, y);
    }
    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (dx) std::copy(dy, dy + std::ptrdiff_t(batch) * In::size, dx);
    }
  };
};

}  // namespace tnet
