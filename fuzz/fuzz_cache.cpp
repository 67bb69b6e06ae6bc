// libFuzzer target: image cache files (data/cache.hpp). Whatever the bytes, read_image_cache
// accepts them or throws DatasetError; nothing else, no memory error, no read outside the file,
// and no allocation beyond a small multiple of its size. An accepted file's images are read as
// training reads them (image(i), release(i)) and compared with a scan of its own photos. Each
// input is tried as it is and again with its header checksum made right, so that the fuzzer
// gets past the checksum to the records and the trailer.
#include <cstdint>
#include <cstring>
#include <string>

#include <tnet/tnet.hpp>

#include "scratch.hpp"

namespace {

void open(const std::string& bytes) {
  const std::string path = fuzz::write_scratch("cache", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  if (path.empty()) return;
  try {
    const tnet::detail::ImageCacheFile cache = tnet::detail::read_image_cache(path);
    tnet::LabeledImages images;
    images.size = int(cache.header.side);
    images.paths.resize(cache.header.stored);
    images.mapping = cache.file;
    images.mapped_pixels = cache.pixels();
    unsigned sum = 0;
    for (std::size_t i = 0; i < images.count(); ++i) {
      sum += images.image(i)[0] + images.image(i)[images.image_bytes() - 1];
      images.release(i);
    }
    std::vector<std::string> keys;
    std::vector<tnet::detail::PhotoStamp> stamps;
    for (const auto& photo : cache.photos) keys.emplace_back(photo.path), stamps.push_back(photo.stamp);
    const tnet::LoadOptions options{.size = images.size, .separator = '_', .limits = {}};
    if (!tnet::detail::stale_reason(cache, keys, stamps, options).empty() && cache.header.limits == tnet::detail::limits_record({}))
      __builtin_trap();  // a cache always matches its own photos
    if (!keys.empty()) keys.pop_back();
    tnet::detail::stale_reason(cache, keys, stamps, options);
    (void)sum;
  } catch (const tnet::DatasetError&) {
  }
}

// Writes the checksum read_image_cache expects into the header; false when the header's lengths
// do not fit the bytes (the checksum cannot be computed).
bool fix_checksum(std::string& bytes) {
  if (bytes.size() < tnet::detail::ImageCacheHeader::bytes) return false;
  const auto h = tnet::detail::ImageCacheHeader::decode(reinterpret_cast<const std::uint8_t*>(bytes.data()));
  if (h.record_bytes > bytes.size() - 96 || h.trailer_bytes > bytes.size()) return false;
  std::uint64_t sum = tnet::detail::fnv1a64(bytes.data() + 96, h.record_bytes);
  sum = tnet::detail::fnv1a64(bytes.data() + bytes.size() - h.trailer_bytes, h.trailer_bytes, sum);
  sum = tnet::detail::fnv1a64(bytes.data(), tnet::detail::ImageCacheHeader::checksum_at, sum);
  std::memcpy(bytes.data() + tnet::detail::ImageCacheHeader::checksum_at, &sum, sizeof sum);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  open(bytes);
  if (fix_checksum(bytes)) open(bytes);
  return 0;
}
