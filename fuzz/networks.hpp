// The networks the fuzz targets read files into, and make_seeds writes its seeds from: the
// tutorial's shape of chain, and one with the graph layers (residual blocks with identity and
// projection shortcuts, depthwise convolution, ReLU6, global average pooling).
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
}  // namespace fuzz
