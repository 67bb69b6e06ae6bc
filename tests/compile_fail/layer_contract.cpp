// A layer of the user's own that breaks the layer contract (tnet/layers/layer.hpp) must not
// compile, and the compiler's notes must name the layer and what it lacks (tests/CMakeLists.txt
// checks them). Built three ways:
//   -DNO_BACKWARD  the bound layer has no backward()
//   -DRESIZES      it declares in_place but changes the number of values
//   neither        the complete layer: this file compiles
// Only the headers it needs: each of these tests compiles its file anew.
#include <tnet/layers/activation.hpp>
#include <tnet/layers/dense.hpp>
#include <tnet/layers/flatten.hpp>
#include <tnet/model/sequential.hpp>

// Doubles its input; a well-formed user layer but for what the macros take away.
struct Twice : tnet::LayerSpec {
  template <class In>
  class Layer : public tnet::Stateless {
   public:
    using input_shape = In;
#ifdef RESIZES
    using output_shape = tnet::Shape<In::height, In::width, 2 * In::channels>;
#else
    using output_shape = In;
#endif
    static constexpr bool in_place = true;
    static std::string describe() { return "Twice"; }
    void forward(const float* x, float* y, int batch, tnet::Pass) {
      for (int i = 0; i < batch * In::size; ++i) y[i] = 2 * x[i];
    }
#ifndef NO_BACKWARD
    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      if (dx)
        for (int i = 0; i < batch * In::size; ++i) dx[i] = 2 * dy[i];
    }
#endif
  };
};

using Net = tnet::Sequential<tnet::Input<4, 4, 1>, Twice, tnet::Flatten, tnet::Dense<3>, tnet::Sigmoid>;

int main() {
  Net net;
  return net.parameters().values.empty();
}
