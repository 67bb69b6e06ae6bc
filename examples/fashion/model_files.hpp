// Which network a model file holds, and reading ONNX files into the fashion programs' networks.
// Compiled once, in model_files.cpp, rather than in every translation unit that classifies: the
// ONNX reader is slow to compile, and would be compiled again in each of them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "models.hpp"

namespace fashion {

/// The networks the programs are compiled for, for messages: "SmallerVGGNet at 64, 96 or 128
/// pixels, ResNet18 at 96 pixels and MobileNetV2 at 96 pixels"; when some are left out, then how
/// to configure a build with every one.
std::string compiled_networks();

/// Whether `path` names an ONNX model (by its extension) rather than a tnet model file.
bool is_onnx_path(const std::string& path);

/// The network a tnet model file holds, from its signature (its input and first layer; loading
/// checks the rest); throws UsageError for a network the programs are not compiled for.
Network model_network(const std::string& path);

/// The networks a model file may hold, to be tried in order: for a tnet model file or one of
/// tnet's ONNX exports (which records tnet's signature), the one it holds; for another ONNX file,
/// every compiled network for its input size, or the one of `architecture` when given. Throws
/// UsageError when there is none, and when a model file is not of the architecture given.
std::vector<Network> candidate_networks(const std::string& path, std::optional<Architecture> architecture);

/// tnet::read_onnx_info for a network: the width is one whose weights the file holds.
template <class Net>
tnet::OnnxInfo read_onnx_model_info(const std::string& path);

/// tnet::load_onnx into a network; returns the class names the file carries.
template <class Net>
std::vector<std::string> load_onnx_model(const std::string& path, Net& net);

/// tnet::load_pretrained into a network that will learn `class_names` (a tnet model or an ONNX
/// file: its layers before the head loaded, the head re-initialised unless it learned these).
template <class Net>
tnet::PretrainedReport load_pretrained_model(const std::string& path, Net& net, const std::vector<std::string>& class_names);

}  // namespace fashion
