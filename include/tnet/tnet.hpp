// tnet: convolutional networks as C++ types, trained on the CPU.
// The umbrella header: everything the library offers.
#pragma once

#include "core/config.hpp"
#include "core/gemm.hpp"
#include "core/rng.hpp"
#include "core/shape.hpp"
#include "core/threads.hpp"
#include "layers/activation.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/dense.hpp"
#include "layers/dropout.hpp"
#include "layers/flatten.hpp"
#include "layers/max_pool.hpp"
#include "model/sequential.hpp"
#include "model/serialize.hpp"
#include "train/loss.hpp"
#include "train/metrics.hpp"
#include "train/optimizer.hpp"
