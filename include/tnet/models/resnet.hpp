// tnet/models/resnet.hpp: torchvision's ResNet18 as a tnet type.
//
//   tnet::models::ResNet18<96, 96, 3> net(tnet::Outputs{6}, seed);            // logits, as torchvision's
//   tnet::models::ResNet18<96, 96, 3, tnet::dynamic, tnet::Sigmoid> tagger(...); // with a head
//
// torchvision.models.resnet18(num_classes=N) layer for layer: the stem (7x7 stride 2 convolution
// padded 3, batch norm, ReLU, 3x3 stride 2 max pool padded 1), four stages of two BasicBlocks
// (64, 128, 256, 512 filters; the first block of stages 2-4 has stride 2 and a projection
// shortcut, a 1x1 stride 2 convolution and a batch norm), global average pooling and a Dense
// (PyTorch's Linear). The batch norms are PyTorch's (epsilon 1e-5, momentum 0.1, in Keras's terms
// 0.9). PyTorch's convolutions before a batch norm have no bias: tnet's have one, zero when read
// from PyTorch's export (model/onnx.hpp). The input size is free (torchvision's is 224; 96 for
// the fashion example); the output width is the run-time width unless Outputs is given, and Head
// is what follows the Dense (an activation, or nothing for logits).
#pragma once

#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/global_average_pool.hpp"
#include "../layers/max_pool.hpp"
#include "../layers/residual.hpp"
#include "../model/sequential.hpp"

namespace tnet::models {

/// PyTorch's BatchNorm2d: epsilon 1e-5, running statistics updated with momentum 0.1 (0.9 in the
/// Keras terms tnet's BatchNormWith takes).
using TorchBatchNorm = BatchNormWith<0.9f, 1e-5f>;

/// torchvision's BasicBlock: two 3x3 convolutions padded 1, each followed by a batch norm, the
/// first by a ReLU; the identity shortcut. (The ReLU after the sum follows the block.)
template <int Filters>
using BasicBlock = Residual<Conv2D<Filters, 3, 1, pad(1)>, TorchBatchNorm, ReLU, Conv2D<Filters, 3, 1, pad(1)>, TorchBatchNorm>;

/// The first block of ResNet's stages 2-4: the first convolution at stride 2, and the projection
/// shortcut (torchvision's downsample: a 1x1 stride 2 convolution and a batch norm).
template <int Filters>
using DownsamplingBlock = Residual<Conv2D<Filters, 3, 2, pad(1)>, TorchBatchNorm, ReLU, Conv2D<Filters, 3, 1, pad(1)>, TorchBatchNorm,
                                   Shortcut<Conv2D<Filters, 1, 2, Padding::valid>, TorchBatchNorm>>;

// clang-format off
/// torchvision's resnet18 for H x W x C inputs and Outputs outputs (tnet::dynamic: the
/// constructor's Outputs{n}), Head... after its Linear.
template <int H, int W, int C, int Outputs = dynamic, class... Head>
using ResNet18 = Sequential<Input<H, W, C>,
    Conv2D<64, 7, 2, pad(3)>, TorchBatchNorm, ReLU, MaxPool2D<3, 2, pad(1)>,
    BasicBlock<64>, ReLU, BasicBlock<64>, ReLU,
    DownsamplingBlock<128>, ReLU, BasicBlock<128>, ReLU,
    DownsamplingBlock<256>, ReLU, BasicBlock<256>, ReLU,
    DownsamplingBlock<512>, ReLU, BasicBlock<512>, ReLU,
    GlobalAveragePooling2D, Dense<Outputs>, Head...>;
// clang-format on

}  // namespace tnet::models
