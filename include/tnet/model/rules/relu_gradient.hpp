// tnet/model/rules/relu_gradient.hpp: training applies a ReLU's gradient in the backward of the
// step after it, where that step can zero its input's gradient where its input is not positive
// (BatchNorm::backward_where_positive; normalise_then_pool): the ReLU's output is that input, so
// the two agree, and the ReLU's backward is skipped.
//
// A rule of the backward plan: it decides, between two steps, which one applies the gradient.
// Not for a ReLU that is the chain's first layer (its gradient is the caller's dx).
#pragma once

#include <cstddef>
#include <tuple>
#include <utility>

#include "../../layers/layer.hpp"

namespace tnet::rules {

/// Whether step S of the backward plan Steps applies the gradient of the ReLU that step S - 1 is.
template <class Layout, class Steps, std::size_t S>
constexpr bool applies_relu_gradient() {
  if constexpr (S == 0 || S >= std::tuple_size_v<Steps>) {
    return false;
  } else {
    using Before = std::tuple_element_t<S - 1, Steps>;
    using Here = std::tuple_element_t<S, Steps>;
    if constexpr (Before::length != 1 || Before::first == 0) return false;
    else if constexpr (!is_relu<typename Layout::template layer_type<Before::first>>) return false;
    else return Here::rule::template masks_input<Layout, Here::first, Here::length>;
  }
}

/// Whether the ReLU at layer I has its gradient applied by the step after it in Steps.
template <class Layout, class Steps, std::size_t I>
constexpr bool relu_gradient_applied_after() {
  return []<std::size_t... S>(std::index_sequence<S...>) {
    return (false || ... || (std::tuple_element_t<S, Steps>::first == I && applies_relu_gradient<Layout, Steps, S + 1>()));
  }(std::make_index_sequence<std::tuple_size_v<Steps>>{});
}

}  // namespace tnet::rules
