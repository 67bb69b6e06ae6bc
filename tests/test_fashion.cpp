// fashion_classify's helpers on hostile input: photos of extreme shape, clashing names, outputs
// that would overwrite a photo, probabilities that are not numbers.
#include "support.hpp"

#include "../examples/fashion/classify_impl.hpp"

using namespace tnet;

TEST_CASE("the labelled copy of a photo of extreme shape stays within 400 x 4000") {
  const std::vector<std::pair<std::string, double>> top = {{"red", 0.99}, {"dress", 0.5}};
  for (const auto& [w, h, height] : {std::tuple{1, 4480, 4000}, std::tuple{4480, 1, 1}, std::tuple{300, 600, 800}}) {
    INFO(w, "x", h);
    const Image photo{w, h, std::vector<std::uint8_t>(std::size_t(w) * h * 3, 128)};
    const Image copy = fashion::labelled_copy(photo, top);
    CHECK(copy.width == 400);
    CHECK(copy.height == height);
  }
}

TEST_CASE("labelled copies: one name per photo, never over a photo") {
  using fashion::labelled_copy_paths;
  CHECK(labelled_copy_paths({"in/a.jpg", "in/a.png", "other/a.jpg", "more/a.jpg", "b.gif"}, "", false) ==
        std::vector<std::string>{"a_labeled.png", "a_png_labeled.png", "a_jpg_labeled.png", "a_2_labeled.png", "b_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg", "a"}, "", false) == std::vector<std::string>{"a_labeled.png", "a_2_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg", "in/b.jpg"}, "out", true) == std::vector<std::string>{"out/a_labeled.png", "out/b_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg"}, "mine.png", false) == std::vector<std::string>{"mine.png"});
  CHECK_THROWS_WITH_AS(labelled_copy_paths({"in/a.jpg"}, "in/a.jpg", false),
                       "the labelled copy in/a.jpg would overwrite the photo in/a.jpg: give another --output", fashion::UsageError);
  CHECK_THROWS_WITH_AS(labelled_copy_paths({"a_labeled.png", "a.jpg"}, "", false),
                       "the labelled copy a_labeled.png would overwrite the photo a_labeled.png: give another --output",
                       fashion::UsageError);
}

TEST_CASE("JSON numbers: a probability that is not a number is null") {
  CHECK(fashion::detail::json_number(0.25) == "0.25");
  CHECK(fashion::detail::json_number(std::nan("")) == "null");
  CHECK(fashion::detail::json_number(std::numeric_limits<double>::infinity()) == "null");
}

TEST_CASE("fashion_classify's decisions: the model file's thresholds by default, --threshold for every label, else 0.5") {
  using fashion::decision_thresholds;
  const std::vector<float> stored{0.2f, 0.7f, 0.5f};
  CHECK(decision_thresholds(std::nullopt, stored, 3) == stored);
  CHECK(decision_thresholds(0.4, stored, 3) == std::vector<float>{0.4f, 0.4f, 0.4f});
  CHECK(decision_thresholds(std::nullopt, {}, 3) == std::vector<float>{0.5f, 0.5f, 0.5f});  // an older file, or ONNX
  const std::vector<float> p{0.3f, 0.6f, 0.5f};
  CHECK(fashion::present_labels(p, stored) == std::vector<int>{0});
  CHECK(fashion::present_labels(p, decision_thresholds(std::nullopt, {}, 3)) == std::vector<int>{1});
}
