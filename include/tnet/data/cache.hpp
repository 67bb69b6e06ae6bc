// tnet/data/cache.hpp: a decode-once image cache, memory-mapped, for datasets larger than memory.
//
// load_image_folder_cached(DIR, CACHE_DIR) scans DIR exactly as load_image_folder does, then looks
// for CACHE_DIR/<name>-<size>px-<hash>.tnetcache (image_cache_file: the hash is of DIR's canonical
// path and the size). It is reused when it records the same photos (paths relative to DIR, file
// sizes and modification times in ns), the same image size and the same ImageLimits, and is
// well-formed; otherwise it is rebuilt, and `progress` says why ("is stale: 3 photos changed").
// The returned LabeledImages holds no pixels in memory: image(i) points into a read-only mapping
// of the file, and BatchIterator hands each image's pages back (release) once it has copied it,
// so a pass over the set keeps only what is in use resident, however many photos there are (what
// stays in memory is each photo's path and labels, about 0.3 KB a photo with its indices).
// Labels are always the scan's (a list whose labels changed reuses the pixels).
//
// Building decodes and resizes chunks of at most 512 photos in parallel (memory is bounded by the
// chunk, not the dataset) and streams them through AtomicFile: a build that fails or is killed
// leaves the previous cache, or none. Photos that cannot be decoded are skipped and reported as
// load_image_folder reports them, and recorded with their reason: an unchanged broken photo is
// not decoded again.
//
// File layout, little-endian (format version 1):
//   0   "TNETCACH"
//   8   u32 format version | u32 image size (side)
//   16  u64 photos | u64 stored (photos with pixels) | u64 record bytes | u64 pixel offset
//   48  u64 trailer bytes | i64 x 4: the ImageLimits decoding used (max_side, max_pixels,
//       max_file_bytes, max_decode_bytes)
//   88  u64 checksum: FNV-1a-64 of the records, then the trailer, then bytes 0-87
//   96  records, one per photo in path order: u32 n, path (n bytes, relative to the dataset's
//       folder) | u64 file bytes | i64 mtime ns | u32 labels, each u32 n + n bytes
//   zeros up to the pixel offset (a multiple of 4096)
//   the stored photos' pixels, size x size x 3 bytes each, in record order
//   trailer, one entry per skipped photo in record order: u64 record index | u32 1 when the
//       reason named the photo's path first (not stored: it is put back on reading) | u32 n, reason
// Opening validates every count, length and offset against the file's size before using it (a
// damaged or hostile file is refused and rebuilt, never trusted) and the checksum; the pixels are
// not checksummed (reading them all would cost what the cache saves). The file is only ever
// replaced by a rename, never changed in place, so a mapping stays valid while a rebuild runs.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "../core/file.hpp"
#include "../core/hash.hpp"
#include "../core/threads.hpp"
#include "dataset.hpp"

namespace tnet {

inline constexpr std::uint32_t image_cache_format_version = 1;

/// Where load_image_folder_cached (or load_image_list_cached) keeps the cache of `dataset` (a
/// folder, or a list file) at `size`: CACHE_DIR/<dataset's name>-<size>px-<16 hex digits>.tnetcache,
/// the digits a hash of the dataset's canonical path and the size, so that one folder holds the
/// caches of several datasets and sizes.
inline std::string image_cache_file(const std::string& dataset, const std::string& cache_dir, int size);

namespace detail {

inline constexpr char image_cache_magic[8] = {'T', 'N', 'E', 'T', 'C', 'A', 'C', 'H'};
inline constexpr std::size_t image_cache_page = 4096;      // the pixels start at a multiple of it
inline constexpr std::size_t image_cache_chunk = 512;      // photos decoded at once while building
inline constexpr std::size_t image_cache_record_min = 24;  // the smallest record: empty path, no labels
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

/// A photo as its file was when it was looked at: size and modification time (ns since the
/// epoch); bytes is all ones when it could not be examined (decoding will say why).
struct PhotoStamp {
  std::uint64_t bytes = ~std::uint64_t{0};
  std::int64_t mtime_ns = 0;
  bool operator==(const PhotoStamp&) const = default;
};

inline PhotoStamp stamp_photo(const std::string& path) {
  struct stat info{};
  if (::stat(path.c_str(), &info) != 0) return {};
  return {std::uint64_t(info.st_size), std::int64_t(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec};
}

/// A photo's path as a cache records it: relative to the dataset's folder (`root`), so that the
/// cache is reused whichever way the folder is named; as it is when it lies outside the folder.
inline std::string cache_key(const std::string& path, const std::string& root) {
  const std::filesystem::path relative = std::filesystem::path(path).lexically_relative(root);
  if (relative.empty() || *relative.begin() == "..") return path;
  return relative.generic_string();
}

/// A cache file, mapped and validated (read_image_cache). The views point into `file`.
struct ImageCacheFile {
  struct Photo {
    std::string_view path;
    PhotoStamp stamp;
  };
  struct Skipped {
    std::uint64_t index = 0;
    bool named = false;  // the reason began with the photo's path and ": " (not stored)
    std::string_view reason;
  };
  std::shared_ptr<const MappedFile> file;
  ImageCacheHeader header;
  std::vector<Photo> photos;     // one per record, in order
  std::vector<Skipped> skipped;  // by increasing index
  const std::uint8_t* pixels() const { return file->data() + header.pixel_offset; }
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

/// Maps and validates the cache file at `path`. Throws FileError when it cannot be opened or
/// mapped, DatasetError naming it and what is wrong when it is not a well-formed cache. Every
/// count is bounded by the file's size before anything is allocated for it.
inline ImageCacheFile read_image_cache(const std::string& path) {
  ImageCacheFile cache;
  cache.file = std::make_shared<const MappedFile>(path, "image cache");
  const std::uint8_t* data = cache.file->data();
  const std::uint64_t size = cache.file->size();
  auto damaged = [&](const std::string& why) { return DatasetError(path + ": " + why); };
  if (size < ImageCacheHeader::bytes)
    throw damaged("not a tnet image cache: " + std::to_string(size) + " bytes, shorter than its " +
                  std::to_string(ImageCacheHeader::bytes) + "-byte header");
  if (std::memcmp(data, image_cache_magic, 8) != 0) throw damaged("not a tnet image cache (no TNETCACH at its start)");
  const ImageCacheHeader h = cache.header = ImageCacheHeader::decode(data);
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
  if (h.photos > h.record_bytes / image_cache_record_min || h.photos - h.stored > h.trailer_bytes / image_cache_skip_min)
    throw damaged(std::to_string(h.photos) + " photos, more than its records can hold (damaged)");
  const std::uint8_t* trailer = data + (size - h.trailer_bytes);
  std::uint64_t checksum = fnv1a64(reinterpret_cast<const char*>(data) + ImageCacheHeader::bytes, h.record_bytes);
  checksum = fnv1a64(reinterpret_cast<const char*>(trailer), h.trailer_bytes, checksum);
  checksum = fnv1a64(reinterpret_cast<const char*>(data), ImageCacheHeader::checksum_at, checksum);
  if (checksum != h.checksum) throw damaged("checksum mismatch (damaged)");

  CacheReader records(data + ImageCacheHeader::bytes, data + ImageCacheHeader::bytes + h.record_bytes, path + ": a photo record");
  cache.photos.reserve(h.photos);
  for (std::uint64_t i = 0; i < h.photos; ++i) {
    ImageCacheFile::Photo photo;
    photo.path = records.text();
    photo.stamp.bytes = records.number<std::uint64_t>();
    photo.stamp.mtime_ns = records.number<std::int64_t>();
    for (std::uint32_t labels = records.number<std::uint32_t>(); labels > 0; --labels) records.text();
    cache.photos.push_back(photo);
  }
  if (records.left() != 0) throw damaged(std::to_string(records.left()) + " bytes after its last photo record (damaged)");
  CacheReader skips(trailer, data + size, path + ": a skipped photo's entry");
  cache.skipped.reserve(h.photos - h.stored);
  for (std::uint64_t i = 0; i < h.photos - h.stored; ++i) {
    ImageCacheFile::Skipped skip;
    skip.index = skips.number<std::uint64_t>();
    const std::uint32_t named = skips.number<std::uint32_t>();
    skip.reason = skips.text();
    if (skip.index >= h.photos || named > 1 || (!cache.skipped.empty() && skip.index <= cache.skipped.back().index))
      throw damaged("a skipped photo's entry is out of order or out of range (damaged)");
    skip.named = named == 1;
    cache.skipped.push_back(skip);
  }
  if (skips.left() != 0) throw damaged(std::to_string(skips.left()) + " bytes after its last skipped photo (damaged)");
  return cache;
}

/// Why `cache` cannot serve photos `keys` stamped `stamps` at `options`; empty when it can.
inline std::string stale_reason(const ImageCacheFile& cache, const std::vector<std::string>& keys, const std::vector<PhotoStamp>& stamps,
                                const LoadOptions& options) {
  const int side = int(cache.header.side);
  if (side != options.size)
    return "it holds " + std::to_string(side) + "x" + std::to_string(side) + " images, not " + std::to_string(options.size) + "x" +
           std::to_string(options.size);
  if (cache.header.limits != limits_record(options.limits)) return "it was decoded with other ImageLimits";
  bool same = cache.photos.size() == keys.size();
  for (std::size_t i = 0; same && i < keys.size(); ++i) same = cache.photos[i].path == keys[i] && cache.photos[i].stamp == stamps[i];
  if (same) return "";
  // What differs, by path: both sides sorted, then merged.
  using Stamped = std::pair<std::string_view, PhotoStamp>;
  std::vector<Stamped> before, now;
  for (const auto& photo : cache.photos) before.emplace_back(photo.path, photo.stamp);
  for (std::size_t i = 0; i < keys.size(); ++i) now.emplace_back(keys[i], stamps[i]);
  auto order = [](const Stamped& a, const Stamped& b) {
    return std::tie(a.first, a.second.bytes, a.second.mtime_ns) < std::tie(b.first, b.second.bytes, b.second.mtime_ns);
  };
  std::sort(before.begin(), before.end(), order);
  std::sort(now.begin(), now.end(), order);
  std::size_t changed = 0, added = 0, removed = 0, a = 0, b = 0;
  while (a < before.size() || b < now.size()) {
    if (b == now.size() || (a < before.size() && before[a].first < now[b].first)) ++removed, ++a;
    else if (a == before.size() || now[b].first < before[a].first) ++added, ++b;
    else changed += before[a++].second != now[b++].second;
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
/// trailer, then the header again with the counts and checksum.
inline void build_image_cache(const std::string& path, const std::string& cache_dir, const std::vector<Entry>& entries,
                              const std::vector<std::string>& keys, const std::vector<PhotoStamp>& stamps, const LoadOptions& options,
                              std::ostream* progress) {
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
  std::uint64_t checksum = fnv1a64_basis;
  auto put = [&](const void* data, std::size_t size) {
    file.write(data, size);
    checksum = fnv1a64(static_cast<const char*>(data), size, checksum);
  };
  auto put_number = [&](auto value) { put(&value, sizeof value); };
  auto put_text = [&](std::string_view text) {
    put_number(std::uint32_t(text.size()));
    put(text.data(), text.size());
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
  struct Skip {
    std::uint64_t index;
    std::uint32_t named;
    std::string reason;
  };
  std::vector<Skip> skipped;
  CacheProgress bar(progress, n);
  for (std::size_t first = 0; first < n; first += chunk) {
    const std::size_t count = std::min(chunk, n - first);
#pragma omp parallel for schedule(dynamic, 4)
    for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(count); ++k) {
      errors[k].clear();
      try {
        decode_photo(entries[first + k].first, options, pixels.data() + k * bytes);
      } catch (const std::exception& e) {
        errors[k] = e.what();
      }
    }
    for (std::size_t k = 0; k < count; ++k) {
      if (errors[k].empty()) {
        file.write(pixels.data() + k * bytes, bytes);
        ++header.stored;
        continue;
      }
      const std::string prefix = entries[first + k].first + ": ";
      const bool named = errors[k].starts_with(prefix);
      skipped.push_back({first + k, named, named ? errors[k].substr(prefix.size()) : errors[k]});
    }
    bar.update(first + count);
  }
  const std::uint64_t trailer_at = file.size();
  for (const Skip& skip : skipped) {
    put_number(skip.index);
    put_number(skip.named);
    put_text(skip.reason);
  }
  header.trailer_bytes = file.size() - trailer_at;
  const std::array<char, ImageCacheHeader::bytes> fixed = header.encode();
  header.checksum = fnv1a64(fixed.data(), ImageCacheHeader::checksum_at, checksum);
  file.write_at(0, header.encode().data(), ImageCacheHeader::bytes);
  file.commit();
}

/// load_image_folder_cached and load_image_list_cached after their scans: `entries` (sorted)
/// found in `source`, paths recorded relative to `root`.
inline LabeledImages load_cached(std::vector<Entry> entries, const std::string& source, const std::string& root,
                                 const std::string& cache_dir, const LoadOptions& options, LoadReport& r, std::ostream* progress,
                                 std::chrono::steady_clock::time_point start) {
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
  std::optional<ImageCacheFile> cache;
  std::string why;
  if (fs::exists(path, error)) {
    try {
      cache = read_image_cache(path);
      why = stale_reason(*cache, keys, stamps, options);
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
    build_image_cache(path, cache_dir, entries, keys, stamps, options, progress);
    cache = read_image_cache(path);
    if (const std::string wrong = stale_reason(*cache, keys, stamps, options); !wrong.empty())
      throw DatasetError(path + ": the image cache just built does not match its photos (" + wrong + ")");
    r.cache_built = true;
  }
  // Per photo, what is kept is its path and labels (moved into the result), nothing else.
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
  out.mapping = cache->file;
  out.mapped_pixels = cache->pixels();
  // The header's pages were read once; only the pixels are read from here on.
  cache->file->release(cache->file->data(), cache->header.pixel_offset);
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
  file << name << "-" << size << "px-" << std::hex << std::setw(16) << std::setfill('0') << detail::fnv1a64(key.data(), key.size())
       << ".tnetcache";
  return (fs::path(cache_dir) / file.str()).string();
}

/// load_image_folder (the same photos, labels, order, report) with the pixels from an image cache
/// in `cache_dir` (created if missing), built or rebuilt first when it is missing, stale or
/// damaged; `progress` (e.g. &std::cout) shows the build and says why a cache was not reused.
/// The images are mapped(): image(i) reads the file, and nothing of the pixels is in memory until
/// used. Throws DatasetError as load_image_folder does, FileError naming the cache folder when the
/// cache cannot be written there.
inline LabeledImages load_image_folder_cached(const std::string& dir, const std::string& cache_dir, const LoadOptions& options = {},
                                              LoadReport* report = nullptr, std::ostream* progress = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::load_cached(detail::scan_image_folder(dir, options, r), dir, dir, cache_dir, options, r, progress, start);
}

/// load_image_list through an image cache, as load_image_folder_cached; the photos' paths are
/// recorded relative to the list's folder.
inline LabeledImages load_image_list_cached(const std::string& list, const std::string& cache_dir, const LoadOptions& options = {},
                                            LoadReport* report = nullptr, std::ostream* progress = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::load_cached(detail::scan_image_list(list), list, std::filesystem::path(list).parent_path().string(), cache_dir, options, r,
                             progress, start);
}

}  // namespace tnet
