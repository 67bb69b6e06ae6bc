// fashion_classify's work, for one network type (an architecture at one image size; any label count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "labels.hpp"
#include "model_files.hpp"
#include "models.hpp"

namespace fashion {

struct ClassifySettings {
  std::string model = "fashion.tnet", labelbin = "labels.txt", output;
  std::vector<std::string> images;   // files (a folder given was expanded to its image files)
  std::vector<std::string> outputs;  // the labelled copy of each (labelled_copy_paths)
  int top = 2;
  std::optional<double> threshold;  // --threshold: every label's; unset: the model file's own (0.5 without)
  bool json = false;
  tnet::Precision precision = tnet::Precision::fp32;  // how the dense kernels are read (Sequential::set_inference_precision)
};

/// Where each photo's labelled copy goes: `--output` for one photo; else NAME_labeled.png in the
/// `--output` folder or the current one, NAME_EXT_labeled.png when two photos share a name
/// (a.jpg, a.png). Throws UsageError when a copy would overwrite one of the photos.
inline std::vector<std::string> labelled_copy_paths(const std::vector<std::string>& images, const std::string& output, bool into_folder) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  std::set<std::string> taken;
  for (const std::string& image : images) {
    const fs::path photo(image);
    std::string name = photo.stem().string() + "_labeled.png";
    const std::string extension = photo.extension().string();  // ".png", or "" for a photo named without one
    if (taken.count(name) && extension.size() > 1) name = photo.stem().string() + "_" + extension.substr(1) + "_labeled.png";
    for (int n = 2; taken.count(name); ++n) name = photo.stem().string() + "_" + std::to_string(n) + "_labeled.png";
    taken.insert(name);
    paths.push_back(output.empty() ? name : into_folder ? (fs::path(output) / name).string() : output);
  }
  for (const std::string& path : paths)
    for (const std::string& image : images) {
      std::error_code error;
      if (fs::weakly_canonical(path, error) == fs::weakly_canonical(image, error))
        throw UsageError("the labelled copy " + path + " would overwrite the photo " + image + ": give another --output");
    }
  return paths;
}

/// Each label's decision threshold: `--threshold` for every label when given, else the ones the
/// model file stores (tnet::set_thresholds, chosen on validation data), else 0.5.
inline std::vector<float> decision_thresholds(const std::optional<double>& given, const std::vector<float>& stored, int labels) {
  if (given) return std::vector<float>(std::size_t(labels), float(*given));
  if (stored.size() == std::size_t(labels)) return stored;
  return std::vector<float>(std::size_t(labels), 0.5f);
}

/// The labels whose probability is above their threshold, in label order.
inline std::vector<int> present_labels(std::span<const float> p, const std::vector<float>& thresholds) {
  std::vector<int> present;
  for (std::size_t l = 0; l < thresholds.size(); ++l)
    if (p[l] > thresholds[l]) present.push_back(int(l));
  return present;
}

// A probability in JSON: null when it is not a number (a model refuses to load with NaN weights,
// so this guards the format, not the model).
inline std::string json_number(double p) {
  if (!std::isfinite(p)) return "null";
  std::ostringstream out;
  out << std::setprecision(9) << p;
  return out.str();
}
// A probability as fashion_classify prints it: "97.25%".
inline std::string percent(double p) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%.2f%%", 100.0 * p);
  return buffer;
}

/// The photo at width 400 (aspect kept, but the height kept within 1 to 4000 for a photo of
/// extreme shape), with "label: xx.xx%" for the top labels at (10, 25 + 30 i) as the tutorial's
/// classify.py draws them.
inline tnet::Image labelled_copy(const tnet::Image& photo, const std::vector<std::pair<std::string, double>>& top) {
  const int width = 400, height = int(std::clamp(std::lround(double(photo.height) * width / photo.width), 1L, 4000L));
  tnet::Canvas canvas(tnet::resize_image(photo, width, height));
  for (std::size_t i = 0; i < top.size(); ++i) {
    const std::string text = top[i].first + ": " + percent(top[i].second);
    const int x = 10, y = 25 + 30 * int(i) - 14;
    canvas.rect(x - 4, y - 4, tnet::Canvas::text_width(text, 2) + 8, tnet::Canvas::text_height(2) + 10, {0, 0, 0}, 0.45f);
    canvas.text(x, y, text, {0, 255, 0}, 2);
  }
  return canvas.image();
}

template <class Net>
int classify(const ClassifySettings& s) {
  constexpr int size = Net::input_shape::height;
  // The label count is the network's run-time width, recorded in the model file.
  const bool onnx = is_onnx_path(s.model);
  auto net =
      std::make_unique<Net>(tnet::Outputs{onnx ? read_onnx_model_info<Net>(s.model).outputs : tnet::read_model_outputs<Net>(s.model)}, 0);
  std::vector<std::string> model_classes;
  std::vector<float> stored_thresholds;
  if (onnx) {
    model_classes = load_onnx_model(s.model, *net);
  } else {
    tnet::ModelFileInfo info = tnet::load_model(s.model, *net);
    model_classes = std::move(info.class_names);
    stored_thresholds = std::move(info.thresholds);
  }
  const int labels = net->outputs();
  const std::vector<float> thresholds = decision_thresholds(s.threshold, stored_thresholds, labels);
  const bool one_threshold = std::all_of(thresholds.begin(), thresholds.end(), [&](float t) { return t == thresholds[0]; });
  const std::vector<std::string> classes = matching_classes(s.labelbin, s.model, labels, model_classes);
  net->set_inference_precision(s.precision);

  int failures = 0;
  std::vector<std::string> json_items;
  std::vector<float> input(Net::input_size);
  for (std::size_t i = 0; i < s.images.size(); ++i) {
    const std::string& path = s.images[i];
    tnet::Image photo;
    try {
      photo = tnet::read_image(path);
    } catch (const std::exception& e) {
      std::cerr << "fashion_classify: " << e.what() << "\n";
      ++failures;
      continue;
    }
    // As training loaded it: resized to the input size, then the one pixel-to-input conversion.
    const tnet::Image small = tnet::resize_image(photo, size, size);
    tnet::pixels_to_input(small.pixels, input);
    const std::span<const float> p = net->predict(input, 1);
    std::vector<int> order(labels);
    std::iota(order.begin(), order.end(), 0);
    // Most probable first; ties in label order; a value that is not a number last.
    auto rank = [&](int l) { return std::isnan(p[l]) ? -1.0f : p[l]; };
    std::sort(order.begin(), order.end(), [&](int a, int b) { return rank(a) != rank(b) ? rank(a) > rank(b) : a < b; });
    std::vector<std::pair<std::string, double>> top;
    for (int k = 0; k < std::min(s.top, labels); ++k) top.push_back({classes[std::size_t(order[k])], p[order[k]]});
    std::vector<std::string> present;
    for (const int l : present_labels(p, thresholds)) present.push_back(classes[std::size_t(l)]);

    const std::string& output = s.outputs[i];
    tnet::write_png(output, labelled_copy(photo, top));

    if (s.json) {
      std::ostringstream item;
      item << "{\"image\": " << tnet::json_string(path) << ", \"probabilities\": {";
      for (int l = 0; l < labels; ++l) item << (l ? ", " : "") << tnet::json_string(classes[std::size_t(l)]) << ": " << json_number(p[l]);
      item << "}, \"top\": [";
      for (std::size_t k = 0; k < top.size(); ++k) item << (k ? ", " : "") << tnet::json_string(top[k].first);
      item << "], \"present\": [";
      for (std::size_t k = 0; k < present.size(); ++k) item << (k ? ", " : "") << tnet::json_string(present[k]);
      item << "], \"output\": " << tnet::json_string(output) << "}";
      json_items.push_back(item.str());
      continue;
    }
    std::cout << path << "\n";
    for (int l = 0; l < labels; ++l) {
      std::cout << "  " << classes[std::size_t(l)] << ": " << percent(p[l]);
      if (!one_threshold) std::cout << " (threshold " << thresholds[std::size_t(l)] << ")";
      std::cout << "\n";
    }
    std::cout << "  top " << top.size() << ":";
    for (const auto& [label, probability] : top) std::cout << " " << label << " (" << percent(probability) << ")";
    if (one_threshold) std::cout << "\n  above " << thresholds[0] << ":";
    else std::cout << "\n  above their thresholds:";
    for (const std::string& label : present) std::cout << " " << label;
    std::cout << (present.empty() ? " (none)" : "") << "\n  labelled image: " << output << "\n";
  }
  if (s.json) {
    std::cout << "[";
    for (std::size_t i = 0; i < json_items.size(); ++i) std::cout << (i ? ",\n " : "") << json_items[i];
    std::cout << "]\n";
  }
  return failures ? 1 : 0;
}

}  // namespace fashion
