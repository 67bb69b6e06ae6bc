// What README.md's C++ blocks use without declaring it. scripts/check_docs.sh compiles each block
// in a function, after `using namespace readme::NAME;` for the NAME its fence gives (```cpp NAME),
// or alone when it gives none; what a block declares hides what its context does.
#pragma once

#include <string>
#include <vector>

#include <tnet/tnet.hpp>

namespace readme {

/// A batch of inputs and targets for a first network.
namespace tensors {
inline int batch = 32;
inline std::vector<float> images(32 * 28 * 28), labels(32 * 10);
inline std::vector<std::string> class_names(10, "class");
}  // namespace tensors

/// The label count of a dataset.
namespace label_count {
inline int labels = 6;
}  // namespace label_count

/// A network with a run-time label count, its optimizer, data and class names.
namespace network {
using Net = tnet::Sequential<tnet::Input<96, 96, 3>, tnet::Conv2D<8, 3>, tnet::ReLU, tnet::MaxPool2D<2>, tnet::Flatten,
                             tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
inline Net net(tnet::Outputs{6}, 42), imported(tnet::Outputs{6}, 42);
inline tnet::Adam adam({.lr = 1e-3});
inline tnet::MultiLabelBinarizer labels;
inline std::vector<std::string> class_names(6, "class");
inline int epoch = 0;
inline tnet::LabeledImages photos_of_context;
inline tnet::BatchIterator train(photos_of_context, {}, 6, {}, {}), val(photos_of_context, {}, 6, {}, {});
}  // namespace network

}  // namespace readme
