// tnet/model/rules/pointwise_then_depthwise.hpp: inference computes a 1x1 convolution (with the
// epilogue it folds) a band of rows at a time, and the depthwise convolution after it (with its
// own) from that band while it is in the cache, so that the 1x1 convolution's output is never
// written whole nor read back (MobileNetV2's expansion, 28 MB at its first block at batch 32).
//
//   Conv2D 1x1 [, ReLU/ReLU6, BatchNorm as fold_epilogue folds them], DepthwiseConv2D [, ReLU/ReLU6,
//   BatchNorm]: the threads take whole images, or bands of them where the batch's images would
//   not go evenly to the threads, and go down them a few output rows at a time, computing the input
//   rows those need that they do not hold yet (Conv2D::forward_pieces), then those output rows
//   (DepthwiseConv2D::forward_row). A band's first input rows, which the band above also reads,
//   are computed by both.
//
// Capabilities read: pixel_product, rows_anywhere (and fold_epilogue's). Where the layers cannot
// at run time (Eigen's kernels, a build without tnet's x86 kernels chosen), or the bands would be
// under 8 rows (small images at batch 1), the two folded steps run one after the other. The same
// bits either way (tests/test_rules.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <string_view>

#include "../../core/threads.hpp"
#include "../../layers/layer.hpp"
#include "fold_epilogue.hpp"

namespace tnet::rules {

namespace detail {
// The rows of the 1x1 convolution's output a thread holds: grows to the largest band, then stays.
inline Buffer& band_rows() {
  static thread_local Buffer rows;
  return rows;
}
}  // namespace detail

struct PointwiseThenDepthwise {
  static constexpr std::string_view name = "pointwise_then_depthwise";
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    if constexpr (!pixel_product<typename Layout::template layer_type<I>>) {
      return 0;
    } else {
      constexpr std::size_t depthwise = I + 1 + detail::epilogue_followers<Layout, I + 1>();
      if constexpr (depthwise >= Layout::depth) return 0;
      else if constexpr (!rows_anywhere<typename Layout::template layer_type<depthwise>>) return 0;
      else return depthwise - I + 1 + detail::epilogue_followers<Layout, depthwise + 1>();
    }
  }

  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    constexpr std::size_t J = I + 1 + detail::epilogue_followers<typename Chain::layout_type, I + 1>();  // the depthwise layer
    using Depthwise = typename Chain::template layer_type<J>;
    // Both epilogues' affines in the scratch at once: made large enough before either is written.
    chain.scratch(2 * std::size_t(Depthwise::C + Depthwise::F));
    const Epilogue first = detail::folded_epilogue<I, J - I - 1>(chain);
    const Epilogue second = detail::folded_epilogue<J, I + N - 1 - J>(chain, 2 * std::size_t(Depthwise::C));
    auto& pointwise = chain.template layer<I>();
    const auto& depthwise = chain.template layer<J>();
    const float* x = chain.template input_of<I>();
    float* y = chain.template output_buffer<I + N - 1>();
    // Bands of an image enough for every thread to have as many: the threads over their greatest
    // common divisor with the batch (whole images at batch 32 and 2 threads, halves at batch 1).
    // Bands of fewer than 8 output rows would compute too many rows twice (at stride 1 and K = 3,
    // 2 more for every band): the two steps then.
    constexpr int OH = Depthwise::OH;
    const int threads = num_threads(), bands = std::min(OH, threads / std::gcd(batch, threads));
    if (Depthwise::rows_anywhere_now() && (bands == 1 || OH >= 8 * bands)) {
      constexpr int H = Depthwise::H, W = Depthwise::W, C = Depthwise::C, K = Depthwise::K, S = Depthwise::S;
      constexpr int OW = Depthwise::OW, F = Depthwise::F, top = Depthwise::pad_top;
      constexpr std::ptrdiff_t row = std::ptrdiff_t(W) * C;
      // Output rows a step: about 256 input pixels computed at once, a product of a few tiles.
      constexpr int step = std::clamp((256 + S * W - 1) / (S * W), 1, OH);
      constexpr int held = (step - 1) * S + K;  // the most input rows a step reads
      const std::ptrdiff_t tasks = std::ptrdiff_t(batch) * bands;
      auto work = [&](std::ptrdiff_t task, const auto& product) {
        Buffer& band = detail::band_rows();
        ensure_size(band, std::size_t(held * row));
        const std::ptrdiff_t n = task / bands;
        const int b = int(task % bands), first = b * OH / bands, last = (b + 1) * OH / bands;
        int base = 0, filled = 0;  // the band holds input rows [base, base + filled)
        for (int oy0 = first; oy0 < last; oy0 += step) {
          const int oy1 = std::min(last, oy0 + step);
          const int from = std::max(0, oy0 * S - top), to = std::min(H, (oy1 - 1) * S - top + K);
          if (from >= base + filled) {
            base = from, filled = 0;
          } else if (from > base) {  // keep the rows this step reads again
            filled -= from - base;
            std::memmove(band.data(), band.data() + (from - base) * row, std::size_t(filled * row) * sizeof(float));
            base = from;
          }
          if (to > base + filled) {
            product((n * H + base + filled) * W, std::ptrdiff_t(to - base - filled) * W, band.data() + filled * row);
            filled = to - base;
          }
          for (int oy = oy0; oy < oy1; ++oy) {
            const float* rows[K];
            for (int ky = 0; ky < K; ++ky) {
              const int iy = oy * S - top + ky;
              rows[ky] = iy >= 0 && iy < H ? band.data() + (iy - base) * row : nullptr;
            }
            depthwise.forward_row(rows, y + (n * OH + oy) * std::ptrdiff_t(OW) * F, second);
          }
        }
      };
      if (pointwise.forward_pieces(x, first, pass.prepared, tasks, work)) return;
    }
    float* between = chain.template output_buffer<J - 1>();
    pointwise.forward(x, between, batch, pass, first);
    chain.template layer<J>().forward(between, y, batch, pass, second);
  }
};

}  // namespace tnet::rules
