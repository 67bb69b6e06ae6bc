// Must not compile: the block's body halves the feature maps and doubles the channels, and the
// shortcut is the identity. The compiler's note must name the block and both shapes
// (tests/CMakeLists.txt checks it). With -DWITH_PROJECTION the block has a projection shortcut
// and this file compiles.
// Only the headers it needs: each of these tests compiles its file anew.
#include <tnet/layers/activation.hpp>
#include <tnet/layers/batch_norm.hpp>
#include <tnet/layers/conv2d.hpp>
#include <tnet/layers/dense.hpp>
#include <tnet/layers/flatten.hpp>
#include <tnet/layers/residual.hpp>
#include <tnet/model/sequential.hpp>

using namespace tnet;

#ifdef WITH_PROJECTION
using Block = Residual<Conv2D<16, 3, 2>, BatchNorm, ReLU, Conv2D<16, 3>, BatchNorm, Shortcut<Conv2D<16, 1, 2, Padding::valid>, BatchNorm>>;
#else
using Block = Residual<Conv2D<16, 3, 2>, BatchNorm, ReLU, Conv2D<16, 3>, BatchNorm>;
#endif
using Net = Sequential<Input<8, 8, 8>, Block, ReLU, Flatten, Dense<2>, Sigmoid>;

int main() {
  Net net;
  return net.parameters().values.empty();
}
