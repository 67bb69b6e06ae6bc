// tnet/model/rules/normalise_then_pool.hpp: training runs a batch normalisation and the max pool
// after it as one, so that the normalisation's output, and the gradient the pool passes back to
// it, are never written.
//
//   BatchNorm, MaxPool2D (windows not overlapping): the normalisation's statistics, then the pool
//   of the normalisation of x, read as it goes (forward_mapped). Where the pool's windows tile x,
//   the pool chooses as the statistics are summed, in one pass over x (select), and only what it
//   chose is normalised (forward_selected): the input the map makes largest, which is the
//   largest x where gamma > 0, the smallest where gamma < 0. Backward is the normalisation's from
//   the pool's choices (backward_at), which can also apply a ReLU's gradient before it.
//
// Capabilities read: maps_per_channel, pools_through, selects_through (layers/layer.hpp). The
// same as the layers one by one but where the normalisation rounds different inputs of a window
// to one value (tests/test_model.cpp, tests/test_rules.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "../../core/config.hpp"
#include "../../layers/layer.hpp"

namespace tnet::rules {

struct NormaliseThenPool {
  static constexpr std::string_view name = "normalise_then_pool";
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    if constexpr (I + 1 >= Layout::depth) return 0;
    else return pools_through<typename Layout::template layer_type<I>, typename Layout::template layer_type<I + 1>> ? 2 : 0;
  }
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    using Map = typename Chain::template layer_type<I>;
    using Pool = typename Chain::template layer_type<I + 1>;
    auto& map = chain.template layer<I>();
    auto& pool = chain.template layer<I + 1>();
    const float* x = chain.template input_of<I>();
    float* y = chain.template output_buffer<I + 1>();
    if constexpr (selects_through<Map, Pool>) {
      constexpr int C = Map::output_shape::channels;
      std::array<float, C> direction;  // of the map in each channel: the sign of its gamma
      const auto m = map.normalisation();
      for (int c = 0; c < C; ++c) direction[c] = m.gamma[c] > 0.0f ? 1.0f : m.gamma[c] < 0.0f ? -1.0f : 0.0f;
      const double* shift = map.statistics_shift(x, batch, pass);
      double* sums = map.image_sums(batch);
      pool.select(x, batch, direction.data(), shift, sums);
      map.statistics_from(sums, batch);
      pool.forward_selected(y, batch, map.normalisation());
    } else {
      map.statistics(x, batch, pass);
      pool.forward_mapped(x, y, batch, pass, map.normalisation());
    }
  }
  template <class Layout, std::size_t I, std::size_t N>
  static constexpr bool masks_input = true;
  template <std::size_t I, std::size_t N, bool MaskInput, class Chain>
  static void backward(Chain& chain, const float* dy, float* dx) {
    using Pool = typename Chain::template layer_type<I + 1>;
    const auto& pool = chain.template layer<I + 1>();
    chain.template layer<I>().backward_at(chain.template input_of<I>(), pool.argmax(), pool.chosen_inputs(), Pool::output_shape::size, dy,
                                          dx, chain.batch(), MaskInput);
  }
};

}  // namespace tnet::rules
