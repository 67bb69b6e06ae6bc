// ONNX export and import: an exact round trip for every layer kind in both layouts, mismatched
// networks refused naming the node, corrupt and truncated files refused without touching the
// network. Consumers tnet did not write (onnx.checker, OpenCV, ONNX Runtime, PyTorch) are tested
// by tests/onnx/run.sh.
#include "support.hpp"
#include "limited.hpp"

#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <iterator>

using namespace tnet;
namespace fs = std::filesystem;

namespace {
// Every layer kind, "same" and "valid" padding, a stride of 2, a convolution and pooling after a
// flat activation (Dense -> Conv2D), Softmax over a spatial activation, and the run-time width.
using Net =
    Sequential<Input<9, 7, 3>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.25f>, Conv2D<5, 2, 2, Padding::valid>,
               BatchNormWith<0.9f, 1e-5f>, Flatten, Dense<6>, ReLU, Conv2D<3, 1>, MaxPool2D<1>, Softmax, Flatten, Dense<dynamic>, Sigmoid>;
using Wider =
    Sequential<Input<9, 7, 3>, Conv2D<5, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.25f>, Conv2D<5, 2, 2, Padding::valid>,
               BatchNormWith<0.9f, 1e-5f>, Flatten, Dense<6>, ReLU, Conv2D<3, 1>, MaxPool2D<1>, Softmax, Flatten, Dense<dynamic>, Sigmoid>;
using Shorter = Sequential<Input<9, 7, 3>, Conv2D<4, 3>, ReLU, BatchNorm>;
using Longer = Sequential<Input<9, 7, 3>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.25f>, Conv2D<5, 2, 2, Padding::valid>,
                          BatchNormWith<0.9f, 1e-5f>, Flatten, Dense<6>, ReLU, Conv2D<3, 1>, MaxPool2D<1>, Softmax, Flatten, Dense<dynamic>,
                          Sigmoid, ReLU>;
using Square = Sequential<Input<9, 9, 3>, Conv2D<4, 3>, ReLU>;
constexpr int batch = 3, labels = 4;

using test::read;
using test::TempDir;
using test::write;

// Trained for a few steps: weights and batch-norm statistics away from their initial values.
template <class N>
void train(N& net, int steps = 4) {
  const Buffer x = test::random_values(batch * N::input_size, 1);
  Buffer targets = test::random_values(std::size_t(batch) * net.outputs(), 2, 0.5f);
  for (float& t : targets) t = t > 0 ? 1.0f : 0.0f;
  Adam adam;
  for (int s = 0; s < steps; ++s) net.train_step(x, targets, batch, adam);
}

template <class N>
std::vector<float> everything(N& net) {
  std::vector<float> all(net.parameters().values.begin(), net.parameters().values.end());
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>)
      if (name.find("moving_") != std::string::npos) all.insert(all.end(), span.begin(), span.end());
  });
  return all;
}

template <class N>
std::vector<float> predictions(N& net) {
  const Buffer x = test::random_values(batch * N::input_size, 3);
  const std::span<const float> y = net.predict(x, batch);
  return {y.begin(), y.end()};
}

// load_onnx(path) into a fresh network throws ModelFileError of `kind` whose message holds
// `words`, and leaves the network as it was.
template <class N>
void check_refused(const std::string& path, ModelFileError::Kind kind, const std::string& words, int width = labels) {
  N net = [&] {
    if constexpr (N::has_dynamic_width) return N(Outputs{width}, 9);
    else return N(9);
  }();
  const std::vector<float> before = everything(net);
  try {
    load_onnx(path, net);
    FAIL("load_onnx accepted " << path);
  } catch (const ModelFileError& e) {
    CHECK(e.kind() == kind);
    CHECK_MESSAGE(std::string(e.what()).find(words) != std::string::npos, std::string(e.what()));
  }
  CHECK(everything(net) == before);
}
}  // namespace

TEST_CASE("ONNX: export then import gives the same network, bit for bit, in both layouts") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  train(net);
  for (const OnnxLayout layout : {OnnxLayout::nhwc, OnnxLayout::nchw}) {
    CAPTURE(int(layout));
    save_onnx(dir / "net.onnx", net, {"red", "blue \"navy\"", "dress", "jeans"}, layout, {{"note", "x"}});
    const OnnxInfo info = read_onnx_info(dir / "net.onnx");
    CHECK(info.layout == layout);
    CHECK(info.height == 9);
    CHECK(info.width == 7);
    CHECK(info.channels == 3);
    CHECK(info.outputs == labels);
    CHECK(info.class_names == std::vector<std::string>{"red", "blue \"navy\"", "dress", "jeans"});
    CHECK(info.metadata.at("note") == "x");
    CHECK(info.opset == 13);
    CHECK(info.ir_version == 7);
    CHECK(info.producer == "tnet");

    Net copy(Outputs{labels}, 77);
    CHECK(everything(copy) != everything(net));
    const OnnxInfo loaded = load_onnx(dir / "net.onnx", copy);
    CHECK(loaded.class_names == info.class_names);
    CHECK(everything(copy) == everything(net));
    CHECK(predictions(copy) == predictions(net));
  }
  // Nothing but the file is left.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("ONNX: imported batch-norm statistics carry on as a converged moving average") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  train(net);
  save_onnx(dir / "net.onnx", net);
  // Two copies of the import take the same training step; in `reset` the statistics start over,
  // so after it they are that batch's own.
  Net imported(Outputs{labels}, 77), reset(Outputs{labels}, 78);
  load_onnx(dir / "net.onnx", imported);
  load_onnx(dir / "net.onnx", reset);
  reset.reset_batch_norm_statistics();
  const std::vector<float> before(imported.layer<2>().moving_mean(), imported.layer<2>().moving_mean() + 4);
  train(imported, 1);
  train(reset, 1);
  // The import's moving mean moves 1 - momentum (0.01) of the way to the batch's: an average
  // that has run long enough for its zero-debiasing to be 1, not one that starts now.
  for (int c = 0; c < 4; ++c) {
    const double batch_mean = reset.layer<2>().moving_mean()[c];
    CHECK(imported.layer<2>().moving_mean()[c] == doctest::Approx(0.99 * before[std::size_t(c)] + 0.01 * batch_mean).epsilon(1e-5));
    CHECK(std::abs(batch_mean - before[std::size_t(c)]) > 1e-4);  // the batch's differs: the check above can fail
  }
}

TEST_CASE("ONNX: a graph for another network is refused, naming the first node that does not fit") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  save_onnx(dir / "net.onnx", net);
  using Kind = ModelFileError::Kind;
  check_refused<Wider>(
      dir / "net.onnx", Kind::architecture_mismatch,
      "ONNX node 1 (Conv '0.conv2d') does not fit layer 0.conv2d: its kernel has shape [4, 3, 3, 3], the layer's is [5, 3, 3, 3]");
  check_refused<Net>(dir / "net.onnx", Kind::architecture_mismatch, "its weights has shape [4, 3], the layer's is [5, 3]", 5);
  check_refused<Shorter>(dir / "net.onnx", Kind::architecture_mismatch,
                         "ONNX node 4 (MaxPool '3.maxpool2d') follows the network's last layer, 2.batchnorm");
  check_refused<Longer>(dir / "net.onnx", Kind::architecture_mismatch, "the graph ends before layer 16.relu, which expects Relu");
  // An operator of another domain (a vendor's Conv) is not ONNX's Conv: the node's name field
  // ("0.conv2d", field 3) rewritten in place as a domain field (field 7) of the same length.
  std::string foreign = read(dir / "net.onnx");
  const std::size_t at =
      foreign.find(std::string("\x1a\x08"
                               "0.conv2d",
                               10));
  REQUIRE(at != std::string::npos);
  foreign.replace(at, 10,
                  std::string("\x3a\x08"
                              "com.acme",
                              10));
  write(dir / "foreign.onnx", foreign);
  check_refused<Net>(dir / "foreign.onnx", Kind::architecture_mismatch,
                     "ONNX node 1 (Conv) does not fit layer 0.conv2d: its operator is from domain 'com.acme', not ONNX's; expected Conv");
  check_refused<Square>(dir / "net.onnx", Kind::architecture_mismatch,
                        "the graph's input input is [-1, 9, 7, 3] (NHWC); the network's is (None, 9, 9, 3)");
}

TEST_CASE("ONNX: corrupt, truncated and non-ONNX files are refused and the network is untouched") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  train(net);
  save_onnx(dir / "net.onnx", net, {"a", "b", "c", "d"});
  const std::string bytes = read(dir / "net.onnx");
  using Kind = ModelFileError::Kind;

  check_refused<Net>(dir / "missing.onnx", Kind::io, "cannot read ONNX file");
  check_refused<Net>(dir.path.string(), Kind::io, "not a regular file");
  write(dir / "empty.onnx", "");
  check_refused<Net>(dir / "empty.onnx", Kind::corrupted, "not a valid ONNX file: not an ONNX model: it has no graph");
  write(dir / "text.onnx", "hello, this is not ONNX\n");
  check_refused<Net>(dir / "text.onnx", Kind::corrupted, "not a valid ONNX file");
  // Every cut through the file's structure is caught; most land in the weights' raw bytes.
  int refused = 0;
  for (std::size_t cut = 0; cut < bytes.size(); cut += 1 + cut / 16) {
    write(dir / "cut.onnx", bytes.substr(0, cut));
    Net copy(Outputs{labels}, 9);
    const std::vector<float> before = everything(copy);
    try {
      load_onnx(dir / "cut.onnx", copy);
      FAIL("a file cut at " << cut << " of " << bytes.size() << " bytes loaded");
    } catch (const ModelFileError& e) {
      ++refused;
    }
    CHECK(everything(copy) == before);
  }
  CHECK(refused > 100);
  // A weight that is not a number.
  std::string nan_file = bytes;
  const std::size_t at = nan_file.find("0.conv2d.bias");
  REQUIRE(at != std::string::npos);
  // The bias initializer's name is followed by its raw bytes: field 9 (0x4a), length 16, values.
  const std::size_t raw = nan_file.find(std::string("\x4a\x10", 2), at);
  REQUIRE(raw != std::string::npos);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_file.data() + raw + 2, &nan, 4);
  write(dir / "nan.onnx", nan_file);
  check_refused<Net>(dir / "nan.onnx", Kind::not_finite, "ONNX node 1 (Conv '0.conv2d')'s bias holds NaN or infinity");
  // Random damage: loads (a flipped weight is still a weight) or is refused, nothing else.
  Rng rng(11);
  int loaded = 0;
  for (std::uint64_t trial = 0; trial < 300; ++trial) {
    std::string damaged = bytes;
    for (int k = 0; k < 3; ++k)
      damaged[std::size_t(rng.bits(trial * 8 + k) % damaged.size())] ^= char(1 + rng.bits(trial * 8 + 4 + k) % 255);
    write(dir / "damaged.onnx", damaged);
    Net copy(Outputs{labels}, 9);
    try {
      load_onnx(dir / "damaged.onnx", copy);
      ++loaded;
    } catch (const ModelFileError&) {
    }
  }
  MESSAGE(loaded << " of 300 damaged files loaded (their damage in weights)");
}

TEST_CASE("ONNX: a network that is not finite is not exported") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  net.parameters().values[3] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(save_onnx(dir / "net.onnx", net), doctest::Contains("0.conv2d.kernel holds NaN or infinity"), ModelFileError);
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("ONNX: class names survive JSON, and malformed JSON is recognised") {
  const std::vector<std::string> names{"", "plain", "quote\" back\\slash", "tab\tnew\nline", "\x01", "ünïcode"};
  CHECK(onnx::parse_json_strings(onnx::json_strings(names)) == names);
  CHECK(onnx::parse_json_strings("[]") == std::vector<std::string>{});
  CHECK(onnx::parse_json_strings(" [ \"a\" , \"\\u00e9\\u4e2d\" ] ") == std::vector<std::string>{"a", "\xc3\xa9\xe4\xb8\xad"});
  for (const char* bad : {"", "[", "[\"a\"", "[\"a\",]", "[1]", "{}", "[\"a\"] x", "[\"\\x\"]", "[\"\\u12\"]"})
    CHECK_MESSAGE(!onnx::parse_json_strings(bad), bad);
}

TEST_CASE("ONNX: PyTorch's two ways of flattening import to the same network") {
  // tests/onnx/torch_smallervgg.py --fuzz-seed wrote these with PyTorch: one network, flattened by
  // nn.Flatten (a Flatten node) and by x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Concat,
  // Reshape). tests/onnx/run.sh compares a whole SmallerVGGNet with PyTorch's outputs.
  using Tiny = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, ReLU, BatchNorm, Flatten, Dense<dynamic>, Sigmoid>;
  const std::string dir = std::string(TNET_FIXTURE_DIR) + "/fuzz/onnx/";
  Tiny flattened(Outputs{3}, 1), viewed(Outputs{3}, 2);
  CHECK(load_onnx(dir + "pytorch_tiny.onnx", flattened).producer == "pytorch");
  load_onnx(dir + "pytorch_tiny_view.onnx", viewed);
  CHECK(everything(flattened) == everything(viewed));
  CHECK(predictions(flattened) == predictions(viewed));
  Tiny fresh(Outputs{3}, 1);
  CHECK(everything(fresh) != everything(flattened));
}

namespace {
// Small ONNX files made field by field, as a hand-made (hostile) file would be.
onnx::ProtoOut model_of(onnx::ProtoOut&& graph) {
  onnx::ProtoOut model;
  model.int_field(onnx::field::ir_version, 7);
  onnx::ProtoOut opset;
  opset.bytes_field(onnx::field::opset_domain, "");
  opset.int_field(onnx::field::opset_version, 13);
  model.message(onnx::field::opset_import, std::move(opset));
  model.message(onnx::field::graph, std::move(graph));
  return model;
}
void write_model(const std::string& path, onnx::ProtoOut&& graph) {
  AtomicFile out(path, "ONNX file");
  model_of(std::move(graph)).write_to(out);
  out.commit();
}
// A graph of input x (N, 2, 4, 4), NCHW, and output y of `output_dims` (N first), no nodes.
onnx::ProtoOut graph_with_output(const std::vector<std::int64_t>& output_dims) {
  onnx::ProtoOut graph;
  graph.message(onnx::field::input, onnx::value_info("x", {-1, 2, 4, 4}));
  graph.message(onnx::field::output, onnx::value_info("y", output_dims));
  return graph;
}
onnx::ProtoOut float_initializer(const std::string& name, std::vector<std::int64_t> dims, const std::string& raw) {
  onnx::ProtoOut t;
  for (std::int64_t d : dims) t.int_field(onnx::field::dims, d);
  t.int_field(onnx::field::data_type, onnx::float32);
  t.bytes_field(onnx::field::tensor_name, name);
  t.bytes_field(onnx::field::raw_data, raw);
  return t;
}
using Tiny = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, ReLU, BatchNorm, Flatten, Dense<dynamic>, Sigmoid>;
}  // namespace

TEST_CASE("ONNX: dims whose product overflows are refused naming the tensor, never wrapped (UBSan)") {
  TempDir dir;
  // The graph's output (N, 4, 2^62 + 1): its product overflowed int64 in read_onnx_info (UBSan:
  // "signed integer overflow"), and wrapped to 4 outputs in a release build.
  const std::string path = dir / "overflow.onnx";
  write_model(path, graph_with_output({-1, 4, (std::int64_t(1) << 62) + 1}));
  CHECK(read(path).size() < 200);
  CHECK(test::error_of([&] { read_onnx_info(path); }) ==
        path + ": the graph's output y [-1, 4, 4611686018427387905] has no fixed shape of fewer than 2^30 values a sample");
  for (const std::vector<std::int64_t>& dims : std::vector<std::vector<std::int64_t>>{
           {-1, std::int64_t(1) << 40, std::int64_t(1) << 40}, {-1, 3, std::int64_t(1) << 62, 4, -4}, {-1, 1 << 15, 1 << 15}}) {
    write_model(path, graph_with_output(dims));
    CHECK(test::error_of([&] { read_onnx_info(path); }) ==
          path + ": the graph's output y " + onnx::dims_string(dims) + " has no fixed shape of fewer than 2^30 values a sample");
  }
  // An initializer's dims: the product overflows uint64, or is negative.
  for (const std::vector<std::int64_t>& dims : std::vector<std::vector<std::int64_t>>{
           {std::int64_t(1) << 40, std::int64_t(1) << 40, std::int64_t(1) << 40}, {-1, 4}, {std::int64_t(1) << 41}}) {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_initializer("w", dims, std::string(12, '\0')));
    write_model(path, std::move(graph));
    CHECK(test::error_of([&] { read_onnx_info(path); }) ==
          path + ": not a valid ONNX file: the constant 'w' has dims " + onnx::dims_string(dims) + ": not a size of at most 2^40 values");
  }
  // dims that are a size, but not of the bytes the file holds.
  onnx::ProtoOut graph = graph_with_output({-1, 3});
  graph.message(onnx::field::initializer, float_initializer("w", {1000, 1000}, std::string(12, '\0')));
  write_model(path, std::move(graph));
  CHECK(test::error_of([&] { read_onnx_info(path); }) ==
        path + ": not a valid ONNX file: the constant 'w' of dims [1000, 1000] holds 12 bytes for 1000000 values");
}

TEST_CASE("ONNX: an output width the file's weights cannot make is refused before the network is made") {
  // What fashion_classify does: construct the network at read_onnx_info's width, then load. An
  // output (N, 1000000) with no weights once took 8 GB for 33 s.
  TempDir dir;
  for (const std::int64_t width : {std::int64_t(1000000), std::int64_t(100000000), (std::int64_t(1) << 30) - 1}) {
    CAPTURE(width);
    const std::string path = dir / "wide.onnx";
    onnx::ProtoOut graph = graph_with_output({-1, width});
    graph.message(onnx::field::initializer, float_initializer("w", {3}, std::string(12, '\0')));
    write_model(path, std::move(graph));
    const test::ChildRun run = test::in_child([&] {
      Tiny net(Outputs{read_onnx_info<Tiny>(path).outputs}, 1);
      load_onnx(path, net);
    });
    CHECK(run.message == path + ": the graph's output y [-1, " + std::to_string(width) + "] has " + std::to_string(width) +
                             " values a sample, more than the 3 weights the file holds");
    CHECK(run.peak_growth_mb >= 0);
    CHECK_MESSAGE(run.peak_growth_mb < 64, run.peak_growth_mb << " MB at the peak");
  }
  // A width the file's weights could make (1,000 outputs, 3,000 weights), but not for this
  // network, whose Dense of 48 inputs holds 48 weights an output: read_onnx_info<Net> refuses it.
  const std::string path = dir / "narrow.onnx";
  onnx::ProtoOut graph = graph_with_output({-1, 1000});
  graph.message(onnx::field::initializer, float_initializer("w", {3000}, std::string(12000, '\0')));
  write_model(path, std::move(graph));
  CHECK(read_onnx_info(path).outputs == 1000);
  CHECK(test::error_of([&] { read_onnx_info<Tiny>(path); }) ==
        path + ": the graph's output y has 1000 values a sample: this network's 48 weights an output would be more than the 3000 the " +
            "file holds");
  // tnet's own export, and PyTorch's, hold their width's weights.
  const std::string fixtures = std::string(TNET_FIXTURE_DIR) + "/fuzz/onnx/";
  CHECK(read_onnx_info(fixtures + "nhwc.onnx").outputs == 3);
  CHECK(read_onnx_info<Tiny>(fixtures + "pytorch_tiny.onnx").outputs == 3);
}

TEST_CASE("ONNX: packed int64 constants cost memory for their structure, not their values") {
  // 32 Constant nodes of a million packed int64 zeros each: 32 MB of file that once parsed into
  // 512 MB of vectors (a value is one byte of file but eight of memory), copied once more.
  TempDir dir;
  const std::string path = dir / "constants.onnx";
  onnx::ProtoOut graph;
  const std::string zeros(1000000, '\0');
  for (int k = 0; k < 32; ++k) {
    onnx::ProtoOut t;
    t.int_field(onnx::field::dims, 1000000);
    t.int_field(onnx::field::data_type, onnx::int64);
    t.borrowed_field(onnx::field::int64_data, zeros.data(), zeros.size());
    onnx::ProtoOut value = onnx::attribute_header("value", onnx::attr_tensor);
    value.message(onnx::field::t, std::move(t));
    onnx::ProtoOut node;
    node.bytes_field(onnx::field::node_output, std::string("c") + std::to_string(k));
    node.bytes_field(onnx::field::op_type, "Constant");
    node.message(onnx::field::attribute, std::move(value));
    graph.message(onnx::field::node, std::move(node));
  }
  graph.message(onnx::field::output, onnx::value_info("c0", {-1, 3}));
  write_model(path, std::move(graph));
  REQUIRE(fs::file_size(path) > 32000000);
  const test::ChildRun run = test::in_child([&] { read_onnx_info(path); });
  CHECK(run.message == path + ": the graph has no input");
  CHECK(run.peak_growth_mb >= 30);  // the file's bytes
  CHECK_MESSAGE(run.peak_growth_mb < 32 + 64, run.peak_growth_mb << " MB at the peak");
}

TEST_CASE("ONNX: out of memory for a file's bytes is a message naming the file and the size") {
  if (test::address_sanitizer) {
    MESSAGE("skipped under AddressSanitizer: it needs an address-space limit");
    return;
  }
  TempDir dir;
  const std::string path = dir / "sparse.onnx";
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, off_t(900) << 20) == 0);  // 900 MB of holes: no disk taken
  ::close(fd);
  const test::ChildRun run = test::in_child([&] { read_onnx_info(path); }, 512);
  CHECK(run.message == "cannot allocate 900.0 MB for the bytes of " + path);
}

TEST_CASE("ONNX: a name given to two values is refused, naming it") {
  TempDir dir;
  Net net(Outputs{labels}, 5);
  save_onnx(dir / "net.onnx", net);
  const std::string bytes = read(dir / "net.onnx");
  using Kind = ModelFileError::Kind;
  // Two initializers named 0.conv2d.bias (the second was 5.conv2d.bias): the last one used to win.
  std::string twice = bytes;
  const std::size_t at =
      twice.find(std::string("\x42\x0d"
                             "5.conv2d.bias",
                             15));
  REQUIRE(at != std::string::npos);
  twice[at + 2] = '0';
  write(dir / "twice.onnx", twice);
  check_refused<Net>(dir / "twice.onnx", Kind::corrupted, "not a valid ONNX file: malformed ONNX: two initializers named '0.conv2d.bias'");
  CHECK(test::error_of([&] { read_onnx_info(dir / "twice.onnx"); }).ends_with("two initializers named '0.conv2d.bias'"));
  // Two nodes whose output is 0.conv2d (the second's was 5.conv2d).
  std::string outputs = bytes;
  const std::size_t output_at =
      outputs.find(std::string("\x12\x08"
                               "5.conv2d",
                               10));
  REQUIRE(output_at != std::string::npos);
  outputs[output_at + 2] = '0';
  write(dir / "outputs.onnx", outputs);
  check_refused<Net>(dir / "outputs.onnx", Kind::corrupted,
                     "malformed ONNX: the name '0.conv2d' is given to two values (node 5's output and an earlier node's output)");
  // A Constant named as an initializer, and a node output named as the graph's input.
  for (const char* name : {"w", "x"}) {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_initializer("w", {3}, std::string(12, '\0')));
    onnx::ProtoOut value = onnx::attribute_header("value", onnx::attr_tensor);
    value.message(onnx::field::t, float_initializer("", {3}, std::string(12, '\1')));
    onnx::ProtoOut node;
    node.bytes_field(onnx::field::node_output, name);
    node.bytes_field(onnx::field::op_type, "Constant");
    node.message(onnx::field::attribute, std::move(value));
    graph.message(onnx::field::node, std::move(node));
    write_model(dir / "constant.onnx", std::move(graph));
    CHECK(test::error_of([&] { read_onnx_info(dir / "constant.onnx"); }) ==
          dir / "constant.onnx" + ": not a valid ONNX file: malformed ONNX: the name '" + name +
              "' is given to two values (node 0's output and " + (name == std::string("w") ? "an initializer)" : "a graph input)"));
  }
}

TEST_CASE("ONNX: Keras networks, converted by tf2onnx or Keras 3's export, load and give Keras's outputs") {
  // tests/fixtures/make_keras_fixtures.py small: every layer kind of the tutorial's SmallerVGGNet,
  // random weights and statistics. keras_small.onnx: Keras 2's API (tf-keras) converted by
  // tf2onnx: NHWC input and a Transpose to NCHW, a Transpose back before Keras's Flatten, Dense as
  // MatMul then Add, BatchNormalization nodes with Keras's epsilon 1e-3 after the convolutions and
  // a Mul and an Add after the Dense. keras3_small.onnx: Keras 3's own export, every batch norm a
  // Mul and an Add by (1, C, 1, 1) or (C) constants, the Flatten's shape computed in the graph
  // (Shape, Gather, Slice, Concat, Cast, of int32 and int64 constants).
  using Keras = Sequential<Input<12, 12, 3>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<3>, Dropout<0.25f>, Conv2D<5, 3>, ReLU, BatchNorm,
                           MaxPool2D<2>, Dropout<0.25f>, Flatten, Dense<6>, ReLU, BatchNorm, Dropout<0.5f>, Dense<3>, Sigmoid>;
  for (const std::string name : {"keras_small", "keras3_small"}) {
    INFO(name);
    const test::Fixture fx(name + ".txt");
    const Buffer x = fx.floats("x");
    const std::vector<double>& want = fx["y"];
    const int images = 4;
    REQUIRE(x.size() == std::size_t(images) * Keras::input_size);
    Keras net(1);
    const OnnxInfo info = load_onnx(std::string(TNET_FIXTURE_DIR) + "/" + name + ".onnx", net);
    CHECK(info.layout == OnnxLayout::nhwc);
    const auto y = net.predict(x, images);
    REQUIRE(y.size() == want.size());
    double worst = 0, spread = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(double(y[i]) - want[i]));
      spread = std::max(spread, std::abs(want[i] - want[i % 3]));
    }
    MESSAGE(name, ": largest difference from Keras's predict ", worst);
    CHECK(worst <= 1e-5);
    CHECK(spread > 0.01);  // the images' outputs differ: the flatten order and every layer count
  }

  // The batch norm after the Dense is needed: a network without it is refused at the Mul.
  using WithoutNorm = Sequential<Input<12, 12, 3>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<3>, Conv2D<5, 3>, ReLU, BatchNorm, MaxPool2D<2>,
                                 Flatten, Dense<6>, ReLU, Dense<3>, Sigmoid>;
  check_refused<WithoutNorm>(
      std::string(TNET_FIXTURE_DIR) + "/keras_small.onnx", ModelFileError::Kind::architecture_mismatch,
      "(Mul 'sequential/batch_normalization_2/batchnorm/mul_1') does not fit layer 11.dense: expected Gemm or MatMul");
}
