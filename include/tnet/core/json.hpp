// tnet/core/json.hpp: a string as a JSON string literal (the programs' --json output, the ONNX
// metadata's class names).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "text.hpp"

namespace tnet {

/// `s` quoted and escaped as JSON, always valid UTF-8: `"` and `\` escaped; control characters
/// (C0, DEL, C1) and U+2028, U+2029 as \uXXXX; each byte that is not part of well-formed UTF-8
/// (a photo's path may hold any bytes) as \ufffd, the replacement character, as Python's
/// errors="replace" and browsers show it; the rest as it is.
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  char32_t code = 0;
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t length = detail::utf8_sequence(s, at, code);
    if (length == 0) {
      out += "\\ufffd";
      ++at;
      continue;
    }
    if (code == '"' || code == '\\') {
      out += '\\';
      out += char(code);
    } else if (detail::control_character(code)) {
      char buffer[16];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", unsigned(code));
      out += buffer;
    } else {
      out.append(s, at, length);
    }
    at += length;
  }
  return out + "\"";
}

}  // namespace tnet
