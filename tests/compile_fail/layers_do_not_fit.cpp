// Must not compile: Dense needs a flat input and gets 3x3x4 feature maps. The compiler's note
// must name the layer and both shapes (tests/CMakeLists.txt checks it). With -DWITH_FLATTEN the
// network is well-formed and this file compiles.
// Only the headers it needs: each of these tests compiles its file anew.
#include <tnet/layers/conv2d.hpp>
#include <tnet/layers/dense.hpp>
#include <tnet/layers/flatten.hpp>
#include <tnet/layers/max_pool.hpp>
#include <tnet/model/sequential.hpp>

#ifdef WITH_FLATTEN
using Net = tnet::Sequential<tnet::Input<6, 6, 1>, tnet::Conv2D<4, 3>, tnet::MaxPool2D<2>, tnet::Flatten, tnet::Dense<10>>;
#else
using Net = tnet::Sequential<tnet::Input<6, 6, 1>, tnet::Conv2D<4, 3>, tnet::MaxPool2D<2>, tnet::Dense<10>>;
#endif

int main() {
  Net net;
  return net.parameters().values.empty();
}
