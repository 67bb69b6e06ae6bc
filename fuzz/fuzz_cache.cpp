// libFuzzer target: image cache files (data/cache.hpp). Whatever the bytes, read_image_cache
// accepts them or throws DatasetError; nothing else, no memory error, no read outside the file,
// and no allocation beyond a small multiple of its size. An accepted file's images are read as
// training reads them (image(i, buffer)): each is its pixels or a DatasetError (a checksum that
// does not match), and again after the file is truncated while open (to a length the input's
// last bytes choose), as another process could: an error, never a crash. Its records are
// compared with its own photos. Each input is tried as it is, with its header checksum made
// right, and with its pixels' checksums made right too, so that the fuzzer gets past the
// checksums to the records, the trailer and the pixels.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <tnet/tnet.hpp>

#include "scratch.hpp"

namespace {

using tnet::detail::ImageCacheHeader;

void open(const std::string& bytes, std::uint64_t cut) {
  const std::string path = fuzz::write_scratch("cache", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  if (path.empty()) return;
  try {
    const tnet::detail::ImageCacheFile cache = tnet::detail::read_image_cache(path);
    tnet::LabeledImages images;
    images.size = int(cache.header.side);
    images.paths.resize(cache.header.stored);
    images.file = cache.file;
    // The images fill the file's pixels: a buffer for one is smaller than the file.
    std::vector<std::uint8_t> buffer(images.count() ? images.image_bytes() : 0);
    std::vector<bool> readable(images.count());
    unsigned sum = 0;
    for (int round = 0; round < 2; ++round) {
      for (std::size_t i = 0; i < images.count(); ++i) {
        try {
          const std::uint8_t* pixels = images.image(i, buffer.data());
          if (round == 1 && !readable[i]) __builtin_trap();  // a checksum that failed cannot match once truncated
          sum += pixels[0] + pixels[images.image_bytes() - 1];
          readable[i] = true;
        } catch (const tnet::DatasetError&) {
          if (round == 0) readable[i] = false;
        }
      }
      if (::truncate(path.c_str(), off_t(cut % (bytes.size() + 1))) != 0) break;  // while open, as another process could
    }
    std::vector<std::string> keys;
    std::vector<tnet::detail::PhotoStamp> stamps;
    for (const auto& photo : cache.photos) keys.emplace_back(photo.path), stamps.push_back(photo.stamp);
    const tnet::LoadOptions options{.size = images.size, .separator = '_', .limits = {}};
    if (!tnet::detail::stale_reason(cache, keys, stamps, options).empty() && cache.header.limits == tnet::detail::limits_record({}))
      __builtin_trap();  // a cache always matches its own photos
    // Only the change times differ: the contents decide.
    for (auto& stamp : stamps) ++stamp.ctime_ns;
    const std::string by_content =
        tnet::detail::stale_reason(cache, keys, stamps, options, [&](std::size_t i) -> std::optional<std::uint64_t> {
          if (i % 2) return std::nullopt;
          return cache.photos[i].content;
        });
    if (!keys.empty()) keys.pop_back(), stamps.pop_back();
    tnet::detail::stale_reason(cache, keys, stamps, options);
    (void)sum, (void)by_content;
  } catch (const tnet::DatasetError&) {
  }
}

template <class T>
T get(const std::string& bytes, std::uint64_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

// Writes the checksum read_image_cache expects into the header; false when the header's lengths
// do not fit the bytes (the checksum cannot be computed).
bool fix_checksum(std::string& bytes) {
  if (bytes.size() < ImageCacheHeader::bytes) return false;
  const auto h = ImageCacheHeader::decode(reinterpret_cast<const std::uint8_t*>(bytes.data()));
  if (h.record_bytes > bytes.size() - ImageCacheHeader::bytes || h.trailer_bytes > bytes.size()) return false;
  const std::uint64_t sum = tnet::detail::image_cache_checksum(
      bytes.data() + ImageCacheHeader::bytes, h.record_bytes, bytes.data() + bytes.size() - h.trailer_bytes, h.trailer_bytes, bytes.data());
  std::memcpy(bytes.data() + ImageCacheHeader::checksum_at, &sum, sizeof sum);
  return true;
}

// Writes each stored image's checksum into the trailer, where the header's counts and lengths
// fit the bytes; false when they do not.
bool fix_pixel_checksums(std::string& bytes) {
  if (bytes.size() < ImageCacheHeader::bytes) return false;
  const auto h = ImageCacheHeader::decode(reinterpret_cast<const std::uint8_t*>(bytes.data()));
  if (h.side < 1 || h.side > tnet::detail::image_cache_max_side || h.trailer_bytes > bytes.size() || h.pixel_offset > bytes.size())
    return false;
  const std::uint64_t image = std::uint64_t(h.side) * h.side * 3, size = bytes.size();
  if (h.stored > size / image || h.photos > size / 8 || (h.photos + h.stored) * 8 > h.trailer_bytes ||
      h.pixel_offset + h.stored * image > size)
    return false;
  const std::uint64_t sums = size - h.trailer_bytes + h.photos * 8;
  for (std::uint64_t i = 0; i < h.stored; ++i) {
    const std::uint64_t sum = tnet::detail::xxh64(bytes.data() + h.pixel_offset + i * image, image);
    std::memcpy(bytes.data() + sums + i * 8, &sum, 8);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::uint64_t cut = size >= 8 ? get<std::uint64_t>(bytes, size - 8) : size / 2;
  open(bytes, cut);
  if (fix_checksum(bytes)) open(bytes, cut);
  if (fix_pixel_checksums(bytes) && fix_checksum(bytes)) open(bytes, cut);
  return 0;
}
