// MobileNetV2 (Sandler et al. 2018, torchvision's mobilenet_v2, width 1.0) as a tnet type, with
// the fashion programs' head: the run-time label count and a Sigmoid for multi-label training.
//
// A 3x3 stride-2 stem (32 filters), seventeen inverted residual blocks (a 1x1 expansion by 6,
// but for the first block, a 3x3 depthwise convolution, a linear 1x1 projection; an identity
// shortcut where the block keeps the shape), a 1x1 convolution to 1280 channels, global average
// pooling, then Dropout 0.2 -> Dense(labels) -> Sigmoid. With 96x96 inputs the stages are 48, 24,
// 12, 6 and 3 pixels wide.
#pragma once

#include <tnet/tnet.hpp>

namespace fashion {

namespace mobilenet {
template <int F>
using Pointwise = tnet::Conv2D<F, 1, 1, tnet::Padding::valid>;
template <int S>
using Depthwise = tnet::DepthwiseConv2D<3, S, tnet::pad(1)>;
// An inverted residual block that keeps the shape, C channels in and out: expansion by 6,
// depthwise, projection, and the identity shortcut.
template <int C>
using Block = tnet::Residual<Pointwise<6 * C>, tnet::BatchNorm, tnet::ReLU6, Depthwise<1>, tnet::BatchNorm, tnet::ReLU6, Pointwise<C>,
                             tnet::BatchNorm>;
}  // namespace mobilenet

// The blocks that change the shape have no shortcut; their layers are written out: expansion to
// E channels, depthwise with stride S, projection to F.
// clang-format off
template <int Size = 96>
using MobileNetV2 = tnet::Sequential<tnet::Input<Size, Size, 3>,
    tnet::Conv2D<32, 3, 2, tnet::pad(1)>, tnet::BatchNorm, tnet::ReLU6,
    mobilenet::Depthwise<1>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Pointwise<16>, tnet::BatchNorm,
    mobilenet::Pointwise<96>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<2>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<24>, tnet::BatchNorm,
    mobilenet::Block<24>,
    mobilenet::Pointwise<144>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<2>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<32>, tnet::BatchNorm,
    mobilenet::Block<32>, mobilenet::Block<32>,
    mobilenet::Pointwise<192>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<2>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<64>, tnet::BatchNorm,
    mobilenet::Block<64>, mobilenet::Block<64>, mobilenet::Block<64>,
    mobilenet::Pointwise<384>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<1>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<96>, tnet::BatchNorm,
    mobilenet::Block<96>, mobilenet::Block<96>,
    mobilenet::Pointwise<576>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<2>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<160>, tnet::BatchNorm,
    mobilenet::Block<160>, mobilenet::Block<160>,
    mobilenet::Pointwise<960>, tnet::BatchNorm, tnet::ReLU6, mobilenet::Depthwise<1>, tnet::BatchNorm, tnet::ReLU6,
        mobilenet::Pointwise<320>, tnet::BatchNorm,
    mobilenet::Pointwise<1280>, tnet::BatchNorm, tnet::ReLU6,
    tnet::GlobalAveragePooling2D, tnet::Dropout<0.2f>, tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
// clang-format on

}  // namespace fashion
