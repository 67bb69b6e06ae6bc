# The fashion programs' network types, architecture:size, in one list: fashion_all_networks. The
# build compiles those TNET_FASHION_NETWORKS names or, when it is empty, every one (less ResNet18
# and MobileNetV2 with TNET_FASHION_TORCHVISION off): fashion_networks. The C++ reads both from
# the fashion_networks.hpp this writes into fashion_generated_dir (models.hpp). Included by
# examples/CMakeLists.txt, which compiles each network in its own translation units, and by
# tests/CMakeLists.txt.
set(fashion_all_networks smallervgg:64 smallervgg:96 smallervgg:128 resnet18:96 mobilenetv2:96)
set(TNET_FASHION_NETWORKS "" CACHE STRING
    "The network types the fashion programs are compiled for, architecture:size each (smallervgg:96;resnet18:96); empty: every one")

foreach(network IN LISTS TNET_FASHION_NETWORKS)
  if(NOT network IN_LIST fashion_all_networks)
    string(REPLACE ";" ", " choices "${fashion_all_networks}")
    message(FATAL_ERROR "TNET_FASHION_NETWORKS: '${network}' is none of the fashion programs' networks (${choices})")
  endif()
endforeach()
set(fashion_networks)
set(fashion_networks_x)
set(fashion_all_networks_x)
foreach(network IN LISTS fashion_all_networks)
  string(REPLACE ":" ", " pair ${network})
  string(APPEND fashion_all_networks_x " X(${pair})")
  if(TNET_FASHION_NETWORKS)
    if(NOT network IN_LIST TNET_FASHION_NETWORKS)
      continue()
    endif()
  elseif(NOT TNET_FASHION_TORCHVISION AND NOT network MATCHES "^smallervgg:")
    continue()
  endif()
  list(APPEND fashion_networks ${network})
  string(APPEND fashion_networks_x " X(${pair})")
endforeach()
set(fashion_generated_dir ${PROJECT_BINARY_DIR}/fashion_generated)
configure_file(${CMAKE_CURRENT_LIST_DIR}/networks.hpp.in ${fashion_generated_dir}/fashion_networks.hpp @ONLY)
