// image_check FILE WIDTH HEIGHT: exits 0 when FILE decodes as a PNG of that size that is not
// blank (at least 8 distinct colours); prints what it found either way.
#include <cstdio>
#include <cstdlib>
#include <set>

#include <tnet/tnet.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: image_check FILE WIDTH HEIGHT\n");
    return 2;
  }
  try {
    const std::vector<std::uint8_t> bytes = tnet::read_file(argv[1]);
    const tnet::Image image = tnet::decode_image(bytes, argv[1]);
    std::set<std::uint32_t> colours;
    for (std::size_t i = 0; i < image.pixels.size(); i += 3)
      colours.insert(std::uint32_t(image.pixels[i]) << 16 | std::uint32_t(image.pixels[i + 1]) << 8 | image.pixels[i + 2]);
    std::printf("%s: %s %dx%d, %zu colours\n", argv[1], tnet::image_format(bytes).c_str(), image.width, image.height, colours.size());
    const bool ok = tnet::image_format(bytes) == "png" && image.width == std::atoi(argv[2]) && image.height == std::atoi(argv[3]) &&
                    colours.size() >= 8;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
