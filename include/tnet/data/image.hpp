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
/// thread by max_decode_bytes, counted from the header before anything is decoded as the peak the
/// decoder reaches (decode_bytes): 3 bytes a pixel for an RGB or grayscale JPEG (libjpeg-turbo
/// writes RGB straight into the image), 7 for a CMYK one, plus 2 a sample for the coefficients of
/// a progressive or multi-scan JPEG; 6 for an 8-bit RGB PNG, up to 20 for a 16-bit RGBA interlaced
/// one (stb's inflated rows and its 16-bit image at once); 9 for a GIF, 7 for a BMP. The defaults
/// admit a 64-megapixel baseline JPEG and an 8-bit RGB PNG of as many pixels.
struct ImageLimits {
  int max_side = 20000;
  std::int64_t max_pixels = 64'000'000;         // 192 MB of RGB
  std::int64_t max_file_bytes = 256'000'000;    // no photo needs more; a larger file is not read
  std::int64_t max_decode_bytes = 512'000'000;  // per decoding thread
};

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

/// What an image file's header states, read without decoding anything (image_header).
struct ImageHeader {
  std::string format;         // as image_format; "" when none
  int width = 0, height = 0;  // 0 when the header is incomplete or does not parse
  int channels = 0;           // samples a pixel as stored: JPEG components, PNG by colour type (a palette 1)
  int bits = 8;               // bits a sample (a PNG's 1 to 16)
  bool palette = false;       // a PNG of colour type 3
  bool transparency = false;  // a PNG with a tRNS chunk before its pixels
  bool interlaced = false;    // an Adam7 PNG
  bool multi_scan = false;    // a progressive JPEG, or one whose first scan holds fewer components than the frame
  bool adobe = false;         // a JPEG with an Adobe APP14 marker: its CMYK is stored inverted
  double jpeg_samples = 0;    // a JPEG's samples a pixel, subsampling and block padding counted
  std::int64_t file_bytes = 0;
  std::string problem;  // why the header does not parse ("" when it does, or is only incomplete)
};

/// The header of `bytes` (ImageHeader). A header cut short leaves width and height 0; one whose
/// fields are impossible for its format (a text file starting "BM") sets `problem`.
inline ImageHeader image_header(std::span<const std::uint8_t> bytes) {
  ImageHeader h;
  h.format = image_format(bytes);
  h.file_bytes = std::int64_t(bytes.size());
  auto be16 = [&](std::size_t at) { return int(bytes[at]) << 8 | int(bytes[at + 1]); };
  auto be32 = [&](std::size_t at) { return std::int64_t(be16(at)) << 16 | be16(at + 2); };
  auto le16 = [&](std::size_t at) { return int(bytes[at]) | int(bytes[at + 1]) << 8; };
  auto le32 = [&](std::size_t at) { return std::int64_t(le16(at)) | std::int64_t(le16(at + 2)) << 16; };
  auto side = [](std::int64_t v) { return int(std::min<std::int64_t>(v, INT32_MAX)); };
  if (h.format == "png" && bytes.size() >= 29) {
    if (be32(8) != 13 || std::memcmp(&bytes[12], "IHDR", 4) != 0) {
      h.problem = "its first chunk is not a 13-byte IHDR";
      return h;
    }
    const int depth = bytes[24], colour = bytes[25];
    h.channels = colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 0;
    const bool depth_fits = colour == 0   ? depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16
                            : colour == 3 ? depth == 1 || depth == 2 || depth == 4 || depth == 8
                                          : depth == 8 || depth == 16;
    if (h.channels == 0 || !depth_fits || bytes[26] != 0 || bytes[27] != 0 || bytes[28] > 1) {
      h.problem = "colour type " + std::to_string(colour) + ", bit depth " + std::to_string(depth) + " is not a PNG's";
      return h;
    }
    h.bits = depth;
    h.palette = colour == 3;
    h.interlaced = bytes[28] == 1;
    // The chunks before the pixels: a tRNS adds an alpha channel to what stb decodes.
    for (std::size_t at = 33; at + 8 <= bytes.size() && std::memcmp(&bytes[at + 4], "IDAT", 4) != 0;) {
      if (std::memcmp(&bytes[at + 4], "tRNS", 4) == 0) h.transparency = true;
      const std::uint64_t length = std::uint64_t(be32(at));
      if (length > bytes.size()) break;
      at += 12 + std::size_t(length);
    }
    h.width = side(be32(16)), h.height = side(be32(20));
  } else if (h.format == "gif" && bytes.size() >= 10) {
    if (bytes[4] != '7' && bytes[4] != '9') {
      h.problem = "it is neither GIF87a nor GIF89a";
      return h;
    }
    h.channels = 1;
    h.width = le16(6), h.height = le16(8);
  } else if (h.format == "bmp" && bytes.size() >= 26) {
    // The header sizes stb reads, one plane, a bit count a BMP can have.
    const std::int64_t size = le32(14);
    if (size != 12 && size != 40 && size != 56 && size != 108 && size != 124) {
      h.problem = "its info header size " + std::to_string(size) + " is none of 12, 40, 56, 108, 124";
      return h;
    }
    if (size == 12) {  // OS/2 1.x: 16-bit sizes
      h.width = le16(18), h.height = le16(20);
    } else if (bytes.size() >= 30) {
      const std::int64_t width = std::int32_t(le32(18)), height = std::int32_t(le32(22));
      if (width <= 0 || height == INT32_MIN) {
        h.problem = "its width is " + std::to_string(width);
        return h;
      }
      h.width = side(width), h.height = side(std::abs(height));  // a negative height: rows stored top-down
    } else {
      return h;
    }
    const std::size_t at = size == 12 ? 22 : 26;
    if (bytes.size() < at + 4) return h.width = h.height = 0, h;
    const int planes = le16(at), bits = le16(at + 2);
    if (planes != 1 || (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)) {
      h.problem = "planes " + std::to_string(planes) + ", bits a pixel " + std::to_string(bits);
      h.width = h.height = 0;
      return h;
    }
    h.channels = bits == 32 ? 4 : 3;
  } else if (h.format == "jpeg") {
    // Walk the markers to the frame header (SOF0-SOF15 but DHT, JPG and DAC), then to the first
    // scan; an Adobe APP14 marker on the way says how CMYK is stored.
    std::size_t at = 2;
    int components = 0, hmax = 1, vmax = 1, sampling[4][2] = {};
    while (at + 4 < bytes.size()) {
      if (bytes[at] != 0xFF) {
        h.problem = "byte " + std::to_string(at) + " is not a marker";
        return h.width = h.height = 0, h;
      }
      const int marker = bytes[at + 1];
      if (marker == 0xFF) {
        ++at;
        continue;
      }
      const std::size_t length = std::size_t(be16(at + 2));
      if (marker == 0xEE && length >= 12 && at + 16 <= bytes.size() && std::memcmp(&bytes[at + 4], "Adobe", 5) == 0) h.adobe = true;
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC && h.width == 0) {
        if (at + 10 > bytes.size()) break;
        components = bytes[at + 9];
        if (components < 1 || components > 4 || at + 10 + 3 * std::size_t(components) > bytes.size()) {
          h.problem = "its frame header states " + std::to_string(components) + " components";
          return h;
        }
        for (int c = 0; c < components; ++c) {
          const int factors = bytes[at + 11 + 3 * std::size_t(c)];
          sampling[c][0] = std::clamp(factors >> 4, 1, 4), sampling[c][1] = std::clamp(factors & 15, 1, 4);
          hmax = std::max(hmax, sampling[c][0]), vmax = std::max(vmax, sampling[c][1]);
        }
        h.bits = bytes[at + 4];
        h.channels = components;
        h.multi_scan = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
        h.width = be16(at + 7), h.height = be16(at + 5);
      }
      if (marker == 0xDA) {  // the first scan
        if (h.width != 0 && at + 4 < bytes.size() && bytes[at + 4] < components) h.multi_scan = true;
        break;
      }
      at += 2 + length;
    }
    if (h.width > 0 && h.height > 0) {
      // Every component's samples, padded to whole MCUs, as libjpeg's coefficient buffer holds them.
      const double w = double((h.width + 8 * hmax - 1) / (8 * hmax) * 8 * hmax),
                   v = double((h.height + 8 * vmax - 1) / (8 * vmax) * 8 * vmax);
      for (int c = 0; c < components; ++c) h.jpeg_samples += w * v * sampling[c][0] * sampling[c][1] / (hmax * vmax);
      h.jpeg_samples /= double(h.width) * h.height;
    }
  }
  return h;
}

/// Width and height as the file's header states them, read without decoding anything; {0, 0}
/// when the header is incomplete or does not parse.
inline std::pair<int, int> image_dimensions(std::span<const std::uint8_t> bytes) {
  const ImageHeader h = image_header(bytes);
  return {h.width, h.height};
}

/// About the most bytes decoding the image of header `h` holds at once (see ImageLimits): the
/// file, the decoder's buffers and the RGB image together.
inline std::int64_t decode_bytes(const ImageHeader& h) {
  const double pixels = double(h.width) * h.height;
  double per_pixel = 0;
  if (h.format == "jpeg") {
    per_pixel = (h.channels == 4 ? 4 + 3 : 3) + (h.multi_scan ? 2 * h.jpeg_samples : 0);
  } else if (h.format == "png") {
    // stb inflates the compressed pixels (copied out of the chunks) into rows, builds its image
    // from them (16-bit samples for a 16-bit file; with one pass more for Adam7), expands a
    // palette, converts to the channels asked for, then to 8 bits; then the RGB image.
    const double s = h.bits == 16 ? 2 : 1, rows = double(h.channels) * std::max(h.bits, 8) / 8;
    const double stored = (h.palette ? 1 : h.channels + (h.transparency ? 1 : 0)) * s;
    const double wanted = h.palette || h.transparency || h.channels == 2 || h.channels == 4 ? 4 : 3;
    per_pixel = std::max({rows + double(h.file_bytes) / std::max(pixels, 1.0), rows + stored * (h.interlaced ? 1.5 : 1.0),
                          h.palette ? rows + 1 + wanted : 0.0, stored + wanted * s, wanted * s + wanted, wanted + 3});
  } else if (h.format == "gif") {
    per_pixel = 9;  // stb's RGBA image, its background and its history
  } else {
    per_pixel = 7;  // stb's RGB(A) image and the RGB image
  }
  return std::int64_t(std::min(pixels * per_pixel + double(h.file_bytes), 9e18));
}

namespace detail {
// A JPEG through TurboJPEG, as 8-bit RGB (grayscale expanded); `header` is what the header walk
// found, checked against the limits already. A CMYK or YCCK JPEG (four components) is decoded to
// CMYK and converted: R = (255 - C)(255 - K) / 255, and so on, rounded; with an Adobe APP14 marker
// the file stores each value inverted (255 - C; as Photoshop writes it, and as browsers and Pillow
// read it), so R = C K / 255.
inline Image decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name, const ImageHeader& header) {
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
  if (w != header.width || h != header.height)
    throw ImageError(name + ": jpeg header states " + std::to_string(header.width) + "x" + std::to_string(header.height) +
                     " pixels, its decoder reads " + std::to_string(w) + "x" + std::to_string(h));
  const bool cmyk = colourspace == TJCS_CMYK || colourspace == TJCS_YCCK;
  if (cmyk != (header.channels == 4))
    throw ImageError(name + ": jpeg header states " + std::to_string(header.channels) + " components, its decoder reads " +
                     (cmyk ? "CMYK" : "fewer"));
  Image image;
  image.width = w;
  image.height = h;
  image.pixels.resize(std::size_t(w) * h * 3);
  std::vector<std::uint8_t> four(cmyk ? std::size_t(w) * h * 4 : 0);
  if (tjDecompress2(handle.h, bytes.data(), static_cast<unsigned long>(bytes.size()), cmyk ? four.data() : image.pixels.data(), w, 0, h,
                    cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
    throw ImageError(name + ": cannot decode jpeg (" + failure() + ")");
  if (cmyk) {
    const unsigned flip = header.adobe ? 0 : 255;  // an Adobe file's values are stored inverted
    for (std::size_t i = 0, n = std::size_t(w) * h; i < n; ++i) {
      const unsigned k = four[i * 4 + 3] ^ flip;
      for (int c = 0; c < 3; ++c) image.pixels[i * 3 + c] = std::uint8_t(((four[i * 4 + c] ^ flip) * k + 127) / 255);
    }
  }
  return image;
}

// "16-bit RGBA png", "CMYK jpeg", "bmp": the kind of image `h` describes, for messages.
inline std::string image_kind(const ImageHeader& h) {
  if (h.format == "png") {
    static const char* const colours[] = {"", "grayscale", "grayscale-alpha", "RGB", "RGBA"};
    return std::to_string(h.bits) + "-bit " + (h.palette ? "palette" : colours[std::clamp(h.channels, 0, 4)]) + " png";
  }
  if (h.format == "jpeg") return std::string(h.channels == 4 ? "CMYK " : "") + (h.multi_scan ? "progressive " : "") + "jpeg";
  return h.format;
}

// "PNG", "JPEG": a format's name in messages.
inline std::string upper(std::string format) {
  std::transform(format.begin(), format.end(), format.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  return format;
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
  const ImageHeader header = image_header(bytes);
  const std::string& format = header.format;
  const int width = header.width, height = header.height;
  if (format.empty()) throw ImageError(name + ": not a JPEG, PNG, GIF or BMP image");
  if (bytes.size() > std::size_t(INT32_MAX)) throw ImageError(name + ": file too large");
  if (!header.problem.empty())
    throw ImageError(name + ": not a " + detail::upper(format) + " image: its header does not parse (" + header.problem + ")");
  if (width == 0 || height == 0) throw ImageError(name + ": " + format + " header is incomplete or states no size");
  if (width < 1 || height < 1 || width > limits.max_side || height > limits.max_side || std::int64_t(width) * height > limits.max_pixels)
    throw ImageError(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " pixels is beyond the limit (" +
                     std::to_string(limits.max_side) + " per side, " + std::to_string(limits.max_pixels) + " in all)");
  if (const std::int64_t needed = decode_bytes(header); needed > limits.max_decode_bytes)
    throw ImageError(name + ": a " + std::to_string(width) + "x" + std::to_string(height) + " " + detail::image_kind(header) + " of " +
                     std::to_string(bytes.size()) + " bytes needs about " + std::to_string(needed / 1'000'000) +
                     " MB to decode, more than the " + std::to_string(limits.max_decode_bytes / 1'000'000) +
                     " MB a decoding thread may use");
  if (format == "jpeg") return detail::decode_jpeg(bytes, name, header);
  if (format == "png") detail::check_png_stream(bytes, name, width, height);
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &channels))
    throw ImageError(name + ": unreadable " + format + " header (" + stbi_failure_reason() + ")");
  if (w != width || std::abs(h) != height)  // stb states a top-down BMP's height negative
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
/// the tutorial's cv2.resize). A resize to the image's own size is a copy, as in OpenCV, Pillow
/// and every other tool: a photo already at a network's input size reaches it unfiltered.
inline Image resize_image(const Image& image, int width, int height) {
  if (width < 1 || height < 1) throw std::invalid_argument("tnet::resize_image: width and height must be >= 1");
  if (width == image.width && height == image.height) return image;
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
