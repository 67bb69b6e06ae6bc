// tnet/viz/canvas.hpp: just enough drawing for training curves and labelled photos.
//
// A Canvas is an RGB Image with lines, rectangles and text. Text uses stb_easy_font (a small
// vector font of axis-aligned quads, part of Debian's libstb-dev, header only), scaled by an
// integer factor: 1 gives characters about 6 x 8 pixels.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../data/image.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace tnet {

struct Color {
  std::uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Color background = {255, 255, 255}) {
    image_.width = width;
    image_.height = height;
    image_.pixels.resize(std::size_t(width) * height * 3);
    fill(background);
  }
  explicit Canvas(Image image) : image_(std::move(image)) {}

  int width() const { return image_.width; }
  int height() const { return image_.height; }
  const Image& image() const { return image_; }

  void fill(Color c) { rect(0, 0, width(), height(), c); }

  /// Blends `c` over pixel (x, y) with opacity `alpha` in [0, 1]; outside the canvas, nothing.
  void blend(int x, int y, Color c, float alpha = 1.0f) {
    if (x < 0 || y < 0 || x >= width() || y >= height() || alpha <= 0) return;
    std::uint8_t* p = image_.at(y, x);
    const float a = std::min(alpha, 1.0f);
    p[0] = std::uint8_t(std::lround(p[0] + a * (c.r - p[0])));
    p[1] = std::uint8_t(std::lround(p[1] + a * (c.g - p[1])));
    p[2] = std::uint8_t(std::lround(p[2] + a * (c.b - p[2])));
  }

  /// A filled rectangle, clipped to the canvas.
  void rect(int x, int y, int w, int h, Color c, float alpha = 1.0f) {
    for (int yy = std::max(y, 0); yy < std::min(y + h, height()); ++yy)
      for (int xx = std::max(x, 0); xx < std::min(x + w, width()); ++xx) blend(xx, yy, c, alpha);
  }

  void rect_outline(int x, int y, int w, int h, Color c) {
    rect(x, y, w, 1, c);
    rect(x, y + h - 1, w, 1, c);
    rect(x, y, 1, h, c);
    rect(x + w - 1, y, 1, h, c);
  }

  /// An anti-aliased line `thickness` pixels wide: each pixel's coverage from its distance to
  /// the segment.
  void line(double x0, double y0, double x1, double y1, Color c, double thickness = 1.0) {
    const double half = thickness / 2.0;
    const int left = int(std::floor(std::min(x0, x1) - half - 1)), right = int(std::ceil(std::max(x0, x1) + half + 1));
    const int top = int(std::floor(std::min(y0, y1) - half - 1)), bottom = int(std::ceil(std::max(y0, y1) + half + 1));
    const double dx = x1 - x0, dy = y1 - y0, length2 = dx * dx + dy * dy;
    for (int y = std::max(top, 0); y <= std::min(bottom, height() - 1); ++y)
      for (int x = std::max(left, 0); x <= std::min(right, width() - 1); ++x) {
        const double t = length2 > 0 ? std::clamp(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0) : 0.0;
        const double distance = std::hypot(x - (x0 + t * dx), y - (y0 + t * dy));
        blend(x, y, c, float(std::clamp(half + 0.5 - distance, 0.0, 1.0)));
      }
  }

  /// Text with its top-left corner at (x, y), `scale` pixels per font unit.
  void text(int x, int y, const std::string& s, Color c, int scale = 1) {
    for (const Quad& q : quads(s)) rect(x + q.x0 * scale, y + q.y0 * scale, (q.x1 - q.x0) * scale, (q.y1 - q.y0) * scale, c);
  }

  /// Text turned 90 degrees anticlockwise (reading bottom to top), its top-left corner at (x, y).
  void text_vertical(int x, int y, const std::string& s, Color c, int scale = 1) {
    const int w = text_width(s, scale);
    for (const Quad& q : quads(s))
      for (int u = q.x0 * scale; u < q.x1 * scale; ++u)
        for (int v = q.y0 * scale; v < q.y1 * scale; ++v) blend(x + v, y + w - 1 - u, c);
  }

  static int text_width(const std::string& s, int scale = 1) {
    std::string copy = s;
    return stb_easy_font_width(copy.data()) * scale;
  }
  static int text_height(int scale = 1) { return 8 * scale; }

 private:
  struct Quad {
    int x0, y0, x1, y1;
  };
  static std::vector<Quad> quads(const std::string& s) {
    struct Vertex {
      float x, y, z;
      unsigned char color[4];
    };
    std::vector<Vertex> vertices(s.size() * 4 * 70 + 64);  // stb's guide: about 270 bytes per character
    std::string copy = s;
    const int count = stb_easy_font_print(0, 0, copy.data(), nullptr, vertices.data(), int(vertices.size() * sizeof(Vertex)));
    std::vector<Quad> out;
    for (int q = 0; q < count; ++q) {
      const Vertex* v = &vertices[std::size_t(q) * 4];
      out.push_back({int(v[0].x), int(v[0].y), int(v[2].x), int(v[2].y)});
    }
    return out;
  }

  Image image_;
};

}  // namespace tnet
