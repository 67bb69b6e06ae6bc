// tnet/core/shape.hpp: compile-time activation shapes (one image, NHWC without the N).
#pragma once

#include <string>

namespace tnet {

/// The shape of one sample: height x width x channels, stored channels-last. A flat vector of n
/// features is Shape<1, 1, n>. The batch size is the only run-time dimension.
template <int H, int W, int C>
struct Shape {
  static_assert(H > 0 && W > 0 && C > 0, "tnet::Shape: every dimension must be positive");
  static constexpr int height = H;
  static constexpr int width = W;
  static constexpr int channels = C;
  static constexpr int size = H * W * C;
  static constexpr bool flat = (H == 1 && W == 1);

  /// Keras's notation, batch first: "(None, 96, 96, 3)" or "(None, 8192)".
  static std::string str() {
    if constexpr (flat) return "(None, " + std::to_string(C) + ")";
    else return "(None, " + std::to_string(H) + ", " + std::to_string(W) + ", " + std::to_string(C) + ")";
  }
};

/// The network's input: `Sequential<Input<96, 96, 3>, ...>`.
template <int H, int W, int C>
struct Input : Shape<H, W, C> {
  using shape = Shape<H, W, C>;
};

template <class T>
inline constexpr bool is_shape_v = false;
template <int H, int W, int C>
inline constexpr bool is_shape_v<Shape<H, W, C>> = true;

}  // namespace tnet
