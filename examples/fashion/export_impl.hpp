// fashion_export's work, for one network type (an architecture at one image size; any label count).
#pragma once

#include <iostream>
#include <memory>
#include <string>

#include "cli.hpp"
#include "labels.hpp"
#include "models.hpp"

namespace fashion {

struct ExportSettings {
  std::string model = "fashion.tnet", labelbin = "labels.txt", onnx = "fashion.onnx";
  tnet::OnnxLayout layout = tnet::OnnxLayout::nhwc;
};

template <class Net>
int export_onnx(const ExportSettings& s) {
  constexpr int size = Net::input_shape::height;
  auto net = std::make_unique<Net>(tnet::Outputs{tnet::read_model_outputs<Net>(s.model)}, 0);
  const tnet::ModelFileInfo info = tnet::load_model(s.model, *net);
  const std::vector<std::string> classes = matching_classes(s.labelbin, s.model, net->outputs(), info.class_names);
  const bool nhwc = s.layout == tnet::OnnxLayout::nhwc;
  const std::string input = nhwc ? "(N, " + std::to_string(size) + ", " + std::to_string(size) + ", 3)"
                                 : "(N, 3, " + std::to_string(size) + ", " + std::to_string(size) + ")";
  tnet::save_onnx(s.onnx, *net, classes, s.layout,
                  {{"input_values", "RGB photo resized to " + std::to_string(size) + "x" + std::to_string(size) +
                                        ", each value pixel / 255 (0 to 1), " + (nhwc ? "NHWC" : "NCHW") + " " + input},
                   {"output_values", "per class (class_names), the probability that the photo shows it"}});
  std::cout << "wrote " << s.onnx << ": input " << input << " float32, RGB / 255; output (N, " << net->outputs() << ") probabilities for "
            << classes.size() << " classes; ONNX opset " << tnet::onnx::written_opset << "\n";
  return 0;
}

}  // namespace fashion
