// tnet/core/bfloat16.hpp: bfloat16, a float's upper 16 bits (8 bits of exponent, 7 of mantissa).
//
// Half the bytes of a float with the same range: tnet keeps large dense kernels in it for
// inference when asked (Sequential::set_inference_precision), since reading them is what a
// batch-1 dense layer waits for; products still multiply and add in float.
#pragma once

#include <bit>
#include <cstdint>

namespace tnet {

/// bfloat16 bits of x, rounded to nearest, ties to even; a NaN stays a (quiet) NaN, infinities
/// stay infinite, and finite values too large for bfloat16's mantissa round to infinity as float
/// rounding would.
inline std::uint16_t to_bfloat16(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return std::uint16_t((bits >> 16) | 0x0040u);  // NaN: quiet, sign kept
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return std::uint16_t((bits + rounding) >> 16);
}

/// The float a bfloat16 stands for (exact).
inline float from_bfloat16(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

}  // namespace tnet
