// libFuzzer target: label files (MultiLabelBinarizer::load). It either returns classes, each
// printable UTF-8 without control characters, or throws std::runtime_error naming the file;
// nothing else, and no memory error.
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
    for (const std::string& c : labels.classes())
      if (!tnet::label_problem(c).empty()) __builtin_trap();  // and only printable UTF-8 labels
  } catch (const std::runtime_error&) {
  }
  return 0;
}
