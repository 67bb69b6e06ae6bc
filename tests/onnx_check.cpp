// onnx_check: the C++ side of the ONNX tests (tests/onnx/run.sh).
//   onnx_check inputs SIZE OUT.bin PHOTO...
//       writes the photos as fashion_classify feeds them to the network (read, resized to
//       SIZE x SIZE, the one pixel-to-input conversion): NHWC float32, one photo after another
//   onnx_check compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE
//       loads MODEL.onnx into SmallerVGGNet (its size and label count read from the file), runs it
//       on INPUTS.bin (NHWC float32) and exits 0 when every output is within TOLERANCE of
//       EXPECTED.bin (float32); prints the largest difference either way
//   onnx_check activations DIR
//       exports a network of SiLU, HardSwish, ReLU6, LeakyReLU and GlobalAveragePooling2D into a
//       Dense (its convolutions' weights tripled, so that every piece of every activation is
//       reached) as DIR/activations.onnx (NHWC) and DIR/activations_nchw.onnx, and the same
//       network without ReLU6 as DIR/activations_no_clip.onnx (OpenCV 4.6 reads no Clip whose
//       bounds are inputs, as opset 11 on has them); writes DIR/activations_inputs.bin (NHWC
//       float32) and tnet's outputs for them, DIR/activations_expected.bin and
//       DIR/activations_no_clip_expected.bin
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

void write_floats(const std::string& path, std::span<const float> values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size_bytes()));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

// Exports `Net` (seeded, its convolution kernels tripled) and writes its outputs for `inputs`.
template <class Net>
void export_activations(const std::string& dir, const std::string& name, const std::vector<float>& inputs, bool nchw_too) {
  auto net = std::make_unique<Net>(1);
  for (const tnet::ParamRef& p : net->parameters())
    if (p.name.find("conv2d") != std::string::npos)
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] *= 3.0f;
  tnet::save_onnx(dir + "/" + name + ".onnx", *net);
  if (nchw_too) tnet::save_onnx(dir + "/" + name + "_nchw.onnx", *net, {}, tnet::OnnxLayout::nchw);
  write_floats(dir + "/" + name + "_expected.bin", net->predict(inputs, int(inputs.size() / Net::input_size)));
}

int activations(const std::string& dir) {
  using namespace tnet;
  using All = Sequential<Input<10, 9, 3>, Conv2D<8, 3>, SiLU, Conv2D<8, 3>, HardSwish, ReLU6, Conv2D<8, 3>, LeakyReLU<0.1f>,
                         GlobalAveragePooling2D, Dense<5>>;
  using NoClip = Sequential<Input<10, 9, 3>, Conv2D<8, 3>, SiLU, Conv2D<8, 3>, HardSwish, Conv2D<8, 3>, LeakyReLU<0.1f>,
                            GlobalAveragePooling2D, Dense<5>>;
  const int batch = 4;
  std::vector<float> inputs(std::size_t(batch) * All::input_size);
  const Rng rng(5);
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = rng.symmetric(i, 2.0f);
  write_floats(dir + "/activations_inputs.bin", inputs);
  export_activations<All>(dir, "activations", inputs, true);
  export_activations<NoClip>(dir, "activations_no_clip", inputs, false);
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
    if (mode == "activations" && argc == 3) return activations(argv[2]);
    std::fprintf(
        stderr,
        "usage: onnx_check inputs SIZE OUT.bin PHOTO... | compare MODEL.onnx INPUTS.bin EXPECTED.bin TOLERANCE | activations DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_check: %s\n", e.what());
    return 1;
  }
}
