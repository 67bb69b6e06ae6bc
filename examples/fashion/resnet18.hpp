// ResNet18 (He et al. 2015, torchvision's resnet18) as a tnet type, with the fashion programs'
// head: the run-time label count and a Sigmoid for multi-label training.
//
// A 7x7 stride-2 stem and a 3x3 stride-2 max pool, four stages of two basic blocks (64, 128, 256,
// 512 filters; the first block of each later stage halves the size, its shortcut a 1x1 stride-2
// projection), global average pooling, then Dense(labels) -> Sigmoid. With 96x96 inputs the
// stages are 24, 12, 6 and 3 pixels wide.
#pragma once

#include <tnet/tnet.hpp>

namespace fashion {

namespace resnet {
// Two 3x3 convolutions with an identity shortcut, then ReLU.
template <int F>
using Basic =
    tnet::Residual<tnet::Conv2D<F, 3, 1, tnet::pad(1)>, tnet::BatchNorm, tnet::ReLU, tnet::Conv2D<F, 3, 1, tnet::pad(1)>, tnet::BatchNorm>;
// The first block of a stage that halves the size: stride 2, and a projected shortcut.
template <int F>
using Down = tnet::Residual<tnet::Conv2D<F, 3, 2, tnet::pad(1)>, tnet::BatchNorm, tnet::ReLU, tnet::Conv2D<F, 3, 1, tnet::pad(1)>,
                            tnet::BatchNorm, tnet::Shortcut<tnet::Conv2D<F, 1, 2, tnet::Padding::valid>, tnet::BatchNorm>>;
}  // namespace resnet

// clang-format off
template <int Size = 96>
using ResNet18 = tnet::Sequential<tnet::Input<Size, Size, 3>,
    tnet::Conv2D<64, 7, 2, tnet::pad(3)>, tnet::BatchNorm, tnet::ReLU, tnet::MaxPool2D<3, 2, tnet::pad(1)>,
    resnet::Basic<64>, tnet::ReLU, resnet::Basic<64>, tnet::ReLU,
    resnet::Down<128>, tnet::ReLU, resnet::Basic<128>, tnet::ReLU,
    resnet::Down<256>, tnet::ReLU, resnet::Basic<256>, tnet::ReLU,
    resnet::Down<512>, tnet::ReLU, resnet::Basic<512>, tnet::ReLU,
    tnet::GlobalAveragePooling2D, tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
// clang-format on

}  // namespace fashion
