// See model_files.hpp.
#include "model_files.hpp"

#include <filesystem>
#include <vector>

#include "cli.hpp"

namespace fashion {

bool is_onnx_path(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension == ".onnx" || extension == ".ONNX";
}

namespace {

// The first two lines of network N's signature, its input and its first layer, which tell the
// compiled networks apart.
template <Network N>
std::string signature_head() {
  using Net = NetworkType<N>;
  using First = typename Net::template layer_type<0>;
  return Net::input_signature() + "\n" + First::describe() + " -> " + First::output_shape::str() + "\n";
}

std::optional<Network> network_of_signature(const std::string& signature) {
  std::optional<Network> found;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (void)((signature.starts_with(signature_head<networks[I]>()) ? (found = networks[I], true) : false) || ...);
  }(std::make_index_sequence<networks.size()>{});
  return found;
}

// "its input is (None, 96, 96, 3), its first layer Conv2D(...) -> (...)"
std::string described(const std::string& signature) {
  const std::size_t first = signature.find('\n'), second = first == std::string::npos ? first : signature.find('\n', first + 1);
  std::string s = "its input is " + signature.substr(0, first);
  if (second != std::string::npos) s += ", its first layer " + signature.substr(first + 1, second - first - 1);
  return s;
}

std::string network_text(Network n) { return std::string(arch_name(n.architecture)) + " for " + std::to_string(n.size) + "-pixel images"; }

}  // namespace

std::string compiled_networks() {
  std::vector<Architecture> have;
  for (const Architecture a : architectures)
    if (built(a)) have.push_back(a);
  std::string s;
  for (std::size_t i = 0; i < have.size(); ++i)
    s += (i == 0 ? "" : i + 1 == have.size() ? " and " : ", ") + std::string(arch_name(have[i])) + " at " + sizes_text(have[i]) + " pixels";
  if (networks.size() < all_networks.size()) s += "; every network with " + configure_with([](Network) { return true; });
  return s;
}

Network model_network(const std::string& path) {
  const std::string signature = tnet::read_model_signature(path);
  if (const std::optional<Network> n = network_of_signature(signature)) return *n;
  throw UsageError(path + " holds none of the networks these programs are compiled for (" + compiled_networks() +
                   "): " + described(signature));
}

std::vector<Network> candidate_networks(const std::string& path, std::optional<Architecture> architecture) {
  auto as_given = [&](Network n) {
    if (architecture && *architecture != n.architecture)
      throw UsageError("--arch " + std::string(arch_option(*architecture)) + " names another network than " + path + " holds, a " +
                       network_text(n) + " (--arch " + arch_option(n.architecture) + ")");
    return std::vector<Network>{n};
  };
  if (!is_onnx_path(path)) return as_given(model_network(path));
  const tnet::OnnxInfo info = tnet::read_onnx_info(path);
  // tnet's own exports say what they hold.
  if (const auto signature = info.metadata.find("tnet_signature"); signature != info.metadata.end())
    if (const std::optional<Network> n = network_of_signature(signature->second)) return as_given(*n);
  if (architecture && !built(*architecture))
    throw UsageError("--arch " + std::string(arch_option(*architecture)) + ": " + not_built(*architecture));
  std::vector<Network> found;
  if (info.channels == 3 && info.height == info.width)
    for (const Network& n : networks)
      if (n.size == info.height && (!architecture || n.architecture == *architecture)) found.push_back(n);
  if (found.empty())
    throw UsageError(path + " takes " + std::to_string(info.height) + "x" + std::to_string(info.width) + "x" +
                     std::to_string(info.channels) + " inputs, for which " +
                     (architecture ? std::string(arch_name(*architecture)) + " is not compiled (it is for " + sizes_text(*architecture) +
                                         "-pixel RGB images)"
                                   : "no network is compiled (" + compiled_networks() + ", RGB)"));
  return found;
}

template <class Net>
tnet::OnnxInfo read_onnx_model_info(const std::string& path) {
  return tnet::read_onnx_info<Net>(path);
}

template <class Net>
std::vector<std::string> load_onnx_model(const std::string& path, Net& net) {
  return tnet::load_onnx(path, net).class_names;
}

template <class Net>
tnet::PretrainedReport load_pretrained_model(const std::string& path, Net& net, const std::vector<std::string>& class_names) {
  return tnet::load_pretrained(path, net, {.class_names = class_names});
}

// For every network the programs are compiled for.
#define FASHION_INSTANTIATE(architecture, size)                                                                                      \
  template tnet::OnnxInfo read_onnx_model_info<NetworkType<Network{Architecture::architecture, size}>>(const std::string&);          \
  template std::vector<std::string> load_onnx_model(const std::string&, NetworkType<Network{Architecture::architecture, size}>&);    \
  template tnet::PretrainedReport load_pretrained_model(const std::string&, NetworkType<Network{Architecture::architecture, size}>&, \
                                                        const std::vector<std::string>&);
FASHION_NETWORKS(FASHION_INSTANTIATE)
#undef FASHION_INSTANTIATE

}  // namespace fashion
