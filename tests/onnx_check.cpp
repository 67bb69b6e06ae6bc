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

void write_floats(const std::string& path, std::span<const float> values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size_bytes()));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

int write_networks(const std::string& dir) {
  std::ofstream list(dir + "/networks.txt");
  int failures = 0;
  onnx_networks::for_each_network([&]<class Net>(const std::string& name, const onnx_networks::Options& options) {
    auto net = std::make_unique<Net>(11);
    onnx_networks::randomise(*net, 12, options);
    const int batch = 3;
    const tnet::Buffer x = [&] {
      tnet::Buffer v(batch * Net::input_size);
      const tnet::Rng rng(13);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = rng.symmetric(i, 2.0f);
      return v;
    }();
    const std::span<const float> y = net->predict(x, batch);
    const std::vector<float> expected(y.begin(), y.end());
    write_floats(dir + "/" + name + ".input.bin", x);
    write_floats(dir + "/" + name + ".expected.bin", expected);
    tnet::save_onnx(dir + "/" + name + ".onnx", *net);
    tnet::save_onnx(dir + "/" + name + "_nchw.onnx", *net, {}, tnet::OnnxLayout::nchw);
    using In = typename Net::input_shape;
    list << name << " " << batch << " " << In::height << " " << In::width << " " << In::channels << " " << net->outputs() << " "
         << (options.opencv ? "opencv" : "no-opencv") << "\n";
    for (const char* suffix : {".onnx", "_nchw.onnx"}) {
      auto back = std::make_unique<Net>(99);
      tnet::load_onnx(dir + "/" + name + suffix, *back);
      const std::span<const float> again = back->predict(x, batch);
      const bool same = std::equal(again.begin(), again.end(), expected.begin());
      std::printf("%s%s: loads back into tnet %s\n", name.c_str(), suffix, same ? "with the same outputs" : "with OTHER outputs");
      failures += !same;
    }
  });
  return failures == 0 && list ? 0 : 1;
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
    if (mode == "networks" && argc == 3) return write_networks(argv[2]);
    std::fprintf(stderr,
                 "usage: onnx_check inputs SIZE OUT.bin PHOTO... | compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE | networks DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_check: %s\n", e.what());
    return 1;
  }
}
