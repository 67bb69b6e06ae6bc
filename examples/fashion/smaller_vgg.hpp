// SmallerVGGNet, the network of the Keras multi-label fashion tutorial, as a tnet type.
//
// Three convolution blocks (32, 64 x2, 128 x2 filters; Conv -> ReLU -> BatchNorm, then pooling
// and dropout), then Dense 1024 -> ReLU -> BatchNorm -> Dropout 0.5 -> Dense(labels) -> Sigmoid.
// The label count is the run-time width: SmallerVGGNet<96> net(tnet::Outputs{labels}, seed).
// With 6 labels and 96x96x3 inputs: 8,679,302 parameters, 2,880 of them non-trainable.
#pragma once

#include <tnet/tnet.hpp>

namespace fashion {

// clang-format off
template <int Size = 96>
using SmallerVGGNet = tnet::Sequential<tnet::Input<Size, Size, 3>,
    tnet::Conv2D<32, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<3>, tnet::Dropout<0.25f>,
    tnet::Conv2D<64, 3>, tnet::ReLU, tnet::BatchNorm,
    tnet::Conv2D<64, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>,
    tnet::Conv2D<128, 3>, tnet::ReLU, tnet::BatchNorm,
    tnet::Conv2D<128, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>,
    tnet::Flatten, tnet::Dense<1024>, tnet::ReLU, tnet::BatchNorm, tnet::Dropout<0.5f>,
    tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
// clang-format on

}  // namespace fashion
