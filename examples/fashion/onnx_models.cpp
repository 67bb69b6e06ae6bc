// See onnx_models.hpp.
#include "onnx_models.hpp"

namespace fashion {

tnet::OnnxInfo read_onnx_model_info(const std::string& path) { return tnet::read_onnx_info(path); }

std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<64>& net) { return tnet::load_onnx(path, net).class_names; }
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<96>& net) { return tnet::load_onnx(path, net).class_names; }
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<128>& net) {
  return tnet::load_onnx(path, net).class_names;
}

}  // namespace fashion
