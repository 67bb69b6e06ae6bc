// The network types the fashion programs are compiled for, and how a run picks one.
//
// The label count is the network's run-time width, so one SmallerVGGNet serves any dataset; the
// image size is architecture (it fixes every layer's shape), so the programs are compiled for 64,
// 96 and 128 pixels, one translation unit each (instantiate.cpp.in), built in parallel.
#pragma once

#include <array>

namespace fashion {

inline constexpr std::array<int, 3> image_sizes = {64, 96, 128};

struct TrainSettings;
struct TrainData;
struct ClassifySettings;
struct ExportSettings;

int train_size64(const TrainSettings&, TrainData&);
int train_size96(const TrainSettings&, TrainData&);
int train_size128(const TrainSettings&, TrainData&);
int classify_size64(const ClassifySettings&);
int classify_size96(const ClassifySettings&);
int classify_size128(const ClassifySettings&);
int export_size64(const ExportSettings&);
int export_size96(const ExportSettings&);
int export_size128(const ExportSettings&);

}  // namespace fashion
