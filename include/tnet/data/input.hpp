// tnet/data/input.hpp: how pixels become network inputs, the one conversion for training,
// validation and classification.
//
// A pixel value v in 0-255 (an 8-bit pixel, or one interpolated by augmentation) becomes
// v * (1 / 255), the tutorial's scaling to [0, 1], computed in float the same way everywhere, so
// a photo classified is fed exactly what validation measured.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

namespace tnet {

inline constexpr float input_scale = 1.0f / 255.0f;

/// The network input for pixel value v (0-255).
inline float to_input(float v) { return v * input_scale; }

/// Converts 8-bit pixels to network inputs; `input` has one float per pixel value.
inline void pixels_to_input(std::span<const std::uint8_t> pixels, std::span<float> input) {
  if (input.size() != pixels.size())
    throw std::invalid_argument("tnet::pixels_to_input: " + std::to_string(pixels.size()) + " pixel values into " +
                                std::to_string(input.size()) + " inputs");
  for (std::size_t i = 0; i < pixels.size(); ++i) input[i] = to_input(float(pixels[i]));
}

}  // namespace tnet
