// The built-in dataset: procedurally drawn garments, so that fashion_train runs anywhere.
//
// Six label pairs as in the tutorial (black jeans, blue dress, blue jeans, blue shirt, red dress,
// red shirt). Each picture is a garment silhouette (a flared dress, a T-shirt, or jeans with two
// legs) in a jittered shade of its colour, placed, scaled and tilted at random over a random
// light gradient with noise. Colour and garment are both needed to label a picture; the shape
// is only visible as a shape.
#pragma once

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include <tnet/tnet.hpp>

namespace fashion {

struct Garment {
  std::string colour, kind;
};
inline const std::array<Garment, 6> synthetic_classes = {
    {{"black", "jeans"}, {"blue", "dress"}, {"blue", "jeans"}, {"blue", "shirt"}, {"red", "dress"}, {"red", "shirt"}}};

// The drawing: garments as polygons, filled with the class's colour.
namespace drawing {
struct Point {
  double x, y;
};
// Even-odd rule.
inline bool inside(const std::vector<Point>& polygon, double x, double y) {
  bool in = false;
  for (std::size_t i = 0, j = polygon.size() - 1; i < polygon.size(); j = i++) {
    const Point a = polygon[i], b = polygon[j];
    if ((a.y > y) != (b.y > y) && x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x) in = !in;
  }
  return in;
}
// Silhouettes in a unit box: x, y in [-1, 1], y down.
inline std::vector<std::vector<Point>> silhouette(const std::string& kind) {
  if (kind == "dress")
    return {{{-0.25, -0.95},
             {-0.12, -0.95},
             {0.0, -0.8},
             {0.12, -0.95},
             {0.25, -0.95},
             {0.3, -0.3},
             {0.75, 0.95},
             {-0.75, 0.95},
             {-0.3, -0.3}}};
  if (kind == "shirt")
    return {{{-0.4, -0.85},
             {-0.12, -0.85},
             {0.0, -0.7},
             {0.12, -0.85},
             {0.4, -0.85},
             {0.95, -0.35},
             {0.7, -0.1},
             {0.45, -0.3},
             {0.45, 0.9},
             {-0.45, 0.9},
             {-0.45, -0.3},
             {-0.7, -0.1},
             {-0.95, -0.35}}};
  return {{{-0.5, -0.95}, {0.5, -0.95}, {0.55, 0.95}, {0.12, 0.95}, {0.0, -0.4}, {-0.12, 0.95}, {-0.55, 0.95}}};  // jeans
}
inline std::array<double, 3> shade(const std::string& colour) {
  if (colour == "red") return {185, 30, 40};
  if (colour == "blue") return {35, 70, 175};
  return {28, 28, 32};  // black
}
}  // namespace drawing

/// Draws picture `index` of class `cls` at size x size, RGB, into `pixels`.
inline void draw_garment(int cls, std::uint64_t seed, std::uint64_t index, int size, std::uint8_t* pixels) {
  using drawing::Point;
  const tnet::Rng rng = tnet::Rng(seed).derive(index);
  const Garment& g = synthetic_classes[std::size_t(cls)];
  auto u = [&](std::uint64_t i) { return double(rng.uniform(i)); };
  // Background: a light gradient between two random tints.
  std::array<double, 3> top, bottom;
  for (int c = 0; c < 3; ++c) top[c] = 170 + 80 * u(1 + c), bottom[c] = 150 + 100 * u(4 + c);
  // Garment colour: the class's shade, jittered in brightness and hue.
  const std::array<double, 3> base = drawing::shade(g.colour);
  const double bright = 0.75 + 0.5 * u(7);
  std::array<double, 3> colour;
  for (int c = 0; c < 3; ++c) colour[c] = std::min(255.0, base[c] * bright + 25 * (u(8 + c) - 0.5));
  // Placement: scale, centre, tilt.
  const double scale = size * (0.28 + 0.14 * u(11)), cx = size * (0.4 + 0.2 * u(12)), cy = size * (0.42 + 0.16 * u(13));
  const double tilt = (u(14) - 0.5) * 0.5, stretch = 0.8 + 0.4 * u(15);
  std::vector<std::vector<Point>> shapes = drawing::silhouette(g.kind);
  for (auto& shape : shapes)
    for (Point& p : shape) {
      const double x = p.x * scale * stretch, y = p.y * scale;
      p = {cx + x * std::cos(tilt) - y * std::sin(tilt), cy + x * std::sin(tilt) + y * std::cos(tilt)};
    }
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double t = double(y) / size;
      bool on = false;
      for (const auto& shape : shapes) on = on || drawing::inside(shape, x + 0.5, y + 0.5);
      for (int c = 0; c < 3; ++c) {
        const double noise = 24 * (u(16 + std::uint64_t(y * size + x) * 3 + c) - 0.5);
        const double v = (on ? colour[c] : top[c] * (1 - t) + bottom[c] * t) + noise;
        pixels[(std::size_t(y) * size + x) * 3 + c] = std::uint8_t(std::clamp(v, 0.0, 255.0));
      }
    }
}

/// `per_class` pictures of each of the six classes, as if loaded from folders named colour_kind.
inline tnet::LabeledImages synthetic_dataset(int per_class, int size, std::uint64_t seed = 1) {
  tnet::LabeledImages data;
  data.size = size;
  const int count = per_class * 6;
  data.pixels.resize(std::size_t(count) * data.image_bytes());
#pragma omp parallel for schedule(dynamic, 8)
  for (int i = 0; i < count; ++i)
    draw_garment(i % 6, seed, std::uint64_t(i), size, data.pixels.data() + std::size_t(i) * data.image_bytes());
  for (int i = 0; i < count; ++i) {
    const Garment& g = synthetic_classes[std::size_t(i % 6)];
    data.labels.push_back({g.colour, g.kind});
    data.paths.push_back("synthetic/" + g.colour + "_" + g.kind + "/" + std::to_string(i));
  }
  return data;
}

}  // namespace fashion
