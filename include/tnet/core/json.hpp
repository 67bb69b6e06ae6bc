// tnet/core/json.hpp: a string as a JSON string literal (the programs' --json output, the ONNX
// metadata's class names).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace tnet {

/// `s` quoted and escaped as JSON: `"` and `\` escaped, control characters as \u00XX; other
/// bytes (UTF-8 included) as they are.
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace tnet
