// libFuzzer target: label files (MultiLabelBinarizer::load). It either returns classes or throws
// std::runtime_error naming the file; nothing else, and no memory error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <tnet/tnet.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/tnet_fuzz_labels_" + std::to_string(::getpid()) + ".txt";
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    const tnet::MultiLabelBinarizer labels = tnet::MultiLabelBinarizer::load(path);
    if (labels.classes().empty()) __builtin_trap();  // load promises at least one class
  } catch (const std::runtime_error&) {
  }
  return 0;
}
