// The networks whose ONNX exports consumers tnet did not write must run as tnet does
// (tests/onnx/run.sh, step networks): one line each in for_each_network below. Their weights and
// batch-norm statistics are random and away from the defaults, so that a consumer that ignores
// one of them shows.
#pragma once

#include <string>

#include "tnet/tnet.hpp"

namespace onnx_networks {

using namespace tnet;

// Residual blocks, identity and projection, after a stem; flattened into a dense head.
using ResidualNet =
    Sequential<Input<12, 10, 3>, Conv2D<8, 3>, BatchNorm, ReLU, Residual<Conv2D<8, 3>, BatchNorm, ReLU, Conv2D<8, 3>, BatchNorm>, ReLU,
               Residual<Conv2D<16, 3, 2>, BatchNorm, ReLU, Conv2D<16, 3>, BatchNorm, Shortcut<Conv2D<16, 1, 2, Padding::valid>, BatchNorm>>,
               ReLU, Flatten, Dense<5>, Sigmoid>;

/// Calls f.template operator()<Net>(name) for each network.
template <class F>
void for_each_network(F&& f) {
  f.template operator()<ResidualNet>("residual");
}

/// Random weights and statistics from `seed`: gamma in [0.5, 1.5], beta, moving means in
/// [-0.3, 0.3], moving variances in [0.5, 1.5].
template <class Net>
void randomise(Net& net, std::uint64_t seed) {
  const Rng rng(seed);
  std::uint64_t at = 0;
  for (const ParamRef& p : net.parameters()) {
    const bool gamma = p.name.ends_with(".gamma");
    for (std::size_t i = 0; i < p.size; ++i) {
      if (gamma) p.value[i] = 1.0f + rng.symmetric(at++, 0.5f);
      else if (p.name.ends_with(".beta") || p.name.ends_with(".bias")) p.value[i] = rng.symmetric(at++, 0.3f);
    }
  }
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) {
      for (float& v : span) {
        if (name.ends_with("moving_mean") || name.ends_with("biased_mean")) v = rng.symmetric(at++, 0.3f);
        else if (name.ends_with("moving_variance") || name.ends_with("biased_variance")) v = 1.0f + rng.symmetric(at++, 0.5f);
      }
    }
  });
}

}  // namespace onnx_networks
