// The fuzz targets' one scratch file: the loaders under test read paths, so each input is
// written to a file of this process's own (in /tmp) first.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace fuzz {

/// Writes `size` bytes to /tmp/tnet_fuzz_NAME_PID and returns the path; empty when it cannot.
inline std::string write_scratch(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = "/tmp/tnet_fuzz_" + name + "_" + std::to_string(::getpid());
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return {};
  const bool written = std::fwrite(data, 1, size, file) == size;
  return std::fclose(file) == 0 && written ? path : std::string();
}

}  // namespace fuzz
