// tnet/layers/padding.hpp: how a window layer (convolution, pooling) pads its input.
//
// Padding is a template argument of the window layers (Conv2D, DepthwiseConv2D, MaxPool2D,
// AveragePooling2D), in Keras's or PyTorch's words:
//   Padding::same   Keras/TensorFlow: out = ceil(in / S), the total padding split with the
//                   smaller half before, the larger after
//   Padding::valid  no padding: out = (in - K) / S + 1
//   pad(p)          PyTorch's padding=p: p rows and columns on each side, out = (in + 2p - K) / S + 1
// Conv2D<64, 7, 2, pad(3)> is ResNet's first convolution, MaxPool2D<3, 2, pad(1)> its pool.
#pragma once

#include <algorithm>
#include <string>

namespace tnet {

/// A window layer's padding: Padding::same, Padding::valid or pad(p). A structural type, so it
/// is a template argument.
struct Padding {
  enum class Kind { same, valid, explicit_size };
  Kind kind = Kind::same;
  int amount = 0;  // pad(p)'s p

  static const Padding same, valid;

  friend constexpr bool operator==(const Padding&, const Padding&) = default;

  constexpr bool is_same() const { return kind == Kind::same; }
  constexpr bool is_explicit() const { return kind == Kind::explicit_size; }

  /// The output's side for an input side `in`, window K and stride S.
  constexpr int output_size(int in, int K, int S) const {
    switch (kind) {
      case Kind::same:
        return (in + S - 1) / S;
      case Kind::valid:
        return (in - K) / S + 1;
      case Kind::explicit_size:
        break;
    }
    return (in + 2 * amount - K) / S + 1;
  }
  /// The padding before the input (top or left).
  constexpr int before(int in, int K, int S) const {
    if (kind == Kind::valid) return 0;
    if (kind == Kind::explicit_size) return amount;
    return std::max((output_size(in, K, S) - 1) * S + K - in, 0) / 2;
  }
  /// The padding after it (bottom or right) that the windows reach: Keras's larger half for same;
  /// for pad(p) at most p (the last rows and columns of the padding may be read by no window).
  constexpr int after(int in, int K, int S) const { return std::max((output_size(in, K, S) - 1) * S + K - in - before(in, K, S), 0); }
  /// Whether an input side `in` gives at least one output.
  constexpr bool fits(int in, int K) const { return kind == Kind::same || in + 2 * amount >= K; }
  /// As a model file's layer signature names it: "same", "valid", "pad 3".
  std::string str() const { return kind == Kind::same ? "same" : kind == Kind::valid ? "valid" : "pad " + std::to_string(amount); }
};

inline constexpr Padding Padding::same{Padding::Kind::same, 0};
inline constexpr Padding Padding::valid{Padding::Kind::valid, 0};

/// PyTorch's padding=p: p zero rows and columns on each side of the input.
/// (The layers refuse a negative p at compile time.)
constexpr Padding pad(int p) { return {Padding::Kind::explicit_size, p}; }

}  // namespace tnet
