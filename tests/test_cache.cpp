// The image cache (data/cache.hpp): the same images as decoding them, reused until a photo
// changes however it was changed, rebuilt when damaged; images read and checked as batches need
// them, a cache truncated or damaged while in use an error; a build stopped by its cancel flag
// leaves nothing; batches prepared in the background equal to those prepared in place.
#include "support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <filesystem>
#include <numeric>

using namespace tnet;
namespace fs = std::filesystem;

namespace {

using test::error_of;
using test::TempDir;

// A w x h photo whose pixels depend on `seed`, written as a PNG.
void photo(const fs::path& path, int w, int h, int seed) {
  std::vector<std::uint8_t> pixels(std::size_t(w) * h * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::uint8_t((i * (7 + seed) + 31 * seed) % 256);
  fs::create_directories(path.parent_path());
  REQUIRE(stbi_write_png(path.c_str(), w, h, 3, pixels.data(), w * 3));
}

// Nine photos in three class folders (one in a sub-folder), a broken one and a text file.
std::string make_photos(const TempDir& dir) {
  const fs::path root = dir.path / "photos";
  int seed = 0;
  for (const char* name : {"red_dress/a.png", "red_dress/b.png", "red_dress/more/c.png", "red_dress/d.png", "blue_jeans/a.png",
                           "blue_jeans/b.png", "blue_jeans/c.png", "black_shoes/a.png", "black_shoes/b.png"})
    photo(root / name, 10 + seed, 14 - seed % 3, seed), ++seed;
  test::write((root / "blue_jeans/broken.jpg").string(), "not a photo");
  test::write((root / "black_shoes/notes.txt").string(), "ignored");
  return root.string();
}

const LoadOptions at12{.size = 12, .separator = '_', .limits = {}};

struct Cached {
  LabeledImages images;
  LoadReport report;
  std::string progress;
};

Cached load_cached(const std::string& photos, const std::string& cache, const LoadOptions& options = at12) {
  Cached c;
  std::ostringstream progress;
  c.images = load_image_folder_cached(photos, cache, options, &c.report, &progress);
  c.progress = progress.str();
  return c;
}

// Image i of a cached set, read.
std::vector<std::uint8_t> pixels_of(const LabeledImages& images, std::size_t i) {
  std::vector<std::uint8_t> buffer(images.image_bytes());
  const std::uint8_t* read = images.image(i, buffer.data());
  return {read, read + images.image_bytes()};
}

// The images, labels, paths, pixels and report of a cached load equal those of load_image_folder.
void check_same(const Cached& cached, const std::string& photos, const LoadOptions& options = at12) {
  LoadReport report;
  const LabeledImages plain = load_image_folder(photos, options, &report);
  CHECK(cached.images.cached());
  CHECK(cached.images.pixel_bytes() == 0);
  CHECK(cached.images.pixels.empty());
  CHECK(cached.images.size == plain.size);
  REQUIRE(cached.images.count() == plain.count());
  CHECK(cached.images.paths == plain.paths);
  CHECK(cached.images.labels == plain.labels);
  for (std::size_t i = 0; i < plain.count(); ++i) {
    INFO(plain.paths[i]);
    CHECK(std::memcmp(pixels_of(cached.images, i).data(), plain.image(i), plain.image_bytes()) == 0);
  }
  CHECK(cached.report.loaded == report.loaded);
  CHECK(cached.report.ignored == report.ignored);
  CHECK(cached.report.label_counts == report.label_counts);
  REQUIRE(cached.report.skipped.size() == report.skipped.size());
  for (std::size_t i = 0; i < report.skipped.size(); ++i) {
    CHECK(cached.report.skipped[i].path == report.skipped[i].path);
    CHECK(cached.report.skipped[i].reason == report.skipped[i].reason);
  }
}

struct FileId {
  ino_t inode = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileId&) const = default;
};
FileId file_id(const std::string& path) {
  struct stat info{};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return {info.st_ino, std::int64_t(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("image cache: the same images, labels, pixels and report as load_image_folder, reused on the next load") {
  TempDir dir("cache_same");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const Cached first = load_cached(photos, cache);
  check_same(first, photos);
  CHECK(first.images.count() == 9);
  REQUIRE(first.report.skipped.size() == 1);
  CHECK(contains(first.report.skipped[0].reason, "broken.jpg: not a JPEG, PNG, GIF or BMP image"));
  CHECK(first.report.cache_built);
  const std::string file = first.report.cache;
  CHECK(file == image_cache_file(photos, cache, 12));
  CHECK(fs::path(file).parent_path() == fs::path(cache));
  CHECK(fs::path(file).filename().string().starts_with("photos-12px-"));
  CHECK(fs::path(file).extension() == ".tnetcache");
  CHECK(contains(first.progress, "building the image cache " + file + ": 10 photos at 12x12"));
  CHECK(contains(first.progress, "10/10 photos (100%)"));
  std::ostringstream printed;
  first.report.print(printed);
  CHECK(contains(printed.str(), "built the image cache " + file));

  // Reused: not rebuilt, not rewritten, the broken photo reported again without decoding it.
  const FileId before = file_id(file);
  const Cached second = load_cached(photos, cache);
  check_same(second, photos);
  CHECK(!second.report.cache_built);
  CHECK(second.report.cache == file);
  CHECK(!contains(second.progress, "building"));
  std::ostringstream reused;
  second.report.print(reused);
  CHECK(contains(reused.str(), "read the image cache " + file));
  CHECK(file_id(file) == before);

  // The same folder named another way uses the same cache; another size has its own.
  const Cached renamed = load_cached(photos + "/./", cache);
  CHECK(!renamed.report.cache_built);
  CHECK(renamed.report.cache == file);
  CHECK(renamed.images.count() == 9);
  const LoadOptions at8{.size = 8, .separator = '_', .limits = {}};
  const Cached small = load_cached(photos, cache, at8);
  CHECK(small.report.cache_built);
  CHECK(small.report.cache != file);
  check_same(small, photos, at8);
  CHECK(fs::exists(file));
  // A copy of the set shares the file.
  const LabeledImages copy = second.images;
  CHECK(copy.file == second.images.file);
  CHECK(pixels_of(copy, 3) == pixels_of(second.images, 3));
}

TEST_CASE("image cache: a list file, its pixels reused when only its labels change") {
  TempDir dir("cache_list");
  photo(dir.path / "x.png", 9, 9, 1);
  photo(dir.path / "sub/y.png", 12, 7, 2);
  test::write(dir / "list.csv", "path,labels\nx.png,cat|night\nsub/y.png,dog\n");
  LoadReport plain_report, report;
  const LabeledImages plain = load_image_list(dir / "list.csv", at12, &plain_report);
  std::ostringstream progress;
  const LabeledImages cached = load_image_list_cached(dir / "list.csv", dir / "cache", at12, &report, &progress);
  CHECK(report.cache_built);
  CHECK(cached.cached());
  CHECK(cached.paths == plain.paths);
  CHECK(cached.labels == plain.labels);
  REQUIRE(cached.count() == 2);
  for (std::size_t i = 0; i < 2; ++i) CHECK(std::memcmp(pixels_of(cached, i).data(), plain.image(i), plain.image_bytes()) == 0);
  CHECK(fs::path(report.cache).filename().string().starts_with("list.csv-12px-"));

  test::write(dir / "list.csv", "path,labels\nx.png,cat\nsub/y.png,dog|day\n");
  const LabeledImages relabelled = load_image_list_cached(dir / "list.csv", dir / "cache", at12, &report);
  CHECK(!report.cache_built);
  CHECK(relabelled.labels == std::vector<std::vector<std::string>>{{"dog", "day"}, {"cat"}});  // sub/y.png, x.png
  CHECK(std::memcmp(pixels_of(relabelled, 1).data(), plain.image(1), plain.image_bytes()) == 0);
}

TEST_CASE("image cache: a photo touched, replaced, added or removed rebuilds it, saying what changed") {
  TempDir dir("cache_stale");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const std::string file = load_cached(photos, cache).report.cache;
  const fs::path some = fs::path(photos) / "red_dress/b.png";
  std::string expected;
  SUBCASE("touched") {
    fs::last_write_time(some, fs::last_write_time(some) + std::chrono::seconds(2));
    expected = "is stale: 1 photo changed; rebuilding it";
  }
  SUBCASE("replaced by another of the same name") {
    photo(some, 20, 20, 77);
    fs::last_write_time(some, fs::last_write_time(some) + std::chrono::seconds(2));
    expected = "is stale: 1 photo changed; rebuilding it";
  }
  SUBCASE("added") {
    photo(fs::path(photos) / "blue_jeans/z.png", 5, 5, 3);
    expected = "is stale: 1 photo added; rebuilding it";
  }
  SUBCASE("removed, and another added") {
    fs::remove(some);
    photo(fs::path(photos) / "blue_jeans/z.png", 5, 5, 3);
    photo(fs::path(photos) / "blue_jeans/zz.png", 5, 5, 4);
    expected = "is stale: 2 photos added, 1 photo removed; rebuilding it";
  }
  SUBCASE("other image limits") {
    LoadOptions strict = at12;
    strict.limits.max_pixels = 100;  // every photo is larger: all skipped
    const std::string refused = error_of([&] { load_image_folder_cached(photos, cache, strict); });
    CHECK(contains(refused, "no image could be read (10 skipped)"));
    std::ostringstream progress;
    CHECK(error_of([&] { load_image_folder_cached(photos, cache, strict, nullptr, &progress); }) == refused);
    CHECK(!contains(progress.str(), "rebuilding"));  // the skipped photos are not decoded again
    expected = "is stale: it was decoded with other ImageLimits; rebuilding it";
  }
  const Cached again = load_cached(photos, cache);
  INFO(again.progress);
  CHECK(again.report.cache_built);
  CHECK(contains(again.progress, "the image cache " + file + " " + expected));
  check_same(again, photos);
  CHECK(!load_cached(photos, cache).report.cache_built);
}

namespace {
// Recomputes a cache file's header checksum (its counts changed on purpose), when its lengths
// fit in it.
void fix_checksum(std::string& bytes) {
  auto h = detail::ImageCacheHeader::decode(reinterpret_cast<const std::uint8_t*>(bytes.data()));
  if (h.record_bytes > bytes.size() - 96 || h.trailer_bytes > bytes.size()) return;
  const std::uint64_t sum = detail::image_cache_checksum(bytes.data() + 96, h.record_bytes, bytes.data() + bytes.size() - h.trailer_bytes,
                                                         h.trailer_bytes, bytes.data());
  std::memcpy(bytes.data() + 88, &sum, 8);
}
template <class T>
void set_field(std::string& bytes, std::size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof value);
  fix_checksum(bytes);
}
}  // namespace

TEST_CASE("image cache: a truncated, flipped or hostile cache file is refused and rebuilt, never trusted") {
  TempDir dir("cache_damaged");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const std::string file = load_cached(photos, cache).report.cache;
  const std::string good = test::read(file);
  const auto header = detail::ImageCacheHeader::decode(reinterpret_cast<const std::uint8_t*>(good.data()));
  REQUIRE(header.pixel_offset == 4096);
  REQUIRE(header.photos == 10);
  REQUIRE(header.stored == 9);
  REQUIRE(good.size() == 4096 + 9 * 12 * 12 * 3 + header.trailer_bytes);

  std::vector<std::pair<std::string, std::string>> damaged;  // what, the file's bytes
  for (std::size_t at : {std::size_t(0), std::size_t(7), std::size_t(95), std::size_t(96), std::size_t(200), std::size_t(4095),
                         std::size_t(4096 + 100), good.size() - header.trailer_bytes, good.size() - 1})
    damaged.emplace_back("truncated at " + std::to_string(at), good.substr(0, at));
  for (std::size_t at : {std::size_t(2), std::size_t(9), std::size_t(13), std::size_t(17), std::size_t(30), std::size_t(60),
                         std::size_t(90), std::size_t(100), std::size_t(96 + header.record_bytes - 1), good.size() - 2}) {
    std::string flipped = good;
    flipped[at] = char(flipped[at] ^ 0x10);
    damaged.emplace_back("byte " + std::to_string(at) + " flipped", flipped);
  }
  std::string huge = good;
  set_field(huge, 16, std::uint64_t(1) << 60);  // photos, with a valid checksum
  damaged.emplace_back("a huge photo count", huge);
  std::string all_stored = good;
  set_field(all_stored, 24, std::uint64_t(10));
  damaged.emplace_back("a stored count beyond its pixels", all_stored);
  std::string side = good;
  set_field(side, 12, std::uint32_t(1) << 31);
  damaged.emplace_back("a huge image size", side);
  std::string lengths = good;
  set_field(lengths, 32, ~std::uint64_t(0) - 50);  // record bytes: an overflow if added carelessly
  damaged.emplace_back("a record length near 2^64", lengths);
  std::string newer = good;
  set_field(newer, 8, std::uint32_t(3));
  damaged.emplace_back("a newer format version", newer);
  std::string extended = good + std::string(5, 'x');
  damaged.emplace_back("bytes appended", extended);

  for (const auto& [what, bytes] : damaged) {
    INFO(what);
    test::write(file, bytes);
    const std::string refused = error_of([&] { detail::read_image_cache(file); });
    CHECK(refused.starts_with(file + ": "));
    const Cached rebuilt = load_cached(photos, cache);
    CHECK(rebuilt.report.cache_built);
    CHECK(contains(rebuilt.progress, "the image cache " + file + " cannot be used: " + refused + "; rebuilding it"));
    check_same(rebuilt, photos);
    CHECK(test::read(file) == good);  // built again, byte for byte
  }
  // The messages say what is wrong.
  auto refusal = [&](const std::string& bytes) {
    test::write(file, bytes);
    return error_of([&] { detail::read_image_cache(file); });
  };
  CHECK(refusal(good.substr(0, 50)) == file + ": not a tnet image cache: 50 bytes, shorter than its 96-byte header");
  CHECK(refusal(std::string(200, 'x')) == file + ": not a tnet image cache (no TNETCACH at its start)");
  CHECK(refusal(newer) == file + ": image cache format version 3; this tnet reads version 2");
  std::string older = good;
  set_field(older, 8, std::uint32_t(1));  // format 1: no checksums of the pixels
  CHECK(refusal(older) == file + ": image cache format version 1; this tnet reads version 2");
  std::string short_trailer = good;
  set_field(short_trailer, 16, std::uint64_t(12));  // 12 photos: more checksums than the trailer holds
  CHECK(contains(refusal(short_trailer), "cannot hold the checksums of 12 photos and 3 skipped photos' entries (damaged)"));
  CHECK(refusal(huge) == file + ": 1152921504606846976 photos, more than its records can hold (damaged)");
  CHECK(contains(refusal(good.substr(0, 4096 + 100)), "(truncated or damaged)"));
  CHECK(contains(refusal(good.substr(0, 4000)), "do not fit in its 4000 bytes (truncated or damaged)"));
  CHECK(refusal(extended) == file + ": 9 images of 12x12x3 do not fill its 3893 bytes of pixels (truncated or damaged)");
  std::string flipped = good;
  flipped[100] = char(flipped[100] ^ 1);
  CHECK(refusal(flipped) == file + ": checksum mismatch (damaged)");
  // A cache of another dataset or size under this name (a copy): not its photos, rebuilt.
  const LoadOptions at8{.size = 8, .separator = '_', .limits = {}};
  const std::string other = load_cached(photos, cache, at8).report.cache;
  fs::copy_file(other, file, fs::copy_options::overwrite_existing);
  const Cached replaced = load_cached(photos, cache);
  CHECK(contains(replaced.progress, "is stale: it holds 8x8 images, not 12x12; rebuilding it"));
  check_same(replaced, photos);
}

TEST_CASE("image cache: a folder it cannot be written in is named in the error") {
  TempDir dir("cache_unwritable");
  const std::string photos = make_photos(dir);
  test::write(dir / "file", "a file, not a folder");
  CHECK(error_of([&] {
          load_image_folder_cached(photos, dir / "file/cache", at12);
        }).starts_with(dir / "file/cache" + ": cannot create the image cache folder: "));
  CHECK(error_of([&] { load_image_folder_cached(photos, dir / "file", at12); }).starts_with(dir / "file" + ": "));
  // A folder that cannot hold new files (/proc, even for root).
  const std::string refused = error_of([&] { load_image_folder_cached(photos, "/proc", at12); });
  INFO(refused);
  CHECK(refused.starts_with("/proc: cannot write the image cache in this folder: /proc/photos-12px-"));
  if (::geteuid() != 0) {
    fs::create_directories(dir.path / "locked");
    fs::permissions(dir.path / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    CHECK(error_of([&] {
            load_image_folder_cached(photos, dir / "locked", at12);
          }).starts_with(dir / "locked" + ": cannot write the image cache in this folder: "));
    fs::permissions(dir.path / "locked", fs::perms::owner_all);
  }
  // A missing dataset is refused before any cache is made.
  CHECK(contains(error_of([&] { load_image_folder_cached(dir / "absent", dir / "cache2", at12); }), "dataset folder does not exist"));
  CHECK(!fs::exists(dir.path / "cache2"));
}

TEST_CASE("image cache: image(i, buffer) reads each image into the buffer, image(i) is refused, the pixels are not in memory") {
  TempDir dir("cache_read");
  const std::string photos = make_photos(dir);
  const LabeledImages cached = load_cached(photos, dir / "cache").images;
  const LabeledImages plain = load_image_folder(photos, at12);
  std::vector<std::uint8_t> buffer(cached.image_bytes());
  for (int round = 0; round < 2; ++round)
    for (std::size_t i = 0; i < cached.count(); ++i) {
      INFO(round, " ", i);
      CHECK(cached.image(i, buffer.data()) == buffer.data());
      CHECK(std::memcmp(buffer.data(), plain.image(i), plain.image_bytes()) == 0);
      CHECK(plain.image(i, buffer.data()) == plain.image(i));  // in memory: where it is
    }
  CHECK(contains(error_of([&] { cached.image(0); }), "the pixels are in the image cache " + cached.file->path()));
  CHECK(plain.pixel_bytes() == plain.count() * plain.image_bytes());
  CHECK(!plain.cached());
}

namespace {
// A BMP of 6x5 pixels whose values depend on `seed`: the same size in bytes whatever the seed.
void bmp(const fs::path& path, int seed) {
  std::vector<std::uint8_t> pixels(6 * 5 * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::uint8_t(i * 11 + std::size_t(seed) * 97);
  fs::create_directories(path.parent_path());
  REQUIRE(stbi_write_bmp(path.c_str(), 6, 5, 3, pixels.data()));
}
struct stat stat_of(const fs::path& path) {
  struct stat info{};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info;
}
// Gives `path` the modification time `was` had (as touch -r, cp -p, rsync do).
void restore_mtime(const fs::path& path, const struct stat& was) {
  const timespec times[2] = {was.st_atim, was.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}
}  // namespace

TEST_CASE("image cache: a photo rewritten with its old size and modification time is noticed, a chmod or an identical copy is not") {
  TempDir dir("cache_same_stamp");
  const fs::path root = dir.path / "photos";
  for (int i = 0; i < 4; ++i) bmp(root / "red_dress" / (std::to_string(i) + ".bmp"), i);
  bmp(root / "blue_jeans/x.bmp", 9);
  const std::string photos = root.string(), cache = dir / "cache";
  REQUIRE(load_cached(photos, cache).report.cache_built);
  const fs::path some = root / "red_dress/2.bmp";
  const struct stat before = stat_of(some);
  // The change time moves on at the next write (coarse clocks tick every few ms).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::string expected;
  bool rebuilt = true;
  SUBCASE("rewritten in place with other pixels (cp -p, touch -r)") {
    bmp(some, 42);
    restore_mtime(some, before);
    CHECK(stat_of(some).st_ino == before.st_ino);
    expected = "is stale: 1 photo changed; rebuilding it";
  }
  SUBCASE("replaced by a new file with other pixels (rsync)") {
    bmp(root / "red_dress/.2.bmp.new", 43);
    restore_mtime(root / "red_dress/.2.bmp.new", before);
    fs::rename(root / "red_dress/.2.bmp.new", some);
    expected = "is stale: 1 photo changed; rebuilding it";
  }
  SUBCASE("its permissions changed") {
    fs::permissions(some, fs::perms::others_read, fs::perm_options::remove);
    rebuilt = false;
  }
  SUBCASE("replaced by an identical copy") {
    fs::copy_file(some, root / "red_dress/.copy", fs::copy_options::overwrite_existing);
    restore_mtime(root / "red_dress/.copy", before);
    fs::rename(root / "red_dress/.copy", some);
    rebuilt = false;
  }
  const struct stat after = stat_of(some);
  REQUIRE(after.st_size == before.st_size);
  REQUIRE(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  const Cached again = load_cached(photos, cache);
  INFO(again.progress);
  CHECK(again.report.cache_built == rebuilt);
  if (rebuilt) CHECK(contains(again.progress, expected));
  check_same(again, photos);  // the new pixels
  CHECK(!load_cached(photos, cache).report.cache_built);
}

TEST_CASE("image cache: pixels damaged in the file are an error naming the cache and the image, never trained on") {
  TempDir dir("cache_pixels_damaged");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const std::string file = load_cached(photos, cache).report.cache;
  std::string bytes = test::read(file);
  const std::size_t image = 12 * 12 * 3, damaged_at = 4096 + 4 * image + 100;  // in image 4
  bytes[damaged_at] = char(bytes[damaged_at] ^ 0x40);
  test::write(file, bytes);
  // Opening reads no pixels: the cache is taken, and image 4 refused when it is read.
  const Cached opened = load_cached(photos, cache);
  CHECK(!opened.report.cache_built);
  const LabeledImages& images = opened.images;
  std::vector<std::uint8_t> buffer(images.image_bytes());
  for (std::size_t i = 0; i < images.count(); ++i)
    if (i != 4) CHECK_NOTHROW(images.image(i, buffer.data()));
  const std::string error = error_of([&] { images.image(4, buffer.data()); });
  CHECK(error == file + ": image 4 (" + images.paths[4] + ", bytes " + std::to_string(4096 + 4 * image) + "-" +
                     std::to_string(4096 + 5 * image) +
                     ") does not match its checksum: the image cache is damaged; delete it to have it rebuilt");
  // Batches stop with that error, in place and prefetched.
  for (bool prefetch : {false, true}) {
    BatchIterator::Options o;
    o.batch_size = 9;
    o.prefetch = prefetch;
    BatchIterator it(images, std::vector<float>(images.count()), 1, {0, 1, 2, 3, 4, 5, 6, 7, 8}, o);
    CHECK(error_of([&] { it.next(); }) == error);
  }
  // Deleted, it is rebuilt.
  fs::remove(file);
  check_same(load_cached(photos, cache), photos);
}

TEST_CASE("image cache: a cache truncated while in use is an error naming it, not a crash") {
  TempDir dir("cache_truncated");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const std::string file = load_cached(photos, cache).report.cache;
  const Cached opened = load_cached(photos, cache);
  const LabeledImages& images = opened.images;
  const std::size_t image = images.image_bytes();
  fs::resize_file(file, 4096 + 3 * image + 10);  // as ftruncate by another process
  std::vector<std::uint8_t> buffer(image);
  for (std::size_t i = 0; i < 3; ++i) CHECK_NOTHROW(images.image(i, buffer.data()));
  const std::string now = file + ": is " + std::to_string(4096 + 3 * image + 10) + " bytes now, too short for ";
  CHECK(error_of([&] { images.image(3, buffer.data()); }) ==
        now + "image 3 (" + images.paths[3] + ", bytes " + std::to_string(4096 + 3 * image) + "-" + std::to_string(4096 + 4 * image) +
            ") (up to byte " + std::to_string(4096 + 4 * image) + "): truncated since it was opened; delete it to have it rebuilt");
  CHECK(contains(error_of([&] { images.image(8, buffer.data()); }), now + "image 8 ("));
  for (bool prefetch : {false, true}) {
    BatchIterator::Options o;
    o.batch_size = 4;
    o.shuffle = false;
    o.prefetch = prefetch;
    BatchIterator it(images, std::vector<float>(images.count()), 1, {0, 1, 2, 3, 4, 5, 6, 7, 8}, o);
    CHECK(contains(error_of([&] { it.next(); }), now + "image 3 ("));
  }
  fs::resize_file(file, 0);
  CHECK(contains(error_of([&] { images.image(0, buffer.data()); }), file + ": is 0 bytes now, too short for image 0 ("));
  // The next load rebuilds it.
  const Cached again = load_cached(photos, cache);
  CHECK(again.report.cache_built);
  CHECK(contains(again.progress, "cannot be used: " + file + ": not a tnet image cache: 0 bytes"));
  check_same(again, photos);
}

TEST_CASE("image cache: a build whose cancel flag is set stops, keeps nothing and says so, the previous cache stays") {
  TempDir dir("cache_cancel");
  const std::string photos = make_photos(dir), cache = dir / "cache";
  const std::atomic<bool> cancel{true};
  auto leftovers = [&] {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(cache)) names.push_back(entry.path().filename().string());
    return names;
  };
  const std::string file = image_cache_file(photos, cache, 12);
  CHECK_THROWS_WITH_AS(load_image_folder_cached(photos, cache, at12, nullptr, nullptr, &cancel),
                       ("interrupted while building the image cache " + file + "; nothing kept").c_str(), Interrupted);
  CHECK(leftovers().empty());
  // A current cache is read, the flag notwithstanding: nothing is built.
  const std::atomic<bool> go{false};
  REQUIRE(load_image_folder_cached(photos, cache, at12, nullptr, nullptr, &go).count() == 9);
  const std::string good = test::read(file);
  CHECK(load_image_folder_cached(photos, cache, at12, nullptr, nullptr, &cancel).count() == 9);
  // A rebuild interrupted leaves the previous cache as it was, and no temporary file.
  photo(fs::path(photos) / "blue_jeans/z.png", 5, 5, 3);
  CHECK_THROWS_AS(load_image_folder_cached(photos, cache, at12, nullptr, nullptr, &cancel), Interrupted);
  CHECK(leftovers() == std::vector<std::string>{fs::path(file).filename().string()});
  CHECK(test::read(file) == good);
}

namespace {
// Everything a scripted walk through batches produces: each batch's size, inputs and targets,
// across epochs, skips and an epoch restarted mid-way.
std::vector<float> walk(const LabeledImages& data, bool prefetch, int threads, bool augment, bool drop_last) {
  set_num_threads(threads);
  std::vector<float> targets(data.count() * 2);
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = float(i);
  std::vector<std::size_t> indices(data.count());
  std::iota(indices.begin(), indices.end(), std::size_t{0});
  indices.pop_back();  // a subset
  BatchIterator::Options o;
  o.batch_size = 3;
  o.seed = 5;
  o.drop_last = drop_last;
  o.prefetch = prefetch;
  if (augment) o.augmenter.emplace(AugmentOptions::keras_tutorial());
  BatchIterator it(data, targets, 2, indices, o);
  std::vector<float> out;
  auto take = [&](int batches) {
    for (int b = 0; b < batches; ++b) {
      const int n = it.next();
      out.push_back(float(n));
      out.insert(out.end(), it.x().begin(), it.x().end());
      out.insert(out.end(), it.y().begin(), it.y().end());
      if (n == 0) return;
    }
  };
  take(100);  // epoch 0, with next() past its end
  take(1);
  it.start_epoch(1);
  take(2);
  it.start_epoch(3);  // another epoch, one batch in flight
  take(1);
  it.skip(1);  // mid-epoch, one batch in flight
  take(100);
  it.start_epoch(2);
  it.skip(2);  // at once
  take(100);
  it.start_epoch(4);
  it.skip(100);  // past the end
  take(1);
  it.start_epoch(1);  // the same epoch again, from the start
  take(100);
  return out;
}
}  // namespace

TEST_CASE("batches: prefetched in the background, bit-identical to batches made in place, for any thread count") {
  TempDir dir("cache_prefetch");
  const std::string photos = make_photos(dir);
  // 9 cached photos (3 batches of 3 from 8), and 23 in memory (7 full batches and 1 short one).
  const LabeledImages cached = load_cached(photos, dir / "cache").images;
  LabeledImages memory;
  memory.size = 9;
  for (int i = 0; i < 23; ++i) {
    memory.paths.push_back(std::to_string(i));
    memory.labels.push_back({});
  }
  memory.pixels.resize(memory.count() * memory.image_bytes());
  for (std::size_t i = 0; i < memory.pixels.size(); ++i) memory.pixels[i] = std::uint8_t((i * 13) % 251);

  const int original = num_threads();
  for (const LabeledImages* data : std::initializer_list<const LabeledImages*>{&cached, &memory})
    for (bool augment : {false, true})
      for (bool drop_last : {false, true}) {
        INFO("cached ", data->cached(), ", augment ", augment, ", drop_last ", drop_last);
        const std::vector<float> in_place = walk(*data, false, 1, augment, drop_last);
        CHECK(in_place.size() > 100);
        for (int threads : {1, 2, 3}) {
          INFO("threads ", threads);
          CHECK(walk(*data, true, threads, augment, drop_last) == in_place);
          CHECK(walk(*data, false, threads, augment, drop_last) == in_place);
        }
      }
  set_num_threads(original);

  // Destroyed with a batch in flight, or before any batch: the thread is joined.
  for (int batches : {0, 1, 2}) {
    BatchIterator::Options o;
    o.batch_size = 2;
    o.prefetch = true;
    BatchIterator it(memory, std::vector<float>(memory.count()), 1, {0, 1, 2, 3, 4, 5, 6}, o);
    for (int b = 0; b < batches; ++b) CHECK(it.next() == 2);
  }
}

// ---- the real photos, when ../shared is beside the checkout ----------------------------------
TEST_CASE("image cache: the tutorial's 2160 real photos, cached, are the photos decoded") {
  const std::string fashion = std::string(TNET_SHARED_DIR) + "/datasets/fashion/dataset";
  if (!fs::is_directory(fashion)) {
    MESSAGE("SKIPPED: " << fashion << " is absent");
    return;
  }
  TempDir dir("cache_fashion");
  const LoadOptions at32{.size = 32, .separator = '_', .limits = {}};
  const Cached cached = load_cached(fashion, dir / "cache", at32);
  CHECK(cached.report.loaded == 2160);
  check_same(cached, fashion, at32);
  CHECK(!load_cached(fashion, dir / "cache", at32).report.cache_built);
}
