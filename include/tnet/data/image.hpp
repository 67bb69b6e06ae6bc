// tnet/data/image.hpp: photos in and out: JPEG through libjpeg-turbo, the rest through stb.
//
// Decoding: JPEG (baseline and progressive), PNG, GIF (first frame) and BMP, the format found
// from the file's first bytes, never its name. JPEG, the format of nearly every photo and the
// one whose decoder meets the most hostile input, goes through libjpeg-turbo's TurboJPEG API
// (Debian's libturbojpeg0-dev): fuzzed continuously upstream, faster than stb, and free of the
// out-of-bounds write that Debian 12's 2022 stb snapshot has (stb issues 1289 and 1291); its
// warnings (a truncated or damaged file) are errors, and progressive files are limited in
// scans, so a crafted file costs bounded time. Every image comes out as 8-bit RGB, row-major,
// channels last: grayscale is copied to the three channels and an alpha channel is composited
// over white (a transparent product photo keeps a white background rather than the black its
// hidden pixels often hold). Dimensions are read from the header and checked against
// ImageLimits before any pixel is decoded, so a decompression bomb costs nothing.
//
// Channel order is RGB throughout tnet. The Keras tutorial read photos with OpenCV (BGR); a tnet
// model is trained and used with RGB, which is what matters.
//
// stb's implementation is not compiled here: tnet links Debian's libstb (libstb-dev), so any
// number of translation units may include tnet, and a program that also compiles stb itself
// should define STB_IMAGE_STATIC (etc.) for its own copy.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#include <exception>

#include "../core/file.hpp"

#include <turbojpeg.h>
#include <zlib.h>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

namespace tnet {

/// An 8-bit RGB image, row-major, channels last.
struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // height x width x 3

  std::uint8_t* at(int y, int x) { return pixels.data() + (std::size_t(y) * width + x) * 3; }
  const std::uint8_t* at(int y, int x) const { return pixels.data() + (std::size_t(y) * width + x) * 3; }
};

/// The largest image read_image and decode_image accept. Decoding memory is bounded per decoding
/// thread by max_decode_bytes, estimated from the header before anything is decoded: a JPEG
/// needs about 3 bytes a pixel (libjpeg-turbo writes RGB straight into the image), a PNG, GIF or
/// BMP up to 11 (stb's inflated rows, its RGB(A) output, and the RGB image; an RGB PNG measured
/// 6). The defaults admit a 64-megapixel JPEG and a 46-megapixel PNG.
struct ImageLimits {
  int max_side = 20000;
  std::int64_t max_pixels = 64'000'000;         // 192 MB of RGB
  std::int64_t max_file_bytes = 256'000'000;    // no photo needs more; a larger file is not read
  std::int64_t max_decode_bytes = 512'000'000;  // per decoding thread
};

/// About how many bytes decoding a `format` image of width x height takes (see ImageLimits).
inline std::int64_t decode_bytes(const std::string& format, int width, int height) {
  return std::int64_t(width) * height * (format == "jpeg" ? 3 : 11);
}

/// A file that is not an image tnet can read; the message starts with the file's name.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "jpeg", "png", "gif", "bmp" from the first bytes, or "" when none of these.
inline std::string image_format(std::span<const std::uint8_t> bytes) {
  auto starts = [&](std::initializer_list<int> magic) {
    if (bytes.size() < magic.size()) return false;
    std::size_t i = 0;
    for (int b : magic)
      if (bytes[i++] != b) return false;
    return true;
  };
  if (starts({0xFF, 0xD8, 0xFF})) return "jpeg";
  if (starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return "png";
  if (starts({'G', 'I', 'F', '8'})) return "gif";
  if (starts({'B', 'M'})) return "bmp";
  return "";
}

/// Width and height as the file's header states them, read without decoding anything; {0, 0}
/// when the header is incomplete.
inline std::pair<int, int> image_dimensions(std::span<const std::uint8_t> bytes) {
  const std::string format = image_format(bytes);
  auto be16 = [&](std::size_t at) { return int(bytes[at]) << 8 | int(bytes[at + 1]); };
  auto be32 = [&](std::size_t at) { return std::int64_t(be16(at)) << 16 | be16(at + 2); };
  auto le16 = [&](std::size_t at) { return int(bytes[at]) | int(bytes[at + 1]) << 8; };
  auto le32 = [&](std::size_t at) { return std::int64_t(le16(at)) | std::int64_t(le16(at + 2)) << 16; };
  auto clamp = [](std::int64_t v) { return int(std::min<std::int64_t>(std::abs(v), INT32_MAX)); };
  if (format == "png" && bytes.size() >= 24) return {clamp(be32(16)), clamp(be32(20))};
  if (format == "gif" && bytes.size() >= 10) return {le16(6), le16(8)};
  if (format == "bmp" && bytes.size() >= 26) {
    if (le32(14) == 12) return {le16(18), le16(20)};  // OS/2 1.x: 16-bit sizes
    return {clamp(std::int32_t(le32(18))), clamp(std::int32_t(le32(22)))};
  }
  if (format == "jpeg") {
    // Walk the markers to the frame header (SOF0-SOF15 but DHT, JPG and DAC).
    std::size_t at = 2;
    while (at + 9 < bytes.size()) {
      if (bytes[at] != 0xFF) return {0, 0};
      const int marker = bytes[at + 1];
      if (marker == 0xFF) {
        ++at;
        continue;
      }
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) return {be16(at + 7), be16(at + 5)};
      at += 2 + std::size_t(be16(at + 2));
    }
  }
  return {0, 0};
}

namespace detail {
// A JPEG through TurboJPEG, as 8-bit RGB (grayscale expanded); `width` x `height` is what the
// header walk found, checked against the limits already.
inline Image decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name, int width, int height) {
  struct Handle {
    tjhandle h = tjInitDecompress();
    ~Handle() {
      if (h) tjDestroy(h);
    }
  } handle;
  if (!handle.h) throw ImageError(name + ": cannot start the JPEG decoder");
  auto failure = [&] { return std::string(tjGetErrorStr2(handle.h)); };
  int w = 0, h = 0, subsampling = 0, colourspace = 0;
  if (tjDecompressHeader3(handle.h, bytes.data(), static_cast<unsigned long>(bytes.size()), &w, &h, &subsampling, &colourspace) != 0)
    throw ImageError(name + ": unreadable jpeg header (" + failure() + ")");
  if (w != width || h != height)
    throw ImageError(name + ": jpeg header states " + std::to_string(width) + "x" + std::to_string(height) + " pixels, its decoder reads " +
                     std::to_string(w) + "x" + std::to_string(h));
  Image image;
  image.width = w;
  image.height = h;
  image.pixels.resize(std::size_t(w) * h * 3);
  if (tjDecompress2(handle.h, bytes.data(), static_cast<unsigned long>(bytes.size()), image.pixels.data(), w, 0, h, TJPF_RGB,
                    TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
    throw ImageError(name + ": cannot decode jpeg (" + failure() + ")");
  return image;
}
}  // namespace detail

namespace detail {
// A PNG's chunks and compressed pixels, checked before stb sees them. stb allocates what a
// chunk's length field claims before reading it (a 95-byte file asked for 2 GB; fuzz/fuzz_image
// found it), and its inflater, given a stream that ends without its final block, decodes on past
// the data. So every chunk must lie within the file, and the IDAT chunks' stream must end, intact,
// and inflate (with zlib) to no more than the rows the header implies.
inline void check_png_stream(std::span<const std::uint8_t> bytes, const std::string& name, int width, int height) {
  auto be32 = [&](std::size_t at) {
    return std::uint32_t(bytes[at]) << 24 | std::uint32_t(bytes[at + 1]) << 16 | std::uint32_t(bytes[at + 2]) << 8 | bytes[at + 3];
  };
  if (bytes.size() < 33) throw ImageError(name + ": png header is incomplete");
  const int depth = bytes[24], colour = bytes[25], interlaced = bytes[28];
  const int channels = colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 0;
  if (channels == 0 || depth < 1 || depth > 16) throw ImageError(name + ": png header states an unknown colour type or bit depth");
  // The rows with their filter bytes; Adam7's seven passes add at most two bytes to a row of each.
  const std::uint64_t row = (std::uint64_t(width) * std::uint64_t(channels * depth) + 7) / 8;
  const std::uint64_t limit = std::uint64_t(height) * (row + 1) + (interlaced ? 14 * std::uint64_t(height) + 64 : 0);

  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw ImageError(name + ": cannot start the png inflater");
  struct End {
    z_stream& z;
    ~End() { inflateEnd(&z); }
  } end{z};
  std::uint8_t out[16384];
  std::uint64_t inflated = 0;
  int status = Z_OK;
  for (std::size_t at = 8; at + 8 <= bytes.size();) {
    const std::uint64_t length = be32(at);
    if (length > bytes.size() - at - 8)
      throw ImageError(name + ": png chunk at byte " + std::to_string(at) + " runs past the end of the file");
    if (status != Z_STREAM_END && std::memcmp(&bytes[at + 4], "IDAT", 4) == 0) {
      z.next_in = const_cast<Bytef*>(&bytes[at + 8]);
      z.avail_in = uInt(length);
      while (z.avail_in > 0 && status != Z_STREAM_END) {
        z.next_out = out;
        z.avail_out = sizeof out;
        status = inflate(&z, Z_NO_FLUSH);
        if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR)
          throw ImageError(name + ": corrupt png pixel data (" + (z.msg ? z.msg : "zlib error " + std::to_string(status)) + ")");
        inflated += sizeof out - z.avail_out;
        if (inflated > limit)
          throw ImageError(name + ": png pixel data inflates beyond the " + std::to_string(limit) + " bytes of its " +
                           std::to_string(width) + "x" + std::to_string(height) + " pixels");
        if (status == Z_BUF_ERROR) break;  // no progress possible with this chunk's input
      }
    }
    at += 12 + length;  // length, type, data, CRC
  }
  if (status != Z_STREAM_END) throw ImageError(name + ": png pixel data is truncated (its compressed stream does not end)");
}
}  // namespace detail

/// Decodes an image held in memory; `name` is used in error messages.
inline Image decode_image(std::span<const std::uint8_t> bytes, const std::string& name, const ImageLimits& limits = {}) {
  const std::string format = image_format(bytes);
  if (format.empty()) throw ImageError(name + ": not a JPEG, PNG, GIF or BMP image");
  if (bytes.size() > std::size_t(INT32_MAX)) throw ImageError(name + ": file too large");
  const auto [width, height] = image_dimensions(bytes);
  if (width == 0 || height == 0) throw ImageError(name + ": " + format + " header is incomplete or states no size");
  if (width < 1 || height < 1 || width > limits.max_side || height > limits.max_side || std::int64_t(width) * height > limits.max_pixels)
    throw ImageError(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " pixels is beyond the limit (" +
                     std::to_string(limits.max_side) + " per side, " + std::to_string(limits.max_pixels) + " in all)");
  if (decode_bytes(format, width, height) > limits.max_decode_bytes)
    throw ImageError(name + ": a " + std::to_string(width) + "x" + std::to_string(height) + " " + format + " needs about " +
                     std::to_string(decode_bytes(format, width, height) / 1'000'000) + " MB to decode, more than the " +
                     std::to_string(limits.max_decode_bytes / 1'000'000) + " MB a decoding thread may use");
  if (format == "jpeg") return detail::decode_jpeg(bytes, name, width, height);
  if (format == "png") detail::check_png_stream(bytes, name, width, height);
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &channels))
    throw ImageError(name + ": unreadable " + format + " header (" + stbi_failure_reason() + ")");
  if (w != width || h != height)
    throw ImageError(name + ": " + format + " header states " + std::to_string(width) + "x" + std::to_string(height) +
                     " pixels, its decoder reads " + std::to_string(w) + "x" + std::to_string(h));
  const bool alpha = channels == 2 || channels == 4;
  const int wanted = alpha ? 4 : 3;
  int found = 0;
  stbi_uc* decoded = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &found, wanted);
  if (!decoded) throw ImageError(name + ": cannot decode " + format + " (" + stbi_failure_reason() + ")");
  Image image;
  image.width = w;
  image.height = h;
  image.pixels.resize(std::size_t(w) * h * 3);
  const std::size_t count = std::size_t(w) * h;
  if (alpha) {
    for (std::size_t i = 0; i < count; ++i) {
      const unsigned a = decoded[i * 4 + 3];
      for (int c = 0; c < 3; ++c) image.pixels[i * 3 + c] = std::uint8_t((decoded[i * 4 + c] * a + 255 * (255 - a) + 127) / 255);
    }
  } else {
    std::copy(decoded, decoded + count * 3, image.pixels.begin());
  }
  stbi_image_free(decoded);
  return image;
}

/// Reads an image file, within bounds: a regular file only (a FIFO or a device is refused at once,
/// never waited on), at most limits.max_file_bytes, and only once its first bytes name a format
/// tnet reads (a large file that is not an image costs one small read).
inline std::vector<std::uint8_t> read_file(const std::string& path, const ImageLimits& limits = {}) {
  std::string reason;
  const int fd = open_for_reading(path, reason);
  if (fd < 0) throw ImageError(path + ": cannot open: " + reason);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info{};
  if (::fstat(fd, &info) != 0) throw ImageError(path + ": cannot read");
  if (std::int64_t(info.st_size) > limits.max_file_bytes)
    throw ImageError(path + ": " + std::to_string(info.st_size) + " bytes, more than the " + std::to_string(limits.max_file_bytes) +
                     " an image file may have");
  // The first bytes name the format; only an image is read further (and its size allocated).
  std::vector<std::uint8_t> bytes(std::min<std::size_t>(std::size_t(info.st_size), 16));
  std::size_t got = 0;
  auto read_up_to = [&](std::size_t end) {
    while (got < end) {
      const ssize_t n = ::read(fd, bytes.data() + got, end - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw ImageError(path + ": cannot read: " + std::strerror(errno));
      if (n == 0) break;  // shorter than it was: read what is there
      got += std::size_t(n);
    }
  };
  read_up_to(bytes.size());
  if (image_format({bytes.data(), got}).empty()) throw ImageError(path + ": not a JPEG, PNG, GIF or BMP image");
  bytes.resize(std::size_t(info.st_size));
  read_up_to(bytes.size());
  bytes.resize(got);
  return bytes;
}

/// Reads and decodes the image file at `path`.
inline Image read_image(const std::string& path, const ImageLimits& limits = {}) {
  const std::vector<std::uint8_t> bytes = read_file(path, limits);
  return decode_image(bytes, path, limits);
}

/// Resizes with stb_image_resize's default filters: Mitchell when shrinking, so a large photo is
/// averaged rather than sampled into noise; Catmull-Rom when enlarging. Aspect is not kept (as
/// the tutorial's cv2.resize).
inline Image resize_image(const Image& image, int width, int height) {
  if (width < 1 || height < 1) throw std::invalid_argument("tnet::resize_image: width and height must be >= 1");
  // stb_image_resize computes byte offsets in int.
  if (std::int64_t(width) * height * 3 > INT32_MAX || std::int64_t(image.width) * image.height * 3 > INT32_MAX)
    throw std::invalid_argument("tnet::resize_image: " + std::to_string(image.width) + "x" + std::to_string(image.height) + " to " +
                                std::to_string(width) + "x" + std::to_string(height) + " is beyond 2 GB of pixels");
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(std::size_t(width) * height * 3);
  if (!stbir_resize_uint8(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width, height, 0, 3))
    throw std::runtime_error("tnet::resize_image: stb_image_resize failed");
  return out;
}

/// Writes a PNG through AtomicFile (core/file.hpp); throws ImageError or FileError naming `path`.
inline void write_png(const std::string& path, const Image& image) {
  if (image.width < 1 || image.height < 1 || image.pixels.size() != std::size_t(image.width) * image.height * 3)
    throw ImageError(path + ": cannot write PNG: the image is empty or its pixels do not match its size");
  if (std::int64_t(image.width) * image.height * 3 > INT32_MAX / 2)  // stb_image_write works in int
    throw ImageError(path + ": cannot write PNG: " + std::to_string(image.width) + "x" + std::to_string(image.height) + " is too large");
  AtomicFile file(path, "PNG");
  struct Sink {
    AtomicFile* file;
    std::exception_ptr error;
  } sink{&file, nullptr};
  // stb hands over the encoded bytes in pieces; a write error is kept and rethrown after it.
  const int encoded = stbi_write_png_to_func(
      [](void* context, void* data, int size) {
        Sink& s = *static_cast<Sink*>(context);
        if (s.error) return;
        try {
          s.file->write(data, std::size_t(size));
        } catch (...) {
          s.error = std::current_exception();
        }
      },
      &sink, image.width, image.height, 3, image.pixels.data(), image.width * 3);
  if (sink.error) std::rethrow_exception(sink.error);
  if (!encoded) throw ImageError(path + ": cannot write PNG: encoding failed");
  file.commit();
}

}  // namespace tnet
