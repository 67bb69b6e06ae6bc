// tnet/core/shape.hpp: compile-time activation shapes (one image, NHWC without the N).
#pragma once

#include <string>

namespace tnet {

/// A width chosen when the network is constructed rather than compiled: Dense<dynamic> maps its
/// features to as many outputs as the network is given (Sequential(Outputs{n})), so one compiled
/// network serves any label count.
inline constexpr int dynamic = -1;

/// The shape of one sample: height x width x channels, stored channels-last. A flat vector of n
/// features is Shape<1, 1, n>. The batch size is a run-time dimension, and so is the width of
/// Shape<1, 1, dynamic> below.
template <int H, int W, int C>
struct Shape {
  static_assert(H > 0 && W > 0 && C > 0, "tnet::Shape: every dimension must be positive");
  static constexpr int height = H;
  static constexpr int width = W;
  static constexpr int channels = C;
  static constexpr int size = H * W * C;
  static constexpr bool flat = (H == 1 && W == 1);
  static constexpr bool is_dynamic = false;

  /// Keras's notation, batch first: "(None, 96, 96, 3)" or "(None, 8192)".
  static std::string str(int = 0) {
    if constexpr (flat) return "(None, " + std::to_string(C) + ")";
    else return "(None, " + std::to_string(H) + ", " + std::to_string(W) + ", " + std::to_string(C) + ")";
  }
};

/// A flat vector whose length is the network's run-time width (the output of Dense<dynamic>). It
/// has no compile-time size or channel count, so only a layer written for it can take it: the
/// element-wise ReLU, Sigmoid, Softmax and Dropout, which learn their length when the network is
/// constructed.
template <>
struct Shape<1, 1, dynamic> {
  static constexpr int height = 1;
  static constexpr int width = 1;
  static constexpr bool flat = true;
  static constexpr bool is_dynamic = true;

  static std::string str(int features) { return "(None, " + std::to_string(features) + ")"; }
};

/// The network's input: `Sequential<Input<96, 96, 3>, ...>`.
template <int H, int W, int C>
struct Input : Shape<H, W, C> {
  static_assert(C != dynamic, "tnet::Input: the input's shape is fixed at compile time");
  using shape = Shape<H, W, C>;
};

template <class T>
inline constexpr bool is_shape_v = false;
template <int H, int W, int C>
inline constexpr bool is_shape_v<Shape<H, W, C>> = true;

/// Values per sample of shape S: S::size, or `width` for the run-time width.
template <class S>
constexpr int sample_size(int width) {
  if constexpr (S::is_dynamic) return width;
  else return S::size;
}

}  // namespace tnet
