#include <tnet/tnet.hpp>

#include <cstdio>

int main() {
  using Net = tnet::Sequential<tnet::Input<4, 4, 1>, tnet::Flatten, tnet::Dense<2>, tnet::Sigmoid>;
  Net net(1);
  tnet::Adam adam;
  const float x[16] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}, y[2] = {1, 0};
  double first = net.train_step(x, y, 1, adam), last = first;
  for (int i = 0; i < 50; ++i) last = net.train_step(x, y, 1, adam);
  std::printf("consumer: loss %.4f -> %.4f\n", first, last);
  return last < first ? 0 : 1;
}
