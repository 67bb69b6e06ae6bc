// tnet/model/rules/fold_epilogue.hpp: inference folds the clamp and the per-channel affine map
// after a layer into that layer's output as it is written.
//
//   Conv2D | DepthwiseConv2D | Dense | Residual (| BatchNorm, where no layer before folds it),
//   then ReLU or ReLU6 and/or BatchNorm, in either order: one pass that writes bias, affine and
//   clamp (core/gemm_kernels.hpp: Epilogue).
//
// Capabilities read: takes_epilogue, is_clamp, folds_as_affine (layers/layer.hpp). The affine is
// the batch normalisation's moving statistics folded in double (BatchNorm::inference_affine), so
// the result differs from the layers one by one by rounding only (tests/test_rules.cpp).
#pragma once

#include <cstddef>
#include <string_view>

#include "../../core/config.hpp"
#include "../../layers/layer.hpp"

namespace tnet::rules {

namespace detail {
// How many of the layers from I on are a clamp or an affine, each at most once: 0 to 2.
template <class Layout, std::size_t I, bool Clamp = false, bool Affine = false>
constexpr std::size_t epilogue_followers() {
  if constexpr (I >= Layout::depth) {
    return 0;
  } else {
    using L = typename Layout::template layer_type<I>;
    if constexpr (!Clamp && is_clamp<L>) return 1 + epilogue_followers<Layout, I + 1, true, Affine>();
    else if constexpr (!Affine && folds_as_affine<L>) return 1 + epilogue_followers<Layout, I + 1, Clamp, true>();
    else return 0;
  }
}

// The epilogue of layers [I + 1, I + 1 + K): the clamp's bound, the affine (computed into the
// chain's scratch from float `offset` on), and their order.
template <std::size_t I, std::size_t K, class Chain>
Epilogue folded_epilogue(Chain& chain, std::size_t offset = 0) {
  Epilogue epilogue;
  [&]<std::size_t... J>(std::index_sequence<J...>) {
    (
        [&] {
          constexpr std::size_t at = I + 1 + J;
          using L = typename Chain::template layer_type<at>;
          if constexpr (is_clamp<L>) {
            epilogue.relu = true;
            epilogue.relu_max = L::clamp_max;
          } else {
            const std::size_t channels = chain.template channels_of<at>();
            float* affine = chain.scratch(offset + 2 * channels) + offset;
            chain.template layer<at>().inference_affine(affine, affine + channels);
            epilogue.scale = affine, epilogue.shift = affine + channels;
            epilogue.affine_first = !epilogue.relu;
          }
        }(),
        ...);
  }(std::make_index_sequence<K>{});
  return epilogue;
}
}  // namespace detail

struct FoldEpilogue {
  static constexpr std::string_view name = "fold_epilogue";
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    if constexpr (!takes_epilogue<typename Layout::template layer_type<I>>) return 0;
    else if constexpr (constexpr std::size_t k = detail::epilogue_followers<Layout, I + 1>(); k > 0) return 1 + k;
    else return 0;
  }
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    const Epilogue epilogue = detail::folded_epilogue<I, N - 1>(chain);
    chain.template layer<I>().forward(chain.template input_of<I>(), chain.template output_buffer<I + N - 1>(), batch, pass, epilogue);
  }
};

}  // namespace tnet::rules
