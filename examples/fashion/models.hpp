// The network types the fashion programs are compiled for, and how a run picks one.
//
// A tnet network is a type, so the label count and image size are fixed at compile time. The
// programs are built for 2 to 8 labels (the tutorial has 6) and 64, 96 or 128 pixel images;
// instantiate.cpp.in makes one translation unit per size.
#pragma once

#include <string>
#include <utility>

namespace fashion {

inline constexpr int min_labels = 2, max_labels = 8;

/// Calls job.template operator()<L>() for L == labels; -1 when labels is out of range.
template <class Job>
int for_labels(int labels, Job&& job) {
  int result = -1;
  [&]<int... I>(std::integer_sequence<int, I...>) {
    ((labels == min_labels + I ? (result = job.template operator()<min_labels + I>(), true) : false) || ...);
  }(std::make_integer_sequence<int, max_labels - min_labels + 1>{});
  return result;
}

struct TrainSettings;
struct TrainData;
struct ClassifySettings;

int train_size64(int labels, const TrainSettings&, TrainData&);
int train_size96(int labels, const TrainSettings&, TrainData&);
int train_size128(int labels, const TrainSettings&, TrainData&);
int classify_size64(int labels, const ClassifySettings&);
int classify_size96(int labels, const ClassifySettings&);
int classify_size128(int labels, const ClassifySettings&);

}  // namespace fashion
