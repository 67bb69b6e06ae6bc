// tnet/models/mobilenet.hpp: torchvision's MobileNetV2 as a tnet type.
//
//   tnet::models::MobileNetV2<96, 96, 3> net(tnet::Outputs{6}, seed);            // logits, as torchvision's
//   tnet::models::MobileNetV2<96, 96, 3, tnet::dynamic, tnet::Sigmoid> tagger(...); // with a head
//
// torchvision.models.mobilenet_v2(num_classes=N) (width 1.0) layer for layer: a 3x3 stride 2
// convolution padded 1 to 32 channels, batch norm, ReLU6; seventeen inverted residual blocks;
// a 1x1 convolution to 1280 channels, batch norm, ReLU6; global average pooling, dropout 0.2 and
// a Dense (PyTorch's Linear). An inverted residual block expands its input t-fold with a 1x1
// convolution (batch norm, ReLU6; none in the first block, t = 1), filters it with a 3x3
// depthwise convolution padded 1 at the block's stride (batch norm, ReLU6), and projects it with
// a 1x1 convolution and a batch norm, linear; where the stride is 1 and the channels stay the
// same, the block's input is added (InvertedResidual below). The stages (t, channels, blocks,
// first stride): (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
// (6, 160, 3, 2), (6, 320, 1, 1). The batch norms are PyTorch's (models::TorchBatchNorm); the
// convolutions' biases are zero when read from PyTorch's export (model/onnx.hpp). Outputs and
// Head as for ResNet18 (models/resnet.hpp).
#pragma once

#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/depthwise_conv2d.hpp"
#include "../layers/dropout.hpp"
#include "../layers/global_average_pool.hpp"
#include "../layers/residual.hpp"
#include "../model/sequential.hpp"
#include "resnet.hpp"

namespace tnet::models {

/// A 1x1 convolution, as torchvision's (no padding).
template <int Filters>
using Pointwise = Conv2D<Filters, 1, 1, Padding::valid>;

/// An inverted residual block of stride 1 whose input and output have the same channels:
/// expand to Expanded channels, depthwise 3x3, project back, plus the input.
template <int Expanded, int Channels>
using InvertedResidual = Residual<Pointwise<Expanded>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 1, pad(1)>, TorchBatchNorm, ReLU6,
                                  Pointwise<Channels>, TorchBatchNorm>;

// clang-format off
/// torchvision's mobilenet_v2 for H x W x C inputs and Outputs outputs (tnet::dynamic: the
/// constructor's Outputs{n}), Head... after its Linear. The blocks without a shortcut (the first
/// of each stage) are written out, three layers of three each.
template <int H, int W, int C, int Outputs = dynamic, class... Head>
using MobileNetV2 = Sequential<Input<H, W, C>,
    Conv2D<32, 3, 2, pad(1)>, TorchBatchNorm, ReLU6,
    // (1, 16, 1, 1): no expansion
    DepthwiseConv2D<3, 1, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<16>, TorchBatchNorm,
    // (6, 24, 2, 2)
    Pointwise<96>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 2, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<24>, TorchBatchNorm,
    InvertedResidual<144, 24>,
    // (6, 32, 3, 2)
    Pointwise<144>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 2, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<32>, TorchBatchNorm,
    InvertedResidual<192, 32>, InvertedResidual<192, 32>,
    // (6, 64, 4, 2)
    Pointwise<192>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 2, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<64>, TorchBatchNorm,
    InvertedResidual<384, 64>, InvertedResidual<384, 64>, InvertedResidual<384, 64>,
    // (6, 96, 3, 1)
    Pointwise<384>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 1, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<96>, TorchBatchNorm,
    InvertedResidual<576, 96>, InvertedResidual<576, 96>,
    // (6, 160, 3, 2)
    Pointwise<576>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 2, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<160>, TorchBatchNorm,
    InvertedResidual<960, 160>, InvertedResidual<960, 160>,
    // (6, 320, 1, 1)
    Pointwise<960>, TorchBatchNorm, ReLU6, DepthwiseConv2D<3, 1, pad(1)>, TorchBatchNorm, ReLU6, Pointwise<320>, TorchBatchNorm,
    Pointwise<1280>, TorchBatchNorm, ReLU6,
    GlobalAveragePooling2D, Dropout<0.2f>, Dense<Outputs>, Head...>;
// clang-format on

}  // namespace tnet::models
