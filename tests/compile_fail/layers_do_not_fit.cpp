// Must not compile: Dense needs a flat input and gets 3x3x4 feature maps. The compiler's note
// must name the layer and both shapes (tests/CMakeLists.txt checks it). With -DWITH_FLATTEN the
// network is well-formed and this file compiles.
#include <tnet/tnet.hpp>

#ifdef WITH_FLATTEN
using Net = tnet::Sequential<tnet::Input<6, 6, 1>, tnet::Conv2D<4, 3>, tnet::MaxPool2D<2>, tnet::Flatten, tnet::Dense<10>>;
#else
using Net = tnet::Sequential<tnet::Input<6, 6, 1>, tnet::Conv2D<4, 3>, tnet::MaxPool2D<2>, tnet::Dense<10>>;
#endif

int main() {
  Net net;
  return net.parameters().values.empty();
}
