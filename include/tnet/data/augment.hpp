// tnet/data/augment.hpp: random affine augmentation, as Keras's ImageDataGenerator.
//
// Follows keras-preprocessing 1.0.5-1.1.2 (../shared/docs/KERAS_SEMANTICS.md). Per image, draws
//   theta ~ U(-rotation, rotation) degrees; tx ~ U(-h, h) * height (rows); ty ~ U(-w, w) * width
//   (columns); shear ~ U(-shear, shear) degrees; zx, zy ~ U(1 - zoom, 1 + zoom) independently;
//   horizontal / vertical flip with p = 0.5 each when enabled.
// and warps with M = R(theta) T(tx, ty) Shear(shear) Zoom(zx, zy) in (row, col) coordinates,
// centred on (height/2 + 0.5, width/2 + 0.5) as those versions did: output pixel p samples the
// input at M p (bilinear), so zoom > 1 shrinks the content. Then the flips.
// Fill modes for samples outside the image (SciPy's ndimage as Keras used it):
//   nearest  the edge pixel repeats (aaaa|abcd|dddd)
//   reflect  mirrored about the edge (dcba|abcd|dcba)
//   wrap     the image repeats (abcd|abcd|abcd)
//   constant a sample outside [0, size - 1] takes the value cval
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "../core/rng.hpp"
#include "input.hpp"

namespace tnet {

enum class FillMode { nearest, reflect, wrap, constant };

struct AugmentOptions {
  double rotation_range = 0;      // degrees
  double width_shift_range = 0;   // fraction of the width (pixels when >= 1)
  double height_shift_range = 0;  // fraction of the height (pixels when >= 1)
  double shear_range = 0;         // degrees
  double zoom_range = 0;          // zoom in [1 - zoom_range, 1 + zoom_range]
  bool horizontal_flip = false, vertical_flip = false;
  FillMode fill_mode = FillMode::nearest;
  float cval = 0;  // fill value for FillMode::constant, in pixel units (0-255)

  /// The tutorial's generator: rotation 25, shifts 0.1, shear 0.2, zoom 0.2, horizontal flips.
  static AugmentOptions keras_tutorial() {
    AugmentOptions o;
    o.rotation_range = 25, o.width_shift_range = 0.1, o.height_shift_range = 0.1, o.shear_range = 0.2, o.zoom_range = 0.2;
    o.horizontal_flip = true;
    return o;
  }
};

/// One image's transformation; the identity by default.
struct AffineTransform {
  double theta = 0;       // degrees
  double tx = 0, ty = 0;  // pixels: rows, columns
  double shear = 0;       // degrees
  double zx = 1, zy = 1;
  bool flip_horizontal = false, flip_vertical = false;
};

class Augmenter {
 public:
  explicit Augmenter(AugmentOptions options) : options_(options) {
    if (options.rotation_range < 0 || options.width_shift_range < 0 || options.height_shift_range < 0 || options.shear_range < 0 ||
        options.zoom_range < 0 || options.zoom_range >= 1)
      throw std::invalid_argument("tnet::Augmenter: ranges must be >= 0 and zoom_range < 1");
  }
  const AugmentOptions& options() const { return options_; }

  /// The transformation for one image of height x width, drawn from `rng` in Keras's order.
  AffineTransform draw(const Rng& rng, int height, int width) const {
    auto symmetric = [&](std::uint64_t i, double range) { return range * (2.0 * rng.uniform(i) - 1.0); };
    AffineTransform t;
    t.theta = symmetric(0, options_.rotation_range);
    t.tx = symmetric(1, options_.height_shift_range) * (options_.height_shift_range < 1 ? height : 1);
    t.ty = symmetric(2, options_.width_shift_range) * (options_.width_shift_range < 1 ? width : 1);
    t.shear = symmetric(3, options_.shear_range);
    t.zx = 1.0 + symmetric(4, options_.zoom_range);
    t.zy = 1.0 + symmetric(5, options_.zoom_range);
    t.flip_horizontal = options_.horizontal_flip && rng.uniform(6) < 0.5f;
    t.flip_vertical = options_.vertical_flip && rng.uniform(7) < 0.5f;
    return t;
  }

  /// Warps `src` (height x width x channels, 8-bit) into `dst`: network inputs (to_input,
  /// data/input.hpp) by default, or the interpolated pixel values times `scale`.
  void apply(const AffineTransform& t, const std::uint8_t* src, int height, int width, int channels, float* dst,
             float scale = input_scale) const {
    using M3 = std::array<std::array<double, 3>, 3>;
    auto mul = [](const M3& a, const M3& b) {
      M3 c{};
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          for (int k = 0; k < 3; ++k) c[i][j] += a[i][k] * b[k][j];
      return c;
    };
    const double pi = 3.14159265358979323846;
    const double theta = t.theta * pi / 180, shear = t.shear * pi / 180;
    const M3 rotation{{{std::cos(theta), -std::sin(theta), 0}, {std::sin(theta), std::cos(theta), 0}, {0, 0, 1}}};
    const M3 shift{{{1, 0, t.tx}, {0, 1, t.ty}, {0, 0, 1}}};
    const M3 shearing{{{1, -std::sin(shear), 0}, {0, std::cos(shear), 0}, {0, 0, 1}}};
    const M3 zoom{{{t.zx, 0, 0}, {0, t.zy, 0}, {0, 0, 1}}};
    const double cy = height / 2.0 + 0.5, cx = width / 2.0 + 0.5;  // Keras's centre, off by one
    const M3 to_centre{{{1, 0, cy}, {0, 1, cx}, {0, 0, 1}}}, from_centre{{{1, 0, -cy}, {0, 1, -cx}, {0, 0, 1}}};
    const M3 m = mul(mul(to_centre, mul(mul(mul(rotation, shift), shearing), zoom)), from_centre);

    const FillMode mode = options_.fill_mode;
    const float fill = options_.cval * scale;
    for (int r = 0; r < height; ++r)
      for (int c = 0; c < width; ++c) {
        const double y = m[0][0] * r + m[0][1] * c + m[0][2];
        const double x = m[1][0] * r + m[1][1] * c + m[1][2];
        const int out_r = t.flip_vertical ? height - 1 - r : r;
        const int out_c = t.flip_horizontal ? width - 1 - c : c;
        float* out = dst + (std::ptrdiff_t(out_r) * width + out_c) * channels;
        constexpr double slack = 1e-9;  // an exact edge coordinate computed with rounding error is inside
        if (mode == FillMode::constant && (y < -slack || y > height - 1 + slack || x < -slack || x > width - 1 + slack)) {
          for (int ch = 0; ch < channels; ++ch) out[ch] = fill;
          continue;
        }
        const double y0 = std::floor(y), x0 = std::floor(x);
        const float fy = float(y - y0), fx = float(x - x0);
        const int r0 = index(std::int64_t(y0), height, mode), r1 = index(std::int64_t(y0) + 1, height, mode);
        const int c0 = index(std::int64_t(x0), width, mode), c1 = index(std::int64_t(x0) + 1, width, mode);
        const std::uint8_t* p00 = src + (std::ptrdiff_t(r0) * width + c0) * channels;
        const std::uint8_t* p01 = src + (std::ptrdiff_t(r0) * width + c1) * channels;
        const std::uint8_t* p10 = src + (std::ptrdiff_t(r1) * width + c0) * channels;
        const std::uint8_t* p11 = src + (std::ptrdiff_t(r1) * width + c1) * channels;
        for (int ch = 0; ch < channels; ++ch) {
          const float top = float(p00[ch]) + fx * (float(p01[ch]) - float(p00[ch]));
          const float bottom = float(p10[ch]) + fx * (float(p11[ch]) - float(p10[ch]));
          out[ch] = (top + fy * (bottom - top)) * scale;
        }
      }
  }

 private:
  // Where sample index i of a row or column of n pixels reads from under the fill mode.
  static int index(std::int64_t i, int n, FillMode mode) {
    if (i >= 0 && i < n) return int(i);
    switch (mode) {
      case FillMode::reflect: {
        const std::int64_t period = 2 * std::int64_t(n);
        std::int64_t m = ((i % period) + period) % period;
        return int(m < n ? m : period - 1 - m);
      }
      case FillMode::wrap:
        return int(((i % n) + n) % n);
      case FillMode::nearest:
      case FillMode::constant:  // only reached for a neighbour of an in-range coordinate
      default:
        return i < 0 ? 0 : n - 1;
    }
  }

  AugmentOptions options_;
};

}  // namespace tnet
