// Reading ONNX files into the fashion programs' networks. Declared here and compiled once, in
// onnx_models.cpp, rather than in every translation unit that classifies: the ONNX reader is a
// few seconds of compile time a unit.
#pragma once

#include <string>
#include <vector>

#include "smaller_vgg.hpp"

namespace fashion {

/// tnet::read_onnx_info.
tnet::OnnxInfo read_onnx_model_info(const std::string& path);

/// tnet::load_onnx into a SmallerVGGNet of each size; returns the class names the file carries.
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<64>& net);
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<96>& net);
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<128>& net);

}  // namespace fashion
