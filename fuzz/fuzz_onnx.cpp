// libFuzzer target: ONNX files, read into a chain, a network of residual blocks and a Keras
// network's shape (fuzz/networks.hpp). Whatever the bytes, read_onnx_info and load_onnx either
// succeed or throw ModelFileError; nothing else, no memory error, and memory within a small
// multiple of the file's size.
#include <cstdint>
#include <string>

#include <tnet/tnet.hpp>

#include "networks.hpp"
#include "scratch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_scratch("onnx", data, size);
  if (path.empty()) return 0;
  int outputs = 3;
  try {
    outputs = tnet::read_onnx_info(path).outputs;
  } catch (const tnet::ModelFileError&) {
  }
  try {
    // Any width read_onnx_info gives is at most the weights the file holds: the network is
    // constructed at it, as fashion_classify does, within the fuzzer's memory limit.
    fuzz::Net net(tnet::Outputs{outputs > 0 ? outputs : 3}, 1);
    tnet::load_onnx(path, net);
  } catch (const tnet::ModelFileError&) {
  }
  try {  // and into a network of residual blocks, depthwise convolutions, ReLU6, global pooling
    fuzz::Graph graph(tnet::Outputs{outputs > 0 ? outputs : 3}, 1);
    tnet::load_onnx(path, graph);
  } catch (const tnet::ModelFileError&) {
  }
  try {  // and into a Keras network's shape (NHWC with Transposes, folded batch norms, computed shapes)
    fuzz::Keras keras(tnet::Outputs{outputs > 0 ? outputs : 3}, 1);
    tnet::load_onnx(path, keras);
  } catch (const tnet::ModelFileError&) {
  }
  return 0;
}
