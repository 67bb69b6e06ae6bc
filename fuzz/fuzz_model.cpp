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
    const int outputs = tnet::read_model_outputs(path);
    if (outputs > 64) return 0;  // a valid file of another width; the loader is what is under test
    Net net(tnet::Outputs{outputs}, 1);
    tnet::Adam adam;
    tnet::load_model(path, net, &adam);
  } catch (const tnet::ModelFileError&) {
  }
  return 0;
}
