// tnet/model/finetune.hpp: a pretrained network's weights into a network with another head.
//
//   Net net(tnet::Outputs{labels}, seed);
//   const tnet::PretrainedReport report = tnet::load_pretrained("pretrained.onnx", net, {.class_names = classes});
//   std::cout << report.describe() << "\n";   // which layers were loaded, which re-initialised
//   net.freeze_until(net.layer_index("flatten"));
//
// load_pretrained reads a tnet model file or an ONNX file with the readers of model/serialize.hpp
// and model/onnx.hpp, into a network of the file's own width (its label count), so that every
// check those readers make is made; then it copies into `net` every layer before the head (the
// last layer with weights), which must be the same layers of the same shapes, and the head too
// when it fits (the same width and, where both are known, the same class names). Otherwise the
// head, and any layer after it, is re-initialised as `net`'s seed draws it. A layer before the
// head that differs is refused, nothing changed, with a ModelFileError naming the layer and
// both its shapes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "onnx.hpp"
#include "serialize.hpp"

namespace tnet {

struct PretrainedOptions {
  /// The labels `net` will learn, in order: the file's head is kept only when it learned the same
  /// (its class names, where the file has them). Empty: widths alone decide.
  std::vector<std::string> class_names{};
  /// Re-initialise the head even when it fits.
  bool reinitialise_head = false;
};

/// What load_pretrained did.
struct PretrainedReport {
  std::string path;
  std::string format;  // "tnet model" or "ONNX"
  int file_outputs = 0;
  std::vector<std::string> file_class_names;
  /// The layers with weights or statistics, by name ("3.conv2d"): those read from the file, and
  /// those drawn afresh (the head, unless it fitted).
  std::vector<std::string> loaded, reinitialised;
  std::string head_reason;  // why the head was re-initialised; empty when it was loaded

  /// "loaded 14 layers from m.tnet (0.conv2d ... 24.batchnorm); re-initialised 26.dense: the
  /// file's head has 5 outputs, this network's 6"
  std::string describe() const {
    auto names = [](const std::vector<std::string>& layers) {
      if (layers.size() <= 4) {
        std::string s;
        for (const std::string& l : layers) s += (s.empty() ? "" : ", ") + l;
        return s;
      }
      return layers.front() + " ... " + layers.back();
    };
    std::string s = "loaded " + std::to_string(loaded.size()) + " layers from " + format + " " + path + " (" + names(loaded) + ")";
    if (reinitialised.empty()) return s + ", the head included";
    return s + "; re-initialised " + names(reinitialised) + ": " + head_reason;
  }
};

namespace detail {

// Whether `path` begins as a tnet model file does.
inline bool has_model_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, sizeof magic) && std::memcmp(magic, "TNETMODL", 8) == 0;
}

// The signature's lines: [0] the input, [i + 1] layer i.
inline std::vector<std::string> signature_lines(const std::string& signature) {
  std::vector<std::string> lines;
  std::istringstream in(signature);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Each layer's trainable values and statistics together (0 for a layer with neither).
template <class Net>
std::vector<std::size_t> layer_sizes(const Net& net) {
  std::vector<std::size_t> sizes(Net::depth, 0);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((sizes[I] = Net::template layer_type<I>::non_trainable_count), ...);
    (
        [&] {
          for (const TensorSize& t : net.template layer<I>().parameter_tensors()) sizes[I] += t.size;
        }(),
        ...);
  }(std::make_index_sequence<Net::depth>{});
  return sizes;
}

}  // namespace detail

/// Loads the weights and statistics of the model in `path` (a tnet model file, or else an ONNX
/// file) into `net`, whose layers before the head must be the file's, as the file comment says.
/// `Source` is the type of the network the file holds, `Net` by default: the file's width is
/// read from it (a Dense<dynamic> head), so only a network whose head has a fixed width needs it.
/// Throws ModelFileError, changing nothing, when the file cannot be read or does not hold such a
/// network: the readers' own errors, or, where a layer before the head differs, one that names the
/// layer and both its shapes.
template <class Source = void, class Net>
PretrainedReport load_pretrained(const std::string& path, Net& net, const PretrainedOptions& options = {}) {
  using Held = std::conditional_t<std::is_void_v<Source>, Net, Source>;
  using Kind = ModelFileError::Kind;
  PretrainedReport report;
  report.path = path;
  const std::string extension = std::filesystem::path(path).extension().string();
  const bool onnx_file = !detail::has_model_magic(path) && (extension == ".onnx" || extension == ".ONNX");
  report.format = onnx_file ? "ONNX" : "tnet model";
  auto refuse = [&](const std::string& why) {
    return ModelFileError(Kind::architecture_mismatch, path, "cannot fine-tune from it: " + why);
  };
  // "layer 3.conv2d" for signature line `line` of a network whose layers are `names`.
  auto line_name = [](std::size_t line, const std::vector<std::string>& names) {
    return line == 0 ? std::string("the input") : line - 1 < names.size() ? "layer " + names[line - 1] : std::string("the layers' end");
  };

  // The file's network, read whole by its format's reader, at the file's width.
  auto make = [&]([[maybe_unused]] int outputs) {
    if constexpr (Held::has_dynamic_width) return std::make_unique<Held>(Outputs{outputs}, net.seed());
    else return std::make_unique<Held>(net.seed());
  };
  std::unique_ptr<Held> held;
  if (onnx_file) {
    held = make(Held::has_dynamic_width ? read_onnx_info<Held>(path).outputs : 1);
    report.file_class_names = load_onnx(path, *held).class_names;
  } else {
    held = make(Held::has_dynamic_width ? read_model_outputs<Held>(path) : 1);
    // Other layers are named by layer here (load_model names the signature's line).
    const std::vector<std::string> file = detail::signature_lines(read_model_signature(path)),
                                   expected = detail::signature_lines(held->signature());
    for (std::size_t line = 0; line < std::max(file.size(), expected.size()); ++line) {
      const std::string a = line < file.size() ? file[line] : "(nothing)", b = line < expected.size() ? expected[line] : "(nothing)";
      if (a != b)
        throw refuse(
            "at " + line_name(line, held->layer_names()) + " its network has '" + a + "', this one '" + b + "'" +
            (Held::has_dynamic_width ? "" : " (for a head of a fixed width, give the file's network type: load_pretrained<Type>)"));
    }
    report.file_class_names = load_model(path, *held).class_names;
  }
  report.file_outputs = held->outputs();

  // The head is the last layer with weights; every layer before it must be the file's.
  auto layer_of = [](const std::string& name) { return std::size_t(std::stoul(name.substr(0, name.find('.')))); };
  std::size_t head = Net::depth;
  for (const ParamRef& p : net.parameters()) head = layer_of(p.name);
  const std::vector<std::string> names = net.layer_names();
  const std::vector<std::string> file = detail::signature_lines(held->signature()), ours = detail::signature_lines(net.signature());
  for (std::size_t line = 0; line <= head && line < ours.size(); ++line) {  // the input, then layers [0, head)
    const std::string a = line < file.size() ? file[line] : "(nothing)";
    if (a != ours[line])
      throw refuse(line_name(line, names) + " differs: the file has '" + a + "', this network has '" + ours[line] + "' (only the head, " +
                   (head < Net::depth ? names[head] : std::string("none")) + ", may)");
  }
  // Why the head is drawn afresh; empty: it is loaded too.
  std::string& reason = report.head_reason;
  if (options.reinitialise_head) reason = "asked for";
  else if (held->outputs() != net.outputs())
    reason = "the file's head has " + std::to_string(held->outputs()) + (held->outputs() == 1 ? " output" : " outputs") +
             ", this network's " + std::to_string(net.outputs());
  else if (file != ours) reason = "the file's head is another";
  else if (!options.class_names.empty() && !report.file_class_names.empty() && report.file_class_names != options.class_names)
    reason = "the file's head learned other labels than this network's";
  const bool keep_head = reason.empty();
  const std::size_t copied = keep_head ? Net::depth : head;

  // Every tensor and statistic of the layers to copy, found in the file's network at its size,
  // before anything is copied.
  std::map<std::string, std::span<const float>> weights, statistics;
  std::map<std::string, std::span<const std::uint64_t>> counts;
  for (const ParamRef& p : held->parameters()) weights[p.name] = {p.value, p.size};
  held->visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) statistics[name] = span;
    else counts[name] = span;
  });
  auto check = [&](const auto& found_in, const std::string& name, std::size_t size) {
    const auto found = found_in.find(name);
    if (found == found_in.end() || found->second.size() != size)
      throw refuse("its network has no " + name + " of " + std::to_string(size) + " values");
    return found->second;
  };
  for (const ParamRef& p : net.parameters())
    if (layer_of(p.name) < copied) check(weights, p.name, p.size);
  net.visit_state([&](const std::string& name, auto span) {
    if (layer_of(name) >= copied) return;
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) check(statistics, name, span.size());
    else check(counts, name, span.size());
  });
  // Everything fits: copy, and draw the rest afresh as the network's seed drew it.
  for (const ParamRef& p : net.parameters())
    if (layer_of(p.name) < copied) std::ranges::copy(weights[p.name], p.value);
  net.visit_state([&](const std::string& name, auto span) {
    if (layer_of(name) >= copied) return;
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) std::ranges::copy(statistics[name], span.begin());
    else std::ranges::copy(counts[name], span.begin());
  });
  const Rng root(net.seed());
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I >= copied ? net.template layer<I>().init(root.derive(I)) : void()), ...);
  }(std::make_index_sequence<Net::depth>{});
  const std::vector<std::size_t> sizes = detail::layer_sizes(net);
  for (std::size_t i = 0; i < Net::depth; ++i)
    if (sizes[i] > 0) (i < copied ? report.loaded : report.reinitialised).push_back(names[i]);
  return report;
}

}  // namespace tnet
