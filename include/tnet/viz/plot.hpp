// tnet/viz/plot.hpp: a line chart as a PNG, for training curves (the tutorial's plot.png).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "canvas.hpp"

namespace tnet {

struct Series {
  std::string name;
  std::vector<double> values;  // y at x = first_x, first_x + 1, ...
  Color color;
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 800, height = 560;
  int first_x = 1;
};

namespace detail {
// Tick step of 1, 2 or 5 times a power of ten giving about `target` intervals over `span`.
inline double nice_step(double span, int target) {
  const double raw = span / target, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) return m * power;
  return 10 * power;
}
inline std::string format_tick(double v, double step) {
  char buffer[32];
  const int decimals = step >= 1 ? 0 : int(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}
}  // namespace detail

/// Draws the series against x = first_x, first_x + 1, ... with axes, ticks, grid, title, axis
/// labels and a legend.
inline Image line_plot(const std::vector<Series>& series, const PlotOptions& o) {
  Canvas c(o.width, o.height);
  const Color ink{30, 30, 30}, grid{225, 225, 225};
  const int scale = 2;
  const int left = 90, right = 30, top = 60, bottom = 80;
  const int pw = o.width - left - right, ph = o.height - top - bottom;

  std::size_t points = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Series& s : series) {
    points = std::max(points, s.values.size());
    for (double v : s.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double y_step = detail::nice_step(hi - lo, 6);
  lo = std::floor(lo / y_step) * y_step;
  hi = std::ceil(hi / y_step) * y_step;
  const double x_lo = o.first_x, x_hi = o.first_x + std::max<double>(1.0, double(points) - 1.0);
  const double x_step = std::max(1.0, detail::nice_step(x_hi - x_lo, 8));
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double y) { return top + ph - (y - lo) / (hi - lo) * ph; };

  for (double y = lo; y <= hi + y_step / 2; y += y_step) {
    c.rect(left, int(std::lround(py(y))), pw, 1, grid);
    const std::string label = detail::format_tick(y, y_step);
    c.text(left - 8 - Canvas::text_width(label, scale), int(py(y)) - 7, label, ink, scale);
  }
  for (double x = std::ceil(x_lo / x_step) * x_step; x <= x_hi + 1e-9; x += x_step) {
    if (x < x_lo) continue;
    c.rect(int(std::lround(px(x))), top, 1, ph, grid);
    const std::string label = detail::format_tick(x, 1);
    c.text(int(px(x)) - Canvas::text_width(label, scale) / 2, top + ph + 8, label, ink, scale);
  }
  c.rect_outline(left, top, pw + 1, ph + 1, ink);

  for (const Series& s : series) {
    for (std::size_t i = 1; i < s.values.size(); ++i)
      c.line(px(x_lo + double(i - 1)), py(s.values[i - 1]), px(x_lo + double(i)), py(s.values[i]), s.color, 2.5);
    if (s.values.size() == 1) c.rect(int(px(x_lo)) - 3, int(py(s.values[0])) - 3, 7, 7, s.color);
  }

  c.text((o.width - Canvas::text_width(o.title, 3)) / 2, 18, o.title, ink, 3);
  c.text(left + (pw - Canvas::text_width(o.x_label, scale)) / 2, o.height - 36, o.x_label, ink, scale);
  c.text_vertical(18, top + (ph - Canvas::text_width(o.y_label, scale)) / 2, o.y_label, ink, scale);

  // Legend: in whichever corner or side of the plot the curves cross least.
  int widest = 0;
  for (const Series& s : series) widest = std::max(widest, Canvas::text_width(s.name, scale));
  const int row = 24, box_w = widest + 56, box_h = int(series.size()) * row + 12;
  int bx = left + pw - box_w - 12, by = top + 12;
  std::size_t fewest = std::numeric_limits<std::size_t>::max();
  for (const int cy : {top + 12, top + (ph - box_h) / 2, top + ph - box_h - 12})
    for (const int cx : {left + pw - box_w - 12, left + 12}) {
      std::size_t crossings = 0;
      for (const Series& s : series)
        for (std::size_t i = 1; i < s.values.size(); ++i)
          for (int k = 0; k < 8; ++k) {  // points along each segment
            const double t = k / 8.0, x = px(x_lo + double(i - 1) + t), y = py(s.values[i - 1] + t * (s.values[i] - s.values[i - 1]));
            crossings += x >= cx && x <= cx + box_w && y >= cy && y <= cy + box_h;
          }
      if (crossings < fewest) fewest = crossings, bx = cx, by = cy;
    }
  c.rect(bx, by, box_w, box_h, {255, 255, 255}, 0.9f);
  c.rect_outline(bx, by, box_w, box_h, {180, 180, 180});
  for (std::size_t i = 0; i < series.size(); ++i) {
    const int y = by + 10 + int(i) * row;
    c.line(bx + 10, y + 7, bx + 38, y + 7, series[i].color, 3);
    c.text(bx + 46, y, series[i].name, ink, scale);
  }
  return c.image();
}

}  // namespace tnet
