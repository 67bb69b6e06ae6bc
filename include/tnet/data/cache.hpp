// tnet/data/cache.hpp: a decode-once image cache, read as batches need it, for datasets larger
// than memory.
//
// load_image_folder_cached(DIR, CACHE_DIR) scans DIR exactly as load_image_folder does, then looks
// for CACHE_DIR/<name>-<size>px-<hash>.tnetcache (image_cache_file: the hash is of DIR's canonical
// path and the size). It is reused when it records the same photos (paths relative to DIR), the
// same image size and the same ImageLimits, and is well-formed; otherwise it is rebuilt, and
// `progress` says why ("is stale: 3 photos changed"). A photo is the same when its size,
// modification time, change time (ns) and inode are; when only its change time or inode differ
// (a chmod, `cp -p`, rsync or `touch -r` over it), its bytes are read and compared with the XXH64
// of the bytes the cache was built from. The change time cannot be set by a user, so a photo
// rewritten with its old size and modification time is noticed.
// The returned LabeledImages holds no pixels in memory: image(i, buffer) reads image i from the
// file (pread) and checks it against its checksum, so a pass over the set keeps nothing of the
// pixels resident, however many photos there are (what stays in memory is each photo's path,
// labels and checksum, about 0.3 KB a photo with its indices); a cache truncated or changed in
// place while in use is an error naming it, not a crash or wrong pixels.
// Labels are always the scan's (a list whose labels changed reuses the pixels).
//
// Building decodes and resizes chunks of at most 512 photos in parallel (memory is bounded by the
// chunk, not the dataset) and streams them through AtomicFile: a build that fails, is interrupted
// (the `cancel` flag, polled between photos: Interrupted) or is killed leaves the previous cache,
// or none, and no temporary file (a killed build's is removed by the next). Photos that cannot be
// decoded are skipped and reported as load_image_folder reports them, and recorded with their
// reason: an unchanged broken photo is not decoded again.
//
// File layout, little-endian (format version 2):
//   0   "TNETCACH"
//   8   u32 format version | u32 image size (side)
//   16  u64 photos | u64 stored (photos with pixels) | u64 record bytes | u64 pixel offset
//   48  u64 trailer bytes | i64 x 4: the ImageLimits decoding used (max_side, max_pixels,
//       max_file_bytes, max_decode_bytes)
//   88  u64 checksum: XXH64 of the records, continued (as the seed) over the trailer, then over
//       bytes 0-87
//   96  records, one per photo in path order: u32 n, path (n bytes, relative to the dataset's
//       folder) | u64 file bytes | i64 mtime ns | i64 ctime ns | u64 inode | u32 labels, each
//       u32 n + n bytes
//   zeros up to the pixel offset (a multiple of 4096)
//   the stored photos' pixels, size x size x 3 bytes each, in record order
//   trailer: u64 per photo, XXH64 of the photo file's bytes (0: it could not be read) | u64 per
//       stored photo, XXH64 of its pixels | one entry per skipped photo in record order: u64
//       record index | u32 1 when the reason named the photo's path first (not stored: it is put
//       back on reading) | u32 n, reason
// Opening reads the header, the records and the trailer (never the pixels) and validates every
// count, length and offset against the file's size before using it (a damaged or hostile file
// is refused and rebuilt, never trusted) and the checksum. The file is only ever replaced by a
// rename, never changed in place.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/file.hpp"
#include "../core/hash.hpp"
#include "../core/threads.hpp"
#include "dataset.hpp"

namespace tnet {

inline constexpr std::uint32_t image_cache_format_version = 2;

/// Where load_image_folder_cached (or load_image_list_cached) keeps the cache of `dataset` (a
/// folder, or a list file) at `size`: CACHE_DIR/<dataset's name>-<size>px-<16 hex digits>.tnetcache,
/// the digits a hash of the dataset's canonical path and the size, so that one folder holds the
/// caches of several datasets and sizes.
inline std::string image_cache_file(const std::string& dataset, const std::string& cache_dir, int size);

namespace detail {

inline constexpr char image_cache_magic[8] = {'T', 'N', 'E', 'T', 'C', 'A', 'C', 'H'};
inline constexpr std::size_t image_cache_page = 4096;      // the pixels start at a multiple of it
inline constexpr std::size_t image_cache_chunk = 512;      // photos decoded at once while building
inline constexpr std::size_t image_cache_record_min = 40;  // the smallest record: empty path, no labels
inline constexpr std::size_t image_cache_skip_min = 16;    // the smallest trailer entry: empty reason
inline constexpr std::uint32_t image_cache_max_side = 1 << 15;

/// The fixed 96 bytes at the start of a cache file.
struct ImageCacheHeader {
  static constexpr std::size_t bytes = 96, checksum_at = 88;
  std::uint32_t version = image_cache_format_version, side = 0;
  std::uint64_t photos = 0, stored = 0, record_bytes = 0, pixel_offset = 0, trailer_bytes = 0;
  std::array<std::int64_t, 4> limits{};
  std::uint64_t checksum = 0;

  std::array<char, bytes> encode() const {
    std::array<char, bytes> out{};
    std::memcpy(out.data(), image_cache_magic, 8);
    std::size_t at = 8;
    auto put = [&](const auto& value) {
      std::memcpy(out.data() + at, &value, sizeof value);
      at += sizeof value;
    };
    put(version), put(side), put(photos), put(stored), put(record_bytes), put(pixel_offset), put(trailer_bytes);
    for (std::int64_t limit : limits) put(limit);
    put(checksum);
    return out;
  }
  static ImageCacheHeader decode(const std::uint8_t* in) {
    ImageCacheHeader h;
    std::size_t at = 8;
    auto get = [&](auto& value) {
      std::memcpy(&value, in + at, sizeof value);
      at += sizeof value;
    };
    get(h.version), get(h.side), get(h.photos), get(h.stored), get(h.record_bytes), get(h.pixel_offset), get(h.trailer_bytes);
    for (std::int64_t& limit : h.limits) get(limit);
    get(h.checksum);
    return h;
  }
};

inline std::array<std::int64_t, 4> limits_record(const ImageLimits& limits) {
  return {limits.max_side, limits.max_pixels, limits.max_file_bytes, limits.max_decode_bytes};
}

/// A photo as its file was when it was looked at: size, modification and change times (ns since
/// the epoch) and inode; bytes is all ones when it could not be examined (decoding will say why).
struct PhotoStamp {
  std::uint64_t bytes = ~std::uint64_t{0};
  std::int64_t mtime_ns = 0, ctime_ns = 0;
  std::uint64_t inode = 0;
  bool operator==(const PhotoStamp&) const = default;
  /// Whether `now` may be this photo with the same bytes: only its change time or inode differ
  /// (its content decides).
  bool same_size_and_mtime(const PhotoStamp& now) const {
    return bytes != ~std::uint64_t{0} && bytes == now.bytes && mtime_ns == now.mtime_ns;
  }
};

inline PhotoStamp stamp_photo(const std::string& path) {
  struct stat info{};
  if (::stat(path.c_str(), &info) != 0) return {};
  auto ns = [](const timespec& t) { return std::int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec; };
  return {std::uint64_t(info.st_size), ns(info.st_mtim), ns(info.st_ctim), std::uint64_t(info.st_ino)};
}

/// A photo's path as a cache records it: relative to the dataset's folder (`root`), so that the
/// cache is reused whichever way the folder is named; as it is when it lies outside the folder.
inline std::string cache_key(const std::string& path, const std::string& root) {
  const std::filesystem::path relative = std::filesystem::path(path).lexically_relative(root);
  if (relative.empty() || *relative.begin() == "..") return path;
  return relative.generic_string();
}

/// A cache file, opened and validated (read_image_cache). The views point into `records` and
/// `trailer`; `file` reads the pixels.
struct ImageCacheFile {
  struct Photo {
    std::string_view path;
    PhotoStamp stamp;
    std::uint64_t content = 0;  // XXH64 of the photo file's bytes when the cache was built
  };
  struct Skipped {
    std::uint64_t index = 0;
    bool named = false;  // the reason began with the photo's path and ": " (not stored)
    std::string_view reason;
  };
  std::shared_ptr<ImageFile> file;
  ImageCacheHeader header;
  std::vector<std::uint8_t> records, trailer;  // the file's bytes
  std::vector<Photo> photos;                   // one per record, in order
  std::vector<Skipped> skipped;                // by increasing index
};

/// Reads `size` bytes at a time from [at, end), refusing to read past end.
class CacheReader {
 public:
  CacheReader(const std::uint8_t* at, const std::uint8_t* end, const std::string& what) : at_(at), end_(end), what_(what) {}
  template <class T>
  T number() {
    T value;
    std::memcpy(&value, take(sizeof value), sizeof value);
    return value;
  }
  std::string_view text() {
    const std::uint32_t n = number<std::uint32_t>();
    return {reinterpret_cast<const char*>(take(n)), n};
  }
  std::size_t left() const { return std::size_t(end_ - at_); }

 private:
  const std::uint8_t* take(std::size_t n) {
    if (n > left()) throw DatasetError(what_ + " runs past its end (damaged)");
    const std::uint8_t* p = at_;
    at_ += n;
    return p;
  }
  const std::uint8_t* at_;
  const std::uint8_t* end_;
  std::string what_;
};

/// The checksum of a cache's header, records and trailer.
inline std::uint64_t image_cache_checksum(const void* records, std::size_t record_bytes, const void* trailer, std::size_t trailer_bytes,
                                          const void* header) {
  std::uint64_t sum = xxh64(records, record_bytes);
  sum = xxh64(trailer, trailer_bytes, sum);
  return xxh64(header, ImageCacheHeader::checksum_at, sum);
}

/// Opens and validates the cache file at `path`, reading all but its pixels. Throws FileError
/// when it cannot be opened, DatasetError naming it and what is wrong when it is not a
/// well-formed cache. Every count is bounded by the file's size before anything is allocated for
/// it.
inline ImageCacheFile read_image_cache(const std::string& path) {
  ImageCacheFile cache;
  cache.file = std::make_shared<ImageFile>(path, "image cache");
  const ImageFile& file = *cache.file;
  const std::uint64_t size = file.size();
  auto damaged = [&](const std::string& why) { return DatasetError(path + ": " + why); };
  if (size < ImageCacheHeader::bytes)
    throw damaged("not a tnet image cache: " + std::to_string(size) + " bytes, shorter than its " +
                  std::to_string(ImageCacheHeader::bytes) + "-byte header");
  std::array<std::uint8_t, ImageCacheHeader::bytes> fixed{};
  file.read_at(0, fixed.data(), fixed.size(), "its header");
  if (std::memcmp(fixed.data(), image_cache_magic, 8) != 0) throw damaged("not a tnet image cache (no TNETCACH at its start)");
  const ImageCacheHeader h = cache.header = ImageCacheHeader::decode(fixed.data());
  if (h.version != image_cache_format_version)
    throw damaged("image cache format version " + std::to_string(h.version) + "; this tnet reads version " +
                  std::to_string(image_cache_format_version));
  if (h.side < 1 || h.side > image_cache_max_side) throw damaged("image size " + std::to_string(h.side) + " is out of range (damaged)");
  const std::uint64_t image = std::uint64_t(h.side) * h.side * 3;
  if (h.record_bytes > size - ImageCacheHeader::bytes || h.pixel_offset < ImageCacheHeader::bytes + h.record_bytes ||
      h.pixel_offset > size || h.trailer_bytes > size - h.pixel_offset)
    throw damaged("its records, pixels and trailer (" + std::to_string(h.record_bytes) + " bytes, from byte " +
                  std::to_string(h.pixel_offset) + ", " + std::to_string(h.trailer_bytes) + " bytes) do not fit in its " +
                  std::to_string(size) + " bytes (truncated or damaged)");
  const std::uint64_t pixel_bytes = size - h.pixel_offset - h.trailer_bytes;
  if (h.stored > h.photos || pixel_bytes % image != 0 || pixel_bytes / image != h.stored)
    throw damaged(std::to_string(h.stored) + " images of " + std::to_string(h.side) + "x" + std::to_string(h.side) + "x3 do not fill its " +
                  std::to_string(pixel_bytes) + " bytes of pixels (truncated or damaged)");
  if (h.photos > h.record_bytes / image_cache_record_min)
    throw damaged(std::to_string(h.photos) + " photos, more than its records can hold (damaged)");
  // photos <= 2^64 / 40: the sums below do not overflow.
  const std::uint64_t sums = (h.photos + h.stored) * 8;
  if (h.trailer_bytes < sums || (h.photos - h.stored) > (h.trailer_bytes - sums) / image_cache_skip_min)
    throw damaged("its trailer (" + std::to_string(h.trailer_bytes) + " bytes) cannot hold the checksums of " + std::to_string(h.photos) +
                  " photos and " + std::to_string(h.photos - h.stored) + " skipped photos' entries (damaged)");
  cache.records.resize(h.record_bytes);
  file.read_at(ImageCacheHeader::bytes, cache.records.data(), cache.records.size(), "its records");
  cache.trailer.resize(h.trailer_bytes);
  file.read_at(size - h.trailer_bytes, cache.trailer.data(), cache.trailer.size(), "its trailer");
  if (image_cache_checksum(cache.records.data(), cache.records.size(), cache.trailer.data(), cache.trailer.size(), fixed.data()) !=
      h.checksum)
    throw damaged("checksum mismatch (damaged)");

  const std::uint8_t* records_end = cache.records.data() + cache.records.size();
  CacheReader records(cache.records.data(), records_end, path + ": a photo record");
  cache.photos.reserve(h.photos);
  for (std::uint64_t i = 0; i < h.photos; ++i) {
    ImageCacheFile::Photo photo;
    photo.path = records.text();
    photo.stamp.bytes = records.number<std::uint64_t>();
    photo.stamp.mtime_ns = records.number<std::int64_t>();
    photo.stamp.ctime_ns = records.number<std::int64_t>();
    photo.stamp.inode = records.number<std::uint64_t>();
    for (std::uint32_t labels = records.number<std::uint32_t>(); labels > 0; --labels) records.text();
    cache.photos.push_back(photo);
  }
  if (records.left() != 0) throw damaged(std::to_string(records.left()) + " bytes after its last photo record (damaged)");
  CacheReader trailer(cache.trailer.data(), cache.trailer.data() + cache.trailer.size(), path + ": its trailer");
  for (ImageCacheFile::Photo& photo : cache.photos) photo.content = trailer.number<std::uint64_t>();
  cache.file->checksums.resize(h.stored);
  for (std::uint64_t& checksum : cache.file->checksums) checksum = trailer.number<std::uint64_t>();
  cache.skipped.reserve(h.photos - h.stored);
  for (std::uint64_t i = 0; i < h.photos - h.stored; ++i) {
    ImageCacheFile::Skipped skip;
    skip.index = trailer.number<std::uint64_t>();
    const std::uint32_t named = trailer.number<std::uint32_t>();
    skip.reason = trailer.text();
    if (skip.index >= h.photos || named > 1 || (!cache.skipped.empty() && skip.index <= cache.skipped.back().index))
      throw damaged("a skipped photo's entry is out of order or out of range (damaged)");
    skip.named = named == 1;
    cache.skipped.push_back(skip);
  }
  if (trailer.left() != 0) throw damaged(std::to_string(trailer.left()) + " bytes after its last skipped photo (damaged)");
  cache.file->pixel_offset = h.pixel_offset;
  cache.file->image_bytes = std::size_t(image);
  return cache;
}

/// XXH64 of the bytes of the photo file at `path` as decoding reads them; nothing when it cannot
/// be read.
inline std::optional<std::uint64_t> photo_content(const std::string& path, const ImageLimits& limits) {
  try {
    const std::vector<std::uint8_t> bytes = read_file(path, limits);
    return xxh64(bytes.data(), bytes.size());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// Why `cache` cannot serve photos `keys` stamped `stamps` at `options`; empty when it can. A
/// photo whose size and modification time are the recorded ones but whose change time or inode
/// is not is the same when content(i) (XXH64 of photo i's bytes now; none: not readable, or no
/// `content` given) is the recorded one.
inline std::string stale_reason(const ImageCacheFile& cache, const std::vector<std::string>& keys, const std::vector<PhotoStamp>& stamps,
                                const LoadOptions& options,
                                const std::function<std::optional<std::uint64_t>(std::size_t)>& content = nullptr) {
  const int side = int(cache.header.side);
  if (side != options.size)
    return "it holds " + std::to_string(side) + "x" + std::to_string(side) + " images, not " + std::to_string(options.size) + "x" +
           std::to_string(options.size);
  if (cache.header.limits != limits_record(options.limits)) return "it was decoded with other ImageLimits";
  // Whether recorded photo `was` is photo `now` unchanged.
  auto same = [&](const ImageCacheFile::Photo& was, std::size_t now) {
    if (was.stamp == stamps[now]) return true;
    if (!was.stamp.same_size_and_mtime(stamps[now]) || !content) return false;
    const std::optional<std::uint64_t> hash = content(now);
    return hash && *hash == was.content;
  };
  bool fresh = cache.photos.size() == keys.size();
  for (std::size_t i = 0; fresh && i < keys.size(); ++i) fresh = cache.photos[i].path == keys[i] && same(cache.photos[i], i);
  if (fresh) return "";
  // What differs, by path: both sides sorted, then merged.
  using Indexed = std::pair<std::string_view, std::size_t>;
  std::vector<Indexed> before, now;
  for (std::size_t i = 0; i < cache.photos.size(); ++i) before.emplace_back(cache.photos[i].path, i);
  for (std::size_t i = 0; i < keys.size(); ++i) now.emplace_back(keys[i], i);
  std::sort(before.begin(), before.end());
  std::sort(now.begin(), now.end());
  std::size_t changed = 0, added = 0, removed = 0, a = 0, b = 0;
  while (a < before.size() || b < now.size()) {
    if (b == now.size() || (a < before.size() && before[a].first < now[b].first)) ++removed, ++a;
    else if (a == before.size() || now[b].first < before[a].first) ++added, ++b;
    else changed += !same(cache.photos[before[a++].second], now[b++].second);
  }
  auto photos = [](std::size_t n) { return std::to_string(n) + (n == 1 ? " photo " : " photos "); };
  std::string why;
  for (auto [n, what] : {std::pair{changed, "changed"}, std::pair{added, "added"}, std::pair{removed, "removed"}})
    if (n) why += (why.empty() ? "" : ", ") + photos(n) + what;
  return why.empty() ? "its photos are in another order" : why;
}

/// Whether `out` writes to a terminal: std::cout or std::cerr / std::clog on one.
inline bool is_terminal(const std::ostream* out) {
  if (out == &std::cout) return ::isatty(STDOUT_FILENO);
  if (out == &std::cerr || out == &std::clog) return ::isatty(STDERR_FILENO);
  return false;
}

/// The build's progress: a bar updated in place on a terminal, a line every 10% otherwise.
class CacheProgress {
 public:
  CacheProgress(std::ostream* out, std::size_t total) : out_(out), total_(std::max<std::size_t>(total, 1)), terminal_(is_terminal(out)) {}

  void update(std::size_t done) {
    if (!out_) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::size_t percent = done * 100 / total_;
    if (terminal_) {
      const std::size_t width = 30, filled = done * width / total_;
      *out_ << "\r  [" << std::string(filled, '=') << std::string(width - filled, ' ') << "] " << done << "/" << total_ << " photos, "
            << std::fixed << std::setprecision(1) << seconds << " s" << (done == total_ ? "\n" : "") << std::flush;
    } else if (percent / 10 > shown_ || done == total_) {
      shown_ = percent / 10;
      *out_ << "  " << done << "/" << total_ << " photos (" << percent << "%), " << std::fixed << std::setprecision(1) << seconds << " s\n"
            << std::flush;
    }
  }

 private:
  std::ostream* out_;
  std::size_t total_, shown_ = 0;
  bool terminal_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// Writes the cache of `entries` (stamped `stamps`, recorded as `keys`) to `path` through
/// AtomicFile: the header with placeholders, the records, the pixels chunk by chunk, the
/// trailer, then the header again with the counts and checksum. When `cancel` is set (polled
/// between photos) it stops, removes what it wrote and throws Interrupted.
inline void build_image_cache(const std::string& path, const std::string& cache_dir, const std::vector<Entry>& entries,
                              const std::vector<std::string>& keys, const std::vector<PhotoStamp>& stamps, const LoadOptions& options,
                              std::ostream* progress, const std::atomic<bool>* cancel) {
  std::optional<AtomicFile> opened;
  try {
    opened.emplace(path, "image cache");
  } catch (const FileError& e) {
    throw FileError(cache_dir + ": cannot write the image cache in this folder: " + e.what());
  }
  AtomicFile& file = *opened;
  const std::size_t n = entries.size(), bytes = std::size_t(options.size) * options.size * 3;
  if (progress)
    *progress << "building the image cache " << path << ": " << n << " photos at " << options.size << "x" << options.size << "\n";
  std::vector<char> records;
  auto put = [&](const void* data, std::size_t size) {
    file.write(data, size);
    records.insert(records.end(), static_cast<const char*>(data), static_cast<const char*>(data) + size);
  };
  auto put_number = [&](auto value) { put(&value, sizeof value); };
  auto put_text = [&](std::string_view text) {
    put_number(std::uint32_t(text.size()));
    put(text.data(), text.size());
  };
  auto stopped = [&] { return cancel && cancel->load(std::memory_order_relaxed); };
  auto interrupted = [&] {
    if (progress && is_terminal(progress)) *progress << "\n";  // after the progress bar
    return Interrupted("interrupted while building the image cache " + path + "; nothing kept");
  };

  ImageCacheHeader header;
  header.side = std::uint32_t(options.size);
  header.photos = n;
  header.limits = limits_record(options.limits);
  file.write(header.encode().data(), ImageCacheHeader::bytes);  // placeholders, patched below
  for (std::size_t i = 0; i < n; ++i) {
    put_text(keys[i]);
    put_number(stamps[i].bytes);
    put_number(stamps[i].mtime_ns);
    put_number(stamps[i].ctime_ns);
    put_number(stamps[i].inode);
    put_number(std::uint32_t(entries[i].second.size()));
    for (const std::string& label : entries[i].second) put_text(label);
  }
  header.record_bytes = file.size() - ImageCacheHeader::bytes;
  header.pixel_offset = (file.size() + image_cache_page - 1) / image_cache_page * image_cache_page;
  file.write(std::string(header.pixel_offset - file.size(), '\0'));

  // Decoding in chunks: memory is the chunk's, whatever the dataset's size; at most 64 MB of
  // pixels for large images, but a photo for every thread.
  const std::size_t chunk = std::min(image_cache_chunk, std::max((std::size_t(64) << 20) / bytes, std::size_t(num_threads())));
  std::vector<std::uint8_t> pixels(std::min(chunk, n) * bytes);
  std::vector<std::string> errors(std::min(chunk, n));
  std::vector<std::uint64_t> contents(n), checksums;  // the trailer's: of each photo file, of each stored image
  struct Skip {
    std::uint64_t index;
    std::uint32_t named;
    std::string reason;
  };
  std::vector<Skip> skipped;
  CacheProgress bar(progress, n);
  for (std::size_t first = 0; first < n; first += chunk) {
    if (stopped()) throw interrupted();
    const std::size_t count = std::min(chunk, n - first);
#pragma omp parallel for schedule(dynamic, 4)
    for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(count); ++k) {
      if (stopped()) continue;
      const std::string& photo = entries[first + std::size_t(k)].first;
      errors[k].clear();
      try {
        // The bytes decoded are the bytes hashed, whatever happens to the file meanwhile.
        const std::vector<std::uint8_t> file_bytes = read_file(photo, options.limits);
        contents[first + std::size_t(k)] = xxh64(file_bytes.data(), file_bytes.size());
        const Image image = resize_image(decode_image(file_bytes, photo, options.limits), options.size, options.size);
        std::copy(image.pixels.begin(), image.pixels.end(), pixels.data() + std::size_t(k) * bytes);
      } catch (const std::exception& e) {
        errors[k] = e.what();
      }
    }
    if (stopped()) throw interrupted();
    for (std::size_t k = 0; k < count; ++k) {
      if (errors[k].empty()) {
        file.write(pixels.data() + k * bytes, bytes);
        checksums.push_back(xxh64(pixels.data() + k * bytes, bytes));
        ++header.stored;
        continue;
      }
      const std::string prefix = entries[first + k].first + ": ";
      const bool named = errors[k].starts_with(prefix);
      skipped.push_back({first + k, named, named ? errors[k].substr(prefix.size()) : errors[k]});
    }
    bar.update(first + count);
  }
  std::vector<char> trailer;
  auto add = [&](const void* data, std::size_t size) {
    trailer.insert(trailer.end(), static_cast<const char*>(data), static_cast<const char*>(data) + size);
  };
  for (std::uint64_t content : contents) add(&content, sizeof content);
  for (std::uint64_t checksum : checksums) add(&checksum, sizeof checksum);
  for (const Skip& skip : skipped) {
    const std::uint32_t length = std::uint32_t(skip.reason.size());
    add(&skip.index, sizeof skip.index);
    add(&skip.named, sizeof skip.named);
    add(&length, sizeof length);
    add(skip.reason.data(), skip.reason.size());
  }
  file.write(trailer.data(), trailer.size());
  header.trailer_bytes = trailer.size();
  const std::array<char, ImageCacheHeader::bytes> fixed = header.encode();
  header.checksum = image_cache_checksum(records.data(), records.size(), trailer.data(), trailer.size(), fixed.data());
  file.write_at(0, header.encode().data(), ImageCacheHeader::bytes);
  file.commit();
}

/// load_image_folder_cached and load_image_list_cached after their scans: `entries` (sorted)
/// found in `source`, paths recorded relative to `root`.
inline LabeledImages load_cached(std::vector<Entry> entries, const std::string& source, const std::string& root,
                                 const std::string& cache_dir, const LoadOptions& options, LoadReport& r, std::ostream* progress,
                                 const std::atomic<bool>* cancel, std::chrono::steady_clock::time_point start) {
  namespace fs = std::filesystem;
  check_image_size(options);
  if (options.size > int(image_cache_max_side))
    throw std::invalid_argument("tnet: an image cache holds images of at most " + std::to_string(image_cache_max_side) +
                                " pixels a side, not " + std::to_string(options.size));
  std::error_code error;
  fs::create_directories(cache_dir, error);
  if (error) throw FileError(cache_dir + ": cannot create the image cache folder: " + error.message());
  if (!fs::is_directory(cache_dir, error)) throw FileError(cache_dir + ": not a folder (the image cache is written in it)");
  const std::string path = image_cache_file(source, cache_dir, options.size);

  std::vector<std::string> keys;
  std::vector<PhotoStamp> stamps;
  keys.reserve(entries.size());
  stamps.reserve(entries.size());
  for (const auto& [photo, labels] : entries) {
    keys.push_back(cache_key(photo, root));
    stamps.push_back(stamp_photo(photo));
  }
  auto content = [&](std::size_t i) { return photo_content(entries[i].first, options.limits); };
  std::optional<ImageCacheFile> cache;
  std::string why;
  if (fs::exists(path, error)) {
    try {
      cache = read_image_cache(path);
      why = stale_reason(*cache, keys, stamps, options, content);
      if (!why.empty()) why = "is stale: " + why;
    } catch (const std::exception& e) {  // DatasetError: damaged; FileError: unreadable
      why = std::string("cannot be used: ") + e.what();
    }
    if (!why.empty()) {
      cache.reset();
      if (progress) *progress << "the image cache " << path << " " << why << "; rebuilding it\n";
    }
  }
  if (!cache) {
    build_image_cache(path, cache_dir, entries, keys, stamps, options, progress, cancel);
    cache = read_image_cache(path);
    if (const std::string wrong = stale_reason(*cache, keys, stamps, options, content); !wrong.empty())
      throw DatasetError(path + ": the image cache just built does not match its photos (" + wrong + ")");
    r.cache_built = true;
  }
  // Per photo, what is kept is its path and labels (moved into the result) and its checksum.
  std::vector<std::string>().swap(keys);
  std::vector<PhotoStamp>().swap(stamps);
  std::vector<ImageCacheFile::Photo>().swap(cache->photos);

  LabeledImages out;
  out.size = options.size;
  out.paths.reserve(entries.size() - cache->skipped.size());
  out.labels.reserve(entries.size() - cache->skipped.size());
  std::size_t next_skip = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (next_skip < cache->skipped.size() && cache->skipped[next_skip].index == i) {
      const ImageCacheFile::Skipped& skip = cache->skipped[next_skip++];
      const std::string& photo = entries[i].first;
      r.skipped.push_back({photo, (skip.named ? photo + ": " : std::string()) + std::string(skip.reason)});
      continue;
    }
    for (const std::string& label : entries[i].second) ++r.label_counts[label];
    out.paths.push_back(std::move(entries[i].first));
    out.labels.push_back(std::move(entries[i].second));
  }
  std::vector<Entry>().swap(entries);
  out.file = cache->file;
  r.loaded = out.count();
  r.cache = path;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (out.count() == 0) throw DatasetError(source + ": no image could be read (" + std::to_string(r.skipped.size()) + " skipped)");
  return out;
}

}  // namespace detail

inline std::string image_cache_file(const std::string& dataset, const std::string& cache_dir, int size) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path where = fs::canonical(dataset, error);
  if (error) where = fs::absolute(dataset, error).lexically_normal();
  std::string name = where.filename().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  if (name.empty()) name = "dataset";
  const std::string key = where.string() + "\n" + std::to_string(size);
  std::ostringstream file;
  file << name << "-" << size << "px-" << std::hex << std::setw(16) << std::setfill('0') << fnv1a64(key.data(), key.size()) << ".tnetcache";
  return (fs::path(cache_dir) / file.str()).string();
}

/// load_image_folder (the same photos, labels, order, report) with the pixels from an image cache
/// in `cache_dir` (created if missing), built or rebuilt first when it is missing, stale or
/// damaged; `progress` (e.g. &std::cout) shows the build and says why a cache was not reused.
/// The images are cached(): image(i, buffer) reads them from the file, and nothing of the pixels
/// is in memory. Throws DatasetError as load_image_folder does, FileError naming the cache folder
/// when the cache cannot be written there, Interrupted when `cancel` (e.g. a flag a SIGINT handler
/// sets) was set while the cache was built (nothing of it is kept).
inline LabeledImages load_image_folder_cached(const std::string& dir, const std::string& cache_dir, const LoadOptions& options = {},
                                              LoadReport* report = nullptr, std::ostream* progress = nullptr,
                                              const std::atomic<bool>* cancel = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::load_cached(detail::scan_image_folder(dir, options, r), dir, dir, cache_dir, options, r, progress, cancel, start);
}

/// load_image_list through an image cache, as load_image_folder_cached; the photos' paths are
/// recorded relative to the list's folder.
inline LabeledImages load_image_list_cached(const std::string& list, const std::string& cache_dir, const LoadOptions& options = {},
                                            LoadReport* report = nullptr, std::ostream* progress = nullptr,
                                            const std::atomic<bool>* cancel = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::load_cached(detail::scan_image_list(list), list, std::filesystem::path(list).parent_path().string(), cache_dir, options, r,
                             progress, cancel, start);
}

}  // namespace tnet
