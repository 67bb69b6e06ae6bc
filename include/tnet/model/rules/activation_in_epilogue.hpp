// tnet/model/rules/activation_in_epilogue.hpp: training applies a ReLU or ReLU6 as the layer
// before it writes its output.
//
//   Conv2D | DepthwiseConv2D | Dense | BatchNorm | Residual, then ReLU or ReLU6 working in place over its
//   output: the layer's forward with the clamp in its epilogue; the clamp's own output, over the
//   layer's, is then the same values. Backward runs the two layers one by one (the clamp's
//   backward reads only its output), unless the step after applies a ReLU's gradient
//   (relu_gradient.hpp).
//
// Capabilities read: takes_epilogue, is_clamp, and the chain's buffer sharing (in_place,
// backward_reads_output). Bit for bit the layers one by one (tests/test_rules.cpp).
#pragma once

#include <cstddef>
#include <string_view>

#include "../../core/config.hpp"
#include "../../layers/layer.hpp"

namespace tnet::rules {

struct ActivationInEpilogue {
  static constexpr std::string_view name = "activation_in_epilogue";
  static constexpr bool splits_backward = true;
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    if constexpr (I + 1 >= Layout::depth) return 0;
    else
      return takes_epilogue<typename Layout::template layer_type<I>> && is_clamp<typename Layout::template layer_type<I + 1>> &&
                     Layout::template shares_buffer<I + 1>
                 ? 2
                 : 0;
  }
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    Epilogue clamp;
    clamp.relu = true;
    clamp.relu_max = Chain::template layer_type<I + 1>::clamp_max;
    chain.template layer<I>().forward(chain.template input_of<I>(), chain.template output_buffer<I>(), batch, pass, clamp);
  }
};

}  // namespace tnet::rules
