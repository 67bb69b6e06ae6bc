// tnet/model/onnx_proto.hpp: the part of ONNX's protobuf format tnet reads and writes, with no
// protobuf library.
//
// Protobuf's wire format is a sequence of (field number, wire type) keys, each followed by a
// varint, 4 or 8 little-endian bytes, or a length-delimited byte string (nested messages, strings,
// packed arrays). ProtoOut writes it as a list of pieces, some of them borrowed (a weight array
// is written from the network's own memory, never copied). ProtoIn reads it from one buffer,
// every length checked against what is left, so a hostile file costs at most one pass over its
// bytes; the parsed model (OnnxModel) refers into that buffer. A tensor's values are counted, not
// copied, while parsing (tensor_floats and tensor_int64s read them when a layer needs them), and
// attributes' lists share one budget, so parsing takes memory for the file's structure only: its
// names (at most the file's bytes again) and some 50 MB, whatever the file claims.
// Field numbers are onnx.proto's (ONNX 1.12, IR version 8); only the fields tnet uses are named.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/file.hpp"

namespace tnet::onnx {

// onnx.proto's field numbers.
namespace field {
enum Model { ir_version = 1, producer_name = 2, producer_version = 3, doc_string = 6, graph = 7, opset_import = 8, metadata_props = 14 };
enum Opset { opset_domain = 1, opset_version = 2 };
enum Graph { node = 1, graph_name = 2, initializer = 5, input = 11, output = 12 };
enum Node { node_input = 1, node_output = 2, node_name = 3, op_type = 4, attribute = 5, node_domain = 7 };
enum Attribute { attr_name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7, ints = 8, attr_type = 20 };
enum Tensor {
  dims = 1,
  data_type = 2,
  float_data = 4,
  int32_data = 5,
  int64_data = 7,
  tensor_name = 8,
  raw_data = 9,
  external_data = 13,
  data_location = 14
};
enum ValueInfo { value_name = 1, value_type = 2 };
enum Type { tensor_type = 1 };
enum TensorType { elem_type = 1, shape = 2 };
enum Shape { dim = 1 };
enum Dimension { dim_value = 1, dim_param = 2 };
enum Entry { key = 1, value = 2 };
}  // namespace field

enum AttributeType { attr_float = 1, attr_int = 2, attr_string = 3, attr_tensor = 4, attr_floats = 6, attr_ints = 7 };
enum DataType { float32 = 1, int32 = 6, int64 = 7 };

// ---- writing ---------------------------------------------------------------------------------

/// A protobuf message being written: owned bytes, and borrowed ranges that must outlive it.
class ProtoOut {
 public:
  void int_field(int number, std::int64_t value) {
    key(number, 0);
    varint(std::uint64_t(value));
  }
  void float_field(int number, float value) {
    key(number, 5);
    char bytes[4];
    std::memcpy(bytes, &value, 4);
    owned().append(bytes, 4);
    size_ += 4;
  }
  void bytes_field(int number, std::string_view bytes) {
    key(number, 2);
    varint(bytes.size());
    owned().append(bytes);
    size_ += bytes.size();
  }
  /// A length-delimited field whose bytes stay where they are until write_to.
  void borrowed_field(int number, const void* data, std::size_t size) {
    key(number, 2);
    varint(size);
    pieces_.push_back({{}, static_cast<const char*>(data), size});
    size_ += size;
  }
  void message(int number, ProtoOut&& inner) {
    key(number, 2);
    varint(inner.size_);
    for (Piece& piece : inner.pieces_) pieces_.push_back(std::move(piece));
    size_ += inner.size_;
  }

  std::size_t size() const { return size_; }
  void write_to(AtomicFile& out) const {
    for (const Piece& piece : pieces_) {
      if (piece.borrowed) out.write(piece.borrowed, piece.borrowed_size);
      else out.write(piece.bytes);
    }
  }

 private:
  struct Piece {
    std::string bytes;
    const char* borrowed = nullptr;
    std::size_t borrowed_size = 0;
  };
  std::string& owned() {
    if (pieces_.empty() || pieces_.back().borrowed) pieces_.emplace_back();
    return pieces_.back().bytes;
  }
  void key(int number, int wire_type) { varint(std::uint64_t(number) << 3 | std::uint64_t(wire_type)); }
  void varint(std::uint64_t value) {
    std::string& out = owned();
    do {
      const auto byte = static_cast<char>((value & 0x7f) | (value > 0x7f ? 0x80 : 0));
      out += byte;
      ++size_;
      value >>= 7;
    } while (value);
  }

  std::vector<Piece> pieces_;
  std::size_t size_ = 0;
};

// ---- reading ---------------------------------------------------------------------------------

/// Thrown for a file that is not well-formed protobuf or ONNX; load_onnx rethrows it as
/// ModelFileError naming the file.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Reads one message's fields in order.
class ProtoIn {
 public:
  explicit ProtoIn(std::string_view bytes) : at_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  /// Reads the next key; false at the end of the message.
  bool next() {
    if (at_ == end_) return false;
    const std::uint64_t key = varint();
    number_ = key >> 3;
    wire_ = int(key & 7);
    if (number_ == 0 || wire_ == 3 || wire_ == 4 || wire_ > 5) throw FormatError("malformed protobuf: a field with number 0 or a group");
    return true;
  }
  std::uint64_t number() const { return number_; }

  std::uint64_t varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ == end_) throw FormatError("truncated protobuf: a number runs past the end");
      const auto byte = static_cast<unsigned char>(*at_++);
      value |= std::uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    throw FormatError("malformed protobuf: a number of more than 10 bytes");
  }
  std::int64_t integer() {
    expect(0, "an integer");
    return std::int64_t(varint());
  }
  float fixed_float() {
    expect(5, "a float");
    float value;
    std::memcpy(&value, take(4).data(), 4);
    return value;
  }
  std::string_view bytes() {
    expect(2, "bytes or a message");
    const std::uint64_t size = varint();
    if (size > std::uint64_t(end_ - at_))
      throw FormatError("truncated protobuf: a field of " + std::to_string(size) + " bytes runs past the end");
    return take(std::size_t(size));
  }
  /// A repeated int64 field, packed or one value a field; appends to `out`, which may hold at
  /// most `limit` values (a packed value is one byte of file but eight of memory).
  void ints(std::vector<std::int64_t>& out, std::size_t limit) {
    auto add = [&](std::uint64_t v) {
      if (out.size() >= limit) throw FormatError("malformed ONNX: more than " + std::to_string(limit) + " values in a field");
      out.push_back(std::int64_t(v));
    };
    if (wire_ == 0) return add(varint());
    ProtoIn packed(bytes());
    while (packed.at_ != packed.end_) add(packed.varint());
  }
  /// The number of values in a repeated int64 field, packed or one value a field, read past
  /// without storing them.
  std::size_t count_ints() {
    if (wire_ == 0) return (varint(), 1);
    ProtoIn packed(bytes());
    std::size_t count = 0;
    for (; packed.at_ != packed.end_; ++count) packed.varint();
    return count;
  }
  /// A repeated float field, packed or one value a field; appends to `out`, which may hold at
  /// most `limit` values.
  void floats(std::vector<float>& out, std::size_t limit) {
    const std::size_t count = count_floats_at_next();
    if (count > limit || out.size() > limit - count)
      throw FormatError("malformed ONNX: more than " + std::to_string(limit) + " values in a field");
    if (wire_ == 5) return out.push_back(fixed_float());
    const std::string_view packed = bytes();
    if (packed.empty()) return;
    const std::size_t first = out.size();
    out.resize(first + packed.size() / 4);
    std::memcpy(out.data() + first, packed.data(), packed.size());
  }
  /// The number of values in a repeated float field, read past without storing them.
  std::size_t count_floats() {
    const std::size_t count = count_floats_at_next();
    skip();
    return count;
  }
  void skip() {
    switch (wire_) {
      case 0:
        varint();
        break;
      case 1:
        take(8);
        break;
      case 2:
        bytes();
        break;
      case 5:
        take(4);
        break;
      default:
        throw FormatError("malformed protobuf: unknown wire type");
    }
  }

 private:
  // The floats of the field at hand (1, or a packed field's), without moving past it.
  std::size_t count_floats_at_next() const {
    if (wire_ == 5) return 1;
    ProtoIn peek = *this;
    const std::string_view packed = peek.bytes();
    if (packed.size() % 4) throw FormatError("malformed protobuf: packed floats whose length is not a multiple of 4");
    return packed.size() / 4;
  }
  void expect(int wire, const char* what) const {
    if (wire_ != wire) throw FormatError("malformed ONNX: field " + std::to_string(number_) + " should be " + what);
  }
  std::string_view take(std::size_t size) {
    if (size > std::size_t(end_ - at_)) throw FormatError("truncated protobuf: a field runs past the end");
    const std::string_view out(at_, size);
    at_ += size;
    return out;
  }
  const char* at_;
  const char* end_;
  std::uint64_t number_ = 0;
  int wire_ = 0;
};

// ---- the parsed model --------------------------------------------------------------------------

struct Tensor {
  std::string name;
  std::vector<std::int64_t> dims;
  int data_type = 0;
  bool has_raw = false, external = false;
  std::string_view raw;  // into the file's bytes (or, once read, an external data file's)
  // Where an external tensor's bytes are (its external_data entries): a file beside the model,
  // `length` bytes (-1: to the end) from `offset`; an entry absent or not a number leaves
  // location empty or `valid` false.
  std::string location;
  std::int64_t offset = 0, length = -1;
  bool valid = true;
  std::string_view message;                                       // the whole TensorProto, for tensor_floats and tensor_int64s
  std::size_t float_count = 0, int32_count = 0, int64_count = 0;  // values in its float_data, int32_data and int64_data fields
};

struct Attribute {
  std::string name;
  float f = 0;
  std::int64_t i = 0;
  std::string_view s;
  std::vector<std::int64_t> ints;
  std::vector<float> floats;
  std::optional<Tensor> t;
};

struct Node {
  std::string name, op_type, domain;  // domain: "" or "ai.onnx" for ONNX's own operators
  std::vector<std::string> inputs, outputs;
  std::vector<Attribute> attributes;

  const Attribute* find(std::string_view attribute) const {
    for (const Attribute& a : attributes)
      if (a.name == attribute) return &a;
    return nullptr;
  }
};

struct ValueInfo {
  std::string name;
  int elem_type = 0;
  bool has_shape = false;
  std::vector<std::int64_t> dims;  // -1 where the file gives a name or nothing
};

struct OnnxModel {
  std::int64_t ir_version = 0, opset = 0;  // opset: of the default domain ("" or "ai.onnx")
  std::string producer;
  std::vector<Node> nodes;
  std::map<std::string, Tensor> initializers;  // Constant nodes' values too
  std::map<std::string, std::string> aliases;  // an Identity's output -> the initializer it repeats

  /// The constant named `name` (an initializer, a Constant node's, or an Identity of one), or null.
  const Tensor* value(const std::string& name) const {
    const auto alias = aliases.find(name);
    const auto found = initializers.find(alias == aliases.end() ? name : alias->second);
    return found == initializers.end() ? nullptr : &found->second;
  }
  std::vector<ValueInfo> inputs, outputs;
  std::map<std::string, std::string> metadata;
};

namespace detail {

inline std::string text(std::string_view bytes) { return std::string(bytes); }

// Bounds on what one file may hold, so that a hostile file cannot turn a few bytes into much
// memory (an empty attribute is 2 bytes of file but about 250 bytes parsed): at worst, 4,096
// nodes of 32 attributes, inputs and outputs each parse into some 40 MB. A network tnet can hold
// has tens to hundreds of nodes (PyTorch's SmallerVGGNet: 24).
inline constexpr std::size_t max_nodes = 1 << 12, max_names = 32, max_dims = 16, max_list = 1 << 12;
// Values in all attributes' lists together (8 MB at most); a network's attributes hold hundreds.
inline constexpr std::size_t max_attribute_values = 1 << 20;

template <class List>
List& bounded(List& list, std::size_t limit, const char* what) {
  if (list.size() >= limit) throw FormatError(std::string("malformed ONNX: more than ") + std::to_string(limit) + " " + what);
  return list;
}

inline Tensor parse_tensor(std::string_view bytes) {
  Tensor t;
  t.message = bytes;
  ProtoIn in(bytes);
  while (in.next()) {
    switch (in.number()) {
      case field::dims:
        in.ints(t.dims, max_dims);
        break;
      case field::data_type:
        t.data_type = int(in.integer());
        break;
      case field::float_data:
        t.float_count += in.count_floats();
        break;
      case field::int32_data:
        t.int32_count += in.count_ints();
        break;
      case field::int64_data:
        t.int64_count += in.count_ints();
        break;
      case field::tensor_name:
        t.name = text(in.bytes());
        break;
      case field::raw_data:
        t.raw = in.bytes();
        t.has_raw = true;
        break;
      case field::external_data: {
        t.external = true;
        std::string_view key, value;
        ProtoIn entry(in.bytes());
        while (entry.next()) {
          if (entry.number() == field::key) key = entry.bytes();
          else if (entry.number() == field::value) value = entry.bytes();
          else entry.skip();
        }
        auto number = [&](std::int64_t& out) {
          std::int64_t n = 0;
          const bool digits = !value.empty() && value.size() <= 15 && value.find_first_not_of("0123456789") == std::string_view::npos;
          for (const char c : value) n = n * 10 + (c - '0');
          if (digits) out = n;
          else t.valid = false;
        };
        if (key == "location") t.location = text(value);
        else if (key == "offset") number(t.offset);
        else if (key == "length") number(t.length);
        break;
      }
      case field::data_location:
        t.external |= in.integer() == 1;
        break;
      default:
        in.skip();
    }
  }
  return t;
}

// `values_left`: what the model's attributes may still hold in their lists together.
inline Attribute parse_attribute(std::string_view bytes, std::size_t& values_left) {
  Attribute a;
  ProtoIn in(bytes);
  while (in.next()) {
    switch (in.number()) {
      case field::attr_name:
        a.name = text(in.bytes());
        break;
      case field::f:
        a.f = in.fixed_float();
        break;
      case field::i:
        a.i = in.integer();
        break;
      case field::s:
        a.s = in.bytes();
        break;
      case field::t:
        a.t = parse_tensor(in.bytes());
        break;
      case field::floats:
        in.floats(a.floats, std::min(max_list, values_left + a.floats.size()));
        break;
      case field::ints:
        in.ints(a.ints, std::min(max_list, values_left + a.ints.size()));
        break;
      default:
        in.skip();  // subgraphs and the rest: no tnet layer has them
    }
  }
  values_left -= std::min(values_left, a.floats.size() + a.ints.size());
  return a;
}

inline Node parse_node(std::string_view bytes, std::size_t& values_left) {
  Node n;
  ProtoIn in(bytes);
  while (in.next()) {
    switch (in.number()) {
      case field::node_input:
        bounded(n.inputs, max_names, "inputs of a node").push_back(text(in.bytes()));
        break;
      case field::node_output:
        bounded(n.outputs, max_names, "outputs of a node").push_back(text(in.bytes()));
        break;
      case field::node_name:
        n.name = text(in.bytes());
        break;
      case field::op_type:
        n.op_type = text(in.bytes());
        break;
      case field::node_domain:
        n.domain = text(in.bytes());
        break;
      case field::attribute:
        bounded(n.attributes, max_names, "attributes of a node").push_back(parse_attribute(in.bytes(), values_left));
        break;
      default:
        in.skip();
    }
  }
  return n;
}

inline ValueInfo parse_value_info(std::string_view bytes) {
  ValueInfo v;
  ProtoIn in(bytes);
  while (in.next()) {
    if (in.number() == field::value_name) {
      v.name = text(in.bytes());
    } else if (in.number() == field::value_type) {
      ProtoIn type(in.bytes());
      while (type.next()) {
        if (type.number() != field::tensor_type) {
          type.skip();
          continue;
        }
        ProtoIn tensor(type.bytes());
        while (tensor.next()) {
          if (tensor.number() == field::elem_type) {
            v.elem_type = int(tensor.integer());
          } else if (tensor.number() == field::shape) {
            v.has_shape = true;
            ProtoIn shape(tensor.bytes());
            while (shape.next()) {
              if (shape.number() != field::dim) {
                shape.skip();
                continue;
              }
              std::int64_t value = -1;
              ProtoIn dim(shape.bytes());
              while (dim.next()) {
                if (dim.number() == field::dim_value) value = dim.integer();
                else dim.skip();
              }
              bounded(v.dims, max_dims, "dimensions in a shape").push_back(value);
            }
          } else {
            tensor.skip();
          }
        }
      }
    } else {
      in.skip();
    }
  }
  return v;
}

inline void parse_graph(std::string_view bytes, OnnxModel& model) {
  std::size_t values_left = max_attribute_values;
  ProtoIn in(bytes);
  while (in.next()) {
    switch (in.number()) {
      case field::node:
        bounded(model.nodes, max_nodes, "nodes").push_back(parse_node(in.bytes(), values_left));
        break;
      case field::initializer: {
        bounded(model.initializers, max_nodes, "initializers");
        Tensor t = parse_tensor(in.bytes());
        std::string name = t.name;
        if (!model.initializers.emplace(name, std::move(t)).second)
          throw FormatError("malformed ONNX: two initializers named '" + name + "'");
        break;
      }
      case field::input:
        bounded(model.inputs, max_nodes, "graph inputs").push_back(parse_value_info(in.bytes()));
        break;
      case field::output:
        bounded(model.outputs, max_names, "graph outputs").push_back(parse_value_info(in.bytes()));
        break;
      default:
        in.skip();
    }
  }
}

// Refuses a graph that gives one name to two values: two initializers, two node outputs, a node
// output and an initializer or a graph input, two graph inputs or two graph outputs (a graph
// input may repeat an initializer's name: older IR versions list every initializer as an input).
inline void check_unique_names(const OnnxModel& model) {
  auto twice = [](const std::string& name, const std::string& what) {
    return FormatError("malformed ONNX: the name '" + name + "' is given to two values (" + what + ")");
  };
  std::set<std::string_view> inputs, outputs;
  for (const ValueInfo& v : model.inputs)
    if (!inputs.insert(v.name).second) throw twice(v.name, "two graph inputs");
  for (const ValueInfo& v : model.outputs)
    if (!outputs.insert(v.name).second) throw twice(v.name, "two graph outputs");
  std::set<std::string_view> made;
  for (std::size_t k = 0; k < model.nodes.size(); ++k)
    for (const std::string& name : model.nodes[k].outputs) {
      if (name.empty()) continue;  // an optional output left out
      const std::string node = "node " + std::to_string(k) + "'s output";
      if (model.initializers.count(name)) throw twice(name, node + " and an initializer");
      if (inputs.count(name)) throw twice(name, node + " and a graph input");
      if (!made.insert(name).second) throw twice(name, node + " and an earlier node's output");
    }
}

}  // namespace detail

/// A tensor's float values (its raw bytes, or its float_data), read from the file's bytes.
inline std::vector<float> tensor_floats(const Tensor& t) {
  std::vector<float> values;
  if (t.has_raw) {
    values.resize(t.raw.size() / sizeof(float));
    if (!values.empty()) std::memcpy(values.data(), t.raw.data(), values.size() * sizeof(float));
    return values;
  }
  values.reserve(t.float_count);
  ProtoIn in(t.message);
  while (in.next()) {
    if (in.number() == field::float_data) in.floats(values, t.float_count);
    else in.skip();
  }
  return values;
}

/// An int64 or int32 tensor's values (its raw bytes, or its int64_data or int32_data), as int64,
/// at most `limit` of them: nullopt when it holds more.
inline std::optional<std::vector<std::int64_t>> tensor_int64s(const Tensor& t, std::size_t limit) {
  const bool narrow = t.data_type == int32;
  std::vector<std::int64_t> values;
  if (t.has_raw) {
    const std::size_t item = narrow ? sizeof(std::int32_t) : sizeof(std::int64_t);
    if (t.raw.size() % item || t.raw.size() / item > limit) return std::nullopt;
    values.resize(t.raw.size() / item);
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (narrow) {
        std::int32_t v;
        std::memcpy(&v, t.raw.data() + i * item, item);
        values[i] = v;
      } else {
        std::memcpy(&values[i], t.raw.data() + i * item, item);
      }
    }
    return values;
  }
  if ((narrow ? t.int32_count : t.int64_count) > limit) return std::nullopt;
  ProtoIn in(t.message);
  while (in.next()) {
    if (in.number() == (narrow ? field::int32_data : field::int64_data)) in.ints(values, limit);
    else in.skip();
  }
  if (narrow)  // int32_data holds each value as a varint of its int32, sign-extended
    for (std::int64_t& v : values)
      if (v < std::numeric_limits<std::int32_t>::min() || v > std::numeric_limits<std::int32_t>::max()) return std::nullopt;
  return values;
}

/// Whether `node` computes a value rather than an activation: a Constant, or an Identity of an
/// initializer.
inline bool is_value_node(const OnnxModel& model, const Node& node) {
  if (node.op_type == "Constant") return true;
  return node.op_type == "Identity" && node.inputs.size() == 1 && node.outputs.size() == 1 && model.value(node.inputs[0]);
}

/// Parses an ONNX model held in `bytes` (which the result refers into). Throws FormatError.
inline OnnxModel parse_model(std::string_view bytes) {
  OnnxModel model;
  bool has_graph = false;
  ProtoIn in(bytes);
  while (in.next()) {
    switch (in.number()) {
      case field::ir_version:
        model.ir_version = in.integer();
        break;
      case field::producer_name:
        model.producer = detail::text(in.bytes());
        break;
      case field::graph:
        if (has_graph) throw FormatError("malformed ONNX: two graphs");
        has_graph = true;
        detail::parse_graph(in.bytes(), model);
        break;
      case field::opset_import: {
        std::string domain;
        std::int64_t version = 0;
        ProtoIn opset(in.bytes());
        while (opset.next()) {
          if (opset.number() == field::opset_domain) domain = detail::text(opset.bytes());
          else if (opset.number() == field::opset_version) version = opset.integer();
          else opset.skip();
        }
        if (domain.empty() || domain == "ai.onnx") model.opset = version;
        break;
      }
      case field::metadata_props: {
        std::string key, value;
        ProtoIn entry(in.bytes());
        while (entry.next()) {
          if (entry.number() == field::key) key = detail::text(entry.bytes());
          else if (entry.number() == field::value) value = detail::text(entry.bytes());
          else entry.skip();
        }
        detail::bounded(model.metadata, detail::max_list, "metadata entries")[key] = value;
        break;
      }
      default:
        in.skip();
    }
  }
  if (!has_graph) throw FormatError("not an ONNX model: it has no graph");
  detail::check_unique_names(model);
  // Constant nodes are values, like initializers, and so is an Identity of a value (PyTorch writes
  // one value once: a batch norm's untrained variance of ones is its scale's Identity).
  for (const Node& node : model.nodes) {
    if (node.op_type == "Constant" && node.outputs.size() == 1) {
      if (const Attribute* value = node.find("value"); value && value->t) {
        Tensor t = *value->t;
        t.name = node.outputs[0];
        model.initializers[t.name] = std::move(t);
      }
    } else if (node.op_type == "Identity" && is_value_node(model, node)) {
      const auto alias = model.aliases.find(node.inputs[0]);  // named, not copied: any number of them costs little
      model.aliases[node.outputs[0]] = alias == model.aliases.end() ? node.inputs[0] : alias->second;
    }
  }
  return model;
}

}  // namespace tnet::onnx
