// torchvision's ResNet18 and MobileNetV2 as tnet types (include/tnet/models): their shapes and
// sizes are torchvision's; imported from PyTorch's ONNX export they give PyTorch's outputs
// (tests/onnx/run.sh, step torchvision).
#include <doctest/doctest.h>

#include <memory>

#include "tnet/tnet.hpp"

using namespace tnet;

namespace {
using ResNet = models::ResNet18<96, 96, 3>;
using Mobile = models::MobileNetV2<96, 96, 3>;
}  // namespace

TEST_CASE("ResNet18 and MobileNetV2 have torchvision's shapes and parameter counts") {
  static_assert(std::is_same_v<ResNet::layer_type<3>::output_shape, Shape<24, 24, 64>>);  // stem and max pool
  static_assert(std::is_same_v<ResNet::layer_type<19>::output_shape, Shape<3, 3, 512>>);  // stage 4
  static_assert(std::is_same_v<Mobile::output_shape, Shape<1, 1, dynamic>>);
  auto resnet = std::make_unique<ResNet>(Outputs{6}, 1);
  auto mobile = std::make_unique<Mobile>(Outputs{6}, 1);
  // torchvision's resnet18(num_classes=6) has 11,179,590 parameters and 9,600 running statistics;
  // tnet's convolutions have a bias each (4,800 values in ResNet18, 17,056 in MobileNetV2).
  CHECK(resnet->trainable_count() == 11179590 + 4800);
  CHECK(resnet->non_trainable_count() == 9600);
  CHECK(mobile->trainable_count() == 2231558 + 17056);
  CHECK(mobile->non_trainable_count() == 34112);
}
