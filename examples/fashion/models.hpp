// The network types the fashion programs are compiled for, and how a run picks one.
//
// Three architectures (fashion_train --arch): SmallerVGGNet, the tutorial's, and ResNet18 and
// MobileNetV2 beside it. The label count is a network's run-time width, so one type serves any
// dataset; the image size is architecture (it fixes every layer's shape), so each type is compiled
// for given sizes. networks.cmake lists them, architecture:size, the one list: from it CMake
// generates each type's translation units (instantiate.cpp.in, built in parallel) and
// fashion_networks.hpp, from which `networks` below is read.
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

// FASHION_NETWORKS(X) and FASHION_ALL_NETWORKS(X): X(architecture, size) for each network type
// the programs are compiled for, and for each networks.cmake lists.
#include "fashion_networks.hpp"

#define FASHION_NETWORK(architecture, size) Network{Architecture::architecture, size},
/// Every network type the programs are compiled for, one translation unit each: the build's
/// choice (-DTNET_FASHION_NETWORKS) from `all_networks`.
inline constexpr auto networks = std::to_array<Network>({FASHION_NETWORKS(FASHION_NETWORK)});
/// Every network type the programs can be compiled for.
inline constexpr auto all_networks = std::to_array<Network>({FASHION_ALL_NETWORKS(FASHION_NETWORK)});
#undef FASHION_NETWORK

/// Whether the programs are compiled for `n`.
constexpr bool compiled(Network n) {
  for (const Network& m : networks)
    if (m == n) return true;
  return false;
}

/// Whether the programs could be compiled for `n`.
constexpr bool listed(Network n) {
  for (const Network& m : all_networks)
    if (m == n) return true;
  return false;
}

/// How to configure a build with the networks `wanted` as well as its own, for messages:
/// `-DTNET_FASHION_NETWORKS="smallervgg:96;resnet18:96"`, in all_networks' order.
template <class Wanted>
std::string configure_with(Wanted wanted) {
  std::string s = "-DTNET_FASHION_NETWORKS=\"";
  bool first = true;
  for (const Network& n : all_networks) {
    if (!compiled(n) && !wanted(n)) continue;
    if (!first) s += ';';
    first = false;
    s.append(arch_option(n.architecture)).append(":").append(std::to_string(n.size));
  }
  return s += '"';
}

/// What a build without an architecture says about it.
inline std::string not_built(Architecture a) {
  return std::string(arch_name(a)) + " is not compiled into these programs (configure with " +
         configure_with([a](Network n) { return n.architecture == a; }) + ")";
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
