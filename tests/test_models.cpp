// torchvision's ResNet18 and MobileNetV2 as tnet types (include/tnet/models): their shapes and
// sizes are torchvision's; PyTorch's exports of their blocks (tests/fixtures/blocks_*.onnx, from
// make_torch_blocks_fixtures.py) import and give PyTorch's outputs. The whole networks, exported
// at test time, are tests/onnx/run.sh's step torchvision.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
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

namespace {
using TorchBN = models::TorchBatchNorm;
// tests/fixtures/make_torch_blocks_fixtures.py's network: a stem, torchvision's BasicBlock at
// stride 2 with its projection, MobileNetV2's inverted residual, pooling and a Linear.
using Blocks = Sequential<Input<12, 12, 3>, Conv2D<8, 3, 1, pad(1)>, TorchBN, ReLU,
                          Residual<Conv2D<16, 3, 2, pad(1)>, TorchBN, ReLU, Conv2D<16, 3, 1, pad(1)>, TorchBN,
                                   Shortcut<Conv2D<16, 1, 2, Padding::valid>, TorchBN>>,
                          ReLU, models::InvertedResidual<32, 16>, GlobalAveragePooling2D, Dropout<0.2f>, Dense<4>>;
// The same without the inverted residual block.
using NoInverted = Sequential<Input<12, 12, 3>, Conv2D<8, 3, 1, pad(1)>, TorchBN, ReLU,
                              Residual<Conv2D<16, 3, 2, pad(1)>, TorchBN, ReLU, Conv2D<16, 3, 1, pad(1)>, TorchBN,
                                       Shortcut<Conv2D<16, 1, 2, Padding::valid>, TorchBN>>,
                              ReLU, GlobalAveragePooling2D, Dropout<0.2f>, Dense<4>>;
// The block's paths the other way round: a body of the 1x1 convolution, a shortcut of the two
// 3x3: the same function (the Add does not care which path is which).
using Swapped = Sequential<Input<12, 12, 3>, Conv2D<8, 3, 1, pad(1)>, TorchBN, ReLU,
                           Residual<Conv2D<16, 1, 2, Padding::valid>, TorchBN,
                                    Shortcut<Conv2D<16, 3, 2, pad(1)>, TorchBN, ReLU, Conv2D<16, 3, 1, pad(1)>, TorchBN>>,
                           ReLU, models::InvertedResidual<32, 16>, GlobalAveragePooling2D, Dropout<0.2f>, Dense<4>>;
// A projection of 3x3, not PyTorch's 1x1.
using WrongShortcut = Sequential<
    Input<12, 12, 3>, Conv2D<8, 3, 1, pad(1)>, TorchBN, ReLU,
    Residual<Conv2D<16, 3, 2, pad(1)>, TorchBN, ReLU, Conv2D<16, 3, 1, pad(1)>, TorchBN, Shortcut<Conv2D<16, 3, 2, pad(1)>, TorchBN>>, ReLU,
    models::InvertedResidual<32, 16>, GlobalAveragePooling2D, Dropout<0.2f>, Dense<4>>;

// Appended in place: GCC 12's -Warray-bounds misreads `std::string(...) + "/" + name` here.
std::string fixture(const std::string& name) {
  std::string path = TNET_FIXTURE_DIR;
  path += '/';
  return path += name;
}

template <class Net>
double largest_difference(Net& net) {
  static const test::Fixture fixtures("torch_blocks.txt");
  const Buffer x = fixtures.floats("blocks.x");
  const std::vector<double>& expected = fixtures["blocks.y"];
  const int batch = 2;
  REQUIRE(x.size() == std::size_t(batch) * Net::input_size);
  const auto y = net.predict(x, batch);
  REQUIRE(y.size() == expected.size());
  double largest = 0;
  for (std::size_t i = 0; i < y.size(); ++i) largest = std::max(largest, std::abs(double(y[i]) - expected[i]));
  return largest;
}

template <class Net>
std::string refusal(const std::string& path, Net& net) {
  try {
    load_onnx(path, net);
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("ONNX: PyTorch's exports of ResNet's and MobileNetV2's blocks, folded or not, in either order, give its outputs") {
  // blocks_folded: each BatchNormalization folded into the Conv before it (a Conv with a bias);
  // blocks_unfolded: kept; blocks_shortcut_first: the projection's nodes before the body's and
  // the Add's inputs the other way round; blocks_external: the weights in a file beside the
  // model; blocks_reduce_mean: the pooling a ReduceMean over axes given as an input (opset 18);
  // blocks_dynamo: torch 2's default export (opset 18, external data, ReduceMean, a Reshape).
  for (const char* file : {"blocks_folded.onnx", "blocks_unfolded.onnx", "blocks_shortcut_first.onnx", "blocks_external.onnx",
                           "blocks_reduce_mean.onnx", "blocks_dynamo.onnx"}) {
    CAPTURE(file);
    auto net = std::make_unique<Blocks>(1);
    load_onnx(fixture(file), *net);
    const double largest = largest_difference(*net);
    INFO("largest difference ", largest);
    CHECK(largest < 1e-5);
  }
  // Read into a block whose body is PyTorch's shortcut and whose shortcut is its body.
  for (const char* file : {"blocks_folded.onnx", "blocks_shortcut_first.onnx"}) {
    CAPTURE(file);
    auto swapped = std::make_unique<Swapped>(1);
    load_onnx(fixture(file), *swapped);
    CHECK(largest_difference(*swapped) < 1e-5);
  }
}

TEST_CASE("ONNX: a batch norm folded into the convolution before it reads as the identity, exactly") {
  auto net = std::make_unique<Blocks>(1);
  load_onnx(fixture("blocks_folded.onnx"), *net);
  std::map<std::string, std::vector<float>> state;
  net->visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) state[name].assign(span.begin(), span.end());
  });
  for (const ParamRef& p : net->parameters())
    if (p.name.find("batchnorm") != std::string::npos)
      for (std::size_t i = 0; i < p.size; ++i) CHECK(p.value[i] == (p.name.ends_with(".gamma") ? 1.0f : 0.0f));
  int norms = 0;
  for (const auto& [name, values] : state) {
    if (!name.ends_with(".moving_variance")) continue;
    ++norms;
    for (const float v : values) CHECK(1.0f / std::sqrt(v + 1e-5f) == 1.0f);
  }
  CHECK(norms == 7);
  // The unfolded export keeps PyTorch's statistics.
  auto unfolded = std::make_unique<Blocks>(1);
  load_onnx(fixture("blocks_unfolded.onnx"), *unfolded);
  std::vector<float> variance;
  unfolded->visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>)
      if (name == "1.batchnorm.moving_variance") variance.assign(span.begin(), span.end());
  });
  REQUIRE(variance.size() == 8);
  CHECK(std::ranges::none_of(variance, [](float v) { return std::abs(v + 1e-5f - 1.0f) < 1e-6f; }));
}

TEST_CASE("ONNX: PyTorch's export of blocks loaded into the wrong network is refused naming the node, the network unchanged") {
  auto net = std::make_unique<NoInverted>(3);
  const std::vector<float> before(net->parameters().values.begin(), net->parameters().values.end());
  const std::string why = refusal(fixture("blocks_folded.onnx"), *net);
  CHECK_MESSAGE(why.find("does not fit layer 5.globalaveragepooling2d: expected GlobalAveragePool or ReduceMean") != std::string::npos,
                why);
  CHECK_MESSAGE(why.find("ONNX node") != std::string::npos, why);
  CHECK(std::ranges::equal(before, net->parameters().values));
  // A projection that fits in neither order: the refusal is that of the order that read further
  // (body first for blocks_folded, where the body fits; for blocks_shortcut_first, whose first
  // node neither path's first layer takes, body first too).
  auto wrong = std::make_unique<WrongShortcut>(3);
  const std::string folded_why = refusal(fixture("blocks_folded.onnx"), *wrong);
  CHECK_MESSAGE(folded_why.find("downsample") != std::string::npos, folded_why);
  CHECK_MESSAGE(
      folded_why.find("does not fit layer 3.residual.shortcut.0.conv2d: kernel_shape is [1, 1], the layer's [3, 3]") != std::string::npos,
      folded_why);
  const std::string first_why = refusal(fixture("blocks_shortcut_first.onnx"), *wrong);
  CHECK_MESSAGE(first_why.find("does not fit layer 3.residual.0.conv2d: kernel_shape is [1, 1], the layer's [3, 3]") != std::string::npos,
                first_why);
}

TEST_CASE("ONNX: external data is read from beside the model only, and a missing or short data file is refused") {
  test::TempDir dir("external_data");
  std::string model;
  {
    std::ifstream in(fixture("blocks_external.onnx"), std::ios::binary);
    model.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string data_name = "blocks_external.onnx.data";
  auto write = [&](const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; };
  auto net = std::make_unique<Blocks>(3);
  const std::vector<float> before(net->parameters().values.begin(), net->parameters().values.end());
  // No data file beside the model.
  write(dir / "blocks_external.onnx", model);
  std::string why = refusal(dir / "blocks_external.onnx", *net);
  CHECK_MESSAGE(why.find("is stored outside the file: its data file cannot be read") != std::string::npos, why);
  CHECK_MESSAGE(why.find(data_name) != std::string::npos, why);
  // A data file too short for the tensors.
  std::string data;
  {
    std::ifstream in(fixture(data_name), std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  write(dir / data_name, data.substr(0, data.size() / 2));
  why = refusal(dir / "blocks_external.onnx", *net);
  CHECK_MESSAGE(why.find("are beyond the end of " + data_name) != std::string::npos, why);
  // A location outside the model's folder (the same length, so the file stays valid).
  std::string climbing = model;
  const std::string outside = "../" + data_name.substr(3);
  for (std::size_t at = climbing.find(data_name); at != std::string::npos; at = climbing.find(data_name, at))
    climbing.replace(at, data_name.size(), outside);
  write(dir / "climbing.onnx", climbing);
  why = refusal(dir / "climbing.onnx", *net);
  CHECK_MESSAGE(why.find("its location '" + outside + "' is not a file beside the model") != std::string::npos, why);
  CHECK(std::ranges::equal(before, net->parameters().values));
  // With the data file whole, it loads.
  write(dir / data_name, data);
  load_onnx(dir / "blocks_external.onnx", *net);
  CHECK(largest_difference(*net) < 1e-5);
}
