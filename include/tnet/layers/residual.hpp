// tnet/layers/residual.hpp: a residual block, y = body(x) + shortcut(x), as one layer.
//
//   Residual<Conv2D<64, 3>, BatchNorm, ReLU, Conv2D<64, 3>, BatchNorm>          y = body(x) + x
//   Residual<Conv2D<128, 3, 2>, BatchNorm, ReLU, Conv2D<128, 3>, BatchNorm,
//            Shortcut<Conv2D<128, 1, 2, Padding::valid>, BatchNorm>>           a projection
//
// The body is any chain of layers; the shortcut is the identity, or the chain in a Shortcut<...>
// given last (a 1x1 convolution with the body's stride and a batch normalisation, where the body
// changes the shape). Both run as chains (model/chain.hpp), so every fusion that applies to a
// network applies inside them. The two outputs must have the same shape: a block whose body
// changes it without a projection is a compile error naming the block and both shapes. The
// chain around the block runs it by its plan: where the body's last layer can add the shortcut's
// output as it writes its own (model/rules/add_in_epilogue.hpp: Conv -> BN -> add -> ReLU), the
// sum is never written apart; this forward is the block on its own.
// Backward: the input gradient is the sum of the body's and the shortcut's (dy itself for the
// identity). Parameters are the body's tensors then the shortcut's, named "0.conv2d.kernel",
// ..., "shortcut.0.conv2d.kernel". The block reads neither its output in backward nor anything
// in place, so a ReLU after it works over its output.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "../core/vectorise.hpp"
#include "../model/chain.hpp"
#include "layer.hpp"

namespace tnet {

/// The layers on a residual block's shortcut path: Residual<Body..., Shortcut<Specs...>>.
template <class... Specs>
struct Shortcut {};

namespace detail {
template <class... T>
struct TypeList {};

// Splits Residual's arguments into the body and the shortcut (a Shortcut<...> given last).
template <class Body, class... Rest>
struct split_residual;
template <class... Body>
struct split_residual<TypeList<Body...>> {
  using body = TypeList<Body...>;
  using shortcut = TypeList<>;
  static constexpr bool shortcut_last = true;
};
template <class... Body, class... Path>
struct split_residual<TypeList<Body...>, Shortcut<Path...>> {
  using body = TypeList<Body...>;
  using shortcut = TypeList<Path...>;
  static constexpr bool shortcut_last = true;
};
template <class... Body, class Next, class... Rest>
struct split_residual<TypeList<Body...>, Next, Rest...> : split_residual<TypeList<Body..., Next>, Rest...> {};
template <class... Body, class... Path, class Next, class... Rest>
struct split_residual<TypeList<Body...>, Shortcut<Path...>, Next, Rest...> {
  using body = TypeList<Body...>;
  using shortcut = TypeList<>;
  static constexpr bool shortcut_last = false;
};

template <class In, class List>
struct chain_of;
template <class In, class... Specs>
struct chain_of<In, TypeList<Specs...>> {
  using type = LayerChain<In, Specs...>;
};

template <class Chain>
std::string describe_chain(const Chain& chain) {
  std::string s;
  chain.for_each_layer([&]<std::size_t I>(const auto& layer) { s += (I ? " -> " : "") + layer.describe(); });
  return s;
}
}  // namespace detail

/// True when a residual block's body and shortcut give outputs of the same shape. When they do
/// not, the compiler's note names this template with the block and both shapes:
///   'tnet::ResidualShapesMatch<tnet::Residual<...>, tnet::Shape<16, 16, 64>, tnet::Shape<32, 32, 32>>::value'
template <class Block, class BodyOutput, class ShortcutOutput>
struct ResidualShapesMatch {
  static constexpr bool value = std::is_same_v<BodyOutput, ShortcutOutput>;
};

template <class... Specs>
struct Residual : LayerSpec {
  using parts = detail::split_residual<detail::TypeList<>, Specs...>;
  static_assert(parts::shortcut_last, "tnet::Residual: a Shortcut<...> can only be the last argument");
  static_assert(sizeof...(Specs) > 0, "tnet::Residual: a residual block needs at least one layer in its body");

  template <class In>
  class Layer {
   public:
    using body_type = typename detail::chain_of<In, typename parts::body>::type;
    using shortcut_type = typename detail::chain_of<In, typename parts::shortcut>::type;
    static constexpr bool identity = shortcut_type::depth == 0;
    static_assert(ResidualShapesMatch<Residual, typename body_type::output_shape, typename shortcut_type::output_shape>::value,
                  "tnet::Residual: the body's output and the shortcut's differ in shape; the note "
                  "'ResidualShapesMatch<Block, BodyOutput, ShortcutOutput>' names the block and both shapes. Where the body "
                  "changes the shape, give the block a projection: Shortcut<Conv2D<filters, 1, stride, Padding::valid>, BatchNorm>.");
    using input_shape = In;
    using output_shape = typename body_type::output_shape;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t non_trainable_count = body_type::non_trainable_count() + shortcut_type::non_trainable_count();

    Layer() {
      name_tensors(body_, "");
      name_tensors(shortcut_, "shortcut.");
    }
    Layer(Layer&&) noexcept = default;
    Layer& operator=(Layer&&) noexcept = default;

    std::string describe() const {
      return "Residual(" + detail::describe_chain(body_) + "; shortcut " + (identity ? "identity" : detail::describe_chain(shortcut_)) +
             ")";
    }
    std::vector<TensorSize> parameter_tensors() const {
      std::vector<TensorSize> tensors;
      for (const Named& t : names_) tensors.push_back({t.name, t.size});
      return tensors;
    }
    void bind(float* values, float* grads) {
      const std::size_t body = body_.parameter_count();
      body_.bind(values, grads, [](auto&&...) {});
      shortcut_.bind(values + body, grads + body, [](auto&&...) {});
    }
    void init(Rng rng) {
      body_.init(rng.derive(0));
      shortcut_.init(rng.derive(1));
    }
    template <class Visit>
    void visit_state(Visit&& visit) {
      visit_chain_state(body_, "", visit);
      visit_chain_state(shortcut_, "shortcut.", visit);
    }

    void forward(const float* x, float* y, int batch, Pass pass) { forward(x, y, batch, pass, Epilogue{}); }
    /// y = body(x) + shortcut(x), each sum then put through `epilogue` (its affine and clamp, per
    /// channel): the ReLU after a residual block (model/rules/) costs no pass of its own.
    void forward(const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue) {
      body_.reserve(batch);
      shortcut_.reserve(batch);
      const float* b = body_.forward(x, batch, pass);
      const float* s = identity ? x : shortcut_.forward(x, batch, pass);
      constexpr std::ptrdiff_t C = output_shape::channels;
      const std::ptrdiff_t pixels = std::ptrdiff_t(batch) * output_shape::height * output_shape::width;
      const Epilogue e = epilogue;
      if (e.empty())
        return for_blocks(pixels * C, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t i = begin; i < end; ++i) y[i] = b[i] + s[i];
        });
      for_blocks(pixels, std::max<std::ptrdiff_t>(1, 16384 / C), [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t p = begin; p < end; ++p) {
          float* row = y + p * C;
          for (std::ptrdiff_t c = 0; c < C; ++c) row[c] = b[p * C + c] + s[p * C + c];
          e.finish_row(row, C, nullptr, e.scale, e.shift, e.added_at(p, 0));
        }
      });
    }
    void backward(const float*, const float*, const float* dy, float* dx, int batch) {
      body_.backward(dy, dx, [](std::size_t) {});
      const float* s = dy;
      if constexpr (!identity) {
        ensure_size(shortcut_dx_, std::size_t(batch) * In::size);  // allocates only for a larger batch
        shortcut_.backward(dy, dx ? shortcut_dx_.data() : nullptr, [](std::size_t) {});
        s = shortcut_dx_.data();
      }
      if (!dx) return;
      const std::ptrdiff_t count = std::ptrdiff_t(batch) * In::size;
      for_blocks(count, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t i = begin; i < end; ++i) dx[i] += s[i];
      });
    }

    /// The chains, for exporters and tests.
    body_type& body() { return body_; }
    const body_type& body() const { return body_; }
    shortcut_type& shortcut() { return shortcut_; }
    const shortcut_type& shortcut() const { return shortcut_; }

    // What a network asks of its layers, passed on to the layers inside.
    void reset_moving_statistics() {
      each_layer([](auto& layer) {
        if constexpr (requires { layer.reset_moving_statistics(); }) layer.reset_moving_statistics();
      });
    }
    void reseed(Rng rng) {
      reseed_chain(body_, rng.derive(0));
      reseed_chain(shortcut_, rng.derive(1));
    }
    void round_kernel(bool round) {
      each_layer([&](auto& layer) {
        if constexpr (requires { layer.round_kernel(round); }) layer.round_kernel(round);
      });
    }
    void prepare_inference(bool prepare) {
      each_layer([&](auto& layer) {
        if constexpr (requires { layer.prepare_inference(prepare); }) layer.prepare_inference(prepare);
      });
    }

   private:
    struct Named {
      std::string name;
      std::size_t size;
    };
    template <class Chain>
    void name_tensors(Chain& chain, const std::string& prefix) {
      chain.for_each_layer([&]<std::size_t I>(const auto& layer) {
        for (const TensorSize& t : layer.parameter_tensors())
          names_.push_back({prefix + chain.template layer_name<I>() + "." + std::string(t.name), t.size});
      });
    }
    template <class Chain, class Visit>
    static void visit_chain_state(Chain& chain, const std::string& prefix, Visit& visit) {
      chain.for_each_layer([&]<std::size_t I>(auto& layer) {
        const std::string at = prefix + chain.template layer_name<I>() + ".";
        layer.visit_state([&](std::string_view name, auto span) { visit(std::string_view(at + std::string(name)), span); });
      });
    }
    template <class Chain>
    static void reseed_chain(Chain& chain, const Rng& root) {
      chain.for_each_layer([&]<std::size_t I>(auto& layer) {
        if constexpr (requires { layer.reseed(root.derive(I)); }) layer.reseed(root.derive(I));
      });
    }
    template <class F>
    void each_layer(F&& f) {
      body_.for_each_layer([&]<std::size_t>(auto& layer) { f(layer); });
      shortcut_.for_each_layer([&]<std::size_t>(auto& layer) { f(layer); });
    }

    body_type body_;
    shortcut_type shortcut_;
    std::vector<Named> names_;  // what parameter_tensors() names
    Buffer shortcut_dx_;        // the shortcut's input gradient, added to the body's
  };
};

}  // namespace tnet
