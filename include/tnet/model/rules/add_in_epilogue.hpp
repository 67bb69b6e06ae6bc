// tnet/model/rules/add_in_epilogue.hpp: a residual block's sum, and the clamp after the block,
// applied as the last layer of the block's body writes its output.
//
//   Residual (a layer that sums_paths) [, ReLU or ReLU6]: the shortcut runs, then the body's
//   plan but for its last step, whose layer writes the block's output through one epilogue: its
//   own (the bias; in inference the clamp and affine that step folds: Conv -> BN), then the
//   shortcut's values added, then the clamp after the block. ResNet's Conv -> BN -> add -> ReLU
//   and MobileNetV2's Conv -> BN -> add: the body's output and the sum are never written of their
//   own, nor read back.
//
// Inference (AddInEpilogue<Mode::infer>): the body's last step is a layer with an epilogue and
// the clamps and affines after it that fold_epilogue folds; an Epilogue adds after its affine and
// has one clamp, so that step's clamp, if it has one, must come before its affine, and the block
// is then not followed by a clamp. A block followed by an affine (Residual -> BN) is left to
// fold_epilogue. Training (AddInEpilogue<Mode::train>): the body's last step is that layer alone,
// and its backward does not read its output (which is not where the body keeps it); the clamp
// after the block works in place over the sum (its backward reads it there). Backward runs the
// block and the clamp one by one: the block's backward needs neither path's output.
//
// Capabilities read: sums_paths, takes_epilogue, is_clamp, folds_as_affine, backward_reads_output
// (layers/layer.hpp), and the body's plan and buffer sharing. Bit for bit the layers one by one:
// each value goes through the same operations in the same order (tests/test_rules.cpp).
#pragma once

#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../../core/config.hpp"
#include "../../layers/layer.hpp"
#include "fold_epilogue.hpp"

namespace tnet::rules {

namespace detail {
// The plan a chain of type Chain runs in mode M (Mode::train for training and calibration).
template <class Chain, Mode M>
using plan_in = std::conditional_t<M == Mode::infer, typename Chain::inference_plan, typename Chain::training_plan>;

// Whether layers [First, First + Count) of Layout include an affine.
template <class Layout, std::size_t First, std::size_t Count>
constexpr bool has_affine() {
  return []<std::size_t... J>(std::index_sequence<J...>) {
    return (false || ... || folds_as_affine<typename Layout::template layer_type<First + J>>);
  }(std::make_index_sequence<Count>{});
}

// Whether the clamp and affine of layers [First, First + Count) of Layout, folded into one
// epilogue, can be followed in it by an added tensor, and then by a clamp if Clamp: their clamp
// (if any) comes before their affine (if any), and there are not two clamps.
template <class Layout, std::size_t First, std::size_t Count, bool Clamp>
constexpr bool adds_after() {
  bool clamp = false, affine = false, fits = true;
  [&]<std::size_t... J>(std::index_sequence<J...>) {
    (([&] {
       if constexpr (is_clamp<typename Layout::template layer_type<First + J>>) fits = fits && !affine, clamp = true;
       else affine = true;
     }()),
     ...);
  }(std::make_index_sequence<Count>{});
  return fits && !(clamp && Clamp);
}

// Whether the last step of the plan Block's body runs in mode M can write the block's output,
// its epilogue adding the shortcut's values (then a clamp, if Clamp).
template <class Block, Mode M, bool Clamp>
constexpr bool body_ends_in_epilogue() {
  using Body = typename Block::body_type;
  using Layout = typename Body::layout_type;
  using Steps = plan_in<Body, M>;
  if constexpr (std::tuple_size_v<Steps> == 0) {
    return false;
  } else {
    using Tail = std::tuple_element_t<std::tuple_size_v<Steps> - 1, Steps>;
    using L = typename Layout::template layer_type<Tail::first>;
    if constexpr (!takes_epilogue<L>) return false;
    else if constexpr (M == Mode::infer)
      return epilogue_followers<Layout, Tail::first + 1>() == Tail::length - 1 &&
             adds_after<Layout, Tail::first + 1, Tail::length - 1, Clamp>();
    else return Tail::length == 1 && !backward_reads_output<L> && !Layout::template shares_buffer<Tail::first>;
  }
}
}  // namespace detail

template <Mode M>
struct AddInEpilogue {
  static_assert(M == Mode::infer || M == Mode::train, "tnet: AddInEpilogue is for the inference plan or the training plan");
  static constexpr std::string_view name = "add_in_epilogue";
  static constexpr bool splits_backward = true;  // in the training plan

  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    using L = typename Layout::template layer_type<I>;
    if constexpr (!sums_paths<L>) {
      return 0;
    } else {
      constexpr std::size_t followers = detail::epilogue_followers<Layout, I + 1>();
      if constexpr (M == Mode::infer && detail::has_affine<Layout, I + 1, followers>()) {
        return 0;
      } else {
        constexpr bool clamp = [] {
          if constexpr (I + 1 >= Layout::depth) return false;
          else if constexpr (!is_clamp<typename Layout::template layer_type<I + 1>>) return false;
          else return M == Mode::infer || Layout::template shares_buffer<I + 1>;
        }();
        return detail::body_ends_in_epilogue<L, M, clamp>() ? (clamp ? 2 : 1) : 0;
      }
    }
  }

  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    using Block = typename Chain::template layer_type<I>;
    using Body = typename Block::body_type;
    using Steps = detail::plan_in<Body, M>;
    using Tail = std::tuple_element_t<std::tuple_size_v<Steps> - 1, Steps>;
    auto& block = chain.template layer<I>();
    Body& body = block.body();
    auto& shortcut = block.shortcut();
    const float* x = chain.template input_of<I>();
    body.reserve(batch);
    shortcut.reserve(batch);
    const float* added = Block::shortcut_type::depth == 0 ? x : shortcut.forward(x, batch, pass);
    body.template forward_steps<Steps, std::tuple_size_v<Steps> - 1>(x, batch, pass);
    Epilogue epilogue = detail::folded_epilogue<Tail::first, Tail::length - 1>(body);
    epilogue.added = added;
    epilogue.added_stride = std::ptrdiff_t(chain.template channels_of<I>());
    if constexpr (N == 2) {
      epilogue.relu = true;
      epilogue.relu_max = Chain::template layer_type<I + 1>::clamp_max;
      epilogue.affine_first = true;  // the clamp after the affine and the sum
    }
    body.template layer<Tail::first>().forward(body.template input_of<Tail::first>(), chain.template output_buffer<I + N - 1>(), batch,
                                               pass, epilogue);
  }
};

}  // namespace tnet::rules
