// libFuzzer target: model files. Whatever the bytes, read_model_signature, read_model_outputs and
// load_model either succeed or throw ModelFileError; nothing else, and no memory error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <tnet/tnet.hpp>

namespace {
using Net = tnet::Sequential<tnet::Input<4, 4, 2>, tnet::Conv2D<3, 3>, tnet::ReLU, tnet::BatchNorm, tnet::Flatten,
                             tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;

const std::string& scratch() {
  static const std::string path = "/tmp/tnet_fuzz_model_" + std::to_string(::getpid()) + ".tnet";
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::FILE* file = std::fopen(scratch().c_str(), "wb");
  if (!file) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    tnet::read_model_signature(scratch());
    const int outputs = tnet::read_model_outputs(scratch());
    if (outputs > 64) return 0;  // a valid file of another width; the loader is what is under test
    Net net(tnet::Outputs{outputs}, 1);
    tnet::Adam adam;
    tnet::load_model(scratch(), net, &adam);
  } catch (const tnet::ModelFileError&) {
  }
  return 0;
}
