// tnet/model/plan.hpp: which layers of a chain run as one, decided at compile time.
//
// A chain of layers (model/chain.hpp) runs a *plan*: a list of steps, each a window of
// consecutive layers and the *rule* that runs them. A rule (model/rules/) is a struct with
//   static constexpr std::string_view name;
//   template <class Layout, std::size_t I> static constexpr std::size_t match();
//       how many layers from layer I of the chain it runs as one; 0 where it does not apply.
//       It reads the layers' capabilities (layers/layer.hpp), never their names.
//   template <std::size_t I, std::size_t N, class Chain> static void forward(Chain&, int batch, const Pass&);
//       runs layers [I, I + N) on chain.input_of<I>(), writing chain.output_buffer<I + N - 1>()
//       (the layers inside the window write nothing of their own).
// and, in a training plan, either
//   static constexpr bool splits_backward = true;   backward runs the layers one by one
// or
//   template <class Layout, std::size_t I, std::size_t N> static constexpr bool masks_input;
//   template <std::size_t I, std::size_t N, bool MaskInput, class Chain>
//   static void backward(Chain&, const float* dy, float* dx);
//       every parameter gradient of the window, and dx = dL/d(input of layer I) unless dx is
//       null; zeroed where that input is not positive when MaskInput (which only a rule that
//       says masks_input is asked for: model/rules/relu_gradient.hpp).
// The plan for a mode (Plan<Layout, Rules>) is made from layer 0 on: at each layer the first rule
// of the mode's list (model/rules.hpp) that matches takes its window, and where none does, the
// layer runs alone (Alone below). Adding a fusion is a rule file, a line in the list, and a test.
#pragma once

#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "../core/config.hpp"
#include "../layers/layer.hpp"

namespace tnet {

/// Layers [First, First + Length) run by Rule.
template <class Rule, std::size_t First, std::size_t Length>
struct Step {
  using rule = Rule;
  static constexpr std::size_t first = First, length = Length, last = First + Length - 1;
};

/// A mode's rules, the first that matches winning.
template <class... Rules>
struct RuleList {};

namespace rules {
/// A layer on its own: its forward, its backward (or backward_where_positive when it is asked
/// to mask its input's gradient).
struct Alone {
  static constexpr std::string_view name = "layer";
  template <class Layout, std::size_t I>
  static constexpr std::size_t match() {
    return 1;
  }
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    chain.template layer<I>().forward(chain.template input_of<I>(), chain.template output_buffer<I>(), batch, pass);
  }
  template <class Layout, std::size_t I, std::size_t N>
  static constexpr bool masks_input = masks_input_gradient<typename Layout::template layer_type<I>>;
  template <std::size_t I, std::size_t N, bool MaskInput, class Chain>
  static void backward(Chain& chain, const float* dy, float* dx) {
    auto& layer = chain.template layer<I>();
    const float *x = chain.template input_of<I>(), *y = chain.template output_of<I>();
    if constexpr (MaskInput) layer.backward_where_positive(x, y, dy, dx, chain.batch());
    else layer.backward(x, y, dy, dx, chain.batch());
  }
};
}  // namespace rules

namespace detail {
template <class Layout, std::size_t I, class... Rules>
struct first_match {
  using rule = rules::Alone;
  static constexpr std::size_t length = 1;
};
template <class Layout, std::size_t I, class Rule, class... Rest>
struct first_match<Layout, I, Rule, Rest...> {
  static constexpr std::size_t matched = Rule::template match<Layout, I>();
  using rule = std::conditional_t<(matched > 0), Rule, typename first_match<Layout, I, Rest...>::rule>;
  static constexpr std::size_t length = matched > 0 ? matched : first_match<Layout, I, Rest...>::length;
};

template <class Layout, class Rules, std::size_t I, class... Steps>
struct make_plan {
  using type = std::tuple<Steps...>;
};
template <class Layout, class... Rules, std::size_t I, class... Steps>
  requires(I < Layout::depth)
struct make_plan<Layout, RuleList<Rules...>, I, Steps...> {
  using match = first_match<Layout, I, Rules...>;
  static_assert(match::length >= 1 && I + match::length <= Layout::depth, "tnet: a rule's window runs past the chain");
  using type =
      typename make_plan<Layout, RuleList<Rules...>, I + match::length, Steps..., Step<typename match::rule, I, match::length>>::type;
};

// A training plan's steps as backward runs them: a step whose rule splits_backward becomes one
// step per layer.
template <class Step>
struct backward_steps {
  using type = std::tuple<Step>;
};
template <class Step>
  requires(requires { requires Step::rule::splits_backward; })
struct backward_steps<Step> {
  using type = decltype([]<std::size_t... J>(std::index_sequence<J...>) {
    return std::tuple<tnet::Step<rules::Alone, Step::first + J, 1>...>{};
  }(std::make_index_sequence<Step::length>{}));
};
template <class Plan>
struct backward_plan;
template <class... Steps>
struct backward_plan<std::tuple<Steps...>> {
  using type = decltype(std::tuple_cat(std::declval<typename backward_steps<Steps>::type>()...));
};
}  // namespace detail

/// The steps a chain of layout Layout runs with Rules, in order (a std::tuple of Step).
template <class Layout, class Rules>
using Plan = typename detail::make_plan<Layout, Rules, 0>::type;
/// A training plan's steps as backward runs them, in forward order.
template <class Layout, class Rules>
using BackwardPlan = typename detail::backward_plan<Plan<Layout, Rules>>::type;

/// The rule of the step that starts at layer I of Plan ("" where layer I is inside one).
template <class Plan, std::size_t I>
constexpr std::string_view rule_at() {
  return []<std::size_t... S>(std::index_sequence<S...>) {
    std::string_view name;
    ((std::tuple_element_t<S, Plan>::first == I ? (name = std::tuple_element_t<S, Plan>::rule::name, 0) : 0), ...);
    return name;
  }(std::make_index_sequence<std::tuple_size_v<Plan>>{});
}
/// How many layers the step that starts at layer I of Plan runs (0 where I is inside one).
template <class Plan, std::size_t I>
constexpr std::size_t window_at() {
  return []<std::size_t... S>(std::index_sequence<S...>) {
    std::size_t length = 0;
    ((std::tuple_element_t<S, Plan>::first == I ? (length = std::tuple_element_t<S, Plan>::length, 0) : 0), ...);
    return length;
  }(std::make_index_sequence<std::tuple_size_v<Plan>>{});
}

}  // namespace tnet
