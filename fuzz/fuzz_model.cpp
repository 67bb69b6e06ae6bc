// libFuzzer target: model files. Whatever the bytes, read_model_signature, read_model_outputs and
// load_model either succeed or throw ModelFileError; nothing else, and no memory error.
#include <cstdint>
#include <string>

#include <tnet/tnet.hpp>

#include "scratch.hpp"

namespace {
using Net = tnet::Sequential<tnet::Input<4, 4, 2>, tnet::Conv2D<3, 3>, tnet::ReLU, tnet::BatchNorm, tnet::Flatten,
                             tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_scratch("model", data, size);
  if (path.empty()) return 0;
  try {
    tnet::read_model_signature(path);
    // Any width read_model_outputs gives is one the file can hold the weights of: the network is
    // constructed at it, as fashion_classify does, within the fuzzer's memory limit.
    Net net(tnet::Outputs{tnet::read_model_outputs(path)}, 1);
    tnet::Adam adam;
    tnet::load_model(path, net, &adam);
  } catch (const tnet::ModelFileError&) {
  }
  return 0;
}
