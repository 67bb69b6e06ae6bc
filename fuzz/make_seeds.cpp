// Writes the fuzz targets' seed corpora into tests/fixtures/fuzz/<target>/ (committed; run again
// only to change them): a valid file of each kind, a few near misses, and the shapes hostile files
// took (huge claimed counts and dims, dims whose product overflows, names given twice).
//   g++ -std=c++20 -fopenmp -Iinclude -I/usr/include/eigen3 -I/usr/include/stb fuzz/make_seeds.cpp -lstb -lturbojpeg -lz -o make_seeds
//   ./make_seeds tests/fixtures/fuzz
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <iterator>
#include <string>

#include <tnet/tnet.hpp>

#include "networks.hpp"

namespace fs = std::filesystem;
using fuzz::Net;

static std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
static void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// A model file's bytes with the payload's length and checksum made right, as a hand-made file's.
static std::string with_valid_checksum(std::string bytes) {
  const std::uint64_t length = bytes.size() - 32, checksum = tnet::fnv1a64(bytes.data() + 32, length);
  std::memcpy(bytes.data() + 16, &length, 8);
  std::memcpy(bytes.data() + 24, &checksum, 8);
  return bytes;
}
static std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  return at == std::string::npos ? text : text.replace(at, from.size(), to);
}
// The same model with `from` in its signature replaced by `to`.
static std::string with_signature(const std::string& bytes, const std::string& from, const std::string& to) {
  std::uint32_t length;
  std::memcpy(&length, bytes.data() + 32, 4);
  const std::string signature = replaced(bytes.substr(36, length), from, to);
  const auto new_length = std::uint32_t(signature.size());
  return with_valid_checksum(bytes.substr(0, 32) + std::string(reinterpret_cast<const char*>(&new_length), 4) + signature +
                             bytes.substr(36 + length));
}

// Small ONNX files made field by field.
namespace onnx = tnet::onnx;
static std::string onnx_file(onnx::ProtoOut&& graph, const fs::path& path) {
  onnx::ProtoOut model;
  model.int_field(onnx::field::ir_version, 7);
  onnx::ProtoOut opset;
  opset.bytes_field(onnx::field::opset_domain, "");
  opset.int_field(onnx::field::opset_version, 13);
  model.message(onnx::field::opset_import, std::move(opset));
  model.message(onnx::field::graph, std::move(graph));
  tnet::AtomicFile out(path.string(), "ONNX file");
  model.write_to(out);
  out.commit();
  return path.string();
}
static onnx::ProtoOut graph_with_output(const std::vector<std::int64_t>& output_dims) {
  onnx::ProtoOut graph;
  graph.message(onnx::field::input, onnx::value_info("x", {-1, 2, 4, 4}));
  graph.message(onnx::field::output, onnx::value_info("y", output_dims));
  return graph;
}
static onnx::ProtoOut float_tensor(const std::string& name, const std::vector<std::int64_t>& dims, const std::string& raw) {
  onnx::ProtoOut t;
  for (std::int64_t d : dims) t.int_field(onnx::field::dims, d);
  t.int_field(onnx::field::data_type, onnx::float32);
  t.bytes_field(onnx::field::tensor_name, name);
  t.bytes_field(onnx::field::raw_data, raw);
  return t;
}
static onnx::ProtoOut constant_node(const std::string& output, onnx::ProtoOut&& tensor) {
  onnx::ProtoOut value = onnx::attribute_header("value", onnx::attr_tensor);
  value.message(onnx::field::t, std::move(tensor));
  onnx::ProtoOut node;
  node.bytes_field(onnx::field::node_output, output);
  node.bytes_field(onnx::field::op_type, "Constant");
  node.message(onnx::field::attribute, std::move(value));
  return node;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const fs::path root = argv[1];
  for (const char* t : {"model", "onnx", "labels", "list", "image", "cache"}) fs::create_directories(root / t);
  // Models: with and without Adam's state, then cut short.
  Net net(tnet::Outputs{3}, 1);
  tnet::Adam adam;
  const std::vector<float> x(2 * Net::input_size, 0.5f), y(6, 1.0f);
  net.train_step(x, y, 2, adam);
  tnet::save_model((root / "model/adam.tnet").string(), net, {"a", "b", "c"}, &adam, {{"epoch", "1"}});
  tnet::save_model((root / "model/plain.tnet").string(), net, {"a", "b", "c"});
  const std::string plain = read(root / "model/plain.tnet");
  write(root / "model/header_only.tnet", plain.substr(0, 32));
  // Claimed sizes a 1 KB file cannot hold: a million outputs (in the Dense line and the last, or
  // the last alone), 2^30 - 1 outputs, 4 billion class names; and two tensors of one name.
  const std::string dense3 = "Dense(3) -> (None, 3)\nSigmoid -> (None, 3)\n";
  write(root / "model/million_outputs.tnet",
        with_signature(plain, dense3, "Dense(1000000) -> (None, 1000000)\nSigmoid -> (None, 1000000)\n"));
  write(root / "model/million_outputs_last_line.tnet", with_signature(plain, "Sigmoid -> (None, 3)", "Sigmoid -> (None, 1000000)"));
  write(root / "model/max_outputs.tnet",
        with_signature(plain, dense3, "Dense(1073741823) -> (None, 1073741823)\nSigmoid -> (None, 1073741823)\n"));
  {
    std::uint32_t length;
    std::memcpy(&length, plain.data() + 32, 4);
    std::string labels = plain;
    const std::uint32_t billions = 4000000000u;
    std::memcpy(labels.data() + 32 + 4 + length + 16, &billions, 4);
    write(root / "model/billion_labels.tnet", with_valid_checksum(labels));
    write(root / "model/duplicate_tensor.tnet", with_valid_checksum(replaced(plain, "2.batchnorm.biased_mean", "2.batchnorm.moving_mean")));
  }
  // ONNX: tnet's exports in both layouts (PyTorch's, onnx/pytorch_tiny.onnx, is written by
  // tests/onnx/torch_smallervgg.py --fuzz-seed).
  tnet::save_onnx((root / "onnx/nhwc.onnx").string(), net, {"a", "b", "c"});
  tnet::save_onnx((root / "onnx/nchw.onnx").string(), net, {}, tnet::OnnxLayout::nchw);
  {  // and of the network of residual blocks, depthwise convolutions, ReLU6 and global pooling
    fuzz::Graph graph(tnet::Outputs{3}, 5);
    tnet::save_onnx((root / "onnx/graph_nchw.onnx").string(), graph, {}, tnet::OnnxLayout::nchw);
  }
  // Hostile shapes: an output whose dims' product overflows int64, an output (N, 1000000) with
  // no weights, dims that overflow and dims the bytes do not fill, packed int64 Constants, and
  // names given twice (initializers; node outputs; a Constant and an initializer).
  onnx_file(graph_with_output({-1, 4, (std::int64_t(1) << 62) + 1}), root / "onnx/dims_overflow.onnx");
  onnx_file(graph_with_output({-1, 1000000}), root / "onnx/wide_output.onnx");
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_tensor("w", {std::int64_t(1) << 40, std::int64_t(1) << 40, 4}, std::string(12, '\0')));
    onnx_file(std::move(graph), root / "onnx/initializer_dims_overflow.onnx");
  }
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_tensor("w", {1000, 1000}, std::string(12, '\0')));
    onnx_file(std::move(graph), root / "onnx/initializer_without_bytes.onnx");
  }
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    for (int k = 0; k < 4; ++k) {
      onnx::ProtoOut t;
      t.int_field(onnx::field::dims, 256);
      t.int_field(onnx::field::data_type, onnx::int64);
      t.bytes_field(onnx::field::int64_data, std::string(256, '\0'));
      graph.message(onnx::field::node, constant_node(std::string("c") + std::to_string(k), std::move(t)));
    }
    onnx_file(std::move(graph), root / "onnx/int64_constants.onnx");
  }
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_tensor("w", {3}, std::string(12, '\0')));
    graph.message(onnx::field::node, constant_node("w", float_tensor("", {3}, std::string(12, '\1'))));
    onnx_file(std::move(graph), root / "onnx/constant_named_as_initializer.onnx");
  }
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::initializer, float_tensor("w", {3}, std::string(12, '\0')));
    graph.message(onnx::field::initializer, float_tensor("w", {3}, std::string(12, '\1')));
    onnx_file(std::move(graph), root / "onnx/duplicate_initializer.onnx");
  }
  {
    onnx::ProtoOut graph = graph_with_output({-1, 3});
    graph.message(onnx::field::node, constant_node("c", float_tensor("", {3}, std::string(12, '\0'))));
    graph.message(onnx::field::node, constant_node("c", float_tensor("", {3}, std::string(12, '\1'))));
    onnx_file(std::move(graph), root / "onnx/duplicate_node_output.onnx");
  }
  // Label files.
  write(root / "labels/six.txt", "# tnet MultiLabelBinarizer v1\nblack\nblue\ndress\njeans\nred\nshirt\n");
  write(root / "labels/crlf_bom.txt", "\xEF\xBB\xBF# tnet MultiLabelBinarizer v1\r\na\r\nb\r\n");
  write(root / "labels/unsorted.txt", "# tnet MultiLabelBinarizer v1\nred\nblue\n");
  // Labels that are not printable UTF-8: a tab, a Latin-1 byte, a C1 control (NEL); and UTF-8 that is.
  write(root / "labels/control.txt", "# tnet MultiLabelBinarizer v1\nbl\tue\nred\n");
  write(root / "labels/latin1.txt", "# tnet MultiLabelBinarizer v1\nbl\xE9\n");
  write(root / "labels/nel.txt",
        "# tnet MultiLabelBinarizer v1\na\xC2\x85"
        "b\n");
  write(root / "labels/utf8.txt", "# tnet MultiLabelBinarizer v1\nbleu\nrot_gr\xC3\xBCn\n");
  // Image lists and split lists.
  write(root / "list/list.csv", "path,labels\nred_dress/1.jpg,red|dress\n# comment\nblue_jeans/2.png,blue|jeans\n");
  write(root / "list/split.txt", "a_b/1.png\nc/3.jpg\n");
  write(root / "list/control.csv",
        "path,labels\nred_dress/1.jpg,red|dr\x01"
        "ess\nblue\tjeans/2.png,blue\n");
  // Images: the test fixtures, a PNG with alpha, a BMP, and a truncated JPEG.
  for (const char* f : {"progressive.jpg", "grayscale.jpg", "two_frames.gif"})
    fs::copy_file(root.parent_path() / f, root / "image" / f, fs::copy_options::overwrite_existing);
  tnet::Image small{5, 4, std::vector<std::uint8_t>(5 * 4 * 3)};
  for (std::size_t i = 0; i < small.pixels.size(); ++i) small.pixels[i] = std::uint8_t(i * 13);
  tnet::write_png((root / "image/small.png").string(), small);
  const std::uint8_t rgba[16] = {255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0, 9, 9, 9, 9};
  stbi_write_png((root / "image/alpha.png").c_str(), 2, 2, 4, rgba, 8);
  stbi_write_bmp((root / "image/small.bmp").c_str(), 5, 4, 3, small.pixels.data());
  const std::string jpeg = read(root.parent_path() / "progressive.jpg");
  write(root / "image/truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  // CMYK and YCCK JPEGs, a top-down BMP (tests/fixtures/make_images.py), a text file starting
  // "BM", a 16-bit RGBA PNG of 3x2, and the header of one of 6700x6700 (beyond the decode budget).
  for (const char* f : {"cmyk.jpg", "ycck.jpg", "top_down.bmp"})
    fs::copy_file(root.parent_path() / f, root / "image" / f, fs::copy_options::overwrite_existing);
  write(root / "image/notes.bmp", "BMy notes, typed into a file whose name ends in .bmp\n");
  auto png16 = [](std::uint32_t width, std::uint32_t height, const std::string& rows) {
    auto be32 = [](std::uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
    auto chunk = [&](const std::string& type, const std::string& data) {
      const std::string body = type + data;
      return be32(std::uint32_t(data.size())) + body +
             be32(std::uint32_t(crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
    };
    std::string png = "\x89PNG\r\n\x1A\n" + chunk("IHDR", be32(width) + be32(height) + std::string{16, 6, 0, 0, 0});
    if (!rows.empty()) {
      std::vector<Bytef> packed(compressBound(uLong(rows.size())));
      uLongf length = uLongf(packed.size());
      compress(packed.data(), &length, reinterpret_cast<const Bytef*>(rows.data()), uLong(rows.size()));
      png += chunk("IDAT", std::string(reinterpret_cast<const char*>(packed.data()), length));
    }
    return png + chunk("IEND", "");
  };
  std::string rows;
  for (int y = 0; y < 2; ++y) {
    rows += '\0';  // filter: none
    for (int i = 0; i < 3 * 8; ++i) rows += char(y * 40 + i * 9);
  }
  write(root / "image/rgba16.png", png16(3, 2, rows));
  write(root / "image/rgba16_6700.png", png16(6700, 6700, ""));
  // Image caches: of three 4x4 photos and a broken one (a trailer entry), then damaged.
  const fs::path photos = fs::temp_directory_path() / ("tnet_seeds_" + std::to_string(::getpid()));
  fs::create_directories(photos / "red_dress");
  fs::create_directories(photos / "blue_jeans");
  for (const char* name : {"red_dress/1.png", "red_dress/2.png", "blue_jeans/3.png"}) tnet::write_png((photos / name).string(), small);
  write(photos / "blue_jeans/broken.jpg", "not a photo");
  tnet::LoadReport report;
  tnet::load_image_folder_cached(photos.string(), (photos / "cache").string(), {.size = 4, .separator = '_', .limits = {}}, &report);
  const std::string cache = read(report.cache);
  fs::remove_all(photos);
  write(root / "cache/valid.tnetcache", cache);
  write(root / "cache/header_only.tnetcache", cache.substr(0, 96));
  write(root / "cache/no_trailer.tnetcache", cache.substr(0, 4096 + 3 * 48));
  std::string flipped = cache;
  flipped[100] = char(flipped[100] ^ 1);  // a record's byte: the checksum no longer matches
  write(root / "cache/flipped.tnetcache", flipped);
  std::string pixel = cache;
  pixel[4096 + 50] = char(pixel[4096 + 50] ^ 1);  // image 1's: opens, and image 1 fails its checksum when read
  write(root / "cache/pixel_flipped.tnetcache", pixel);
  return 0;
}
