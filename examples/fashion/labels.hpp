// The label file that goes with a model, checked against it (fashion_classify, fashion_export).
#pragma once

#include <string>
#include <vector>

#include <tnet/tnet.hpp>

#include "cli.hpp"

namespace fashion {

/// The class names of `labelbin`, checked against a model of `outputs` outputs trained on
/// `model_classes` (empty when the model file names none).
inline std::vector<std::string> matching_classes(const std::string& labelbin, const std::string& model, int outputs,
                                                 const std::vector<std::string>& model_classes) {
  tnet::MultiLabelBinarizer binarizer;
  try {
    binarizer = tnet::MultiLabelBinarizer::load(labelbin);
  } catch (const std::exception& e) {
    throw UsageError(e.what());
  }
  const std::vector<std::string>& classes = binarizer.classes();
  if (int(classes.size()) != outputs)
    throw UsageError(labelbin + " lists " + std::to_string(classes.size()) + " classes, but " + model + " has " + std::to_string(outputs) +
                     " outputs: they do not belong together");
  if (!model_classes.empty() && model_classes != classes)
    throw UsageError(labelbin + " does not match the classes " + model + " was trained on");
  return classes;
}

}  // namespace fashion
