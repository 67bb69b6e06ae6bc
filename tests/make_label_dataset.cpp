// make_label_dataset DIR COLOURS PLACES PER_FOLDER: writes a folder dataset with COLOURS + PLACES
// labels, in fashion_train's convention (DIR/cNN_pMM/K.png: labels cNN and pMM). Each picture is
// a light noisy background with one square of colour NN at place MM of a 5-column grid; every
// colour appears at two places and every place with several colours, so both labels are needed.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <tnet/tnet.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: make_label_dataset DIR COLOURS PLACES PER_FOLDER\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int colours = std::atoi(argv[2]), places = std::atoi(argv[3]), per_folder = std::atoi(argv[4]);
  // Colours from the levels {0, 85, 170, 255} per channel, the light ones left out (the
  // background is light).
  std::vector<std::array<int, 3>> palette;
  for (int r = 0; r < 4; ++r)
    for (int g = 0; g < 4; ++g)
      for (int b = 0; b < 4; ++b)
        if (r + g + b <= 6) palette.push_back({85 * r, 85 * g, 85 * b});
  if (colours < 1 || colours > int(palette.size()) || places < 2 || places > 20 || per_folder < 1) {
    std::fprintf(stderr, "make_label_dataset: 1 to %zu colours, 2 to 20 places, at least 1 picture per folder\n", palette.size());
    return 2;
  }
  const int size = 64, side = 10, columns = 5;
  for (int c = 0; c < colours; ++c)
    for (const int p : {c % places, (c * 7 + 3) % places}) {
      char name[32];
      std::snprintf(name, sizeof name, "c%02d_p%02d", c, p);
      const std::filesystem::path folder = std::filesystem::path(dir) / name;
      std::filesystem::create_directories(folder);
      for (int k = 0; k < per_folder; ++k) {
        const tnet::Rng rng = tnet::Rng(std::uint64_t(c * 1000 + p * 37 + k));
        tnet::Image image{size, size, std::vector<std::uint8_t>(std::size_t(size) * size * 3)};
        const int x0 = 4 + (p % columns) * 12 + int(rng.uniform(0) * 3), y0 = 4 + (p / columns) * 12 + int(rng.uniform(1) * 3);
        for (int y = 0; y < size; ++y)
          for (int x = 0; x < size; ++x)
            for (int ch = 0; ch < 3; ++ch) {
              const bool on = x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
              const double jitter = 24 * (rng.uniform(std::uint64_t(2 + (y * size + x) * 3 + ch)) - 0.5);
              const double v = (on ? palette[std::size_t(c)][std::size_t(ch)] : 215) + jitter;
              image.pixels[(std::size_t(y) * size + x) * 3 + ch] = std::uint8_t(std::clamp(v, 0.0, 255.0));
            }
        tnet::write_png((folder / (std::to_string(k) + ".png")).string(), image);
      }
    }
  return 0;
}
