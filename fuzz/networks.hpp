// The networks the fuzz targets read files into, and make_seeds writes its seeds from: the
// tutorial's shape of chain, one with the graph layers (residual blocks with identity and
// projection shortcuts, depthwise convolution, ReLU6, global average pooling), and a small Keras
// network's.
#pragma once

#include <tnet/tnet.hpp>

namespace fuzz {
using Net = tnet::Sequential<tnet::Input<4, 4, 2>, tnet::Conv2D<3, 3>, tnet::ReLU, tnet::BatchNorm, tnet::Flatten,
                             tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
using Graph =
    tnet::Sequential<tnet::Input<6, 6, 2>, tnet::Conv2D<4, 3>, tnet::BatchNorm, tnet::ReLU6,
                     tnet::Residual<tnet::DepthwiseConv2D<3>, tnet::BatchNorm, tnet::ReLU, tnet::Conv2D<4, 1>, tnet::BatchNorm>, tnet::ReLU,
                     tnet::Residual<tnet::Conv2D<6, 3, 2, tnet::pad(1)>, tnet::BatchNorm,
                                    tnet::Shortcut<tnet::Conv2D<6, 1, 2, tnet::Padding::valid>, tnet::BatchNorm>>,
                     tnet::GlobalAveragePooling2D, tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
// The shape of tests/fixtures/keras_small.onnx and keras3_small.onnx (Keras's exports, seeds of
// fuzz_onnx): NHWC with Transposes, batch norms as Mul and Add, a Flatten's shape computed.
using Keras = tnet::Sequential<tnet::Input<12, 12, 3>, tnet::Conv2D<4, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<3>,
                               tnet::Conv2D<5, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Flatten, tnet::Dense<6>,
                               tnet::ReLU, tnet::BatchNorm, tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
}  // namespace fuzz
