// tnet/data/dataset.hpp: labelled photos from a folder of class folders or a list file.
//
// load_image_folder(DIR): every image below DIR/<class>/ (sub-folders included), its labels the
// class folder's name split at a separator ("red_dress" -> red, dress). load_image_list(FILE):
// lines of `path,label1|label2|...`, paths relative to the list's folder; a first line
// `path,labels` is a header. Photos are decoded and resized in parallel and kept as 8-bit RGB at
// the network's input size (2160 photos at 96x96 take 60 MB). Files whose names do not end in an
// image extension are ignored; image files that cannot be decoded are skipped and reported with
// the reason. Paths are sorted, so the order does not depend on the file system.
//
// The pixels are held in memory (LabeledImages::pixels), or, for a dataset larger than memory, in
// an image cache file (data/cache.hpp: load_image_folder_cached), read image by image as batches
// need them (LabeledImages::image(i, buffer)).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../core/file.hpp"
#include "../core/hash.hpp"
#include "../core/text.hpp"
#include "image.hpp"
#include "split.hpp"

namespace tnet {

class DatasetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown when a load was asked to stop (its cancel flag set, e.g. by Ctrl-C) and stopped,
/// keeping nothing of what it was writing.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The pixels of an image cache (data/cache.hpp), read from its file as batches need them: image
/// i is `image_bytes` bytes at pixel_offset + i x image_bytes, checked against checksums[i]
/// (XXH64) on every read. Reading is pread into the caller's buffer, nothing is mapped: a file
/// truncated or changed while in use gives an error naming it (DatasetError), never a crash or
/// wrong pixels, and the process holds no pages of it whatever the dataset's size. The file stays
/// open, so a cache rebuilt meanwhile (renamed over this one) does not change what is read.
class ImageFile {
 public:
  /// Opens `path`; throws FileError naming it and `what` ("image cache") when it cannot.
  ImageFile(const std::string& path, const std::string& what) : path_(path) {
    std::string reason;
    fd_ = open_for_reading(path, reason);
    if (fd_ < 0) throw FileError(path + ": cannot open the " + what + ": " + reason);
    struct stat info{};
    if (::fstat(fd_, &info) != 0) {
      reason = std::strerror(errno);
      ::close(fd_);
      throw FileError(path + ": cannot examine the " + what + ": " + reason);
    }
    size_ = std::uint64_t(info.st_size);
  }
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;
  ~ImageFile() { ::close(fd_); }

  const std::string& path() const { return path_; }
  /// The file's size when it was opened.
  std::uint64_t size() const { return size_; }

  /// Reads `n` bytes at `offset` into `out`. Throws DatasetError naming the file when it ends
  /// before them or cannot be read, saying which bytes (`what`) were wanted.
  void read_at(std::uint64_t offset, void* out, std::size_t n, const std::string& what) const {
    int error = 0;
    const std::size_t got = read_up_to(offset, out, n, error);
    if (got < n) throw short_read(offset, n, got, error, what);
  }

  /// Reads image i into `out` (image_bytes) and checks it against its checksum. Throws
  /// DatasetError naming the file, the image and `photo` (its path) when it cannot be read or does
  /// not match. Allocates nothing unless it throws.
  void read_image(std::size_t i, std::uint8_t* out, std::string_view photo) const {
    const std::uint64_t at = pixel_offset + std::uint64_t(i) * image_bytes;
    auto which = [&] {
      return "image " + std::to_string(i) + " (" + std::string(photo) + ", bytes " + std::to_string(at) + "-" +
             std::to_string(at + image_bytes) + ")";
    };
    if (i >= checksums.size())
      throw DatasetError(path_ + ": has no " + which() + ": it holds " + std::to_string(checksums.size()) + " images");
    int error = 0;
    const std::size_t got = read_up_to(at, out, image_bytes, error);
    if (got < image_bytes) throw short_read(at, image_bytes, got, error, which());
    if (detail::xxh64(out, image_bytes) != checksums[i])
      throw DatasetError(path_ + ": " + which() + " does not match its checksum: the image cache is damaged; delete it to have it rebuilt");
  }

  std::uint64_t pixel_offset = 0;        // image 0's first byte
  std::size_t image_bytes = 0;           // side x side x 3
  std::vector<std::uint64_t> checksums;  // XXH64 of each image's pixels

 private:
  // pread until `n` bytes are read, the file ends or a read fails (`error` then holds errno).
  std::size_t read_up_to(std::uint64_t offset, void* out, std::size_t n, int& error) const {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, static_cast<char*>(out) + got, n - got, off_t(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        error = r < 0 ? errno : 0;
        break;
      }
      got += std::size_t(r);
    }
    return got;
  }
  DatasetError short_read(std::uint64_t offset, std::size_t n, std::size_t got, int error, const std::string& what) const {
    if (error != 0) return DatasetError(path_ + ": cannot read " + what + ": " + std::strerror(error));
    struct stat info{};
    const std::uint64_t now = ::fstat(fd_, &info) == 0 ? std::uint64_t(info.st_size) : offset + got;
    return DatasetError(path_ + ": is " + std::to_string(now) + " bytes now, too short for " + what + " (up to byte " +
                        std::to_string(offset + n) + "): truncated since it was opened; delete it to have it rebuilt");
  }

  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

/// Photos of one size, 8-bit RGB, with their label sets. The pixels are in `pixels` (in memory,
/// the default) or, when `file` is set, in that image cache (data/cache.hpp), read as they are
/// needed; copies share the file.
struct LabeledImages {
  int size = 0;                                  // every image is size x size x 3
  std::vector<std::uint8_t> pixels;              // count() x size x size x 3, when in memory
  std::vector<std::vector<std::string>> labels;  // per image
  std::vector<std::string> paths;                // per image
  std::shared_ptr<const ImageFile> file;         // set: the pixels are read from this image cache instead

  std::size_t count() const { return paths.size(); }
  std::size_t image_bytes() const { return std::size_t(size) * size * 3; }
  /// Image i of a set in memory. A cached set has no pixels in memory: use image(i, buffer).
  const std::uint8_t* image(std::size_t i) const {
    if (file)
      throw std::logic_error("LabeledImages::image(i): the pixels are in the image cache " + file->path() + "; use image(i, buffer)");
    return pixels.data() + i * image_bytes();
  }
  /// Image i: in memory, where it is; cached, read into `buffer` (image_bytes()) and checked,
  /// which throws DatasetError naming the cache when it was truncated or damaged since opened.
  const std::uint8_t* image(std::size_t i, std::uint8_t* buffer) const {
    if (!file) return pixels.data() + i * image_bytes();
    file->read_image(i, buffer, i < paths.size() ? std::string_view(paths[i]) : std::string_view());
    return buffer;
  }
  /// Whether the pixels are read from an image cache rather than held in memory.
  bool cached() const { return file != nullptr; }
  /// The pixel bytes held in memory: all of them, or none when they are cached.
  std::size_t pixel_bytes() const { return file ? 0 : pixels.size(); }
};

struct SkippedFile {
  std::string path, reason;
};

/// What a load found.
struct LoadReport {
  std::size_t loaded = 0, ignored = 0;  // ignored: files without an image extension, links to folders in class folders
  std::vector<SkippedFile> skipped;     // image files that could not be decoded, folders and links that could not be read
  std::map<std::string, std::size_t> label_counts;
  double seconds = 0;
  std::string cache;         // the image cache the pixels came from (data/cache.hpp); empty: decoded into memory
  bool cache_built = false;  // whether this load built that cache (it was missing, stale or damaged) rather than reused it

  /// "loaded 2160 images (6 skipped: ...) in 1.2 s; labels: black 344, ..."
  void print(std::ostream& out, std::size_t max_skipped_shown = 5) const {
    out << "loaded " << loaded << " images in " << std::fixed << std::setprecision(2) << seconds << " s";
    if (ignored) out << ", ignored " << ignored << " non-image files";
    out << "\n";
    if (!skipped.empty()) {
      out << "skipped " << skipped.size() << " files that could not be read:\n";
      for (std::size_t i = 0; i < skipped.size() && i < max_skipped_shown; ++i) out << "  " << skipped[i].reason << "\n";
      if (skipped.size() > max_skipped_shown) out << "  ... and " << skipped.size() - max_skipped_shown << " more\n";
    }
    if (!cache.empty()) out << (cache_built ? "built the image cache " : "read the image cache ") << cache << "\n";
    out << "labels:";
    for (const auto& [label, count] : label_counts) out << " " << label << " " << count;
    out << "\n";
  }
};

struct LoadOptions {
  int size = 96;         // images are resized to size x size
  char separator = '_';  // splits a class folder's name into labels
  ImageLimits limits;
};

/// Whether a path names an image by its extension, as load_image_folder picks files: .jpg, .jpeg,
/// .png, .gif or .bmp, in any case.
inline bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".gif" || ext == ".bmp";
}

namespace detail {

// Whether a path holds a control character: the lists of paths tnet writes hold one a line.
inline bool path_has_control_character(std::string_view path) {
  for (unsigned char c : path)
    if (c < 0x20 || c == 0x7F) return true;
  return false;
}
inline constexpr const char* path_rule =
    "its path holds a control character (a newline, a tab or the like), which a list of paths cannot hold";

inline std::vector<std::string> split_labels(const std::string& text, char separator) {
  std::vector<std::string> labels;
  std::string current;
  std::istringstream in(text);
  while (std::getline(in, current, separator))
    if (!current.empty()) labels.push_back(current);
  return labels;
}

using Entry = std::pair<std::string, std::vector<std::string>>;  // a photo's path and labels

inline void check_image_size(const LoadOptions& options) {
  if (options.size < 1) throw std::invalid_argument("tnet: image size must be >= 1, got " + std::to_string(options.size));
}

// Decodes the photo at `path` and resizes it into `out` (options.size^2 x 3 bytes); throws what
// read_image throws.
inline void decode_photo(const std::string& path, const LoadOptions& options, std::uint8_t* out) {
  const Image image = resize_image(read_image(path, options.limits), options.size, options.size);
  std::copy(image.pixels.begin(), image.pixels.end(), out);
}

// What load_image_folder finds below DIR/<class>/: the photos, sorted by path, with their labels.
// What cannot be listed or examined goes to report.skipped, other files to report.ignored. Throws
// DatasetError when DIR is missing, not a folder, or holds no image file.
inline std::vector<Entry> scan_image_folder(const std::string& dir, const LoadOptions& options, LoadReport& r) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::exists(dir, error)) throw DatasetError(dir + ": dataset folder does not exist");
  if (!fs::is_directory(dir, error)) throw DatasetError(dir + ": not a folder (expected a folder of class folders)");

  std::vector<Entry> found;
  // A folder that cannot be listed, or an entry that cannot be examined (a dangling link, a link
  // loop), is skipped and reported; the rest of the dataset loads. Links to folders below a class
  // folder are not followed (a folder's photos take the labels of the class folder they are in).
  auto skip = [&](const fs::path& path, const std::string& why) {
    r.skipped.push_back({path.string(), printable(path.string()) + ": " + why});
  };
  auto walk = [&](auto& self, const fs::path& folder, const std::vector<std::string>& labels) -> void {
    std::error_code e;
    fs::directory_iterator entries(folder, e);
    if (e) return skip(folder, "cannot list folder: " + e.message());
    for (; entries != fs::directory_iterator(); entries.increment(e)) {
      if (e) return skip(folder, "cannot list folder: " + e.message());
      const fs::path path = entries->path();
      const bool link = fs::is_symlink(entries->symlink_status(e));
      const fs::file_status status = e ? fs::file_status() : fs::status(path, e);
      if (e) {
        skip(path, "cannot examine: " + e.message());
        e.clear();
      } else if (fs::is_directory(status)) {
        if (link) ++r.ignored;
        else self(self, path, labels);
      } else if (fs::is_regular_file(status) && has_image_extension(path)) {
        if (path_has_control_character(path.string())) skip(path, std::string(path_rule) + ": rename it");
        else found.emplace_back(path.string(), labels);
      } else {
        ++r.ignored;
      }
    }
  };
  std::error_code e;
  fs::directory_iterator classes(dir, e);
  if (e) throw DatasetError(dir + ": cannot list the dataset folder: " + e.message());
  for (; classes != fs::directory_iterator(); classes.increment(e)) {
    if (e) throw DatasetError(dir + ": cannot list the dataset folder: " + e.message());
    const fs::path cls = classes->path();
    const bool is_folder = fs::is_directory(cls, e);
    if (e) {
      skip(cls, "cannot examine: " + e.message());
      e.clear();
    } else if (is_folder) {
      // Its name gives labels to every file below it, and to the label files and model written.
      std::vector<std::string> labels = split_labels(cls.filename().string(), options.separator);
      for (const std::string& label : labels)
        if (const std::string problem = label_problem(label); !problem.empty())
          throw DatasetError(printable(cls.string()) + ": the class folder's name gives a label that cannot be one: " + problem + "; " +
                             label_rule + ": rename the folder");
      walk(walk, cls, std::move(labels));
    }
  }
  if (found.empty())
    throw DatasetError(dir + ": no image files in its class folders (expected DIR/<label" + std::string(1, options.separator) +
                       "label>/<image>)");
  std::sort(found.begin(), found.end());
  return found;
}

// What load_image_list finds in its list: the photos, sorted by path, with their labels. Throws
// DatasetError naming the file and line for a malformed line, and when the list is missing or empty.
inline std::vector<Entry> scan_image_list(const std::string& list) {
  namespace fs = std::filesystem;
  std::string reason;
  if (!is_readable_file(list, reason)) throw DatasetError(list + ": cannot open the image list: " + reason);
  std::ifstream in(list);
  if (!in) throw DatasetError(list + ": cannot open the image list");
  const fs::path base = fs::path(list).parent_path();
  std::vector<Entry> entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    text_line(line, number == 1);
    if (line.empty() || line[0] == '#' || (number == 1 && line == "path,labels")) continue;
    const std::size_t comma = line.rfind(',');
    const std::string where = list + ":" + std::to_string(number) + ": ";
    if (comma == std::string::npos || comma == 0)
      throw DatasetError(where + "expected 'path,label1|label2|...', got '" + printable(line) + "'");
    const fs::path path = fs::path(line.substr(0, comma));
    if (path_has_control_character(path.string())) throw DatasetError(where + "'" + printable(path.string()) + "': " + path_rule);
    std::vector<std::string> labels = split_labels(line.substr(comma + 1), '|');
    for (const std::string& label : labels)
      if (const std::string problem = label_problem(label); !problem.empty()) throw DatasetError(where + problem + "; " + label_rule);
    entries.emplace_back((path.is_absolute() ? path : base / path).string(), std::move(labels));
  }
  if (entries.empty()) throw DatasetError(list + ": the image list is empty");
  std::sort(entries.begin(), entries.end());
  return entries;
}

// Decodes and resizes every file of `entries` (sorted) in parallel, keeps the good ones in order.
// `source` (the folder or list) prefixes the error when none can be read.
inline LabeledImages decode_all(std::vector<Entry> entries, const std::string& source, const LoadOptions& options, LoadReport& report,
                                std::chrono::steady_clock::time_point start) {
  check_image_size(options);
  std::vector<std::string> paths;
  std::vector<std::vector<std::string>> labels;
  for (auto& [path, l] : entries) {
    paths.push_back(std::move(path));
    labels.push_back(std::move(l));
  }
  const std::size_t n = paths.size(), bytes = std::size_t(options.size) * options.size * 3;
  std::vector<std::uint8_t> pixels(n * bytes);
  std::vector<std::string> errors(n);
#pragma omp parallel for schedule(dynamic, 4)
  for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(n); ++i) {
    try {
      decode_photo(paths[i], options, pixels.data() + i * bytes);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  LabeledImages out;
  out.size = options.size;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!errors[i].empty()) {
      report.skipped.push_back({paths[i], errors[i]});
      continue;
    }
    if (kept != i) std::copy_n(pixels.begin() + i * bytes, bytes, pixels.begin() + kept * bytes);
    for (const std::string& label : labels[i]) ++report.label_counts[label];
    out.paths.push_back(std::move(paths[i]));
    out.labels.push_back(std::move(labels[i]));
    ++kept;
  }
  pixels.resize(kept * bytes);
  pixels.shrink_to_fit();
  out.pixels = std::move(pixels);
  report.loaded = kept;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (kept == 0) throw DatasetError(source + ": no image could be read (" + std::to_string(report.skipped.size()) + " skipped)");
  return out;
}

}  // namespace detail

/// Loads DIR/<class>/**/<image>; labels from the class folder's name. Throws DatasetError when DIR
/// is missing, not a folder, or holds no readable image.
inline LabeledImages load_image_folder(const std::string& dir, const LoadOptions& options = {}, LoadReport* report = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::decode_all(detail::scan_image_folder(dir, options, r), dir, options, r, start);
}

/// Loads the images listed in a file of `path,label1|label2|...` lines (paths relative to the
/// list's folder; `#` starts a comment line). Throws DatasetError naming the file and line for a
/// malformed line, and when the list is missing or empty.
inline LabeledImages load_image_list(const std::string& list, const LoadOptions& options = {}, LoadReport* report = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report ? *report : local;
  r = LoadReport{};
  return detail::decode_all(detail::scan_image_list(list), list, options, r, start);
}

/// A split by name: writes the paths of `images` at `indices` to `path`, one a line, relative to
/// `root` (the folder they were loaded from; as they are when `root` is empty), so that another
/// run or another framework can train and validate on exactly these images (read_split).
inline void write_split_list(const std::string& path, const LabeledImages& images, const std::vector<std::size_t>& indices,
                             const std::string& root) {
  std::string text;
  for (std::size_t i : indices) {
    const std::filesystem::path p(images.paths.at(i));
    text += (root.empty() ? p : p.lexically_relative(root)).generic_string() + "\n";
  }
  write_file(path, text, "image list");
}

/// The split named by `val_list` (and `train_list`; when it is empty, every other image trains):
/// files as write_split_list writes them. Throws DatasetError naming the file and line for a path
/// that is not among `images` (a missing or unreadable photo), one listed twice, or one in both.
inline Split read_split(const LabeledImages& images, const std::string& root, const std::string& val_list,
                        const std::string& train_list = "") {
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < images.count(); ++i) {
    const std::filesystem::path p(images.paths[i]);
    index[(root.empty() ? p : p.lexically_relative(root)).generic_string()] = i;
  }
  std::vector<int> owner(images.count(), 0);  // 0 none, 1 validation, 2 training
  auto read = [&](const std::string& list, int who) {
    std::string reason;
    if (!is_readable_file(list, reason)) throw DatasetError(list + ": cannot open the image list: " + reason);
    std::ifstream in(list);
    if (!in) throw DatasetError(list + ": cannot open the image list");
    std::vector<std::size_t> out;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      detail::text_line(line, number == 1);
      if (line.empty() || line[0] == '#') continue;
      const auto found = index.find(line);
      const std::string where = list + ":" + std::to_string(number) + ": '" + printable(line) + "' ";
      if (found == index.end())
        throw DatasetError(where + "is not among the images loaded from " + (root.empty() ? std::string("the dataset") : root));
      if (owner[found->second] == who) throw DatasetError(where + "is listed twice");
      if (owner[found->second] != 0) throw DatasetError(where + "is in both the training and the validation list");
      owner[found->second] = who;
      out.push_back(found->second);
    }
    if (out.empty()) throw DatasetError(list + ": the image list is empty");
    std::sort(out.begin(), out.end());
    return out;
  };
  Split split;
  split.test = read(val_list, 1);
  if (!train_list.empty()) {
    split.train = read(train_list, 2);
  } else {
    for (std::size_t i = 0; i < images.count(); ++i)
      if (owner[i] == 0) split.train.push_back(i);
    if (split.train.empty()) throw DatasetError(val_list + ": lists every image, leaving none to train on");
  }
  return split;
}

}  // namespace tnet
