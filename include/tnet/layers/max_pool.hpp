// tnet/layers/max_pool.hpp: max pooling (Keras MaxPooling2D; PyTorch MaxPool2d).
//
// Contract: x (N, H, W, C) -> y (N, OH, OW, C), each output the largest value of its P x P window,
// per channel. Padding (layers/padding.hpp) valid, the default: OH = (H - P) / S + 1, needs
// H, W >= P; pad(p), PyTorch's padding=p (p <= P / 2): OH = (H + 2p - P) / S + 1; same, Keras's:
// OH = ceil(H / S). Padded positions are never chosen (as PyTorch pads with -infinity): each
// window's maximum is over the inputs it covers. The gradient flows to the first
// largest value of each window (the position remembered in training). After a batch
// normalisation in training, where the windows tile the image, the choice is made from the
// normalisation's inputs (select): the same but where the normalisation rounds different inputs
// to one value, of which it takes the largest input rather than the first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/vectorise.hpp"
#include "layer.hpp"
#include "padding.hpp"

namespace tnet {

template <int Pool, int Stride = Pool, Padding Pad = Padding::valid>
struct MaxPool2D : LayerSpec {
  static_assert(Pool > 0 && Stride > 0, "tnet::MaxPool2D: pool and stride must be positive");
  static_assert(Pad.amount >= 0 && 2 * Pad.amount <= Pool, "tnet::MaxPool2D: pad(p) needs 0 <= p <= pool / 2");

  template <class In>
  static constexpr bool accepts = Pad.fits(In::height, Pool) && Pad.fits(In::width, Pool);
  template <class In>
  using needs = Shape<std::max(In::height, Pool - 2 * Pad.amount), std::max(In::width, Pool - 2 * Pad.amount), In::channels>;

  template <class In>
  class Layer : public Stateless {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels;
    static constexpr int OH = Pad.output_size(H, Pool, Stride), OW = Pad.output_size(W, Pool, Stride);
    static constexpr int pad_top = Pad.before(H, Pool, Stride), pad_left = Pad.before(W, Pool, Stride);
    static constexpr bool padded = pad_top > 0 || pad_left > 0 || Pad.after(H, Pool, Stride) > 0 || Pad.after(W, Pool, Stride) > 0;
    using input_shape = In;
    using output_shape = Shape<OH, OW, C>;
    static constexpr bool backward_reads_output = false;  // the positions it remembered suffice
    static constexpr bool windows_overlap = Stride < Pool;
    static constexpr int window = Pool;  // its side

    static std::string describe() {
      // valid, the default, goes unnamed: the signature model files of unpadded pools hold
      return "MaxPool2D(" + std::to_string(Pool) + "x" + std::to_string(Pool) + ", stride " + std::to_string(Stride) +
             (Pad == Padding::valid ? ")" : ", " + Pad.str() + ")");
    }

    void forward(const float* x, float* y, int batch, Pass pass) { forward_mapped(x, y, batch, pass, Unmapped{}); }

    /// forward of map(x, c) for each value x of channel c: pooling applied to the output of a
    /// per-channel map before it (a batch normalisation in training: model/rules/), read as it goes.
    /// Training then also keeps the input x chosen for each output (chosen_inputs).
    template <class Map>
    void forward_mapped(const float* x, float* y, int batch, Pass pass, const Map& map) {
      constexpr bool mapped = !std::is_same_v<Map, Unmapped>;
      const bool remember = pass.mode == Mode::train;
      const std::size_t outputs = std::size_t(batch) * output_shape::size;
      if (remember && argmax_.size() < outputs) argmax_.resize(outputs);
      if (remember && mapped) ensure_size(chosen_, outputs);
      std::int32_t* argmax = remember ? argmax_.data() : nullptr;
      float* chosen = remember && mapped ? chosen_.data() : nullptr;
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        float* out = y + n * output_shape::size;
        std::int32_t* where = argmax ? argmax + n * output_shape::size : nullptr;
        // Channels innermost, and selects written as arithmetic rather than branches: comparisons
        // of random values mispredict, and this way the channels vectorise. Through a map, in
        // groups of 16 channels when they divide C (one AVX-512 vector: the running maxima, the
        // inputs chosen and their positions stay in registers over the window, instead of going
        // through memory at every tap); without one, all C at once: with no map to apply there is
        // little to keep in registers, and groups would only walk each window once per group.
        constexpr int G = mapped && C % 16 == 0 ? 16 : C;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox) {
            // The window's rows [py0, py1) and columns [px0, px1) that lie in the image, from its
            // corner (oy * Stride - pad_top, ox * Stride - pad_left): the whole window unpadded.
            const int top = oy * Stride - pad_top, left = ox * Stride - pad_left;
            const int py0 = padded ? std::max(0, -top) : 0, py1 = padded ? std::min(Pool, H - top) : Pool;
            const int px0 = padded ? std::max(0, -left) : 0, px1 = padded ? std::min(Pool, W - left) : Pool;
            const std::int32_t first = ((top + py0) * W + left + px0) * C;
            const int o = (oy * OW + ox) * C;
            for (int c0 = 0; c0 < C; c0 += G) {
              float best[G], best_x[G];  // best_x: the input whose map is best (when mapped)
              std::int32_t best_at[G];
              for (int g = 0; g < G; ++g) best_x[g] = image[first + c0 + g], best[g] = map(best_x[g], c0 + g), best_at[g] = first + c0 + g;
              for (int py = py0; py < py1; ++py)
                for (int px = px0; px < px1; ++px) {
                  const std::int32_t at = ((top + py) * W + left + px) * C + c0;
                  for (int g = 0; g < G; ++g) {
                    const float v = map(image[at + g], c0 + g);
                    const std::int32_t larger = -std::int32_t(v > best[g]);  // all ones or zero; the first of equal maxima is kept
                    if constexpr (mapped) best_x[g] = v > best[g] ? image[at + g] : best_x[g];
                    best[g] = std::max(best[g], v);  // the same select: best < v ? v : best
                    best_at[g] ^= (best_at[g] ^ (at + g)) & larger;
                  }
                }
              std::copy(best, best + G, out + o + c0);
              if (where) std::copy(best_at, best_at + G, where + o + c0);
              if constexpr (mapped)
                if (chosen) std::copy(best_x, best_x + G, chosen + n * output_shape::size + o + c0);
            }
          }
      });
    }

    /// Whether the windows cover the image, each input in one of them: what select needs.
    static constexpr bool tiles = !padded && Stride == Pool && H % Pool == 0 && W % Pool == 0;

    /// Inference's forward of one row of windows: `rows`, Pool whole rows of an image (Pool x W x
    /// C, as they lie), into one row of y (OW x C), the same maxima taken in the same order as
    /// forward. For a layer before that writes its output a strip of rows at a time and pools it
    /// while it is in the cache (layers/layer.hpp: forward_pooled).
    static void pool_strip(const float* rows, float* out)
      requires tiles
    {
      for (int ox = 0; ox < OW; ++ox) {
        alignas(64) float best[C];
        const float* first = rows + ox * Pool * C;
        for (int c = 0; c < C; ++c) best[c] = first[c];
        for (int py = 0; py < Pool; ++py)
          for (int px = 0; px < Pool; ++px) {
            const float* at = first + (py * W + px) * C;
            for (int c = 0; c < C; ++c) {
              const float v = at[c];
              best[c] = std::max(best[c], v);  // as forward's: a value, so that it vectorises
            }
          }
        std::copy(best, best + C, out + ox * C);
      }
    }

    /// Training's forward through a per-channel monotone map in two halves, for windows that tile
    /// the image, so that the map's own statistics (a batch normalisation's) can be summed in the
    /// same pass over x that chooses. select chooses from x itself the input the map will make
    /// largest: the first largest x where the map increases (direction[c] = 1), the first smallest
    /// where it decreases (direction[c] = -1), the first where it is constant (direction[c] = 0); the same
    /// as forward_mapped's choice unless the map sends different inputs to one value. It
    /// remembers it as forward_mapped does, and sums per image and channel, in double,
    /// d = x - shift[c] and d^2 into sums[n * 2C + c] and sums[n * 2C + C + c] (window by window,
    /// so that the normalisation's statistics and the pool's choice cost one read of x, not two).
    void select(const float* x, int batch, const float* direction, const double* shift, double* sums)
      requires tiles
    {
      const std::size_t outputs = std::size_t(batch) * output_shape::size;
      if (argmax_.size() < outputs) argmax_.resize(outputs);
      ensure_size(chosen_, outputs);
      std::int32_t* argmax = argmax_.data();
      float* chosen = chosen_.data();
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* image = x + n * In::size;
        std::int32_t* where = argmax + n * output_shape::size;
        float* picked = chosen + n * output_shape::size;
        double *sum = sums + n * 2 * C, *sum2 = sum + C;
        std::fill(sum, sum + 2 * C, 0.0);
        constexpr int G = C % 16 == 0 ? 16 : C;  // as forward_mapped: one AVX-512 vector
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox) {
            const std::int32_t first = ((oy * Stride) * W + ox * Stride) * C;
            const int o = (oy * OW + ox) * C;
            for (int c0 = 0; c0 < C; c0 += G) {
              float key[G], best_x[G];  // key: x * direction, the largest so far
              double s[G], s2[G];
              std::int32_t best_at[G];
              for (int g = 0; g < G; ++g)
                best_x[g] = image[first + c0 + g], key[g] = best_x[g] * direction[c0 + g], best_at[g] = first + c0 + g, s[g] = s2[g] = 0.0;
              for (int py = 0; py < Pool; ++py)
                for (int px = 0; px < Pool; ++px) {
                  const std::int32_t at = ((oy * Stride + py) * W + ox * Stride + px) * C + c0;
                  for (int g = 0; g < G; ++g) {
                    const float v = image[at + g], k = v * direction[c0 + g];
                    const double d = double(v) - shift[c0 + g];
                    const std::int32_t larger = -std::int32_t(k > key[g]);
                    best_x[g] = k > key[g] ? v : best_x[g];
                    key[g] = std::max(key[g], k);
                    best_at[g] ^= (best_at[g] ^ (at + g)) & larger;
                    s[g] += d, s2[g] += d * d;
                  }
                }
              std::copy(best_at, best_at + G, where + o + c0);
              std::copy(best_x, best_x + G, picked + o + c0);
              for (int g = 0; g < G; ++g) sum[c0 + g] += s[g], sum2[c0 + g] += s2[g];
            }
          }
      });
    }
    /// The second half: y = map(x, c) of the inputs select chose.
    template <class Map>
    void forward_selected(float* y, int batch, const Map& map) const
      requires tiles
    {
      const float* chosen = chosen_.data();
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        const float* in = chosen + n * output_shape::size;
        float* out = y + n * output_shape::size;
        for (int o = 0; o < output_shape::size; o += C)
          for (int c = 0; c < C; ++c) out[o + c] = map(in[o + c], c);
      });
    }

    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (!dx) return;
      const std::int32_t* argmax = argmax_.data();
      for_blocks(batch, 1, [=](std::ptrdiff_t n, std::ptrdiff_t) {
        float* image = dx + n * In::size;
        std::fill(image, image + In::size, 0.0f);
        const float* grad = dy + n * output_shape::size;
        const std::int32_t* where = argmax + n * output_shape::size;
        for (int o = 0; o < output_shape::size; ++o) image[where[o]] += grad[o];
      });
    }

    /// Per output of the last training forward, the offset within its image of the input chosen;
    /// after forward_mapped, also the input itself (before the map).
    const std::int32_t* argmax() const { return argmax_.data(); }
    const float* chosen_inputs() const { return chosen_.data(); }

   private:
    struct Unmapped {
      float operator()(float v, int) const { return v; }
    };
    std::vector<std::int32_t> argmax_;  // per output: offset of the chosen input within its image
    Buffer chosen_;                     // per output: that input, when forward_mapped
  };
};

}  // namespace tnet
