// libFuzzer target: image decoding (JPEG through libjpeg-turbo; PNG, GIF and BMP through stb)
// from memory, and the header walk that checks sizes before decoding. decode_image either returns
// an image of the size the header states or throws ImageError; nothing else, and no memory error.
#include <cstdint>

#include <tnet/tnet.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tnet::ImageLimits limits;
  limits.max_side = 4096;
  limits.max_pixels = 4'000'000;  // bounds each input's memory and time under the fuzzer
  const std::span<const std::uint8_t> bytes(data, size);
  tnet::image_format(bytes);
  tnet::image_dimensions(bytes);
  if (tnet::decode_bytes(tnet::image_header(bytes)) < 0) __builtin_trap();  // the budget's count never wraps
  try {
    const tnet::Image image = tnet::decode_image(bytes, "fuzz", limits);
    if (image.pixels.size() != std::size_t(image.width) * image.height * 3) __builtin_trap();
    if (image.width < 1 || image.height < 1 || image.width > limits.max_side) __builtin_trap();
  } catch (const tnet::ImageError&) {
  }
  return 0;
}
