// onnx_check: the C++ side of the ONNX tests (tests/onnx/run.sh).
//   onnx_check inputs SIZE OUT.bin PHOTO...
//       writes the photos as fashion_classify feeds them to the network (read, resized to
//       SIZE x SIZE, the one pixel-to-input conversion): NHWC float32, one photo after another
//   onnx_check compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE
//       loads MODEL.onnx into SmallerVGGNet (its size and label count read from the file), runs it
//       on INPUTS.bin (NHWC float32) and exits 0 when every output is within TOLERANCE of
//       EXPECTED.bin (float32); prints the largest difference either way
//   onnx_check networks DIR
//       for each network of tests/onnx_networks.hpp, with random weights and statistics: writes
//       DIR/NAME.onnx (NHWC input) and DIR/NAME_nchw.onnx, DIR/NAME.input.bin (a batch, NHWC
//       float32) and DIR/NAME.expected.bin (tnet's outputs), and one line "NAME N H W C OUTPUTS
//       opencv|no-opencv" a network in DIR/networks.txt; and checks that each export loads back into a network of
//       the same type that gives the same outputs, bit for bit
//   onnx_check torchvision DIR
//       for each line "FILE NET BATCH OUTPUTS" of DIR/models.txt (tests/onnx/make_torchvision.py):
//       loads DIR/FILE into tnet::models::ResNet18<96, 96, 3, 6> (NET resnet18) or
//       MobileNetV2<96, 96, 3, 6> (mobilenet_v2), runs it on DIR/NET.input.bin and exits 0 when every output is within
//       1e-4 of DIR/NET.expected.bin, printing the largest difference; then checks that a ResNet18
//       export loaded into a ResNet missing a block is refused, naming the node, the network
//       unchanged, and that a few training steps on the imported ResNet18 lower its loss. Only
//       in a build with TNET_ONNX_CHECK_TORCHVISION=1 (CMake's TNET_FASHION_TORCHVISION, which
//       scripts/test.sh --full turns on), which the quick tier leaves off: training ResNet18
//       and a second ResNet type add about a tenth to onnx_check's compile time
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "fashion/smaller_vgg.hpp"
#include "onnx_networks.hpp"

namespace {

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<float> values(std::size_t(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  return values;
}

template <int Size>
int compare(const std::string& model, const std::vector<float>& inputs, const std::vector<float>& expected, double tolerance) {
  using Net = fashion::SmallerVGGNet<Size>;
  auto net = std::make_unique<Net>(tnet::Outputs{tnet::read_onnx_info(model).outputs}, 0);
  tnet::load_onnx(model, *net);
  const int batch = int(inputs.size() / Net::input_size);
  if (std::size_t(batch) * Net::input_size != inputs.size() || expected.size() != std::size_t(batch) * std::size_t(net->outputs()))
    throw std::runtime_error("the inputs and expected outputs do not fit the model");
  const std::span<const float> y = net->predict(inputs, batch);
  double largest = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) largest = std::max(largest, std::abs(double(y[i]) - double(expected[i])));
  std::printf("%s: %d inputs, %zu outputs, largest difference %.3g (tolerance %.3g)\n", model.c_str(), batch, expected.size(), largest,
              tolerance);
  return largest <= tolerance ? 0 : 1;
}

#if TNET_ONNX_CHECK_TORCHVISION
// torchvision's networks (tests/onnx/make_torchvision.py) in tnet.
// tnet's own exports of the same types are checked by `networks` (onnx_networks.hpp).
using ResNet = onnx_networks::ResNet18;
using MobileNet = onnx_networks::MobileNetV2;
// ResNet18 without layer1's second block: PyTorch's export must not load into it.
using MissingBlock =
    tnet::Sequential<tnet::Input<96, 96, 3>, tnet::Conv2D<64, 7, 2, tnet::pad(3)>, tnet::models::TorchBatchNorm, tnet::ReLU,
                     tnet::MaxPool2D<3, 2, tnet::pad(1)>, tnet::models::BasicBlock<64>, tnet::ReLU, tnet::models::DownsamplingBlock<128>,
                     tnet::ReLU, tnet::models::BasicBlock<128>, tnet::ReLU, tnet::models::DownsamplingBlock<256>, tnet::ReLU,
                     tnet::models::BasicBlock<256>, tnet::ReLU, tnet::models::DownsamplingBlock<512>, tnet::ReLU,
                     tnet::models::BasicBlock<512>, tnet::ReLU, tnet::GlobalAveragePooling2D, tnet::Dense<6>>;

template <class Net>
bool torchvision_matches(const std::string& dir, const std::string& file, const std::string& name, int batch, int outputs) {
  auto net = std::make_unique<Net>(0);
  if (outputs != net->outputs())
    throw std::runtime_error(dir + "/models.txt: " + file + " has " + std::to_string(outputs) + " outputs, not 6");
  tnet::load_onnx(dir + "/" + file, *net);
  const std::vector<float> x = read_floats(dir + "/" + name + ".input.bin"), expected = read_floats(dir + "/" + name + ".expected.bin");
  if (x.size() != std::size_t(batch) * Net::input_size || expected.size() != std::size_t(batch) * std::size_t(outputs))
    throw std::runtime_error(dir + ": " + name + "'s input or expected outputs do not fit the network");
  const std::span<const float> y = net->predict(x, batch);
  double largest = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) largest = std::max(largest, std::abs(double(y[i]) - double(expected[i])));
  const bool ok = largest <= 1e-4;
  std::printf("%s: %s %s, %d x %d outputs, largest difference %.3g (tolerance 1e-4)\n", ok ? "ok" : "FAILED", file.c_str(),
              tnet::read_onnx_info(dir + "/" + file).producer.c_str(), batch, outputs, largest);
  return ok;
}

// A ResNet18 export loaded into a network missing a block: refused naming the node, nothing changed.
bool refuses_missing_block(const std::string& path) {
  auto net = std::make_unique<MissingBlock>(5);
  const std::vector<float> before(net->parameters().values.begin(), net->parameters().values.end());
  try {
    tnet::load_onnx(path, *net);
    std::printf("FAILED: %s loads into a ResNet18 missing a block\n", path.c_str());
    return false;
  } catch (const tnet::ModelFileError& e) {
    const std::string message = e.what();
    const bool names_node = message.find("ONNX node") != std::string::npos && message.find("layer1.1/conv1") != std::string::npos;
    const bool unchanged = std::ranges::equal(before, net->parameters().values);
    std::printf("%s: a ResNet18 missing a block is refused%s%s: %s\n", names_node && unchanged ? "ok" : "FAILED",
                names_node ? "" : " WITHOUT naming layer1.1's first Conv", unchanged ? "" : ", its weights CHANGED", message.c_str());
    return names_node && unchanged;
  }
}

// A few Adam steps on the imported ResNet18, from its weights, lower its training loss on a small batch.
bool fine_tunes(const std::string& dir, const std::string& file) {
  auto net = std::make_unique<ResNet>(0);
  tnet::load_onnx(dir + "/" + file, *net);
  net->set_loss(tnet::Loss::binary_crossentropy);
  const std::vector<float> x = read_floats(dir + "/resnet18.input.bin");
  const int batch = int(x.size() / ResNet::input_size);
  std::vector<float> targets(std::size_t(batch) * 6);
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = float(i % 3 == 0);
  tnet::Adam adam(tnet::Adam::Options{.lr = 1e-3});
  // The training loss (batch statistics) before the first update and after four.
  const double first = net->train_step(x, targets, batch, adam);
  double last = first;
  for (int step = 0; step < 4; ++step) last = net->train_step(x, targets, batch, adam);
  const bool ok = std::isfinite(last) && last < 0.9 * first;
  std::printf("%s: training steps on the imported ResNet18: loss %.4f before the first, %.4f after four\n", ok ? "ok" : "FAILED", first,
              last);
  return ok;
}

int check_torchvision(const std::string& dir) {
  std::ifstream list(dir + "/models.txt");
  if (!list) throw std::runtime_error(dir + "/models.txt: cannot open");
  std::string file, name, resnet;
  int batch = 0, outputs = 0, failures = 0, count = 0;
  while (list >> file >> name >> batch >> outputs) {
    ++count;
    if (name == "resnet18") failures += !torchvision_matches<ResNet>(dir, file, name, batch, outputs);
    else if (name == "mobilenet_v2") failures += !torchvision_matches<MobileNet>(dir, file, name, batch, outputs);
    else throw std::runtime_error(dir + "/models.txt: unknown network " + name);
    if (name == "resnet18" && resnet.empty()) resnet = file;
  }
  if (count == 0 || resnet.empty()) throw std::runtime_error(dir + "/models.txt lists no ResNet18");
  failures += !refuses_missing_block(dir + "/" + resnet);
  failures += !fine_tunes(dir, resnet);
  return failures == 0 ? 0 : 1;
}
#else
int check_torchvision(const std::string&) {
  std::fprintf(stderr, "onnx_check: built without torchvision's networks (TNET_ONNX_CHECK_TORCHVISION)\n");
  return 2;
}
#endif

}  // namespace

namespace onnx_check {
int write_networks(const std::string& dir);  // onnx_check_networks.cpp
}

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "inputs" && argc >= 5) {
      const int size = std::atoi(argv[2]);
      std::vector<float> all, one(std::size_t(size) * size * 3);
      for (int i = 4; i < argc; ++i) {
        const tnet::Image small = tnet::resize_image(tnet::read_image(argv[i]), size, size);
        tnet::pixels_to_input(small.pixels, one);
        all.insert(all.end(), one.begin(), one.end());
      }
      std::ofstream out(argv[3], std::ios::binary);
      out.write(reinterpret_cast<const char*>(all.data()), std::streamsize(all.size() * sizeof(float)));
      return out ? 0 : 1;
    }
    if (mode == "compare" && argc == 6) {
      const tnet::OnnxInfo info = tnet::read_onnx_info(argv[2]);
      const std::vector<float> inputs = read_floats(argv[3]), expected = read_floats(argv[4]);
      const double tolerance = std::atof(argv[5]);
      if (info.height == 96 && info.width == 96 && info.channels == 3) return compare<96>(argv[2], inputs, expected, tolerance);
      if (info.height == 64 && info.width == 64 && info.channels == 3) return compare<64>(argv[2], inputs, expected, tolerance);
      throw std::runtime_error(std::string(argv[2]) + ": not a SmallerVGGNet for 64 or 96-pixel photos");
    }
    if (mode == "networks" && argc == 3) return onnx_check::write_networks(argv[2]);
    if (mode == "torchvision" && argc == 3) return check_torchvision(argv[2]);
    std::fprintf(stderr,
                 "usage: onnx_check inputs SIZE OUT.bin PHOTO... | compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE | networks DIR | "
                 "torchvision DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_check: %s\n", e.what());
    return 1;
  }
}
