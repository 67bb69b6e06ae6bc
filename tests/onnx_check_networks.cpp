// onnx_check networks DIR (tests/onnx_check.cpp says what it writes and checks), in a translation
// unit of its own: the networks of onnx_networks.hpp take as long to compile as the rest of
// onnx_check, beside which it compiles.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "onnx_networks.hpp"

namespace onnx_check {

namespace {

void write_floats(const std::string& path, std::span<const float> values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size_bytes()));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

}  // namespace

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

}  // namespace onnx_check
