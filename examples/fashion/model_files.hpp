// Which network a model file holds, and reading ONNX files into the fashion programs' networks.
// Compiled once, in model_files.cpp, rather than in every translation unit that classifies: the
// ONNX reader is a few seconds of compile time a unit.
#pragma once

#include <string>
#include <vector>

#include "smaller_vgg.hpp"

namespace fashion {

/// Whether `path` names an ONNX model (by its extension) rather than a tnet model file.
bool is_onnx_path(const std::string& path);

/// The image size (64, 96 or 128) of the SmallerVGGNet in a tnet model file or an ONNX file;
/// throws UsageError for any other network.
int model_image_size(const std::string& path);

/// tnet::read_onnx_info for a SmallerVGGNet: the width is one whose weights the file holds.
tnet::OnnxInfo read_onnx_model_info(const std::string& path);

/// tnet::load_onnx into a SmallerVGGNet of each size; returns the class names the file carries.
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<64>& net);
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<96>& net);
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<128>& net);

}  // namespace fashion
