// tnet/data/multilabel.hpp: label sets <-> 0/1 vectors, as scikit-learn's MultiLabelBinarizer.
//
// fit() learns the classes, sorted; transform() turns each label set into a row of 0/1 floats in
// that order. The tutorial's classes are black, blue, dress, jeans, red, shirt, and red_dress
// becomes [0, 0, 1, 0, 1, 0]. save()/load() use a small text file: a header line, then one class
// per line.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/file.hpp"
#include "../core/text.hpp"

namespace tnet {

class MultiLabelBinarizer {
 public:
  enum class Unknown { error, ignore };  // what transform does with a label fit() never saw

  MultiLabelBinarizer() = default;
  explicit MultiLabelBinarizer(std::vector<std::string> classes) { set_classes(std::move(classes)); }

  MultiLabelBinarizer& fit(const std::vector<std::vector<std::string>>& label_sets) {
    std::set<std::string> all;
    for (const auto& set : label_sets) all.insert(set.begin(), set.end());
    set_classes({all.begin(), all.end()});
    return *this;
  }

  /// rows x classes().size() values, 1 where the row has the class.
  std::vector<float> transform(const std::vector<std::vector<std::string>>& label_sets, Unknown unknown = Unknown::error) const {
    std::vector<float> out(label_sets.size() * classes_.size(), 0.0f);
    for (std::size_t row = 0; row < label_sets.size(); ++row)
      for (const std::string& label : label_sets[row]) {
        const auto found = std::lower_bound(classes_.begin(), classes_.end(), label);
        if (found == classes_.end() || *found != label) {
          if (unknown == Unknown::error)
            throw std::invalid_argument("MultiLabelBinarizer: unknown label '" + printable(label) + "' (known: " + joined() + ")");
          std::cerr << "warning: MultiLabelBinarizer ignores unknown label '" << printable(label) << "'\n";
          continue;
        }
        out[row * classes_.size() + std::size_t(found - classes_.begin())] = 1.0f;
      }
    return out;
  }

  std::vector<float> fit_transform(const std::vector<std::vector<std::string>>& label_sets) {
    return fit(label_sets).transform(label_sets);
  }

  /// For each of `rows` rows of probabilities, the classes above `threshold`.
  std::vector<std::vector<std::string>> inverse_transform(const float* probabilities, std::size_t rows, float threshold = 0.5f) const {
    std::vector<std::vector<std::string>> out(rows);
    for (std::size_t row = 0; row < rows; ++row)
      for (std::size_t c = 0; c < classes_.size(); ++c)
        if (probabilities[row * classes_.size() + c] > threshold) out[row].push_back(classes_[c]);
    return out;
  }

  const std::vector<std::string>& classes() const { return classes_; }

  /// Writes the classes through AtomicFile (core/file.hpp); throws FileError naming `path`.
  void save(const std::string& path) const {
    std::string text(header);  // appended in place: GCC 12 warns wrongly about `std::string(header) + "\n"` at -O2
    text += '\n';
    for (const std::string& c : classes_) text += c + "\n";
    write_file(path, text, "label file");
  }

  /// Reads a label file; CRLF line ends and a byte-order mark (as other editors write) are fine. A
  /// class that cannot be a label (core/text.hpp: printable UTF-8 without control characters) is
  /// refused with the file and line.
  static MultiLabelBinarizer load(const std::string& path) {
    std::string reason;
    if (!is_readable_file(path, reason)) throw std::runtime_error(path + ": cannot open the label file: " + reason);
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open the label file");
    std::string line;
    if (!std::getline(in, line) || detail::text_line(line, true) != header)
      throw std::runtime_error(path + ": not a tnet label file (first line should be '" + std::string(header) + "')");
    std::vector<std::string> classes;
    for (int number = 2; std::getline(in, line); ++number) {
      if (detail::text_line(line, false).empty()) continue;
      if (const std::string problem = label_problem(line); !problem.empty())
        throw std::runtime_error(path + ":" + std::to_string(number) + ": " + problem + "; " + label_rule);
      classes.push_back(line);
    }
    try {
      return MultiLabelBinarizer(std::move(classes));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(path + ": " + e.what());
    }
  }

 private:
  static constexpr const char* header = "# tnet MultiLabelBinarizer v1";

  void set_classes(std::vector<std::string> classes) {
    if (classes.empty()) throw std::invalid_argument("MultiLabelBinarizer: no classes");
    for (const std::string& c : classes)
      if (const std::string problem = label_problem(c); !problem.empty())
        throw std::invalid_argument("MultiLabelBinarizer: " + problem + "; " + label_rule);
    if (!std::is_sorted(classes.begin(), classes.end()) || std::adjacent_find(classes.begin(), classes.end()) != classes.end())
      throw std::invalid_argument("MultiLabelBinarizer: classes must be sorted and distinct");
    classes_ = std::move(classes);
  }

  std::string joined() const {
    std::string s;
    for (const std::string& c : classes_) s += (s.empty() ? "" : ", ") + printable(c);
    return s;
  }

  std::vector<std::string> classes_;
};

}  // namespace tnet
