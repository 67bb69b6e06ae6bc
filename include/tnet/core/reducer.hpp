// tnet/core/reducer.hpp: what a network needs from a group of processes that train it together.
//
// Data-parallel training: every process holds the whole network and takes its own slice (a Shard)
// of every global batch. A network given a Shard (Sequential::train_step) computes its slice's
// contribution to the global batch's gradients and asks the Reducer for two things:
//   sum(values)              element-wise sum over the processes, in rank order, so that every
//                            process gets the same bits: batch normalisation's per-channel sums
//                            (its statistics are the global batch's), the loss
//   gradients_ready(grads)   these gradients are final here: start summing them over the
//                            processes (a layer's, as soon as backpropagation has passed it, so
//                            that communication overlaps the layers still computing)
//   finish_gradients()       wait for every started sum; the gradients are then the global
//                            batch's on every process
// tnet/dist/mpi.hpp implements it over MPI; tnet itself depends on no transport.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

namespace tnet {

class Reducer {
 public:
  virtual ~Reducer() = default;
  /// This process's place in the group, and the group's size.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Replaces `values` on every process by their sum over all processes, added in rank order.
  virtual void sum(std::span<double> values) = 0;
  /// Starts summing `grads` over the processes; they must not change until finish_gradients.
  virtual void gradients_ready(std::span<float> grads) = 0;
  /// Waits until every sum started by gradients_ready is done.
  virtual void finish_gradients() = 0;
};

/// Whether every process of the group passed the same `value` (a checksum of its settings, data
/// or weights), answered alike on every process: by one sum, comparing for each 16-bit quarter
/// of the value the sum of its squares with the square of its sum, equal only when all are equal
/// (exact in double for up to 1024 processes).
inline bool same_everywhere(Reducer& group, std::uint64_t value) {
  double quarters[8];
  for (int q = 0; q < 4; ++q) {
    const double x = double((value >> (16 * q)) & 0xffff);
    quarters[2 * q] = x, quarters[2 * q + 1] = x * x;
  }
  group.sum(quarters);
  const double n = group.size();
  for (int q = 0; q < 4; ++q)
    if (quarters[2 * q + 1] * n != quarters[2 * q] * quarters[2 * q]) return false;
  return true;
}

/// This process's part of a global batch: samples [offset, offset + count) of `global_batch`.
struct Shard {
  Reducer* reducer = nullptr;  // the group that shares the batch
  int offset = 0;
  int count = 0;
  int global_batch = 0;
};

/// The slice of a global batch of `global_batch` samples that process `rank` of `size` takes: as
/// equal as they can be, in rank order. Every process needs at least one sample.
inline Shard shard_of(int global_batch, int rank, int size, Reducer* reducer = nullptr) {
  if (size < 1 || rank < 0 || rank >= size)
    throw std::invalid_argument("tnet::shard_of: rank " + std::to_string(rank) + " of " + std::to_string(size) + " processes");
  if (global_batch < size)
    throw std::invalid_argument("tnet::shard_of: a batch of " + std::to_string(global_batch) + " cannot be shared by " +
                                std::to_string(size) + " processes (each needs at least one sample)");
  const long begin = long(global_batch) * rank / size, end = long(global_batch) * (rank + 1) / size;
  return {reducer, int(begin), int(end - begin), global_batch};
}

}  // namespace tnet
