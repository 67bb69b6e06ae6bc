// tnet/data/split.hpp: a reproducible train / test split of sample indices.
//
// The indices are shuffled with Rng(seed) (Fisher-Yates); the first ceil(n * test_fraction) go to
// the test set, as scikit-learn's train_test_split sizes it. Stratified, each distinct label set
// is split on its own (round(count * test_fraction) of it to test), so every label combination
// keeps its proportion in both sets. Both lists come back sorted.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/rng.hpp"

namespace tnet {

struct Split {
  std::vector<std::size_t> train, test;
};

namespace detail {
inline void shuffle(std::vector<std::size_t>& v, const Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.bits(i) % i]);
}
inline void check_fraction(double test_fraction) {
  if (!(test_fraction > 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("train_test_split: test_fraction must be in (0, 1), got " + std::to_string(test_fraction));
}
}  // namespace detail

inline Split train_test_split(std::size_t n, double test_fraction, std::uint64_t seed) {
  detail::check_fraction(test_fraction);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  detail::shuffle(order, Rng(seed));
  const std::size_t test = std::min(n, std::size_t(std::ceil(double(n) * test_fraction)));
  Split s{{order.begin() + std::ptrdiff_t(test), order.end()}, {order.begin(), order.begin() + std::ptrdiff_t(test)}};
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

/// Stratified by label set.
inline Split train_test_split(const std::vector<std::vector<std::string>>& labels, double test_fraction, std::uint64_t seed) {
  detail::check_fraction(test_fraction);
  std::map<std::vector<std::string>, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    std::vector<std::string> key = labels[i];
    std::sort(key.begin(), key.end());
    groups[key].push_back(i);
  }
  Split s;
  std::uint64_t stream = 0;
  for (auto& [key, members] : groups) {
    detail::shuffle(members, Rng(seed).derive(stream++));
    const std::size_t test = std::size_t(std::llround(double(members.size()) * test_fraction));
    s.test.insert(s.test.end(), members.begin(), members.begin() + std::ptrdiff_t(test));
    s.train.insert(s.train.end(), members.begin() + std::ptrdiff_t(test), members.end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

}  // namespace tnet
