// tnet/model/serialize.hpp: one versioned binary file per model.
//
// A model file holds the architecture signature (Sequential::signature()), the seed and step
// count, the class names, every parameter and running statistic by name, and optionally the
// optimizer's state. Layout, all little-endian:
//   "TNETMODL" | u32 format version | u32 0 | u64 payload bytes | u64 FNV-1a-64 of the payload |
//   payload
// Saving streams through AtomicFile (core/file.hpp: a unique temporary file, fsynced and renamed
// into place; no copy of the model in memory), so a crash never leaves a half-written model under
// the real name. The optimizer's slots are stored per tensor (Adam: m and v of tensor 0, of
// tensor 1, ...), sliced from and reassembled into its arrays.
// Loading checks everything (magic, version, length, checksum, architecture, tensor names and
// sizes, optimizer kind) before it changes anything: on any error it throws ModelFileError and
// the network and optimizer are untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <array>
#include <charconv>
#include <system_error>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../core/hash.hpp"
#include "../core/file.hpp"
#include "../train/optimizer.hpp"

namespace tnet {

inline constexpr std::uint32_t model_format_version = 1;

class ModelFileError : public std::runtime_error {
 public:
  enum class Kind { io, not_a_model, newer_version, truncated, corrupted, architecture_mismatch, optimizer_mismatch, not_finite };

  ModelFileError(Kind kind, const std::string& path, const std::string& detail) : std::runtime_error(path + ": " + detail), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

/// Out of memory while reading a model: a std::bad_alloc whose message names what was being
/// allocated, how much, and for which file ("cannot allocate 4.0 GB for the payload of m.tnet").
class AllocationError : public std::bad_alloc {
 public:
  explicit AllocationError(const std::string& message) : message_(message) {}
  const char* what() const noexcept override { return message_.what(); }

 private:
  std::runtime_error message_;  // a copy that cannot throw
};

/// What a model file carried besides the network's tensors.
struct ModelFileInfo {
  std::vector<std::string> class_names;
  std::map<std::string, std::string> metadata;  // free-form: a trainer's progress, settings, history
  bool has_optimizer_state = false;
  std::uint64_t step = 0;
  /// Each output's decision threshold (label l is present when p > thresholds[l]), as
  /// set_thresholds stored them; empty when the file has none, which means 0.5 for every label.
  std::vector<float> thresholds;

  /// The thresholds, or `fallback` for every one of `outputs` labels when the file has none.
  std::vector<float> thresholds_or(int outputs, float fallback = 0.5f) const {
    return thresholds.empty() ? std::vector<float>(std::size_t(outputs), fallback) : thresholds;
  }
};

/// The metadata entry in which a model file keeps its decision thresholds: the floats as text,
/// separated by spaces, each the shortest that reads back exactly (std::to_chars). An entry of
/// the free-form metadata, so files without it (older ones) load as before and older readers
/// load files with it.
inline constexpr const char* thresholds_key = "decision_thresholds";

/// Stores per-label decision thresholds (e.g. MultiLabelScores::best_thresholds) in metadata
/// for save_model, which checks there is one per output, each in [0, 1].
inline void set_thresholds(std::map<std::string, std::string>& metadata, std::span<const float> thresholds) {
  std::string text;
  for (const float t : thresholds) {
    char number[32];
    const auto end = std::to_chars(number, number + sizeof number, t).ptr;  // the shortest text that reads back as t
    if (!text.empty()) text += ' ';
    text.append(number, end);
  }
  metadata[thresholds_key] = text;
}

namespace detail {
// The thresholds of a thresholds_key entry; an empty string when they are one per output, each
// a number in [0, 1], else what is wrong.
inline std::string parse_thresholds(const std::string& text, int outputs, std::vector<float>& thresholds) {
  thresholds.clear();
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    float t = 0;
    const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), t);
    if (error != std::errc() || end != word.data() + word.size() || !(t >= 0 && t <= 1))
      return "'" + word + "' is not a threshold in [0, 1]";
    thresholds.push_back(t);
  }
  if (thresholds.size() != std::size_t(outputs))
    return std::to_string(thresholds.size()) + " thresholds for a network of " + std::to_string(outputs) + " outputs";
  return "";
}
}  // namespace detail

namespace detail {

// Checked arithmetic for sizes read from files: false (and `out` unspecified) when the exact
// result is above `limit` or does not fit, never a wrapped value.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out, std::uint64_t limit = ~std::uint64_t{0}) {
  return !__builtin_mul_overflow(a, b, &out) && out <= limit;
}
inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out, std::uint64_t limit = ~std::uint64_t{0}) {
  return !__builtin_add_overflow(a, b, &out) && out <= limit;
}

// "512 bytes", "3.2 MB", "4.0 GB".
inline std::string byte_count(std::uint64_t bytes) {
  char text[32];
  if (bytes < 10000) std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
  else if (bytes < (std::uint64_t(1) << 30)) std::snprintf(text, sizeof text, "%.1f MB", double(bytes) / double(1 << 20));
  else std::snprintf(text, sizeof text, "%.1f GB", double(bytes) / double(1 << 30));
  return text;
}

// Runs `allocate`, turning std::bad_alloc into an AllocationError naming `bytes`, `what` and `path`.
template <class F>
decltype(auto) allocating(std::uint64_t bytes, const std::string& what, const std::string& path, F&& allocate) {
  try {
    return allocate();
  } catch (const AllocationError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw AllocationError("cannot allocate " + byte_count(bytes) + " for " + what + " of " + path);
  }
}

// Whether every float is finite (no NaN, no infinity).
inline bool all_finite(const float* values, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i)
    if (!std::isfinite(values[i])) return false;
  return true;
}

// The same for little-endian float32 bytes: no exponent field of all ones.
inline bool all_finite_bytes(const std::string& bytes) {
  for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
    std::uint32_t bits;
    std::memcpy(&bits, bytes.data() + i, 4);
    if ((bits & 0x7f800000u) == 0x7f800000u) return false;
  }
  return true;
}

// Copies `size` bytes; nothing at all when there are none (the pointers may then be null).
inline void copy_bytes(void* to, const void* from, std::size_t size) {
  if (size > 0) std::memcpy(to, from, size);
}

// Writes to a file, counting and hashing the bytes as they go.
class Writer {
 public:
  explicit Writer(AtomicFile& out) : out_(out) {}
  template <class T>
  void put(const T& value) {
    put_bytes(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(const std::string& s) {
    put(std::uint32_t(s.size()));
    put_bytes(s.data(), s.size());
  }
  template <class T>
  void put_array(const T* data, std::size_t count) {
    put(std::uint64_t(count));
    put_bytes(reinterpret_cast<const char*>(data), count * sizeof(T));
  }
  std::uint64_t size() const { return size_; }
  std::uint64_t checksum() const { return checksum_; }

 private:
  void put_bytes(const char* data, std::size_t size) {
    out_.write(data, size);
    checksum_ = fnv1a64(data, size, checksum_);
    size_ += size;
  }
  AtomicFile& out_;
  std::uint64_t size_ = 0, checksum_ = fnv1a64_basis;
};

// Reads a payload whose checksum already passed, so running out of bytes means a file written
// wrongly, not one cut short.
class Reader {
 public:
  Reader(const char* begin, const char* end, const std::string& path) : at_(begin), end_(end), path_(path) {}
  template <class T>
  T get() {
    T value;
    take(&value, sizeof(T));
    return value;
  }
  std::string get_string() {
    std::string s(need(get<std::uint32_t>()), '\0');
    take(s.data(), s.size());
    return s;
  }
  std::string get_bytes(std::uint64_t count, std::size_t item) {
    std::string bytes(need(count, item) * item, '\0');
    take(bytes.data(), bytes.size());
    return bytes;
  }
  /// A count of items that take at least `least` bytes each, refused when the bytes left cannot
  /// hold them.
  std::uint32_t get_count(std::size_t least, const char* what) {
    const auto count = get<std::uint32_t>();
    if (count > std::uint64_t(end_ - at_) / least)
      throw ModelFileError(
          ModelFileError::Kind::corrupted, path_,
          "malformed model file: " + std::to_string(count) + " " + what + " in " + std::to_string(end_ - at_) + " bytes of payload");
    return count;
  }
  bool done() const { return at_ == end_; }

 private:
  std::size_t need(std::uint64_t count, std::size_t item = 1) const {
    if (count > std::uint64_t(end_ - at_) / item)
      throw ModelFileError(ModelFileError::Kind::corrupted, path_, "malformed model file: a field runs past the end of the payload");
    return std::size_t(count);
  }
  void take(void* out, std::size_t size) {
    need(size);
    copy_bytes(out, at_, size);
    at_ += size;
  }
  const char* at_;
  const char* end_;
  const std::string& path_;
};

enum class Dtype : std::uint8_t { f32 = 1, u64 = 2 };

// "layer line 3: the file has 'X', this network has 'Y'": the first line where two signatures differ.
inline std::string first_difference(const std::string& ours, const std::string& theirs) {
  std::istringstream a(ours), b(theirs);
  for (int line = 1;; ++line) {
    std::string x, y;
    const bool more_ours = bool(std::getline(a, x)), more_theirs = bool(std::getline(b, y));
    if (!more_ours && !more_theirs) return "none";
    if (x != y || more_ours != more_theirs)
      return "layer line " + std::to_string(line) + ": the file has '" + (more_theirs ? y : "(nothing)") + "', this network has '" +
             (more_ours ? x : "(nothing)") + "'";
  }
}

}  // namespace detail

namespace detail {
inline constexpr std::size_t header_size = 32;

// Opens a model file and checks its header (magic, version, payload length against the file's
// length); `in` is left at the payload. Returns the payload's size and checksum.
inline std::pair<std::uint64_t, std::uint64_t> open_model_file(std::ifstream& in, const std::string& path) {
  using Kind = ModelFileError::Kind;
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw ModelFileError(Kind::io, path, "cannot read model file: it is a folder");
  std::string reason;
  if (std::filesystem::exists(path, error) && !is_readable_file(path, reason))
    throw ModelFileError(Kind::io, path, "cannot read model file: " + reason);
  in.open(path, std::ios::binary);
  if (!in) throw ModelFileError(Kind::io, path, "cannot open model file");
  in.seekg(0, std::ios::end);
  const std::streamoff file_size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (file_size < 0) throw ModelFileError(Kind::io, path, "cannot read model file");
  char header[header_size] = {};
  in.read(header, std::streamsize(std::min<std::streamoff>(file_size, header_size)));
  if (file_size < 8 || std::memcmp(header, "TNETMODL", 8) != 0)
    throw ModelFileError(Kind::not_a_model, path, "not a tnet model file (no TNETMODL header)");
  if (file_size < std::streamoff(header_size))
    throw ModelFileError(Kind::truncated, path, "model file is truncated: its header is incomplete");
  std::uint32_t version, reserved;
  std::uint64_t payload_size, checksum;
  std::memcpy(&version, header + 8, 4);
  std::memcpy(&reserved, header + 12, 4);
  std::memcpy(&payload_size, header + 16, 8);
  std::memcpy(&checksum, header + 24, 8);
  if (version > model_format_version)
    throw ModelFileError(Kind::newer_version, path,
                         "model file has format version " + std::to_string(version) +
                             ", written by a newer tnet; this build reads versions up to " + std::to_string(model_format_version));
  if (version == 0) throw ModelFileError(Kind::corrupted, path, "model file is corrupted: format version 0");
  if (reserved != 0) throw ModelFileError(Kind::corrupted, path, "model file is corrupted: header bytes 12-15 are not zero");
  const std::uint64_t actual = std::uint64_t(file_size) - header_size;
  if (payload_size > actual)
    throw ModelFileError(Kind::truncated, path,
                         "model file is truncated: its header promises " + std::to_string(payload_size) + " bytes after the " +
                             std::to_string(header_size) + "-byte header, the file has " + std::to_string(actual));
  if (payload_size < actual)
    throw ModelFileError(Kind::corrupted, path,
                         "model file is corrupted: " + std::to_string(actual - payload_size) + " unexpected bytes after the model");
  return {payload_size, checksum};
}

// The payload, after checking the header and the checksum; read at its exact size (a growing
// string would hold up to twice the file).
// At most `largest` bytes: a file larger than the network's model could be is refused before
// anything is allocated for it.
inline std::string read_checked_payload(const std::string& path, std::uint64_t largest) {
  std::ifstream in;
  const auto [size, checksum] = open_model_file(in, path);
  if (size > largest)
    throw ModelFileError(ModelFileError::Kind::corrupted, path,
                         "model file is corrupted: " + std::to_string(size) + " bytes, more than a model of this network can hold (" +
                             std::to_string(largest) + ")");
  std::string payload = allocating(size, "the payload", path, [&] { return std::string(std::size_t(size), '\0'); });
  in.read(payload.data(), std::streamsize(size));
  if (in.gcount() != std::streamsize(size)) throw ModelFileError(ModelFileError::Kind::io, path, "cannot read model file");
  if (fnv1a64(payload.data(), payload.size()) != checksum)
    throw ModelFileError(ModelFileError::Kind::corrupted, path, "model file is corrupted: checksum mismatch");
  return payload;
}
}  // namespace detail

namespace detail {
// The signature and the payload's size (read_model_signature).
inline std::pair<std::string, std::uint64_t> read_signature(const std::string& path) {
  std::ifstream in;
  const std::uint64_t payload_size = open_model_file(in, path).first;
  std::uint32_t length = 0;
  in.read(reinterpret_cast<char*>(&length), sizeof length);
  if (!in || sizeof length + std::uint64_t(length) > payload_size)
    throw ModelFileError(ModelFileError::Kind::corrupted, path, "malformed model file: a field runs past the end of the payload");
  if (length > (1u << 20)) throw ModelFileError(ModelFileError::Kind::corrupted, path, "malformed model file: a signature of over 1 MB");
  std::string signature(length, '\0');
  in.read(signature.data(), std::streamsize(length));
  if (in.gcount() != std::streamsize(length)) throw ModelFileError(ModelFileError::Kind::io, path, "cannot read model file");
  return {std::move(signature), payload_size};
}

// The values per sample of one signature line's shape ("Dense(6) -> (None, 6)": 6; "Input(None,
// 4, 4, 1)": 16); 0 when the line has no shape or it holds 2^30 values or more.
inline std::uint64_t signature_line_size(const std::string& line) {
  const std::size_t end = line.rfind(')');
  const std::size_t begin = end == std::string::npos ? end : line.rfind("(None, ", end);
  if (begin == std::string::npos) return 0;
  std::istringstream dims(line.substr(begin + 7, end - begin - 7));
  std::uint64_t size = 1;
  for (std::string dim; std::getline(dims, dim, ',');) {
    const long long n = std::atoll(dim.c_str());
    if (n < 1 || !checked_mul(size, std::uint64_t(n), size, (std::uint64_t(1) << 30) - 1)) return 0;
  }
  return size;
}
}  // namespace detail

/// The architecture signature stored in a model file (Sequential::signature()), for choosing the
/// network type to load. Reads the header and the signature alone; load_model checks the rest.
inline std::string read_model_signature(const std::string& path) { return detail::read_signature(path).first; }

namespace detail {
// The floats a network of type Net holds for each unit of its run-time width: its Dense<dynamic>'s
// inputs and bias (0 without one).
template <class Net, std::size_t I = 0>
constexpr std::uint64_t floats_per_output() {
  if constexpr (I == Net::depth) {
    return 0;
  } else {
    using L = typename Net::template layer_type<I>;
    if constexpr (L::output_shape::is_dynamic && !L::input_shape::is_dynamic) return std::uint64_t(L::input_shape::size) + 1;
    else return floats_per_output<Net, I + 1>();
  }
}

// read_model_outputs; `per_output` > 0: the floats the caller's network holds for each output.
inline int read_model_outputs(const std::string& path, std::uint64_t per_output) {
  using Kind = ModelFileError::Kind;
  const auto [signature, payload_size] = read_signature(path);
  std::vector<std::string> lines;
  std::istringstream text(signature);
  for (std::string line; std::getline(text, line);) lines.push_back(line);
  const std::uint64_t outputs = lines.size() >= 2 ? signature_line_size(lines.back()) : 0;
  if (outputs < 1) throw ModelFileError(Kind::corrupted, path, "malformed model file: its signature does not end in an output shape");
  // The line that makes the width: the first of the last lines that all have it.
  std::size_t maker = lines.size() - 1;
  while (maker > 1 && !lines[maker].starts_with("Dense(") && signature_line_size(lines[maker - 1]) == outputs) --maker;
  const bool dense = lines[maker].starts_with("Dense(");
  const std::uint64_t inputs = dense ? signature_line_size(lines[maker - 1]) : 1;
  std::uint64_t floats = 0, bytes = 0;
  auto fits = [&](std::uint64_t per) {
    return checked_mul(per, outputs, floats) && checked_mul(floats, sizeof(float), bytes) && bytes <= payload_size;
  };
  if (inputs < 1 || !fits(inputs + 1))
    throw ModelFileError(Kind::corrupted, path,
                         "malformed model file: its signature gives " + std::to_string(outputs) + " outputs ('" + lines[maker] +
                             "'), whose weights cannot fit in its " + std::to_string(payload_size) + "-byte payload");
  if (per_output > 0 && !fits(per_output))
    throw ModelFileError(Kind::architecture_mismatch, path,
                         "model file's signature gives " + std::to_string(outputs) + " outputs ('" + lines[maker] + "'): this network's " +
                             std::to_string(per_output) + " floats an output would not fit in its " + std::to_string(payload_size) +
                             "-byte payload");
  return int(outputs);
}
}  // namespace detail

/// The output width of the network saved in `path`: the values per sample of its last layer,
/// from the signature's last line ("Sigmoid -> (None, 65)"). What a network with Dense<dynamic>
/// is constructed with to load the file: Net net(Outputs{read_model_outputs<Net>(path)}).
/// The width is checked against the file's length before anything is allocated for it: the file
/// must be able to hold the weights of the Dense layer that makes the width ((K + 1) x width
/// floats for K inputs), and, when no Dense layer makes it, 2 floats a value (what any Dense of
/// that width would hold). read_model_outputs<Net> also checks that Net's own Dense<dynamic> at
/// that width would fit, so that constructing Net takes no more memory than the file could fill:
/// a small file claiming a million outputs is refused in microseconds.
inline int read_model_outputs(const std::string& path) { return detail::read_model_outputs(path, 0); }
template <class Net>
int read_model_outputs(const std::string& path) {
  return detail::read_model_outputs(path, detail::floats_per_output<Net>());
}

/// Writes `net` (weights, running statistics, step), `class_names`, `metadata` and, when given,
/// the optimizer's state to `path`, through AtomicFile. Throws FileError naming the file when it
/// cannot be written, and ModelFileError (not_finite) without writing anything when a weight or
/// statistic is NaN or infinite; an existing file at `path` is then left as it was. Decision
/// thresholds in `metadata` (set_thresholds) must be one per output, each in [0, 1], else it
/// throws std::invalid_argument, also before writing.
template <class Net>
void save_model(const std::string& path, Net& net, const std::vector<std::string>& class_names = {}, const Optimizer* optimizer = nullptr,
                const std::map<std::string, std::string>& metadata = {}) {
  // A diverged network is refused before anything is written: a model file always holds numbers.
  auto refuse_non_finite = [&](const std::string& name, const float* values, std::size_t count) {
    if (!detail::all_finite(values, count))
      throw ModelFileError(ModelFileError::Kind::not_finite, path, "refusing to save a model whose " + name + " holds NaN or infinity");
  };
  if (const auto found = metadata.find(thresholds_key); found != metadata.end()) {
    std::vector<float> thresholds;
    if (const std::string error = detail::parse_thresholds(found->second, net.outputs(), thresholds); !error.empty())
      throw std::invalid_argument("tnet::save_model: " + path + ": decision thresholds: " + error);
  }
  for (const ParamRef& p : net.parameters()) refuse_non_finite(p.name, p.value, p.size);
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) refuse_non_finite(name, span.data(), span.size());
  });
  AtomicFile out(path, "model file");
  // The payload's length and checksum are known at its end: zeros now, filled in then.
  detail::Writer header(out);
  header.put(std::array<char, 8>{'T', 'N', 'E', 'T', 'M', 'O', 'D', 'L'});
  header.put(model_format_version);
  header.put(std::uint32_t(0));
  const std::uint64_t length_at = header.size();
  header.put(std::uint64_t(0));
  header.put(std::uint64_t(0));

  detail::Writer payload(out);
  payload.put_string(net.signature());
  payload.put(net.seed());
  payload.put(net.step());
  payload.put(std::uint32_t(class_names.size()));
  for (const std::string& name : class_names) payload.put_string(name);
  payload.put(std::uint32_t(metadata.size()));
  for (const auto& [key, value] : metadata) {
    payload.put_string(key);
    payload.put_string(value);
  }

  const Parameters parameters = net.parameters();
  std::uint32_t tensors = std::uint32_t(parameters.tensors.size());
  net.visit_state([&](const std::string&, auto) { ++tensors; });
  payload.put(tensors);
  for (const ParamRef& p : parameters) {
    payload.put_string(p.name);
    payload.put(detail::Dtype::f32);
    payload.put_array(p.value, p.size);
  }
  net.visit_state([&](const std::string& name, auto span) {
    payload.put_string(name);
    payload.put(std::is_same_v<typename decltype(span)::value_type, float> ? detail::Dtype::f32 : detail::Dtype::u64);
    payload.put_array(span.data(), span.size());
  });

  payload.put(std::uint8_t(optimizer != nullptr));
  if (optimizer) {
    const OptimizerState state = optimizer->state_without_slots();
    payload.put_string(state.kind);
    payload.put(state.iterations);
    payload.put(std::uint32_t(state.hyper_parameters.size()));
    for (const auto& [name, value] : state.hyper_parameters) {
      payload.put_string(name);
      payload.put(value);
    }
    const std::span<const Buffer> slots = optimizer->slots();
    payload.put(std::uint32_t(slots.size() * parameters.tensors.size()));
    for (const ParamRef& p : parameters)
      for (const Buffer& slot : slots) payload.put_array(slot.data() + p.offset, p.size);
  }

  const std::uint64_t length = payload.size(), checksum = payload.checksum();
  out.write_at(length_at, &length, sizeof length);
  out.write_at(length_at + sizeof length, &checksum, sizeof checksum);
  out.commit();
}

/// Reads a model file written by save_model into `net` (and `optimizer`, when both it and the
/// file have optimizer state). Throws ModelFileError, changing nothing, when the file cannot be
/// read, is not a model file, comes from a newer tnet, is truncated or corrupted, was made for
/// another architecture or another optimizer, or holds a weight or statistic that is not finite.
template <class Net>
ModelFileInfo load_model(const std::string& path, Net& net, Optimizer* optimizer = nullptr) {
  using Kind = ModelFileError::Kind;
  // The largest file this network's model can be: the weights with two optimizer slots, the
  // statistics, one more copy of the weights and statistics in the metadata (a training
  // checkpoint's best weights, train/callbacks.hpp), and 64 MB for the signature, the names and
  // the rest of the metadata.
  std::uint64_t largest = std::uint64_t(net.parameters().values.size()) * sizeof(float) * 4 + (64u << 20);
  net.visit_state([&](const std::string&, auto span) { largest += 2 * span.size_bytes(); });
  const std::string payload = detail::read_checked_payload(path, largest);
  detail::Reader in(payload.data(), payload.data() + payload.size(), path);
  const std::string signature = in.get_string();
  if (signature != net.signature())
    throw ModelFileError(
        Kind::architecture_mismatch, path,
        "model file was saved from a different architecture (" + detail::first_difference(net.signature(), signature) + ")");
  const auto seed = in.get<std::uint64_t>();
  ModelFileInfo info;
  info.step = in.get<std::uint64_t>();
  // Every count is checked against the bytes left before anything is allocated for it: each
  // item takes at least 4 bytes (a length).
  for (std::uint32_t n = in.get_count(4, "class names"); n > 0; --n) info.class_names.push_back(in.get_string());
  for (std::uint32_t n = in.get_count(8, "metadata entries"); n > 0; --n) {
    std::string key = in.get_string();
    info.metadata[key] = in.get_string();
  }
  if (const auto found = info.metadata.find(thresholds_key); found != info.metadata.end()) {
    if (const std::string error = detail::parse_thresholds(found->second, net.outputs(), info.thresholds); !error.empty())
      throw ModelFileError(Kind::corrupted, path, "model file's decision thresholds do not fit: " + error);
    info.metadata.erase(found);
  }

  // Everything is read and checked into `staged` first; only then is anything copied.
  struct Staged {
    detail::Dtype dtype;
    std::string bytes;
  };
  std::map<std::string, Staged> staged;
  for (std::uint32_t n = in.get_count(4 + 1 + 8, "tensors"); n > 0; --n) {
    std::string name = in.get_string();
    if (staged.count(name)) throw ModelFileError(Kind::corrupted, path, "malformed model file: two tensors named " + name);
    const auto dtype = in.get<detail::Dtype>();
    if (dtype != detail::Dtype::f32 && dtype != detail::Dtype::u64)
      throw ModelFileError(Kind::corrupted, path, "malformed model file: tensor " + name + " has an unknown type");
    const std::size_t item = dtype == detail::Dtype::f32 ? sizeof(float) : sizeof(std::uint64_t);
    staged[name] = Staged{dtype, in.get_bytes(in.get<std::uint64_t>(), item)};
  }
  auto check = [&](const std::string& name, detail::Dtype dtype, std::size_t count) -> const std::string& {
    const auto found = staged.find(name);
    if (found == staged.end()) throw ModelFileError(Kind::architecture_mismatch, path, "model file has no tensor " + name);
    const std::size_t item = dtype == detail::Dtype::f32 ? sizeof(float) : sizeof(std::uint64_t);
    if (found->second.dtype != dtype || found->second.bytes.size() != count * item)
      throw ModelFileError(Kind::architecture_mismatch, path, "model file's tensor " + name + " has the wrong size or type");
    return found->second.bytes;
  };
  const Parameters parameters = net.parameters();
  for (const ParamRef& p : parameters) {
    if (!detail::all_finite_bytes(check(p.name, detail::Dtype::f32, p.size)))
      throw ModelFileError(Kind::not_finite, path, "model file's tensor " + p.name + " holds NaN or infinity");
  }
  net.visit_state([&](const std::string& name, auto span) {
    constexpr bool is_float = std::is_same_v<typename decltype(span)::value_type, float>;
    const std::string& bytes = check(name, is_float ? detail::Dtype::f32 : detail::Dtype::u64, span.size());
    if (is_float && !detail::all_finite_bytes(bytes))
      throw ModelFileError(Kind::not_finite, path, "model file's tensor " + name + " holds NaN or infinity");
  });

  OptimizerState optimizer_state;
  info.has_optimizer_state = in.get<std::uint8_t>() != 0;
  if (info.has_optimizer_state) {
    optimizer_state.kind = in.get_string();
    optimizer_state.iterations = in.get<std::uint64_t>();
    for (std::uint32_t n = in.get_count(4 + 8, "hyper-parameters"); n > 0; --n) {
      std::string name = in.get_string();
      optimizer_state.hyper_parameters.emplace_back(std::move(name), in.get<double>());
    }
    auto check_optimizer = [&] {
      try {
        if (optimizer) optimizer->check_state(optimizer_state, parameters);
      } catch (const std::invalid_argument& e) {
        throw ModelFileError(Kind::optimizer_mismatch, path, std::string("model file's optimizer state does not fit: ") + e.what());
      }
    };
    check_optimizer();  // its kind and hyper-parameters, before the slots
    // Per tensor, each slot's slice of it, reassembled into whole slots for `optimizer`.
    const std::uint32_t arrays = in.get_count(8, "optimizer arrays");
    const std::size_t tensor_count = parameters.tensors.size();
    const std::size_t per_tensor = optimizer ? optimizer->slots_per_parameter() : 0;
    if (optimizer && arrays != 0 && arrays != per_tensor * tensor_count)
      throw ModelFileError(Kind::optimizer_mismatch, path,
                           "model file's optimizer state does not fit: " + std::to_string(arrays) + " slot arrays for " +
                               std::to_string(tensor_count) + " tensors with " + std::to_string(per_tensor) + " slots each");
    if (optimizer && arrays != 0)
      detail::allocating(std::uint64_t(per_tensor) * parameters.values.size() * sizeof(float), "the optimizer's state", path,
                         [&] { optimizer_state.slots.assign(per_tensor, Buffer(parameters.values.size())); });
    for (std::uint32_t a = 0; a < arrays; ++a) {
      const std::string bytes = in.get_bytes(in.get<std::uint64_t>(), sizeof(float));
      if (!optimizer) continue;
      const ParamRef& p = parameters.tensors[a / per_tensor];
      if (bytes.size() != p.size * sizeof(float))
        throw ModelFileError(Kind::optimizer_mismatch, path,
                             "model file's optimizer state does not fit: its slot for " + p.name + " has the wrong size");
      detail::copy_bytes(optimizer_state.slots[a % per_tensor].data() + p.offset, bytes.data(), bytes.size());
    }
    check_optimizer();
  }
  if (!in.done()) throw ModelFileError(Kind::corrupted, path, "malformed model file: unexpected bytes after the optimizer state");

  // Everything fits: commit.
  for (const ParamRef& p : parameters) detail::copy_bytes(p.value, staged[p.name].bytes.data(), p.size * sizeof(float));
  net.visit_state(
      [&](const std::string& name, auto span) { detail::copy_bytes(span.data(), staged[name].bytes.data(), span.size_bytes()); });
  net.restore(seed, info.step);
  if (optimizer && info.has_optimizer_state) optimizer->set_state(std::move(optimizer_state), parameters);
  return info;
}

}  // namespace tnet
