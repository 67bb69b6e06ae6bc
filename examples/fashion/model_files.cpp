// See model_files.hpp.
#include "model_files.hpp"

#include <filesystem>

#include "cli.hpp"
#include "models.hpp"

namespace fashion {

bool is_onnx_path(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension == ".onnx" || extension == ".ONNX";
}

int model_image_size(const std::string& path) {
  if (is_onnx_path(path)) {
    const tnet::OnnxInfo info = read_onnx_model_info(path);
    for (const int size : image_sizes)
      if (info.height == size && info.width == size && info.channels == 3) return size;
    throw UsageError(path + " is not a SmallerVGGNet for 64, 96 or 128-pixel RGB images (its input is " + std::to_string(info.height) +
                     "x" + std::to_string(info.width) + "x" + std::to_string(info.channels) + ")");
  }
  const std::string signature = tnet::read_model_signature(path);
  auto made_for = [&]<int size>() { return signature.starts_with(SmallerVGGNet<size>::input_signature() + "\n"); };
  if (made_for.operator()<64>()) return 64;
  if (made_for.operator()<96>()) return 96;
  if (made_for.operator()<128>()) return 128;
  throw UsageError(path + " is not a SmallerVGGNet model for 64, 96 or 128-pixel images (its input is " +
                   signature.substr(0, signature.find('\n')) + ")");
}

// A SmallerVGGNet holds the same floats per label at every image size (its last Dense has 1024
// inputs), so one size's check is every size's.
static_assert(tnet::detail::floats_per_output<SmallerVGGNet<64>>() == tnet::detail::floats_per_output<SmallerVGGNet<128>>());
tnet::OnnxInfo read_onnx_model_info(const std::string& path) { return tnet::read_onnx_info<SmallerVGGNet<64>>(path); }

std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<64>& net) { return tnet::load_onnx(path, net).class_names; }
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<96>& net) { return tnet::load_onnx(path, net).class_names; }
std::vector<std::string> load_onnx_model(const std::string& path, SmallerVGGNet<128>& net) {
  return tnet::load_onnx(path, net).class_names;
}

}  // namespace fashion
