// libFuzzer target: image lists (load_image_list) and split lists (read_split). They either load
// or throw DatasetError naming the file and line; nothing else, and no memory error. The paths a
// list names mostly do not exist, so they are reported as skipped; fuzz_image covers decoding.
#include <cstdint>
#include <string>

#include <tnet/tnet.hpp>

#include "scratch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_scratch("list", data, size);
  if (path.empty()) return 0;
  try {
    tnet::load_image_list(path, tnet::LoadOptions{.size = 4, .separator = '_', .limits = {}});
  } catch (const tnet::DatasetError&) {
  }
  static const tnet::LabeledImages images = [] {
    tnet::LabeledImages im;
    im.size = 1;
    for (const char* p : {"/d/a_b/1.png", "/d/a_b/2.png", "/d/c/3.jpg"}) {
      im.paths.push_back(p);
      im.labels.push_back({});
    }
    im.pixels.resize(im.count() * im.image_bytes());
    return im;
  }();
  try {
    tnet::read_split(images, "/d", path);
  } catch (const tnet::DatasetError&) {
  }
  return 0;
}
