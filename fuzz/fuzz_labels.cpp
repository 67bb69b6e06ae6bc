// libFuzzer target: label files (MultiLabelBinarizer::load). It either returns classes or throws
// std::runtime_error naming the file; nothing else, and no memory error.
#include <cstdint>
#include <string>

#include <tnet/tnet.hpp>

#include "scratch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_scratch("labels", data, size);
  if (path.empty()) return 0;
  try {
    const tnet::MultiLabelBinarizer labels = tnet::MultiLabelBinarizer::load(path);
    if (labels.classes().empty()) __builtin_trap();  // load promises at least one class
  } catch (const std::runtime_error&) {
  }
  return 0;
}
