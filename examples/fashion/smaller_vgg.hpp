// SmallerVGGNet, the network of the Keras multi-label fashion tutorial, as a tnet type.
//
// Three convolution blocks (32, 64 x2, 128 x2 filters; Conv -> ReLU -> BatchNorm, then pooling
// and dropout), then Dense 1024 -> ReLU -> BatchNorm -> Dropout 0.5 -> Dense(labels) -> Sigmoid.
// With 6 labels and 96x96x3 inputs: 8,679,302 parameters, 2,880 of them non-trainable.
#pragma once

#include <tnet/tnet.hpp>

namespace fashion {

template <int Labels, int Size = 96>
using SmallerVGGNet = tnet::Sequential<tnet::Input<Size, Size, 3>,
    tnet::Conv2D<32, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<3>, tnet::Dropout<0.25f>,
    tnet::Conv2D<64, 3>, tnet::ReLU, tnet::BatchNorm,
    tnet::Conv2D<64, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>,
    tnet::Conv2D<128, 3>, tnet::ReLU, tnet::BatchNorm,
    tnet::Conv2D<128, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>,
    tnet::Flatten, tnet::Dense<1024>, tnet::ReLU, tnet::BatchNorm, tnet::Dropout<0.5f>,
    tnet::Dense<Labels>, tnet::Sigmoid>;

}  // namespace fashion
