// onnx_check: the C++ side of the ONNX tests (tests/onnx/run.sh).
//   onnx_check inputs SIZE OUT.bin PHOTO...
//       writes the photos as fashion_classify feeds them to the network (read, resized to
//       SIZE x SIZE, the one pixel-to-input conversion): NHWC float32, one photo after another
//   onnx_check compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE
//       loads MODEL.onnx into SmallerVGGNet (its size and label count read from the file), runs it
//       on INPUTS.bin (NHWC float32) and exits 0 when every output is within TOLERANCE of
//       EXPECTED.bin (float32); prints the largest difference either way
//   onnx_check mobile DIR
//       trains a small network of padded convolutions and pools, depthwise convolutions and average
//       pools (Mobile below) for a few steps, exports it to DIR/mobile.onnx (NHWC) and
//       DIR/mobile_nchw.onnx, and writes DIR/inputs.bin (NHWC float32) and tnet's outputs on them,
//       DIR/expected.bin, for tests/onnx/mobile.py
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "fashion/smaller_vgg.hpp"

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

// PyTorch's and Keras's paddings, depthwise convolutions with multiplier 1 and 2, both kinds of
// average pooling (count_include_pad 1 and 0), MobileNetV2's and ResNet18's strides.
using Mobile = tnet::Sequential<tnet::Input<33, 32, 3>, tnet::Conv2D<16, 7, 2, tnet::pad(3)>, tnet::BatchNorm, tnet::ReLU,
                                tnet::MaxPool2D<3, 2, tnet::pad(1)>, tnet::DepthwiseConv2D<3, 1, tnet::pad(1)>, tnet::BatchNorm, tnet::ReLU,
                                tnet::Conv2D<16, 3, 2, tnet::pad(1)>, tnet::DepthwiseConv2D<3, 2, tnet::Padding::same, 2>, tnet::BatchNorm,
                                tnet::ReLU, tnet::AveragePooling2D<3, 2, tnet::pad(1)>, tnet::AveragePooling2D<2, 1, tnet::Padding::same>,
                                tnet::Flatten, tnet::Dense<5>, tnet::Softmax>;

int mobile(const std::string& dir) {
  constexpr int batch = 4;
  auto net = std::make_unique<Mobile>(3);
  const tnet::Rng rng(11);
  std::vector<float> x(std::size_t(batch) * Mobile::input_size), targets(std::size_t(batch) * 5, 0.0f);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng.symmetric(i, 1.0f);
  for (int n = 0; n < batch; ++n) targets[std::size_t(n) * 5 + std::size_t(n)] = 1.0f;
  tnet::Adam adam;
  for (int step = 0; step < 5; ++step) net->train_step(x, targets, batch, adam);  // statistics away from 0 and 1
  const std::vector<std::string> names{"a", "b", "c", "d", "e"};
  tnet::save_onnx(dir + "/mobile.onnx", *net, names);
  tnet::save_onnx(dir + "/mobile_nchw.onnx", *net, names, tnet::OnnxLayout::nchw);
  const std::span<const float> y = net->predict(x, batch);
  tnet::write_file(dir + "/inputs.bin", std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)));
  tnet::write_file(dir + "/expected.bin", std::string(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(float)));
  std::printf("%s: a network of %zu layers, %d inputs of 33x32x3, 5 outputs each\n", dir.c_str(), Mobile::depth, batch);
  return 0;
}

}  // namespace

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
    if (mode == "mobile" && argc == 3) return mobile(argv[2]);
    std::fprintf(stderr,
                 "usage: onnx_check inputs SIZE OUT.bin PHOTO... | compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE | mobile DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_check: %s\n", e.what());
    return 1;
  }
}
