// model_diff A.tnet B.tnet TOLERANCE: the largest difference between two SmallerVGGNet<64>
// model files' weights and batch-norm statistics, relative to each value's size (at least 1).
// Prints it; exits 0 when it is at most TOLERANCE, 1 when larger, 2 when a file cannot be read.
// For tests/mpi_train.sh: a model trained by several processes against one process's.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <utility>
#include <tnet/tnet.hpp>
#include <vector>

#include "fashion/smaller_vgg.hpp"

namespace {
using Net = fashion::SmallerVGGNet<64>;

// Every value, and the name of the tensor each belongs to.
std::vector<std::pair<double, std::string>> everything(Net& net) {
  std::vector<std::pair<double, std::string>> all;
  for (const tnet::ParamRef& t : net.parameters())
    for (std::size_t i = 0; i < t.size; ++i) all.emplace_back(t.value[i], t.name);
  net.visit_state([&](const std::string& name, auto span) {
    for (auto v : span) all.emplace_back(double(v), name);
  });
  return all;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: model_diff A.tnet B.tnet TOLERANCE\n";
    return 2;
  }
  try {
    Net a(tnet::Outputs{tnet::read_model_outputs(argv[1])}), b(tnet::Outputs{tnet::read_model_outputs(argv[2])});
    tnet::load_model(argv[1], a);
    tnet::load_model(argv[2], b);
    const auto x = everything(a), y = everything(b);
    double worst = 0;
    std::string where = "-";
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double d = std::abs(x[i].first - y[i].first) / std::max(1.0, std::abs(y[i].first));
      if (d > worst) worst = d, where = x[i].second;
    }
    std::cout << "largest relative difference " << worst << " (in " << where << ") over " << x.size() << " values\n";
    return worst <= std::stod(argv[3]) ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "model_diff: " << e.what() << "\n";
    return 2;
  }
}
