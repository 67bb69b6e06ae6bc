// Writes the fuzz targets' seed corpora into tests/fixtures/fuzz/<target>/ (committed; run again
// only to change them): a valid file of each kind, and a few near misses.
//   g++ -std=c++20 -fopenmp -Iinclude -I/usr/include/eigen3 -I/usr/include/stb fuzz/make_seeds.cpp -lstb -lturbojpeg -o make_seeds
//   ./make_seeds tests/fixtures/fuzz
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <tnet/tnet.hpp>

namespace fs = std::filesystem;
using Net = tnet::Sequential<tnet::Input<4, 4, 2>, tnet::Conv2D<3, 3>, tnet::ReLU, tnet::BatchNorm, tnet::Flatten,
                             tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;

static std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
static void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

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
  // ONNX: tnet's exports in both layouts (PyTorch's, onnx/pytorch_tiny.onnx, is written by
  // tests/onnx/torch_smallervgg.py --fuzz-seed).
  tnet::save_onnx((root / "onnx/nhwc.onnx").string(), net, {"a", "b", "c"});
  tnet::save_onnx((root / "onnx/nchw.onnx").string(), net, {}, tnet::OnnxLayout::nchw);
  // Label files.
  write(root / "labels/six.txt", "# tnet MultiLabelBinarizer v1\nblack\nblue\ndress\njeans\nred\nshirt\n");
  write(root / "labels/crlf_bom.txt", "\xEF\xBB\xBF# tnet MultiLabelBinarizer v1\r\na\r\nb\r\n");
  write(root / "labels/unsorted.txt", "# tnet MultiLabelBinarizer v1\nred\nblue\n");
  // Image lists and split lists.
  write(root / "list/list.csv", "path,labels\nred_dress/1.jpg,red|dress\n# comment\nblue_jeans/2.png,blue|jeans\n");
  write(root / "list/split.txt", "a_b/1.png\nc/3.jpg\n");
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
