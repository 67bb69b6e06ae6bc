// The network types the fashion programs are compiled for, and how a run picks one.
//
// Three architectures (fashion_train --arch): SmallerVGGNet, the tutorial's, and ResNet18 and
// MobileNetV2 beside it. The label count is a network's run-time width, so one type serves any
// dataset; the image size is architecture (it fixes every layer's shape), so each type is compiled
// for given sizes: SmallerVGGNet for 64, 96 and 128 pixels, the other two for 96 (the tutorial's),
// one translation unit each (instantiate.cpp.in), built in parallel.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <utility>

#include <tnet/models/mobilenet.hpp>
#include <tnet/models/resnet.hpp>

#include "cli.hpp"
#include "smaller_vgg.hpp"

namespace fashion {

/// The networks the programs train and run; the names are --arch's values.
enum class Architecture { smallervgg, resnet18, mobilenetv2 };
inline constexpr std::array<Architecture, 3> architectures = {Architecture::smallervgg, Architecture::resnet18, Architecture::mobilenetv2};

/// --arch's value for an architecture: "resnet18".
constexpr const char* arch_option(Architecture a) {
  return a == Architecture::smallervgg ? "smallervgg" : a == Architecture::resnet18 ? "resnet18" : "mobilenetv2";
}
/// The network's name: "ResNet18".
constexpr const char* arch_name(Architecture a) {
  return a == Architecture::smallervgg ? "SmallerVGGNet" : a == Architecture::resnet18 ? "ResNet18" : "MobileNetV2";
}

/// One network type the programs are compiled for: an architecture at one image size.
struct Network {
  Architecture architecture;
  int size;
  friend constexpr bool operator==(const Network&, const Network&) = default;
};

#ifndef TNET_FASHION_TORCHVISION
#define TNET_FASHION_TORCHVISION 1
#endif
/// Every one, one translation unit each; examples/CMakeLists.txt lists the same. ResNet18 and
/// MobileNetV2 are left out of a build configured with -DTNET_FASHION_TORCHVISION=OFF (about half
/// the compile time: the quick start's, unless it is given --arch).
#if TNET_FASHION_TORCHVISION
inline constexpr std::array<Network, 5> networks = {{{Architecture::smallervgg, 64},
                                                     {Architecture::smallervgg, 96},
                                                     {Architecture::smallervgg, 128},
                                                     {Architecture::resnet18, 96},
                                                     {Architecture::mobilenetv2, 96}}};
#else
inline constexpr std::array<Network, 3> networks = {
    {{Architecture::smallervgg, 64}, {Architecture::smallervgg, 96}, {Architecture::smallervgg, 128}}};
#endif
/// What a build without an architecture says about it.
inline std::string not_built(Architecture a) {
  return std::string(arch_name(a)) + " is not built into these programs (configure with -DTNET_FASHION_TORCHVISION=ON)";
}

/// torchvision's ResNet18 and MobileNetV2 (tnet/models) with the fashion programs' head, as
/// SmallerVGGNet's: the run-time label count, then a Sigmoid for multi-label training.
template <int Size = 96>
using ResNet18 = tnet::models::ResNet18<Size, Size, 3, tnet::dynamic, tnet::Sigmoid>;
template <int Size = 96>
using MobileNetV2 = tnet::models::MobileNetV2<Size, Size, 3, tnet::dynamic, tnet::Sigmoid>;

/// The tnet type of a network: NetworkType<Network{Architecture::resnet18, 96}> is ResNet18<96>.
template <Architecture A>
struct ArchitectureTypes;
template <>
struct ArchitectureTypes<Architecture::smallervgg> {
  template <int Size>
  using type = SmallerVGGNet<Size>;
};
template <>
struct ArchitectureTypes<Architecture::resnet18> {
  template <int Size>
  using type = ResNet18<Size>;
};
template <>
struct ArchitectureTypes<Architecture::mobilenetv2> {
  template <int Size>
  using type = MobileNetV2<Size>;
};
template <Network N>
using NetworkType = typename ArchitectureTypes<N.architecture>::template type<N.size>;

/// "smallervgg, resnet18 or mobilenetv2".
inline std::string arch_choices() {
  std::string s;
  for (std::size_t i = 0; i < architectures.size(); ++i)
    s += (i == 0 ? "" : i + 1 == architectures.size() ? " or " : ", ") + std::string(arch_option(architectures[i]));
  return s;
}

/// The value of the option `option` (--arch) as an architecture; throws UsageError naming the
/// value and the choices.
inline Architecture parse_architecture(const std::string& option, const std::string& value) {
  for (const Architecture a : architectures)
    if (value == arch_option(a)) return a;
  throw UsageError(option + " must be " + arch_choices() + ", got '" + value + "'");
}

/// The image sizes an architecture is compiled for: "64, 96 or 128", "96".
inline std::string sizes_text(Architecture a) {
  std::string s, last;
  for (const Network& n : networks) {
    if (n.architecture != a) continue;
    if (!last.empty()) s += (s.empty() ? "" : ", ") + last;
    last = std::to_string(n.size);
  }
  return s.empty() ? last : s + " or " + last;
}

/// Whether the programs are compiled for the architecture at some size.
constexpr bool built(Architecture a) {
  for (const Network& m : networks)
    if (m.architecture == a) return true;
  return false;
}

/// Whether the programs are compiled for `n`.
constexpr bool compiled(Network n) {
  for (const Network& m : networks)
    if (m == n) return true;
  return false;
}

/// f.template operator()<N>() for the compiled network N equal to `n` (which must be one).
template <class F>
int with_network(Network n, F&& f) {
  int status = -1;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (void)((networks[I] == n ? (status = f.template operator()<networks[I]>(), true) : false) || ...);
  }(std::make_index_sequence<networks.size()>{});
  return status;
}

struct TrainSettings;
struct TrainData;
struct ClassifySettings;
struct ExportSettings;

/// The programs' work for one network: specialised in its translation unit (instantiate.cpp.in,
/// instantiate_export.cpp.in).
template <Network N>
int train_network(const TrainSettings&, TrainData&);
template <Network N>
int classify_network(const ClassifySettings&);
template <Network N>
int export_network(const ExportSettings&);

}  // namespace fashion
