// The networks whose ONNX exports consumers tnet did not write must run as tnet does
// (tests/onnx/run.sh, step networks): one line each in for_each_network below. Their weights and
// batch-norm statistics are random and away from the defaults, so that a consumer that ignores
// one of them shows; their inputs are in [-2, 2).
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

// Every new activation, then global average pooling into a dense layer; and the same without
// ReLU6 for OpenCV 4.6, which reads Clip only with its bounds as attributes (opset 11 on has them
// as inputs).
using Activations = Sequential<Input<10, 9, 3>, Conv2D<8, 3>, SiLU, Conv2D<8, 3>, HardSwish, ReLU6, Conv2D<8, 3>, LeakyReLU<0.1f>,
                               GlobalAveragePooling2D, Dense<5>>;
using ActivationsNoClip = Sequential<Input<10, 9, 3>, Conv2D<8, 3>, SiLU, Conv2D<8, 3>, HardSwish, Conv2D<8, 3>, LeakyReLU<0.1f>,
                                     GlobalAveragePooling2D, Dense<5>>;

// PyTorch's and Keras's paddings, depthwise convolutions with multiplier 1 and 2, both kinds of
// average pooling (count_include_pad 1 and 0), MobileNetV2's and ResNet18's strides.
using Mobile =
    Sequential<Input<33, 32, 3>, Conv2D<16, 7, 2, pad(3)>, BatchNorm, ReLU, MaxPool2D<3, 2, pad(1)>, DepthwiseConv2D<3, 1, pad(1)>,
               BatchNorm, ReLU, Conv2D<16, 3, 2, pad(1)>, DepthwiseConv2D<3, 2, Padding::same, 2>, BatchNorm, ReLU,
               AveragePooling2D<3, 2, pad(1)>, AveragePooling2D<2, 1, Padding::same>, Flatten, Dense<5>, Softmax>;

// torchvision's resnet18 and mobilenet_v2 with 6 outputs (include/tnet/models); onnx_check
// torchvision loads PyTorch's exports of them into the same types.
using ResNet18 = models::ResNet18<96, 96, 3, 6>;
using MobileNetV2 = models::MobileNetV2<96, 96, 3, 6>;

struct Options {
  float kernel_scale = 1.0f;  // convolution kernels times this: every piece of every activation reached
  bool opencv = true;         // OpenCV 4.6's DNN reads it
};

/// Calls f.template operator()<Net>(name, options) for each network.
template <class F>
void for_each_network(F&& f) {
  f.template operator()<ResidualNet>("residual", Options{});
  f.template operator()<Activations>("activations", Options{.kernel_scale = 3.0f, .opencv = false});
  f.template operator()<ActivationsNoClip>("activations_no_clip", Options{.kernel_scale = 3.0f});
  f.template operator()<Mobile>("mobile", Options{});
  f.template operator()<ResNet18>("resnet18", Options{});
  f.template operator()<MobileNetV2>("mobilenet_v2", Options{.opencv = false});
}

/// Random weights and statistics from `seed`: gamma in [0.5, 1.5], beta, biases and moving means
/// in [-0.3, 0.3], moving variances in [0.5, 1.5], convolution kernels scaled.
template <class Net>
void randomise(Net& net, std::uint64_t seed, const Options& options) {
  const Rng rng(seed);
  std::uint64_t at = 0;
  for (const ParamRef& p : net.parameters()) {
    const bool gamma = p.name.ends_with(".gamma"), kernel = p.name.ends_with("conv2d.kernel");
    for (std::size_t i = 0; i < p.size; ++i) {
      if (gamma) p.value[i] = 1.0f + rng.symmetric(at++, 0.5f);
      else if (kernel) p.value[i] *= options.kernel_scale;
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
