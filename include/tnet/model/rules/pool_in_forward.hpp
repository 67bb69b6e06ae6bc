// tnet/model/rules/pool_in_forward.hpp: inference computes a convolution (with the epilogue it
// folds) and the max pool after it a strip of rows at a time, so that the convolution's output
// is never written whole.
//
//   Conv2D [, ReLU/ReLU6, BatchNorm as fold_epilogue folds them], MaxPool2D whose windows tile
//   the convolution's output: Conv2D::forward_pooled<MaxPool2D>.
//
// Capabilities read: pools_in_forward (and fold_epilogue's). Where the layer cannot at run time
// (Winograd's convolutions, Eigen's kernels), the fold and the pool run one after the other.
// The same bits either way (tests/test_layers.cpp, tests/test_rules.cpp).
#pragma once

#include <cstddef>
#include <string_view>

#include "fold_epilogue.hpp"

namespace tnet::rules {

struct PoolInForward {
  static constexpr std::string_view name = "pool_in_forward";
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    using L = typename Layout::template layer_type<I>;
    if constexpr (!takes_epilogue<L>) {
      return 0;
    } else {
      constexpr std::size_t pool = I + 1 + detail::epilogue_followers<Layout, I + 1>();
      if constexpr (pool >= Layout::depth) return 0;
      else return pools_in_forward<L, typename Layout::template layer_type<pool>> ? pool - I + 1 : 0;
    }
  }
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    constexpr std::size_t pool = I + N - 1;
    using Pool = typename Chain::template layer_type<pool>;
    const Epilogue epilogue = detail::folded_epilogue<I, N - 2>(chain);
    auto& layer = chain.template layer<I>();
    if (layer.template forward_pooled<Pool>(chain.template input_of<I>(), chain.template output_buffer<pool>(), batch, epilogue,
                                            pass.prepared))
      return;
    layer.forward(chain.template input_of<I>(), chain.template output_buffer<pool - 1>(), batch, pass, epilogue);
    chain.template layer<pool>().forward(chain.template input_of<pool>(), chain.template output_buffer<pool>(), batch, pass);
  }
};

}  // namespace tnet::rules
