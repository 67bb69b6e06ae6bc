// tnet/core/text.hpp: UTF-8 checks for labels, and text made printable for messages.
//
// A label (a class folder's name, split at its separator; a class in a label file; a label in an
// image list) is printable UTF-8 without control characters: every file tnet writes holds one
// label or one path a line, and the --json output must be valid UTF-8, so a label with a newline,
// a tab, a C1 control, a line or paragraph separator, or bytes that are not UTF-8 is refused where
// it is read, with a message that shows it escaped (printable).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace tnet {

namespace detail {
// The length of the UTF-8 sequence at s[at] and its code point; 0 when the bytes there are not
// UTF-8 (a stray continuation byte, a sequence cut short, an overlong form, a surrogate, or beyond
// U+10FFFF).
inline std::size_t utf8_sequence(std::string_view s, std::size_t at, char32_t& code) {
  const unsigned char lead = static_cast<unsigned char>(s[at]);
  if (lead < 0x80) {
    code = lead;
    return 1;
  }
  const std::size_t length = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
  if (length == 0 || at + length > s.size()) return 0;
  code = lead & (0x7F >> length);
  for (std::size_t i = 1; i < length; ++i) {
    const unsigned char next = static_cast<unsigned char>(s[at + i]);
    if ((next & 0xC0) != 0x80) return 0;
    code = code << 6 | (next & 0x3F);
  }
  if ((length == 3 && code < 0x800) || (length == 4 && (code < 0x10000 || code > 0x10FFFF)) || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

// Whether a code point is a control character (C0, DEL, C1) or a line or paragraph separator.
inline bool control_character(char32_t code) { return code < 0x20 || (code >= 0x7F && code <= 0x9F) || code == 0x2028 || code == 0x2029; }
}  // namespace detail

/// Whether `s` is well-formed UTF-8.
inline bool valid_utf8(std::string_view s) {
  char32_t code = 0;
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t length = detail::utf8_sequence(s, at, code);
    if (length == 0) return false;
    at += length;
  }
  return true;
}

/// `s` as it can be shown in a message: a control character as \n, \r, \t or \xHH (\u0085,
/// \u2028 and the like beyond ASCII), a byte that is not UTF-8 as \xHH, the rest as it is.
inline std::string printable(std::string_view s) {
  std::string out;
  char32_t code = 0;
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t length = detail::utf8_sequence(s, at, code);
    char buffer[12];
    if (length == 0 || (length == 1 && detail::control_character(code))) {
      const unsigned char byte = static_cast<unsigned char>(s[at]);
      if (byte == '\n') out += "\\n";
      else if (byte == '\r') out += "\\r";
      else if (byte == '\t') out += "\\t";
      else std::snprintf(buffer, sizeof buffer, "\\x%02X", byte), out += buffer;
      ++at;
    } else if (detail::control_character(code)) {
      std::snprintf(buffer, sizeof buffer, "\\u%04X", unsigned(code));
      out += buffer;
      at += length;
    } else {
      out.append(s, at, length);
      at += length;
    }
  }
  return out;
}

/// Why `label` cannot be a label, or "" when it can: labels are non-empty, printable UTF-8
/// without control characters (see the top of this file).
inline std::string label_problem(std::string_view label) {
  if (label.empty()) return "a label is empty";
  char32_t code = 0;
  for (std::size_t at = 0; at < label.size();) {
    const std::size_t length = detail::utf8_sequence(label, at, code);
    if (length == 0 || detail::control_character(code)) {
      std::string problem = "'";
      problem += printable(label);
      problem += length == 0 ? "' is not valid UTF-8" : "' holds a control character";
      return problem;
    }
    at += length;
  }
  return "";
}

/// What a label may be, for messages.
inline constexpr const char* label_rule = "labels are printable UTF-8 without control characters (no newline, tab or the like)";

}  // namespace tnet
