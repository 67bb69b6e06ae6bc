// tnet/model/onnx.hpp: networks out to ONNX, and weights in from ONNX.
//
//   tnet::save_onnx("fashion.onnx", net, class_names);   // OpenCV, ONNX Runtime, ... run it
//   tnet::load_onnx("from_pytorch.onnx", net);           // weights trained elsewhere run in tnet
//
// Export writes opset 13, IR version 7 (what OpenCV 4.6 reads), through AtomicFile. The graph's
// input is NHWC, as tnet's (OnnxLayout::nchw for PyTorch's order), followed by a Transpose to the
// NCHW that ONNX's Conv wants; each layer becomes the operator of the same meaning, in order:
//   Conv2D     Conv, kernel OIHW, Keras's "same" padding as explicit pads (the extra row and
//              column at the bottom and right), pad(p) as PyTorch writes it (p on every side)
//   DepthwiseConv2D  Conv with group = C, kernel (C * M, 1, K, K), as PyTorch writes Conv2d with
//              groups = in_channels
//   BatchNorm  BatchNormalization with the moving statistics (inference)
//   MaxPool2D  MaxPool, pads as Conv's (padded positions never chosen, in ONNX too)
//   AveragePooling2D  AveragePool: same (Keras's, the padding not counted) with pads as Conv's
//              and count_include_pad 0; pad(p) (PyTorch's, the zeros counted) as PyTorch 1.x
//              writes it, a Pad of zeros then an unpadded AveragePool (read also as an
//              AveragePool with pads and count_include_pad 1, as later PyTorch writes it)
//   ReLU, Sigmoid, Softmax   Relu, Sigmoid, Softmax (over channels)
//   ReLU6      Clip, min 0 and max 6 as constant inputs
//   LeakyReLU  LeakyRelu, alpha the slope
//   SiLU       Sigmoid, then Mul of the input and it (as PyTorch writes SiLU)
//   HardSwish  HardSigmoid (alpha 1/6, beta 0.5), then Mul of the input and it (HardSwish is
//              opset 14's); read also as one HardSwish node, which PyTorch writes at opset >= 14
//   GlobalAveragePooling2D   GlobalAveragePool; a Dense after it flattens its (N, C, 1, 1)
//   Dropout    nothing (the identity at inference)
//   Flatten    Transpose back to NHWC, then Flatten: the features keep tnet's order, so the next
//              Dense's kernel is written as it is
//   Residual   the body's nodes, the shortcut's (from the same input), then Add
//   Dense      Gemm with the kernel transposed to (U, K) and transB, as PyTorch writes Linear
// The metadata holds the class names (a JSON array under "class_names"), the input layout and
// tnet's signature.
//
// Import fills a network whose type matches the graph: the same operators in the same order with
// the same shapes, Identity and Dropout nodes skipped, Constant nodes read as values. It reads
// tnet's exports and PyTorch's, TorchScript's (torch 1.x, and 2.x with dynamo=False) and
// dynamo's (torch 2.x's default), such as torchvision's resnet18 and mobilenet_v2
// (tnet::models::ResNet18, MobileNetV2):
//   - NCHW input; Linear as Gemm with transB; Clip's bounds as attributes (before opset 11) or
//     constant inputs; a Flatten of NCHW, or the Reshape that x.view(x.size(0), -1) or dynamo's
//     flatten becomes, whose features the next Dense's rows are permuted back from
//   - BatchNorm: a BatchNormalization (its epsilon, when it differs from the layer's, folded into
//     the variance), or none where the graph's Conv before it has it folded in, as PyTorch
//     exports an eval-mode network by default (do_constant_folding): the Conv's kernel and bias
//     are read into the Conv2D and the BatchNorm is made the identity, exactly (gamma 1, beta 0,
//     mean 0, a variance v with v + epsilon == 1 in float); a Conv without a bias reads as bias 0
//   - Residual: the body's nodes then the shortcut's, or the shortcut's first; the Add's inputs in
//     either order (nodes of the two paths interleaved are refused)
//   - GlobalAveragePooling2D: GlobalAveragePool, or ReduceMean over axes 2 and 3 (an attribute, or
//     from opset 18 a constant input), as torch 2 writes adaptive_avg_pool2d(x, 1)
//   - weights in external data (torch 2's default, NAME.onnx.data): read from the file each names,
//     which must be beside the model or below its folder
// and Keras's, converted by tf2onnx (Keras 2, tf-keras) or written by Keras 3's own export
// (model.export(format="onnx")), such as the tutorial's SmallerVGGNet:
//   - NHWC input, then a Transpose to NCHW; a Transpose back to NHWC before Keras's Flatten, so
//     that the features keep Keras's order (tnet's); Dense as MatMul then Add
//   - BatchNorm: a BatchNormalization (Keras's epsilon 1e-3 is tnet::BatchNorm's), or folded to a
//     Mul and an Add by per-channel constants, (C) after a Dense and (1, C, 1, 1) or (C, 1, 1)
//     after a convolution: read as gamma and beta, with statistics that change nothing
//   - a Reshape to (N, features) whose shape the graph computes from the activation before the
//     Transpose (Shape, Gather, Slice, Concat, Cast; int32 or int64 constants)
// Anything else is refused, nothing changed, with a ModelFileError naming the file, the first node
// that does not fit, the layer and why.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../core/json.hpp"
#include "../layers/activation.hpp"
#include "../layers/average_pool.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/depthwise_conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/dropout.hpp"
#include "../layers/flatten.hpp"
#include "../layers/global_average_pool.hpp"
#include "../layers/max_pool.hpp"
#include "../layers/residual.hpp"
#include "onnx_proto.hpp"
#include "serialize.hpp"

namespace tnet {

/// The order of the exported graph's input: NHWC (tnet's, the default) or NCHW (PyTorch's).
enum class OnnxLayout { nhwc, nchw };

/// What an ONNX file says about itself (read_onnx_info, load_onnx).
struct OnnxInfo {
  OnnxLayout layout = OnnxLayout::nhwc;
  int height = 0, width = 0, channels = 0;  // one input sample
  int outputs = 0;                          // values in one output sample
  std::vector<std::string> class_names;     // the "class_names" metadata; empty when absent
  std::map<std::string, std::string> metadata;
  std::int64_t opset = 0, ir_version = 0;
  std::string producer;
};

namespace onnx {

inline constexpr std::int64_t written_opset = 13, written_ir_version = 7;
// Opsets whose operators tnet's layers map to, with the meaning tnet expects.
inline constexpr std::int64_t oldest_opset = 9, newest_opset = 23;

// ---- small helpers ---------------------------------------------------------------------------

inline std::string json_strings(const std::vector<std::string>& strings) {
  std::string out = "[";
  for (std::size_t i = 0; i < strings.size(); ++i) {
    if (i) out += ", ";
    out += json_string(strings[i]);
  }
  return out + "]";
}

// A JSON array of strings, as json_strings writes it (and \uXXXX of the basic plane); nullopt
// when the text is anything else.
inline std::optional<std::vector<std::string>> parse_json_strings(std::string_view text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  auto space = [&] {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\n' || text[at] == '\t' || text[at] == '\r')) ++at;
  };
  auto eat = [&](char c) {
    space();
    if (at >= text.size() || text[at] != c) return false;
    ++at;
    return true;
  };
  if (!eat('[')) return std::nullopt;
  if (eat(']')) return (space(), at == text.size()) ? std::optional(out) : std::nullopt;
  do {
    if (!eat('"')) return std::nullopt;
    std::string s;
    for (;;) {
      if (at >= text.size()) return std::nullopt;
      const char c = text[at++];
      if (c == '"') break;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (at >= text.size()) return std::nullopt;
      const char e = text[at++];
      const std::string_view simple = "\"\\/bfnrt", meaning = "\"\\/\b\f\n\r\t";
      if (const std::size_t k = simple.find(e); k != std::string_view::npos) {
        s += meaning[k];
      } else if (e == 'u' && at + 4 <= text.size()) {
        unsigned code = 0;
        for (int k = 0; k < 4; ++k) {
          const char h = text[at++];
          const int digit = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
          if (digit < 0) return std::nullopt;
          code = code * 16 + unsigned(digit);
        }
        if (code < 0x80) s += char(code);
        else if (code < 0x800) s += char(0xc0 | code >> 6), s += char(0x80 | (code & 0x3f));
        else s += char(0xe0 | code >> 12), s += char(0x80 | (code >> 6 & 0x3f)), s += char(0x80 | (code & 0x3f));
      } else {
        return std::nullopt;
      }
    }
    out.push_back(std::move(s));
  } while (eat(','));
  if (!eat(']')) return std::nullopt;
  space();
  return at == text.size() ? std::optional(out) : std::nullopt;
}

inline std::string dims_string(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The file's bytes: a regular file of at most `largest` bytes (checked before anything is read).
inline std::string read_file(const std::string& path, std::uint64_t largest) {
  using Kind = ModelFileError::Kind;
  std::string reason;
  const int fd = open_for_reading(path, reason);
  if (fd < 0) throw ModelFileError(Kind::io, path, "cannot read ONNX file: " + reason);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info{};
  if (::fstat(fd, &info) != 0) throw ModelFileError(Kind::io, path, "cannot read ONNX file");
  if (std::uint64_t(info.st_size) > largest)
    throw ModelFileError(Kind::corrupted, path,
                         "ONNX file of " + std::to_string(info.st_size) + " bytes, more than the " + std::to_string(largest) +
                             " tnet reads for this network");
  std::string bytes = tnet::detail::allocating(std::uint64_t(info.st_size), "the bytes", path,
                                               [&] { return std::string(std::size_t(info.st_size), '\0'); });
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ModelFileError(Kind::io, path, std::string("cannot read ONNX file: ") + std::strerror(errno));
    if (n == 0) break;
    got += std::size_t(n);
  }
  bytes.resize(got);
  return bytes;
}

// Every constant's dims: none negative, their product (checked, never wrapped) at most 2^40
// values, and, for float32, int32 and int64 values held in the file, the values it holds.
inline void check_tensor(const Tensor& t, const std::string& what) {
  std::uint64_t count = 1;
  for (const std::int64_t d : t.dims)
    if (d < 0 || !tnet::detail::checked_mul(count, std::uint64_t(d), count, std::uint64_t(1) << 40))
      throw FormatError(what + " '" + t.name + "' has dims " + dims_string(t.dims) + ": not a size of at most 2^40 values");
  if (t.external || (t.data_type != float32 && t.data_type != int32 && t.data_type != int64)) return;
  const std::size_t item = t.data_type == int64 ? sizeof(std::int64_t) : sizeof(float);
  const std::uint64_t held = t.has_raw                ? t.raw.size() / item
                             : t.data_type == float32 ? t.float_count
                             : t.data_type == int32   ? t.int32_count
                                                      : t.int64_count;
  if ((t.has_raw && t.raw.size() % item) || held != count)
    throw FormatError(what + " '" + t.name + "' of dims " + dims_string(t.dims) + " holds " +
                      (t.has_raw ? std::to_string(t.raw.size()) + " bytes" : std::to_string(held) + " values") + " for " +
                      std::to_string(count) + " values");
}

inline OnnxModel parse_file(const std::string& path, const std::string& bytes) {
  try {
    OnnxModel model = parse_model(bytes);
    for (const auto& [name, t] : model.initializers) check_tensor(t, "the constant");
    return model;
  } catch (const FormatError& e) {
    throw ModelFileError(ModelFileError::Kind::corrupted, path, std::string("not a valid ONNX file: ") + e.what());
  }
}

// The float32 values the file's constants hold, counted without reading them.
inline std::uint64_t floats_held(const OnnxModel& model) {
  std::uint64_t total = 0;
  for (const auto& [name, t] : model.initializers) {
    if (t.data_type != float32) continue;
    if (t.external) {  // its dims' product, checked by check_tensor
      std::uint64_t count = 1;
      for (const std::int64_t d : t.dims) count *= std::uint64_t(d);
      total += count;
    } else {
      total += t.has_raw ? t.raw.size() / sizeof(float) : t.float_count;
    }
  }
  return total;
}

// Reads the constants stored outside the model's file (external data, as torch.onnx.export
// writes by default from torch 2.x: NAME.onnx.data beside NAME.onnx) into `files`, pointing each
// tensor's raw bytes at them. A location must be a file beside the model or below its folder (a
// relative path without ".."), holding the tensor's bytes where the entries say; the files
// together hold at most `largest` bytes.
inline void read_external_data(OnnxModel& model, const std::string& path, std::uint64_t largest,
                               std::map<std::string, std::string>& files) {
  const auto refuse = [&](const Tensor& t, const std::string& why) {
    return ModelFileError(ModelFileError::Kind::corrupted, path, "the constant '" + t.name + "' is stored outside the file: " + why);
  };
  const std::size_t slash = path.rfind('/');
  const std::string folder = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::uint64_t total = 0;  // the bytes of the files read so far
  for (auto& [name, t] : model.initializers) {
    if (!t.external) continue;
    if (t.location.empty() || !t.valid)
      throw refuse(t, "its external_data entries give no location, or an offset or length that is not a number");
    const std::string& where = t.location;
    const bool climbs = where == ".." || where.starts_with("../") || where.ends_with("/..") || where.find("/../") != std::string::npos;
    if (where.front() == '/' || climbs || where.find('\\') != std::string::npos || where.find('\0') != std::string::npos)
      throw refuse(t, "its location '" + where + "' is not a file beside the model (a relative path without \"..\")");
    auto found = files.find(where);
    if (found == files.end()) {
      try {
        found = files.emplace(where, read_file(folder + where, largest - total)).first;
        total += found->second.size();
      } catch (const ModelFileError& e) {
        throw refuse(t, std::string("its data file cannot be read: ") + e.what());
      }
    }
    const std::string& bytes = found->second;
    const std::uint64_t offset = std::uint64_t(t.offset);
    const std::uint64_t length = t.length < 0 ? (offset <= bytes.size() ? bytes.size() - offset : 0) : std::uint64_t(t.length);
    if (offset > bytes.size() || length > bytes.size() - offset)
      throw refuse(t, "its bytes " + std::to_string(offset) + " to " + std::to_string(offset + length) + " are beyond the end of " + where +
                          " (" + std::to_string(bytes.size()) + " bytes)");
    t.raw = std::string_view(bytes).substr(std::size_t(offset), std::size_t(length));
    t.has_raw = true;
    t.external = false;
    try {
      check_tensor(t, "the constant");
    } catch (const FormatError& e) {
      throw refuse(t, e.what());
    }
  }
}

// ---- export ----------------------------------------------------------------------------------

inline ProtoOut attribute_header(const std::string& name, AttributeType type) {
  ProtoOut a;
  a.bytes_field(field::attr_name, name);
  a.int_field(field::attr_type, type);
  return a;
}
inline ProtoOut attribute(const std::string& name, std::int64_t value) {
  ProtoOut a = attribute_header(name, attr_int);
  a.int_field(field::i, value);
  return a;
}
inline ProtoOut attribute(const std::string& name, const std::vector<std::int64_t>& values) {
  ProtoOut a = attribute_header(name, attr_ints);
  for (std::int64_t v : values) a.int_field(field::ints, v);
  return a;
}
inline ProtoOut attribute(const std::string& name, float value) {
  ProtoOut a = attribute_header(name, attr_float);
  a.float_field(field::f, value);
  return a;
}

inline ProtoOut value_info(const std::string& name, const std::vector<std::int64_t>& dims) {
  ProtoOut shape;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    ProtoOut dim;
    if (i == 0) dim.bytes_field(field::dim_param, "N");  // the batch
    else dim.int_field(field::dim_value, dims[i]);
    shape.message(field::dim, std::move(dim));
  }
  ProtoOut tensor;
  tensor.int_field(field::elem_type, float32);
  tensor.message(field::shape, std::move(shape));
  ProtoOut type;
  type.message(field::tensor_type, std::move(tensor));
  ProtoOut info;
  info.bytes_field(field::value_name, name);
  info.message(field::value_type, std::move(type));
  return info;
}

/// The graph being written: nodes in order, and the current activation's name and rank.
class GraphOut {
 public:
  /// Every float tensor of the network by name ("3.conv2d.kernel", "5.batchnorm.moving_mean").
  std::map<std::string, std::span<const float>> tensors;
  std::string tensor;   // the current activation
  bool spatial = true;  // NCHW (N, C, H, W), or flat (N, features)

  /// Adds a node reading the current activation (then `inputs`); its output becomes current.
  void node(const std::string& op, const std::string& output, std::vector<std::string> inputs = {}, std::vector<ProtoOut> attributes = {}) {
    inputs.insert(inputs.begin(), tensor);
    nodes_.push_back({op, output, std::move(inputs), std::move(attributes)});
    tensor = output;
  }
  /// An initializer holding the network's floats where they are.
  void initializer(const std::string& name, const std::vector<std::int64_t>& dims) {
    const std::span<const float> values = tensors.at(name);
    ProtoOut t = tensor_header(name, dims, float32);
    t.borrowed_field(field::raw_data, values.data(), values.size_bytes());
    initializers_.push_back(std::move(t));
  }
  /// An initializer holding values of its own (a permuted kernel, a shape).
  template <class T>
  void initializer(const std::string& name, const std::vector<std::int64_t>& dims, const std::vector<T>& values) {
    ProtoOut t = tensor_header(name, dims, std::is_same_v<T, float> ? float32 : int64);
    t.bytes_field(field::raw_data, std::string_view(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
    initializers_.push_back(std::move(t));
  }
  /// Makes a flat activation (N, C) the 4-D (N, C, 1, 1) that Conv and MaxPool take.
  void make_spatial(const std::string& layer, int channels) {
    if (spatial) return;
    initializer<std::int64_t>(layer + ".shape", {4}, {0, channels, 1, 1});
    node("Reshape", layer + ".reshape", {layer + ".shape"});
    spatial = true;
  }

  /// The graph, its last node's output renamed `output`.
  ProtoOut finish(const std::string& input, const std::vector<std::int64_t>& input_dims, const std::string& output,
                  const std::vector<std::int64_t>& output_dims) {
    ProtoOut graph;
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      Node& node = nodes_[n];
      ProtoOut out;
      for (const std::string& name : node.inputs) out.bytes_field(field::node_input, name);
      out.bytes_field(field::node_output, n + 1 == nodes_.size() ? output : node.output);
      out.bytes_field(field::node_name, node.output);
      out.bytes_field(field::op_type, node.op);
      for (ProtoOut& a : node.attributes) out.message(field::attribute, std::move(a));
      graph.message(field::node, std::move(out));
    }
    graph.bytes_field(field::graph_name, "tnet");
    for (ProtoOut& t : initializers_) graph.message(field::initializer, std::move(t));
    graph.message(field::input, value_info(input, input_dims));
    graph.message(field::output, value_info(output, output_dims));
    return graph;
  }

 private:
  struct Node {
    std::string op, output;
    std::vector<std::string> inputs;
    std::vector<ProtoOut> attributes;
  };
  static ProtoOut tensor_header(const std::string& name, const std::vector<std::int64_t>& dims, int type) {
    ProtoOut t;
    for (std::int64_t d : dims) t.int_field(field::dims, d);
    t.int_field(field::data_type, type);
    t.bytes_field(field::tensor_name, name);
    return t;
  }
  std::vector<Node> nodes_;
  std::vector<ProtoOut> initializers_;
};

// ---- import ----------------------------------------------------------------------------------

/// The graph being read: a cursor over its nodes, the current activation, and the values staged
/// for the network (nothing reaches it until every node has been checked).
class GraphIn {
 public:
  GraphIn(const OnnxModel& model, std::string path) : model_(model), path_(std::move(path)) {}

  std::string tensor;        // the current activation
  bool spatial = true;       // NCHW (N, C, H, W), or flat (N, features)
  std::array<int, 3> chw{};  // when set (chw[0] > 0): flattened from NCHW (C, H, W), not tnet's HWC
  std::int64_t opset = written_opset;
  std::map<std::string, std::vector<float>> staged;  // full tensor name -> values
  std::map<std::string, std::uint64_t> counts;       // full tensor name -> a counter's value
  // The output of the Conv read last: a BatchNorm right after it that the graph does not have was
  // folded into it (PyTorch's export of an eval-mode network), and reads as the identity.
  std::string conv_output;

  /// The cursor's place, to read part of the graph again another way (a residual block's paths in
  /// the other order).
  struct Mark {
    std::size_t at;
    std::string tensor, conv_output;
    bool spatial;
    std::array<int, 3> chw;
  };
  Mark mark() const { return {at_, tensor, conv_output, spatial, chw}; }
  void restore(const Mark& m) { at_ = m.at, tensor = m.tensor, conv_output = m.conv_output, spatial = m.spatial, chw = m.chw; }
  /// The index of the next node not yet read.
  std::size_t position() const { return at_; }

  /// The next node that does something, or null at the end; nodes that make values (Constant,
  /// Identity of a value) are passed over, and an Identity of the current activation moves it on.
  const Node* peek() {
    while (at_ < model_.nodes.size()) {
      const Node& n = model_.nodes[at_];
      if (is_value_node(model_, n) || computes_shape(n)) {
        ++at_;
      } else if (n.op_type == "Identity" && n.inputs.size() == 1 && n.outputs.size() == 1 && n.inputs[0] == tensor) {
        tensor = n.outputs[0];
        ++at_;
      } else {
        return &n;
      }
    }
    return nullptr;
  }
  /// Takes the next node if it is ONNX's operator `op` and reads the current activation.
  const Node* take_if(std::string_view op) {
    const Node* n = peek();
    if (!n || n->op_type != op || !onnx_domain(*n) || n->inputs.empty() || n->inputs[0] != tensor || n->outputs.empty()) return nullptr;
    ++at_;
    tensor = n->outputs[0];
    return n;
  }
  /// The dims of the constant `name`; null when it is not a constant.
  const std::vector<std::int64_t>* constant_dims(const std::string& name) const {
    const Tensor* t = model_.value(name);
    return t ? &t->dims : nullptr;
  }
  /// Takes the next node if it is ONNX's operator `op` of the current activation and a constant, in
  /// either order (x * scale, offset + x): the node and the index of its constant operand.
  std::optional<std::pair<const Node*, std::size_t>> take_if_with_constant(std::string_view op) {
    const Node* n = peek();
    if (!n || n->op_type != op || !onnx_domain(*n) || n->inputs.size() != 2 || n->outputs.size() != 1) return std::nullopt;
    const std::size_t constant = n->inputs[0] == tensor ? 1 : 0;
    if (n->inputs[1 - constant] != tensor || !model_.value(n->inputs[constant])) return std::nullopt;
    ++at_;
    tensor = n->outputs[0];
    return std::pair{n, constant};
  }
  /// Takes the next node, which must be one of `ops` and read the current activation.
  const Node& take(std::initializer_list<std::string_view> ops, const std::string& layer) {
    std::string expected;
    for (std::string_view op : ops) {
      if (const Node* n = take_if(op)) return *n;
      expected += (expected.empty() ? "" : " or ") + std::string(op);
    }
    const Node* n = peek();
    if (!n) throw mismatch("the graph ends before layer " + layer + ", which expects " + expected);
    if (n->inputs.empty() || n->inputs[0] != tensor)
      refuse(*n, layer, "it does not read " + tensor + ", the output before it (only a chain of nodes maps to a tnet network)");
    if (!onnx_domain(*n)) refuse(*n, layer, "its operator is from domain '" + n->domain + "', not ONNX's; expected " + expected);
    refuse(*n, layer, "expected " + expected);
  }
  static bool onnx_domain(const Node& n) { return n.domain.empty() || n.domain == "ai.onnx"; }

  [[noreturn]] void refuse(const Node& n, const std::string& layer, const std::string& why) const {
    throw mismatch("ONNX node " + describe(n) + " does not fit layer " + layer + ": " + why);
  }
  ModelFileError mismatch(const std::string& why) const { return ModelFileError(ModelFileError::Kind::architecture_mismatch, path_, why); }
  std::string describe(const Node& n) const {
    const std::size_t index = std::size_t(&n - model_.nodes.data());
    return std::to_string(index) + " (" + n.op_type + (n.name.empty() ? "" : " '" + n.name + "'") + ")";
  }

  std::int64_t integer(const Node& n, const char* name, std::int64_t fallback) const {
    const Attribute* a = n.find(name);
    return a ? a->i : fallback;
  }
  float real(const Node& n, const char* name, float fallback) const {
    const Attribute* a = n.find(name);
    return a ? a->f : fallback;
  }
  std::vector<std::int64_t> integers(const Node& n, const char* name, std::vector<std::int64_t> fallback) const {
    const Attribute* a = n.find(name);
    return a ? a->ints : fallback;
  }
  std::string text(const Node& n, const char* name, std::string fallback) const {
    const Attribute* a = n.find(name);
    return a ? std::string(a->s) : fallback;
  }
  /// Refuses an attribute whose value is not `expected` (its default when absent).
  void require(const Node& n, const std::string& layer, const char* name, const std::vector<std::int64_t>& expected,
               const std::vector<std::int64_t>& fallback) const {
    const std::vector<std::int64_t> got = integers(n, name, fallback);
    if (got != expected) refuse(n, layer, std::string(name) + " is " + dims_string(got) + ", the layer's " + dims_string(expected));
  }

  /// Input `index` of node `n`: a float initializer of shape `dims`. nullopt when `optional` and
  /// the node has no such input.
  std::optional<std::vector<float>> floats(const Node& n, std::size_t index, const std::vector<std::int64_t>& dims,
                                           const std::string& layer, const char* what, bool optional = false) const {
    if (index >= n.inputs.size() || n.inputs[index].empty()) {
      if (optional) return std::nullopt;
      refuse(n, layer, std::string("it has no ") + what);
    }
    const Tensor* found = model_.value(n.inputs[index]);
    if (!found) refuse(n, layer, std::string("its ") + what + " '" + n.inputs[index] + "' is not a constant (an initializer)");
    const Tensor& t = *found;
    // A bias (C) may also come as (1, C).
    std::vector<std::int64_t> got = t.dims;
    if (dims.size() == 1 && got.size() == 2 && got[0] == 1) got.erase(got.begin());
    if (got != dims)
      refuse(n, layer, std::string("its ") + what + " has shape " + dims_string(t.dims) + ", the layer's is " + dims_string(dims));
    if (t.external) refuse(n, layer, std::string("its ") + what + " is stored outside the file (external data is not supported)");
    if (t.data_type != float32)
      refuse(n, layer, std::string("its ") + what + " is not float32 (data type " + std::to_string(t.data_type) + ")");
    // The layer's own shape: its count fits (the network holds that many floats).
    std::uint64_t count = 1;
    for (std::int64_t d : dims) count *= std::uint64_t(d);
    if (t.has_raw && t.raw.size() != count * sizeof(float))
      refuse(n, layer,
             std::string("its ") + what + " holds " + std::to_string(t.raw.size()) + " bytes for " + std::to_string(count) + " floats");
    if (!t.has_raw && t.float_count != count)
      refuse(n, layer, std::string("its ") + what + " holds " + std::to_string(t.float_count) + " floats, not " + std::to_string(count));
    const std::vector<float> values = tnet::detail::allocating(count * sizeof(float), std::string("the ") + what + " of layer " + layer,
                                                               path_, [&] { return tensor_floats(t); });
    for (float v : values)
      if (!std::isfinite(v))
        throw ModelFileError(ModelFileError::Kind::not_finite, path_,
                             std::string("ONNX node ") + describe(n) + "'s " + what + " holds NaN or infinity");
    return values;
  }
  /// Input `index` of node `n`, a float constant of one value (a scalar, or of shape (1));
  /// nullopt when the node has no such input.
  std::optional<float> scalar(const Node& n, std::size_t index, const std::string& layer, const char* what) const {
    if (index >= n.inputs.size() || n.inputs[index].empty()) return std::nullopt;
    const Tensor* t = model_.value(n.inputs[index]);
    const bool vector = t && t->dims == std::vector<std::int64_t>{1};
    return floats(n, index, vector ? std::vector<std::int64_t>{1} : std::vector<std::int64_t>{}, layer, what)->at(0);
  }
  /// Takes the next node when it is a Mul of `x` and the current activation, in either order (the
  /// x * gate(x) of SiLU and HardSwish); refuses anything else.
  const Node& take_product(const std::string& x, const std::string& layer) {
    const Node* n = peek();
    if (!n) throw mismatch("the graph ends before layer " + layer + " is complete: it expects a Mul of " + x + " and " + tensor);
    const bool fits = n->op_type == "Mul" && onnx_domain(*n) && n->inputs.size() == 2 && n->outputs.size() == 1 &&
                      ((n->inputs[0] == x && n->inputs[1] == tensor) || (n->inputs[0] == tensor && n->inputs[1] == x));
    if (!fits) refuse(*n, layer, "expected a Mul of " + x + " and " + tensor);
    ++at_;
    tensor = n->outputs[0];
    return *n;
  }
  /// The int64 values named `name`, as far as they can be known without the batch size: a
  /// constant, or a shape computed from the current activation's (Shape, Gather, Unsqueeze,
  /// Concat, Cast: what PyTorch writes for x.view(x.size(0), -1)), whose dims are `dims`
  /// (batch_dim for the batch) and name `activation`. nullopt for anything else.
  static constexpr std::int64_t batch_dim = -2;
  /// A tensor whose dims are known, for a Shape of it.
  struct Known {
    std::string name;
    std::vector<std::int64_t> dims;
  };
  std::optional<std::vector<std::int64_t>> ints_of(const std::string& name, const std::string& activation,
                                                   const std::vector<std::int64_t>& dims, const Known& also = {}) const {
    int visits = 0;  // a hostile graph's shape could otherwise branch exponentially
    return ints_of(name, activation, dims, also, visits);
  }
  std::optional<std::vector<std::int64_t>> ints_of(const std::string& name, const std::string& activation,
                                                   const std::vector<std::int64_t>& dims, const Known& also, int& visits) const {
    if (++visits > 64) return std::nullopt;
    if (const Tensor* t = model_.value(name)) {
      if ((t->data_type != int64 && t->data_type != int32) || t->dims.size() > 1) return std::nullopt;
      const auto values = tensor_int64s(*t, 16);  // a shape: a few values
      if (!values || values->size() != (t->dims.empty() ? 1u : std::uint64_t(t->dims[0]))) return std::nullopt;
      return values;
    }
    const Node* n = nullptr;
    for (const Node& candidate : model_.nodes)
      if (candidate.outputs.size() == 1 && candidate.outputs[0] == name) n = &candidate;
    if (!n || n->inputs.empty()) return std::nullopt;
    if (n->op_type == "Shape") {
      if (n->find("start") || n->find("end")) return std::nullopt;
      if (n->inputs[0] == activation) return dims;
      if (!also.name.empty() && n->inputs[0] == also.name) return also.dims;
      return std::nullopt;
    }
    const auto of = [&](const std::string& input) { return ints_of(input, activation, dims, also, visits); };
    if (n->op_type == "Cast") return of(n->inputs[0]);
    if (n->op_type == "Unsqueeze") {  // of a scalar, along axis 0: the same value as a vector
      const auto axes = n->inputs.size() > 1 ? of(n->inputs[1]) : std::optional(integers(*n, "axes", {}));
      if (!axes || *axes != std::vector<std::int64_t>{0}) return std::nullopt;
      return of(n->inputs[0]);
    }
    if (n->op_type == "Slice") {  // of a vector, steps of 1: bounds as inputs (opset >= 10) or attributes
      const bool inputs = n->inputs.size() >= 3;
      const auto data = of(n->inputs[0]);
      const auto starts = inputs ? of(n->inputs[1]) : std::optional(integers(*n, "starts", {}));
      const auto ends = inputs ? of(n->inputs[2]) : std::optional(integers(*n, "ends", {}));
      const auto axes = n->inputs.size() > 3 && !n->inputs[3].empty() ? of(n->inputs[3])
                        : inputs                                      ? std::optional(std::vector<std::int64_t>{0})
                                                                      : std::optional(integers(*n, "axes", {0}));
      const auto steps = n->inputs.size() > 4 && !n->inputs[4].empty() ? of(n->inputs[4]) : std::optional(std::vector<std::int64_t>{1});
      const std::vector<std::int64_t> one{1}, zero{0};
      if (!data || !starts || !ends || !axes || !steps || starts->size() != 1 || ends->size() != 1 || *axes != zero || *steps != one)
        return std::nullopt;
      const std::int64_t size = std::int64_t(data->size());
      const auto clamp = [&](std::int64_t i) { return std::clamp(i < 0 ? i + size : i, std::int64_t{0}, size); };
      const std::int64_t begin = clamp((*starts)[0]), end = clamp((*ends)[0]);
      return std::vector<std::int64_t>(data->begin() + begin, data->begin() + std::max(begin, end));
    }
    if (n->op_type == "Gather" && n->inputs.size() == 2 && integer(*n, "axis", 0) == 0) {
      const auto data = of(n->inputs[0]), indices = of(n->inputs[1]);
      if (!data || !indices) return std::nullopt;
      std::vector<std::int64_t> out;
      for (std::int64_t i : *indices) {
        if (i < 0) i += std::int64_t(data->size());
        if (i < 0 || i >= std::int64_t(data->size())) return std::nullopt;
        out.push_back((*data)[std::size_t(i)]);
      }
      return out;
    }
    if (n->op_type == "Concat" && integer(*n, "axis", 0) == 0) {
      std::vector<std::int64_t> out;
      for (const std::string& input : n->inputs) {
        const auto part = of(input);
        if (!part || out.size() + part->size() > 16) return std::nullopt;
        out.insert(out.end(), part->begin(), part->end());
      }
      return out;
    }
    return std::nullopt;
  }
  /// Whether `n` only computes a shape (passed over by peek; read by ints_of when used).
  static bool computes_shape(const Node& n) {
    return n.op_type == "Shape" || n.op_type == "Gather" || n.op_type == "Unsqueeze" || n.op_type == "Concat" || n.op_type == "Cast" ||
           n.op_type == "Slice";
  }

  /// Takes a Flatten (axis 1) or a Reshape to (N, features) of the current activation, whose
  /// dims are `dims` (batch_dim first); the Reshape's shape may also be computed from `also`'s.
  const Node* take_flatten(const std::string& layer, int features, const std::vector<std::int64_t>& dims, const Known& also = {}) {
    if (const Node* n = take_if("Flatten")) {
      if (integer(*n, "axis", 1) != 1) refuse(*n, layer, "a Flatten over axis " + std::to_string(integer(*n, "axis", 1)) + ", not 1");
      return n;
    }
    const std::string input = tensor;
    if (const Node* n = take_if("Reshape")) {
      const auto shape = n->inputs.size() > 1 ? ints_of(n->inputs[1], input, dims, also) : std::nullopt;
      // (N, features) with the batch as itself, 0 (copied) or -1 (inferred); features as themselves or -1.
      const bool batch_first =
          shape && shape->size() == 2 &&
          ((*shape)[0] == batch_dim || (*shape)[0] == 0 || (*shape)[0] >= 1 || ((*shape)[0] == -1 && (*shape)[1] == features));
      const bool zero = integer(*n, "allowzero", 0) != 0 && shape && std::ranges::find(*shape, 0) != shape->end();
      if (!batch_first || zero || ((*shape)[1] != -1 && (*shape)[1] != features))
        refuse(*n, layer, "a Reshape that does not flatten to (N, " + std::to_string(features) + ")");
      return n;
    }
    return nullptr;
  }
  /// Takes the next node, which must be Add of the current activation and `other`, in either
  /// order (a residual block's two paths); its output becomes current.
  void take_sum(const std::string& layer, const std::string& other) {
    const Node* n = peek();
    if (!n) throw mismatch("the graph ends before the Add of layer " + layer);
    const bool reads_both =
        n->inputs.size() == 2 && ((n->inputs[0] == tensor && n->inputs[1] == other) || (n->inputs[0] == other && n->inputs[1] == tensor));
    if (n->op_type != "Add" || !onnx_domain(*n))
      refuse(*n, layer, "expected the Add of the block's two paths, " + other + " and " + tensor);
    if (!reads_both || n->outputs.empty()) refuse(*n, layer, "it does not add the block's two paths, " + other + " and " + tensor);
    ++at_;
    tensor = n->outputs[0];
  }
  /// Takes what makes a flat activation 4-D again, when it is flat.
  void take_spatial(const std::string& layer, int channels) {
    if (spatial) return;
    const std::string input = tensor;
    if (const Node* n = take_if("Reshape")) {
      const auto shape = n->inputs.size() > 1 ? ints_of(n->inputs[1], input, {batch_dim, channels}) : std::nullopt;
      const bool fits = shape && shape->size() == 4 && (*shape)[1] == channels && (*shape)[2] == 1 && (*shape)[3] == 1;
      if (!fits) refuse(*n, layer, "a Reshape that does not make (N, " + std::to_string(channels) + ", 1, 1)");
    } else {
      take({"Reshape"}, layer);
    }
    spatial = true;
  }

 private:
  const OnnxModel& model_;
  std::string path_;
  std::size_t at_ = 0;
};

// ---- each operator, written and read ---------------------------------------------------------
// Plain functions of the layer's sizes, so that their code is compiled once, not once per layer
// shape (the mappings below are one line each).

inline std::vector<ProtoOut> attributes_of(ProtoOut&& a) {
  std::vector<ProtoOut> v;
  v.push_back(std::move(a));
  return v;
}

/// A window's padding as ONNX writes it (top, left, bottom, right), and as the layer names it.
struct WindowPads {
  std::array<std::int64_t, 4> pads;
  std::string name;  // "Keras's \"same\"", "\"valid\"", "pad 3"
};

/// Padding Pad of a window K, stride S over H x W, as ONNX's pads: pad(p) as PyTorch writes it
/// (p on every side); same and valid as the windows reach (Keras's extra row after).
template <Padding Pad>
WindowPads window_pads(int H, int W, int K, int S) {
  const std::string name = Pad.is_same() ? "Keras's \"same\"" : Pad == Padding::valid ? "\"valid\"" : Pad.str();
  if (Pad.is_explicit()) return {{Pad.amount, Pad.amount, Pad.amount, Pad.amount}, name};
  return {{Pad.before(H, K, S), Pad.before(W, K, S), Pad.after(H, K, S), Pad.after(W, K, S)}, name};
}

/// A convolution's geometry: input H x W x C, F filters of K x K, stride S, its padding, and its
/// groups (1; C for a depthwise convolution, whose F = C * multiplier).
struct ConvGeometry {
  int H, W, C, F, K, S;
  WindowPads padding;
  int group = 1;
};

// A kernel from tnet's HWIO (K, K, C / group, F) to ONNX's OIHW (F, C / group, K, K) when
// `to_oihw`, else back. A depthwise kernel (K, K, C, M) is (K, K, 1, C * M).
inline void swap_kernel_layout(const float* from, float* to, const ConvGeometry& c, bool to_oihw) {
  const int KK = c.K * c.K, I = c.C / c.group;
  for (int f = 0; f < c.F; ++f)
    for (int ch = 0; ch < I; ++ch)
      for (int k = 0; k < KK; ++k) {
        const std::size_t oihw = (std::size_t(f) * I + ch) * KK + k, hwio = (std::size_t(k) * I + ch) * c.F + f;
        to[to_oihw ? oihw : hwio] = from[to_oihw ? hwio : oihw];
      }
}

/// The padding of a Conv, MaxPool or AveragePool node, however the file says it (pads or
/// auto_pad), must be the layer's: the same before (top, left) and the same output size (padding
/// after that no window reaches, as PyTorch writes pad(p) at stride 2, makes no difference).
/// `zero_padded`: the (top, left, bottom, right) zeros of a Pad node before `n`, whose own
/// padding must then be none.
inline void read_window_pads(GraphIn& g, const Node& n, const std::string& name, const WindowPads& expected, int H, int W, int K, int S,
                             const std::vector<std::int64_t>* zero_padded = nullptr) {
  const std::string auto_pad = g.text(n, "auto_pad", "NOTSET");
  std::vector<std::int64_t> got;
  if (auto_pad == "NOTSET") {
    got = g.integers(n, "pads", {0, 0, 0, 0});
  } else if (auto_pad == "VALID") {
    got = {0, 0, 0, 0};
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    auto total = [&](int in) { return std::max(((in + S - 1) / S - 1) * S + K - in, 0); };
    const int total_h = total(H), total_w = total(W);
    const int top = auto_pad == "SAME_UPPER" ? total_h / 2 : total_h - total_h / 2;
    const int left = auto_pad == "SAME_UPPER" ? total_w / 2 : total_w - total_w / 2;
    got = {top, left, total_h - top, total_w - left};
  } else {
    g.refuse(n, name, "auto_pad " + auto_pad + " is not an ONNX padding");
  }
  if (zero_padded) {
    if (got != std::vector<std::int64_t>{0, 0, 0, 0})
      g.refuse(n, name, "it pads " + dims_string(got) + " after a Pad node; the layer pads once");
    got = *zero_padded;
  }
  const std::array<std::int64_t, 4>& want = expected.pads;
  auto outputs = [&](std::int64_t in, std::int64_t before, std::int64_t after) { return (in + before + after - K) / S + 1; };
  const bool fits = got.size() == 4 && got[0] == want[0] && got[1] == want[1] && got[2] >= 0 && got[3] >= 0 && got[2] <= K && got[3] <= K &&
                    outputs(H, got[0], got[2]) == outputs(H, want[0], want[2]) &&
                    outputs(W, got[1], got[3]) == outputs(W, want[1], want[3]);
  if (!fits)
    g.refuse(n, name,
             "its padding (top, left, bottom, right) is " + dims_string(got) + ", the layer's " +
                 dims_string(std::vector<std::int64_t>(want.begin(), want.end())) + " (" + expected.name + ")");
}

inline void write_conv(GraphOut& g, const std::string& name, const ConvGeometry& c) {
  const int K = c.K, C = c.C, F = c.F;
  g.make_spatial(name, C);
  const std::span<const float> hwio = g.tensors.at(name + ".kernel");
  std::vector<float> oihw(hwio.size());
  swap_kernel_layout(hwio.data(), oihw.data(), c, true);
  g.initializer(name + ".kernel", {F, C / c.group, K, K}, oihw);
  g.initializer(name + ".bias", {F});
  std::vector<ProtoOut> attributes;
  attributes.push_back(attribute("kernel_shape", std::vector<std::int64_t>{K, K}));
  attributes.push_back(attribute("strides", std::vector<std::int64_t>{c.S, c.S}));
  attributes.push_back(attribute("pads", std::vector<std::int64_t>(c.padding.pads.begin(), c.padding.pads.end())));
  attributes.push_back(attribute("dilations", std::vector<std::int64_t>{1, 1}));
  attributes.push_back(attribute("group", std::int64_t{c.group}));
  g.node("Conv", name, {name + ".kernel", name + ".bias"}, std::move(attributes));
}

inline void read_conv(GraphIn& g, const std::string& name, const ConvGeometry& c) {
  const int K = c.K, C = c.C, F = c.F;
  g.take_spatial(name, C);
  const Node& n = g.take({"Conv"}, name);
  if (g.integer(n, "group", 1) != c.group)
    g.refuse(n, name, "group is " + std::to_string(g.integer(n, "group", 1)) + ", not " + std::to_string(c.group));
  g.require(n, name, "dilations", {1, 1}, {1, 1});
  g.require(n, name, "strides", {c.S, c.S}, {1, 1});
  g.require(n, name, "kernel_shape", {K, K}, {K, K});
  read_window_pads(g, n, name, c.padding, c.H, c.W, K, c.S);
  const std::vector<float> oihw = *g.floats(n, 1, {F, C / c.group, K, K}, name, "kernel");
  std::vector<float> hwio(oihw.size());
  swap_kernel_layout(oihw.data(), hwio.data(), c, false);
  g.staged[name + ".kernel"] = std::move(hwio);
  g.staged[name + ".bias"] = g.floats(n, 2, {F}, name, "bias", true).value_or(std::vector<float>(std::size_t(F), 0.0f));
  g.conv_output = g.tensor;
}

inline void write_batch_norm(GraphOut& g, const std::string& name, int C, float momentum, float epsilon) {
  g.initializer(name + ".gamma", {C});
  g.initializer(name + ".beta", {C});
  g.initializer(name + ".moving_mean", {C});
  g.initializer(name + ".moving_variance", {C});
  std::vector<ProtoOut> attributes;
  attributes.push_back(attribute("epsilon", epsilon));
  attributes.push_back(attribute("momentum", momentum));
  g.node("BatchNormalization", name, {name + ".gamma", name + ".beta", name + ".moving_mean", name + ".moving_variance"},
         std::move(attributes));
}

// A batch norm's statistics, as a converged moving average: its zero-debiasing factor is 1, so
// training on from them continues the average instead of replacing it.
inline void stage_statistics(GraphIn& g, const std::string& name, std::vector<float> mean, std::vector<float> variance, float momentum) {
  std::uint64_t updates = 1;
  while (std::pow(double(momentum), double(updates)) > 0x1p-60) updates *= 2;
  g.staged[name + ".biased_mean"] = mean;
  g.staged[name + ".biased_variance"] = variance;
  g.staged[name + ".moving_mean"] = std::move(mean);
  g.staged[name + ".moving_variance"] = std::move(variance);
  g.counts[name + ".updates"] = updates;
}

inline void read_batch_norm(GraphIn& g, const std::string& name, int C, float momentum, float layer_epsilon) {
  // A batch norm the exporter folded away reads as gamma and beta with statistics that change
  // nothing: mean 0 and a variance v with v + epsilon == 1 in float, so that 1 / sqrt(v + epsilon)
  // is 1 (and in double, as the inference fusion computes it, rounds to 1).
  const auto folded = [&](std::vector<float> gamma, std::vector<float> beta) {
    float v = 1.0f - layer_epsilon;
    while (v + layer_epsilon > 1.0f) v = std::nextafter(v, 0.0f);
    while (v + layer_epsilon < 1.0f) v = std::nextafter(v, 2.0f);
    g.staged[name + ".gamma"] = std::move(gamma);
    g.staged[name + ".beta"] = std::move(beta);
    stage_statistics(g, name, std::vector<float>(std::size_t(C), 0.0f), std::vector<float>(std::size_t(C), v), momentum);
  };
  // Folded into x * scale + offset, a Mul then an Add by constants of C values per channel, as
  // tf2onnx writes a Keras BatchNormalization of features (after a Dense), and Keras 3's of
  // images too: gamma = scale, beta = offset. Per channel: (C) or (1, C) flat, (1, C, 1, 1) or
  // (C, 1, 1) in NCHW.
  const auto per_channel = [&](const std::pair<const Node*, std::size_t>& taken, const char* what) {
    const std::vector<std::int64_t>* dims = g.constant_dims(taken.first->inputs[taken.second]);
    const std::vector<std::int64_t> want = !g.spatial                  ? std::vector<std::int64_t>{C}
                                           : dims && dims->size() == 3 ? std::vector<std::int64_t>{C, 1, 1}
                                                                       : std::vector<std::int64_t>{1, C, 1, 1};
    return *g.floats(*taken.first, taken.second, want, name, what);
  };
  const auto mul = g.take_if_with_constant("Mul");
  const auto add = g.take_if_with_constant("Add");
  if (mul || add) {
    folded(mul ? per_channel(*mul, "scale") : std::vector<float>(std::size_t(C), 1.0f),
           add ? per_channel(*add, "offset") : std::vector<float>(std::size_t(C), 0.0f));
    return;
  }
  // Folded into the Conv before it (PyTorch's eval-mode export): the identity, exactly.
  const Node* next = g.peek();
  if ((!next || next->op_type != "BatchNormalization") && !g.conv_output.empty() && g.conv_output == g.tensor) {
    folded(std::vector<float>(std::size_t(C), 1.0f), std::vector<float>(std::size_t(C), 0.0f));
    return;
  }
  const Node& n = g.take({"BatchNormalization"}, name);
  if (g.integer(n, "training_mode", 0) != 0) g.refuse(n, name, "it is in training mode");
  if (g.integer(n, "spatial", 1) != 1) g.refuse(n, name, "spatial is 0 (statistics per value, not per channel)");
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) g.refuse(n, name, "it outputs running statistics (a training graph)");
  const float epsilon = g.real(n, "epsilon", 1e-5f);
  if (!(epsilon >= 0.0f) || !std::isfinite(epsilon)) g.refuse(n, name, "its epsilon is not a finite number >= 0");
  g.staged[name + ".gamma"] = *g.floats(n, 1, {C}, name, "scale");
  g.staged[name + ".beta"] = *g.floats(n, 2, {C}, name, "bias");
  std::vector<float> mean = *g.floats(n, 3, {C}, name, "mean");
  std::vector<float> variance = *g.floats(n, 4, {C}, name, "variance");
  // tnet divides by sqrt(variance + its epsilon); the file's epsilon is folded into the variance.
  if (epsilon != layer_epsilon)
    for (float& v : variance) v = static_cast<float>(double(v) + double(epsilon) - double(layer_epsilon));
  stage_statistics(g, name, std::move(mean), std::move(variance), momentum);
}

// MaxPool, or AveragePool with `count_include_pad` (nullopt: MaxPool). An average that counts the
// padded zeros is written as PyTorch 1.x writes it, a Pad of zeros and an AveragePool without
// padding: OpenCV 4.6 ignores count_include_pad.
inline void write_pool(GraphOut& g, const char* op, const std::string& name, int C, int pool, int stride, const WindowPads& padding,
                       std::optional<bool> count_include_pad = std::nullopt) {
  g.make_spatial(name, C);
  const std::array<std::int64_t, 4>& p = padding.pads;
  const bool padded = p != std::array<std::int64_t, 4>{0, 0, 0, 0}, zero_padded = padded && count_include_pad && *count_include_pad;
  if (zero_padded) {
    g.initializer<std::int64_t>(name + ".pads", {8}, {0, 0, p[0], p[1], 0, 0, p[2], p[3]});
    g.node("Pad", name + ".pad", {name + ".pads"});
  }
  std::vector<ProtoOut> attributes;
  attributes.push_back(attribute("kernel_shape", std::vector<std::int64_t>{pool, pool}));
  attributes.push_back(attribute("strides", std::vector<std::int64_t>{stride, stride}));
  if (padded && !zero_padded) attributes.push_back(attribute("pads", std::vector<std::int64_t>(p.begin(), p.end())));
  if (count_include_pad && !zero_padded) attributes.push_back(attribute("count_include_pad", std::int64_t{0}));
  g.node(op, name, {}, std::move(attributes));
}

inline void read_pool(GraphIn& g, const char* op, const std::string& name, int H, int W, int C, int pool, int stride,
                      const WindowPads& padding, std::optional<bool> count_include_pad = std::nullopt) {
  g.take_spatial(name, C);
  // PyTorch 1.x writes AvgPool2d(padding=p), which counts the padded zeros, as a Pad of zeros
  // (pads in NCHW order: begins, then ends) and an AveragePool without padding.
  std::optional<std::vector<std::int64_t>> zeros;
  if (count_include_pad && *count_include_pad)
    if (const Node* pad = g.take_if("Pad")) {
      const std::string activation = pad->inputs[0];
      const auto pads = g.opset >= 11 ? (pad->inputs.size() > 1 ? g.ints_of(pad->inputs[1], activation, {}) : std::nullopt)
                                      : std::optional(g.integers(*pad, "pads", {}));
      if (g.text(*pad, "mode", "constant") != "constant")
        g.refuse(*pad, name, "it pads in mode " + g.text(*pad, "mode", "") + ", not with zeros");
      if (pad->inputs.size() > 3) g.refuse(*pad, name, "it pads chosen axes");
      const float value = g.opset >= 11 ? g.floats(*pad, 2, {}, name, "padding value", true).value_or(std::vector<float>{0.0f}).at(0)
                                        : g.real(*pad, "value", 0.0f);
      if (value != 0.0f) g.refuse(*pad, name, "it pads with " + std::to_string(value) + ", not zeros");
      if (!pads || pads->size() != 8 || (*pads)[0] != 0 || (*pads)[1] != 0 || (*pads)[4] != 0 || (*pads)[5] != 0)
        g.refuse(*pad, name, "its pads are not constant pads of the height and width alone");
      zeros = std::vector<std::int64_t>{(*pads)[2], (*pads)[3], (*pads)[6], (*pads)[7]};
    }
  const Node& n = g.take({op}, name);
  g.require(n, name, "kernel_shape", {pool, pool}, {});
  g.require(n, name, "strides", {stride, stride}, {1, 1});
  g.require(n, name, "dilations", {1, 1}, {1, 1});
  read_window_pads(g, n, name, padding, H, W, pool, stride, zeros ? &*zeros : nullptr);
  // ceil_mode gives the same size when the windows tile the padded input exactly.
  const std::array<std::int64_t, 4>& p = padding.pads;
  const bool exact = (H + p[0] + p[2] - pool) % stride == 0 && (W + p[1] + p[3] - pool) % stride == 0;
  if (g.integer(n, "ceil_mode", 0) != 0 && !exact) g.refuse(n, name, "ceil_mode 1 adds a partial window the layer does not have");
  // Where no window reaches the padding, whether it counts makes no difference.
  const bool padded = p != std::array<std::int64_t, 4>{0, 0, 0, 0};
  if (count_include_pad && padded && !zeros && (g.integer(n, "count_include_pad", 0) != 0) != *count_include_pad)
    g.refuse(n, name,
             std::string("count_include_pad is ") + (*count_include_pad ? "0" : "1") + ", the layer's " + (*count_include_pad ? "1" : "0") +
                 " (" + padding.name + ")");
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) g.refuse(n, name, "it also outputs indices");
}

inline void write_flatten(GraphOut& g, const std::string& name, int H, int W) {
  if (!g.spatial) return;
  // Back to NHWC first, so the features are in tnet's order (the next Dense's kernel is as is).
  if (H * W > 1) g.node("Transpose", name + ".nhwc", {}, attributes_of(attribute("perm", std::vector<std::int64_t>{0, 2, 3, 1})));
  g.node("Flatten", name, {}, attributes_of(attribute("axis", std::int64_t{1})));
  g.spatial = false;
}

inline void read_flatten(GraphIn& g, const std::string& name, int H, int W, int C) {
  if (!g.spatial) {
    g.take_flatten(name, H * W * C, {GraphIn::batch_dim, H * W * C});  // optional: already flat
    return;
  }
  const std::vector<std::int64_t> nchw{GraphIn::batch_dim, C, H, W};
  // The shape a Reshape flattens to may be computed from the activation before the Transpose, as
  // tf2onnx writes Keras 3's Flatten.
  const GraphIn::Known before{g.tensor, nchw};
  const Node* transpose = g.take_if("Transpose");
  if (transpose && g.integers(*transpose, "perm", {}) != std::vector<std::int64_t>{0, 2, 3, 1})
    g.refuse(*transpose, name, "a Transpose other than NCHW -> NHWC before flattening");
  const std::vector<std::int64_t> dims = transpose ? std::vector<std::int64_t>{GraphIn::batch_dim, H, W, C} : nchw;
  if (!g.take_flatten(name, H * W * C, dims, transpose ? before : GraphIn::Known{})) g.take({"Flatten", "Reshape"}, name);
  // Flattened from NCHW: the features are in (C, H, W) order, tnet's in (H, W, C).
  if (!transpose && H * W > 1) g.chw = {C, H, W};
  g.spatial = false;
}

inline void write_dense(GraphOut& g, const std::string& name, int K, int U) {
  if (g.spatial) {
    g.node("Flatten", name + ".flatten", {}, attributes_of(attribute("axis", std::int64_t{1})));
    g.spatial = false;
  }
  // B as (U, K) with transB, as PyTorch's Linear writes it: what every consumer reads best
  // (OpenCV 4.6 misreads a bias with an untransposed B).
  const std::span<const float> kernel = g.tensors.at(name + ".kernel");
  std::vector<float> transposed(kernel.size());
  for (int k = 0; k < K; ++k)
    for (int u = 0; u < U; ++u) transposed[std::size_t(u) * K + k] = kernel[std::size_t(k) * U + u];
  g.initializer(name + ".kernel", {U, K}, transposed);
  g.initializer(name + ".bias", {U});
  g.node("Gemm", name, {name + ".kernel", name + ".bias"}, attributes_of(attribute("transB", std::int64_t{1})));
}

inline void read_dense(GraphIn& g, const std::string& name, int K, int U) {
  if (g.spatial && !g.take_flatten(name, K, {GraphIn::batch_dim, K, 1, 1})) g.take({"Flatten", "Reshape"}, name);
  else if (!g.spatial && g.chw[0] == 0) g.take_flatten(name, K, {GraphIn::batch_dim, K});  // a flatten of what is flat already
  g.spatial = false;
  std::vector<float> kernel, bias;
  if (const Node* gemm = g.take_if("Gemm")) {
    const Node& n = *gemm;
    if (g.integer(n, "transA", 0) != 0) g.refuse(n, name, "transA is 1");
    if (g.real(n, "alpha", 1.0f) != 1.0f || g.real(n, "beta", 1.0f) != 1.0f) g.refuse(n, name, "alpha or beta is not 1");
    const bool transposed = g.integer(n, "transB", 0) != 0;
    std::vector<float> values =
        *g.floats(n, 1, transposed ? std::vector<std::int64_t>{U, K} : std::vector<std::int64_t>{K, U}, name, "weights");
    if (transposed) {
      kernel.resize(values.size());
      for (int u = 0; u < U; ++u)
        for (int k = 0; k < K; ++k) kernel[std::size_t(k) * U + u] = values[std::size_t(u) * K + k];
    } else {
      kernel = std::move(values);
    }
    bias = g.floats(n, 2, {U}, name, "bias", true).value_or(std::vector<float>(std::size_t(U), 0.0f));
  } else {
    const Node& n = g.take({"Gemm", "MatMul"}, name);
    kernel = *g.floats(n, 1, {K, U}, name, "weights");
    if (const Node* add = g.take_if("Add")) bias = *g.floats(*add, 1, {U}, name, "bias");
    else bias.assign(std::size_t(U), 0.0f);
  }
  // Rows in (C, H, W) order -> (H, W, C).
  if (g.chw[0] > 0) {
    const auto [C, H, W] = g.chw;
    std::vector<float> reordered(kernel.size());
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const std::size_t from = (std::size_t(c) * H + y) * W + x, to = (std::size_t(y) * W + x) * C + c;
          std::copy_n(kernel.data() + from * U, U, reordered.data() + to * U);
        }
    kernel = std::move(reordered);
    g.chw = {};
  }
  g.staged[name + ".kernel"] = std::move(kernel);
  g.staged[name + ".bias"] = std::move(bias);
}

// Relu, Sigmoid, Softmax (over the channels: axis 1 of NCHW or of (N, features)).
inline void write_activation(GraphOut& g, const std::string& name, const char* op) {
  std::vector<ProtoOut> attributes;
  if (std::string_view(op) == "Softmax") attributes.push_back(attribute("axis", std::int64_t{1}));
  g.node(op, name, {}, std::move(attributes));
}

inline void read_activation(GraphIn& g, const std::string& name, const char* op) {
  const Node& n = g.take({op}, name);
  if (std::string_view(op) == "Softmax") {
    const std::int64_t axis = g.integer(n, "axis", g.opset >= 13 ? -1 : 1);
    const bool channels = g.spatial ? axis == 1 && g.opset >= 13 : (axis == 1 || axis == -1);
    if (!channels) g.refuse(n, name, "it is not over the channels (axis " + std::to_string(axis) + ")");
  }
}

// ReLU6 as Clip: its bounds as constant inputs (opset 11 on), or attributes (before).
inline void write_clip(GraphOut& g, const std::string& name, float low, float high) {
  g.initializer<float>(name + ".min", {}, {low});
  g.initializer<float>(name + ".max", {}, {high});
  g.node("Clip", name, {name + ".min", name + ".max"});
}

inline void read_clip(GraphIn& g, const std::string& name, float low, float high) {
  const Node& n = g.take({"Clip"}, name);
  const float lowest = std::numeric_limits<float>::lowest(), largest = std::numeric_limits<float>::max();
  const float got_low = g.opset >= 11 ? g.scalar(n, 1, name, "min").value_or(lowest) : g.real(n, "min", lowest);
  const float got_high = g.opset >= 11 ? g.scalar(n, 2, name, "max").value_or(largest) : g.real(n, "max", largest);
  if (got_low != low || got_high != high)
    g.refuse(n, name,
             "it clips to [" + std::to_string(got_low) + ", " + std::to_string(got_high) + "], the layer to [" + std::to_string(low) +
                 ", " + std::to_string(high) + "]");
}

inline void write_leaky_relu(GraphOut& g, const std::string& name, float slope) {
  g.node("LeakyRelu", name, {}, attributes_of(attribute("alpha", slope)));
}

inline void read_leaky_relu(GraphIn& g, const std::string& name, float slope) {
  const Node& n = g.take({"LeakyRelu"}, name);
  const float alpha = g.real(n, "alpha", 0.01f);
  if (alpha != slope) g.refuse(n, name, "its alpha is " + std::to_string(alpha) + ", the layer's slope " + std::to_string(slope));
}

// x * gate(x): the gate's node, then a Mul of x and the gate's output.
inline void write_gated(GraphOut& g, const std::string& name, const char* gate, std::vector<ProtoOut> attributes) {
  const std::string x = g.tensor;
  g.node(gate, name + (std::string_view(gate) == "Sigmoid" ? ".sigmoid" : ".hardsigmoid"), {}, std::move(attributes));
  const std::string gated = g.tensor;
  g.tensor = x;
  g.node("Mul", name, {gated});
}

inline void write_silu(GraphOut& g, const std::string& name) { write_gated(g, name, "Sigmoid", {}); }

inline void read_silu(GraphIn& g, const std::string& name) {
  const std::string x = g.tensor;
  g.take({"Sigmoid"}, name);
  g.take_product(x, name);
}

// HardSwish(x) = x * HardSigmoid(x) with alpha 1/6 and beta 0.5.
inline void write_hard_swish(GraphOut& g, const std::string& name) {
  std::vector<ProtoOut> attributes;
  attributes.push_back(attribute("alpha", 1.0f / 6.0f));
  attributes.push_back(attribute("beta", 0.5f));
  write_gated(g, name, "HardSigmoid", std::move(attributes));
}

inline void read_hard_swish(GraphIn& g, const std::string& name) {
  const std::string x = g.tensor;
  const Node& n = g.take({"HardSwish", "HardSigmoid"}, name);
  if (n.op_type == "HardSwish") return;
  const float alpha = g.real(n, "alpha", 0.2f), beta = g.real(n, "beta", 0.5f);
  if (std::abs(alpha - 1.0f / 6.0f) > 1e-6f || beta != 0.5f)
    g.refuse(n, name, "its alpha and beta are " + std::to_string(alpha) + " and " + std::to_string(beta) + ", HardSwish's 1/6 and 0.5");
  g.take_product(x, name);
}

inline void write_global_average_pool(GraphOut& g, const std::string& name, int C) {
  g.make_spatial(name, C);
  g.node("GlobalAveragePool", name);  // (N, C, 1, 1): a Dense after it flattens it
}

// GlobalAveragePool, or the ReduceMean over the height and width that torch 2's exporter writes
// (axes an attribute before opset 18, a constant input from it); with keepdims 0 its output is
// already flat.
inline void read_global_average_pool(GraphIn& g, const std::string& name, int C) {
  g.take_spatial(name, C);
  const std::string input = g.tensor;
  const Node& n = g.take({"GlobalAveragePool", "ReduceMean"}, name);
  if (n.op_type == "GlobalAveragePool") return;
  std::optional<std::vector<std::int64_t>> axes =
      g.opset >= 18 ? (n.inputs.size() > 1 ? g.ints_of(n.inputs[1], input, {}) : std::nullopt) : std::optional(g.integers(n, "axes", {}));
  if (axes)
    for (std::int64_t& a : *axes) a = a < 0 ? a + 4 : a;
  if (axes) std::ranges::sort(*axes);
  if (!axes || *axes != std::vector<std::int64_t>{2, 3})
    g.refuse(n, name, "a ReduceMean over other axes than the height and width (2 and 3) of NCHW, or axes that are not constant");
  if (g.integer(n, "keepdims", 1) == 0) g.spatial = false;
}

// ---- one mapping per layer spec --------------------------------------------------------------

/// How layer spec Spec is written to and read from ONNX: static write(layer, GraphOut&, name) and
/// read(layer, GraphIn&, name), `name` being the layer's ("3.conv2d"). A spec without one cannot
/// be exported or imported (a compile error naming it).
template <class Spec>
struct Mapping;

template <int Filters, int Kernel, int Stride, Padding Pad>
struct Mapping<Conv2D<Filters, Kernel, Stride, Pad>> {
  template <class L>
  static ConvGeometry geometry() {
    return {L::H, L::W, L::C, L::F, L::K, L::S, window_pads<Pad>(L::H, L::W, L::K, L::S)};
  }
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_conv(g, name, geometry<L>());
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_conv(g, name, geometry<L>());
  }
};

template <int Kernel, int Stride, Padding Pad, int Multiplier>
struct Mapping<DepthwiseConv2D<Kernel, Stride, Pad, Multiplier>> {
  template <class L>
  static ConvGeometry geometry() {
    return {L::H, L::W, L::C, L::F, L::K, L::S, window_pads<Pad>(L::H, L::W, L::K, L::S), L::C};
  }
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_conv(g, name, geometry<L>());
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_conv(g, name, geometry<L>());
  }
};

template <float Momentum, float Epsilon>
struct Mapping<BatchNormWith<Momentum, Epsilon>> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_batch_norm(g, name, L::C, Momentum, Epsilon);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_batch_norm(g, name, L::C, Momentum, Epsilon);
  }
};

template <int Pool, int Stride, Padding Pad>
struct Mapping<MaxPool2D<Pool, Stride, Pad>> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_pool(g, "MaxPool", name, L::C, Pool, Stride, window_pads<Pad>(L::H, L::W, Pool, Stride));
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_pool(g, "MaxPool", name, L::H, L::W, L::C, Pool, Stride, window_pads<Pad>(L::H, L::W, Pool, Stride));
  }
};

template <int Pool, int Stride, Padding Pad>
struct Mapping<AveragePooling2D<Pool, Stride, Pad>> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_pool(g, "AveragePool", name, L::C, Pool, Stride, window_pads<Pad>(L::H, L::W, Pool, Stride), L::counts_padding);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_pool(g, "AveragePool", name, L::H, L::W, L::C, Pool, Stride, window_pads<Pad>(L::H, L::W, Pool, Stride), L::counts_padding);
  }
};

template <float Rate>
struct Mapping<Dropout<Rate>> {
  template <class L>
  static void write(const L&, GraphOut&, const std::string&) {}  // the identity at inference
  template <class L>
  static void read(const L&, GraphIn& g, const std::string&) {
    g.take_if("Dropout");  // PyTorch leaves it out of eval-mode graphs; others keep it
  }
};

template <>
struct Mapping<Flatten> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_flatten(g, name, L::input_shape::height, L::input_shape::width);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_flatten(g, name, L::input_shape::height, L::input_shape::width, L::input_shape::channels);
  }
};

template <int Units>
struct Mapping<Dense<Units>> {
  template <class L>
  static void write(const L& layer, GraphOut& g, const std::string& name) {
    write_dense(g, name, L::K, layer.units());
  }
  template <class L>
  static void read(const L& layer, GraphIn& g, const std::string& name) {
    read_dense(g, name, L::K, layer.units());
  }
};

template <const char* Op>
struct ActivationMapping {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_activation(g, name, Op);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_activation(g, name, Op);
  }
};
inline constexpr char relu_op[] = "Relu", sigmoid_op[] = "Sigmoid", softmax_op[] = "Softmax";
template <>
struct Mapping<ReLU> : ActivationMapping<relu_op> {};
template <>
struct Mapping<Sigmoid> : ActivationMapping<sigmoid_op> {};
template <>
struct Mapping<Softmax> : ActivationMapping<softmax_op> {};

template <>
struct Mapping<ReLU6> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_clip(g, name, 0.0f, 6.0f);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_clip(g, name, 0.0f, 6.0f);
  }
};

template <float Slope>
struct Mapping<LeakyReLU<Slope>> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_leaky_relu(g, name, Slope);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_leaky_relu(g, name, Slope);
  }
};

template <>
struct Mapping<SiLU> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_silu(g, name);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_silu(g, name);
  }
};

template <>
struct Mapping<HardSwish> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_hard_swish(g, name);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_hard_swish(g, name);
  }
};

template <>
struct Mapping<GlobalAveragePooling2D> {
  template <class L>
  static void write(const L&, GraphOut& g, const std::string& name) {
    write_global_average_pool(g, name, L::C);
  }
  template <class L>
  static void read(const L&, GraphIn& g, const std::string& name) {
    read_global_average_pool(g, name, L::C);
  }
};

// A residual block: its body's nodes from the block's input, then its shortcut's from the same
// input (none for the identity), then Add of the two. The layers inside are named as the
// network names their tensors ("3.residual.0.conv2d", "3.residual.shortcut.0.conv2d").
template <class Chain, class F>
void each_in_chain(Chain& chain, const std::string& prefix, F&& f) {
  chain.for_each_layer([&]<std::size_t I>(auto& layer) {
    f.template operator()<typename Chain::template spec_type<I>>(layer, prefix + chain.template layer_name<I>());
  });
}

template <class... Specs>
struct Mapping<Residual<Specs...>> {
  template <class L>
  static void write(const L& layer, GraphOut& g, const std::string& name) {
    g.make_spatial(name, L::input_shape::channels);
    const std::string input = g.tensor;
    auto write_one = [&]<class Spec>(const auto& inner, const std::string& inner_name) { Mapping<Spec>::write(inner, g, inner_name); };
    each_in_chain(layer.body(), name + ".", write_one);
    const std::string body = g.tensor;
    g.tensor = input;
    each_in_chain(layer.shortcut(), name + ".shortcut.", write_one);
    const std::string shortcut = g.tensor;
    g.tensor = body;
    g.node("Add", name, {shortcut});
  }
  // Read with the body's nodes first, as tnet and PyTorch write them; a projection's nodes may
  // also come first (the other order is tried once; the refusal is that of the order that read
  // further). The Add's inputs may be in either order.
  template <class L>
  static void read(L& layer, GraphIn& g, const std::string& name) {
    g.take_spatial(name, L::input_shape::channels);
    const GraphIn::Mark start = g.mark();
    auto read_one = [&]<class Spec>(auto& inner, const std::string& inner_name) { Mapping<Spec>::read(inner, g, inner_name); };
    auto paths = [&](bool body_first) {
      auto read_path = [&](bool body) {
        if (body) each_in_chain(layer.body(), name + ".", read_one);
        else each_in_chain(layer.shortcut(), name + ".shortcut.", read_one);
      };
      read_path(body_first);
      const std::string first = g.tensor;
      g.tensor = start.tensor;
      read_path(!body_first);
      g.take_sum(name, first);
    };
    if constexpr (L::identity) {
      paths(true);
    } else {
      try {
        paths(true);
      } catch (const ModelFileError& e) {
        if (e.kind() != ModelFileError::Kind::architecture_mismatch) throw;
        const std::exception_ptr body_first = std::current_exception();
        const std::size_t reached = g.position();
        g.restore(start);
        try {
          paths(false);
        } catch (const ModelFileError& other) {
          if (other.kind() != ModelFileError::Kind::architecture_mismatch || g.position() > reached) throw;
          std::rethrow_exception(body_first);
        }
      }
    }
  }
};

// ---- the graph's input ---------------------------------------------------------------------

// The data input (the one input that is not an initializer), its layout and NHWC size.
struct GraphInput {
  const ValueInfo* value = nullptr;
  OnnxLayout layout = OnnxLayout::nchw;
  std::array<std::int64_t, 3> hwc{-1, -1, -1};
};

inline GraphInput find_input(const OnnxModel& model, const std::string& path) {
  const auto refuse = [&](const std::string& why) { return ModelFileError(ModelFileError::Kind::architecture_mismatch, path, why); };
  GraphInput in;
  for (const ValueInfo& v : model.inputs) {
    if (model.value(v.name)) continue;
    if (in.value) throw refuse("the graph has two inputs, " + in.value->name + " and " + v.name + "; a tnet network has one");
    in.value = &v;
  }
  if (!in.value) throw refuse("the graph has no input");
  if (in.value->elem_type != float32) throw refuse("the graph's input " + in.value->name + " is not float32");
  if (in.value->dims.size() != 4) throw refuse("the graph's input " + in.value->name + " is not 4-D (N, H, W, C or N, C, H, W)");
  // NHWC when the first node transposes the input to NCHW.
  for (const Node& n : model.nodes) {
    if (is_value_node(model, n)) continue;
    if (n.op_type == "Transpose" && !n.inputs.empty() && n.inputs[0] == in.value->name) {
      const Attribute* perm = n.find("perm");
      if (perm && perm->ints == std::vector<std::int64_t>{0, 3, 1, 2}) in.layout = OnnxLayout::nhwc;
    }
    break;
  }
  const auto& d = in.value->dims;
  in.hwc = in.layout == OnnxLayout::nhwc ? std::array{d[1], d[2], d[3]} : std::array{d[2], d[3], d[1]};
  return in;
}

inline void check_opset(const OnnxModel& model, const std::string& path) {
  if (model.opset < oldest_opset || model.opset > newest_opset)
    throw ModelFileError(ModelFileError::Kind::architecture_mismatch, path,
                         "ONNX opset " + std::to_string(model.opset) + "; tnet reads opsets " + std::to_string(oldest_opset) + " to " +
                             std::to_string(newest_opset));
}

inline void read_metadata(const OnnxModel& model, const std::string& path, OnnxInfo& info) {
  info.metadata = model.metadata;
  info.opset = model.opset;
  info.ir_version = model.ir_version;
  info.producer = model.producer;
  if (const auto found = model.metadata.find("class_names"); found != model.metadata.end()) {
    const auto names = parse_json_strings(found->second);
    if (!names)
      throw ModelFileError(ModelFileError::Kind::corrupted, path, "the ONNX metadata's class_names is not a JSON array of strings");
    info.class_names = *names;
  }
}

}  // namespace onnx

/// Writes `net` as an ONNX model (opset 13, IR 7) to `path` through AtomicFile, with `class_names`
/// and `metadata` in its metadata; the input is `layout`. Throws FileError when the file cannot be
/// written, and ModelFileError (not_finite), writing nothing, when a weight or statistic is not
/// finite.
template <class Net>
void save_onnx(const std::string& path, Net& net, const std::vector<std::string>& class_names = {}, OnnxLayout layout = OnnxLayout::nhwc,
               const std::map<std::string, std::string>& metadata = {}) {
  onnx::GraphOut g;
  for (const ParamRef& p : net.parameters()) g.tensors[p.name] = {p.value, p.size};
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) g.tensors[name] = span;
  });
  for (const auto& [name, values] : g.tensors)
    if (!detail::all_finite(values.data(), values.size()))
      throw ModelFileError(ModelFileError::Kind::not_finite, path, "refusing to export a model whose " + name + " holds NaN or infinity");

  using In = typename Net::input_shape;
  const bool nhwc = layout == OnnxLayout::nhwc;
  const std::vector<std::int64_t> input_dims = nhwc ? std::vector<std::int64_t>{-1, In::height, In::width, In::channels}
                                                    : std::vector<std::int64_t>{-1, In::channels, In::height, In::width};
  g.tensor = "input";
  if (nhwc) g.node("Transpose", "input.nchw", {}, onnx::attributes_of(onnx::attribute("perm", std::vector<std::int64_t>{0, 3, 1, 2})));
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (onnx::Mapping<typename Net::template spec_type<I>>::write(net.template layer<I>(), g, net.template layer_name<I>()), ...);
  }(std::make_index_sequence<Net::depth>{});
  std::vector<std::int64_t> output_dims{-1, net.outputs()};
  if (g.spatial) {
    using Out = typename Net::output_shape;
    if constexpr (!Out::is_dynamic) {
      if (nhwc) {
        g.node("Transpose", "output.nhwc", {}, onnx::attributes_of(onnx::attribute("perm", std::vector<std::int64_t>{0, 2, 3, 1})));
        output_dims = {-1, Out::height, Out::width, Out::channels};
      } else {
        output_dims = {-1, Out::channels, Out::height, Out::width};
      }
    }
  }
  if (g.tensor == "input") g.node("Identity", "output.identity");  // a network of Dropouts only

  onnx::ProtoOut model;
  model.int_field(onnx::field::ir_version, onnx::written_ir_version);
  {
    onnx::ProtoOut opset;
    opset.bytes_field(onnx::field::opset_domain, "");
    opset.int_field(onnx::field::opset_version, onnx::written_opset);
    model.message(onnx::field::opset_import, std::move(opset));
  }
  model.bytes_field(onnx::field::producer_name, "tnet");
  model.bytes_field(onnx::field::producer_version, "0.1");
  model.message(onnx::field::graph, g.finish("input", input_dims, "output", output_dims));
  std::map<std::string, std::string> all = metadata;
  all["class_names"] = onnx::json_strings(class_names);
  all["input_layout"] = nhwc ? "NHWC" : "NCHW";
  all["tnet_signature"] = net.signature();
  for (const auto& [key, value] : all) {
    onnx::ProtoOut entry;
    entry.bytes_field(onnx::field::key, key);
    entry.bytes_field(onnx::field::value, value);
    model.message(onnx::field::metadata_props, std::move(entry));
  }
  AtomicFile out(path, "ONNX file");
  model.write_to(out);
  out.commit();
}

namespace onnx {
// read_onnx_info; `per_output` > 0: the floats the caller's network holds for each output.
inline OnnxInfo read_info(const std::string& path, std::uint64_t per_output) {
  const std::string bytes = onnx::read_file(path, std::uint64_t(1) << 30);
  const onnx::OnnxModel model = onnx::parse_file(path, bytes);
  onnx::check_opset(model, path);
  const onnx::GraphInput input = onnx::find_input(model, path);
  OnnxInfo info;
  onnx::read_metadata(model, path, info);
  info.layout = input.layout;
  auto dim = [&](std::int64_t d, const char* what) {
    if (d < 1 || d > (1 << 20))
      throw ModelFileError(ModelFileError::Kind::architecture_mismatch, path, std::string("the graph's input has no fixed ") + what);
    return int(d);
  };
  info.height = dim(input.hwc[0], "height"), info.width = dim(input.hwc[1], "width"), info.channels = dim(input.hwc[2], "channel count");
  if (model.outputs.size() != 1)
    throw ModelFileError(ModelFileError::Kind::architecture_mismatch, path,
                         "the graph has " + std::to_string(model.outputs.size()) + " outputs; a tnet network has one");
  std::uint64_t outputs = 1;
  const onnx::ValueInfo& out = model.outputs[0];
  for (std::size_t i = 1; i < out.dims.size() && outputs > 0; ++i)
    if (out.dims[i] < 1 || !tnet::detail::checked_mul(outputs, std::uint64_t(out.dims[i]), outputs, (std::uint64_t(1) << 30) - 1))
      outputs = 0;
  if (!out.has_shape || out.dims.size() < 2 || outputs < 1)
    throw ModelFileError(
        ModelFileError::Kind::architecture_mismatch, path,
        "the graph's output " + out.name + " " + onnx::dims_string(out.dims) + " has no fixed shape of fewer than 2^30 values a sample");
  // A network is constructed with this width before its weights are read: the width must be one
  // the file's weights can make (a Dense of it holds at least as many floats).
  const std::uint64_t held = onnx::floats_held(model);
  if (outputs > held)
    throw ModelFileError(ModelFileError::Kind::architecture_mismatch, path,
                         "the graph's output " + out.name + " " + onnx::dims_string(out.dims) + " has " + std::to_string(outputs) +
                             " values a sample, more than the " + std::to_string(held) + " weights the file holds");
  // The caller's network holds `per_output` floats an output, its bias the last of them.
  if (std::uint64_t weights = 0; per_output > 1 && (!tnet::detail::checked_mul(per_output - 1, outputs, weights) || weights > held))
    throw ModelFileError(ModelFileError::Kind::architecture_mismatch, path,
                         "the graph's output " + out.name + " has " + std::to_string(outputs) + " values a sample: this network's " +
                             std::to_string(per_output - 1) + " weights an output would be more than the " + std::to_string(held) +
                             " the file holds");
  info.outputs = int(outputs);
  return info;
}
}  // namespace onnx

/// What an ONNX file's graph takes and gives, and its metadata, for choosing the network type to
/// load it into. Reads files of at most 1 GiB (ONNX's protobuf limit is 2 GiB; tnet's largest
/// networks are tens of MB), taking at most twice the file's size in memory and some 50 MB.
/// The output width is at most the float weights the file holds: a network constructed with it
/// (Outputs{info.outputs}) holds no more than the file can fill.
inline OnnxInfo read_onnx_info(const std::string& path) { return onnx::read_info(path, 0); }

/// The same, checking also that a network of type Net constructed at the file's width
/// (Outputs{info.outputs}) would hold no more weights than the file does.
template <class Net>
OnnxInfo read_onnx_info(const std::string& path) {
  return onnx::read_info(path, detail::floats_per_output<Net>());
}

/// Reads the weights and statistics of an ONNX model into `net`, whose type must match the graph
/// (see the top of this file). Throws ModelFileError, changing nothing, when the file cannot be
/// read, is not ONNX, does not match the network (naming the first node that does not fit) or
/// holds a value that is not finite.
template <class Net>
OnnxInfo load_onnx(const std::string& path, Net& net) {
  using Kind = ModelFileError::Kind;
  // The largest file this network's model can be: its floats one field each (5 bytes) and 64 MB.
  std::uint64_t largest = std::uint64_t(net.parameters().values.size()) * 5 + (64u << 20);
  net.visit_state([&](const std::string&, auto span) { largest += span.size() * 5; });
  const std::string bytes = onnx::read_file(path, largest);
  onnx::OnnxModel model = onnx::parse_file(path, bytes);
  onnx::check_opset(model, path);
  std::map<std::string, std::string> external;  // the bytes of the files external data is in
  onnx::read_external_data(model, path, largest, external);
  OnnxInfo info;
  onnx::read_metadata(model, path, info);

  using In = typename Net::input_shape;
  const onnx::GraphInput input = onnx::find_input(model, path);
  info.layout = input.layout;
  info.height = In::height, info.width = In::width, info.channels = In::channels;
  const std::array<std::int64_t, 3> expected{In::height, In::width, In::channels};
  for (int k = 0; k < 3; ++k)
    if (input.hwc[std::size_t(k)] != -1 && input.hwc[std::size_t(k)] != expected[std::size_t(k)])
      throw ModelFileError(Kind::architecture_mismatch, path,
                           "the graph's input " + input.value->name + " is " + onnx::dims_string(input.value->dims) + " (" +
                               (input.layout == OnnxLayout::nhwc ? "NHWC" : "NCHW") + "); the network's is " + In::str());

  onnx::GraphIn g(model, path);
  g.opset = model.opset;
  g.tensor = input.value->name;
  if (input.layout == OnnxLayout::nhwc) g.take({"Transpose"}, "input");
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (onnx::Mapping<typename Net::template spec_type<I>>::read(net.template layer<I>(), g, net.template layer_name<I>()), ...);
  }(std::make_index_sequence<Net::depth>{});
  if (g.spatial && input.layout == OnnxLayout::nhwc) {
    if (const onnx::Node* t = g.take_if("Transpose"); t && g.integers(*t, "perm", {}) != std::vector<std::int64_t>{0, 2, 3, 1})
      g.refuse(*t, "output", "a Transpose other than NCHW -> NHWC after the last layer");
  }
  if (const onnx::Node* rest = g.peek())
    throw g.mismatch("ONNX node " + g.describe(*rest) + " follows the network's last layer, " + net.template layer_name<Net::depth - 1>() +
                     ": the graph has more than the network");
  bool is_output = false;
  for (const onnx::ValueInfo& v : model.outputs) is_output |= v.name == g.tensor;
  if (!is_output) throw g.mismatch("the network's output, " + g.tensor + ", is not an output of the graph");

  // Every tensor of the network must have been read, at its size.
  for (const ParamRef& p : net.parameters()) {
    const auto found = g.staged.find(p.name);
    if (found == g.staged.end() || found->second.size() != p.size)
      throw ModelFileError(Kind::architecture_mismatch, path, "the graph gives no value for " + p.name);
  }
  net.visit_state([&](const std::string& name, auto span) {
    using T = typename decltype(span)::value_type;
    const bool found =
        std::is_same_v<T, float> ? g.staged.count(name) && g.staged[name].size() == span.size() : g.counts.count(name) && span.size() == 1;
    if (!found) throw ModelFileError(Kind::architecture_mismatch, path, "the graph gives no value for " + name);
  });
  // Everything fits: commit.
  for (const ParamRef& p : net.parameters()) std::copy(g.staged[p.name].begin(), g.staged[p.name].end(), p.value);
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>)
      std::copy(g.staged[name].begin(), g.staged[name].end(), span.begin());
    else span[0] = g.counts[name];
  });
  return info;
}

}  // namespace tnet
