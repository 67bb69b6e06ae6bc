// fashion_export: a model fashion_train wrote, as an ONNX file for OpenCV, ONNX Runtime and the
// rest.
//   fashion_export --model fashion.tnet --labelbin labels.txt --onnx fashion.onnx
#include <filesystem>
#include <iostream>

#include "export_impl.hpp"
#include "model_files.hpp"
#include "models.hpp"

namespace {

const char* usage = R"(usage: fashion_export [options]

Writes a model trained by fashion_train as ONNX (opset 13), with its class names in the
metadata. The graph takes float32 RGB photos resized to the model's size, each value pixel / 255,
and gives each class's probability.

  --model FILE      model written by fashion_train [fashion.tnet]
  --labelbin FILE   its label file [labels.txt]
  --onnx FILE       the ONNX file to write [fashion.onnx]
  --nchw            the input as (N, 3, H, W), PyTorch's order, instead of (N, H, W, 3)
  --help
)";

int run(int argc, char** argv) {
  using namespace fashion;
  const Arguments args(argc, argv, {"--model", "--labelbin", "--onnx"}, {"--nchw", "--help"});
  if (args.flag("--help")) {
    std::cout << usage;
    return 0;
  }
  if (!args.positional().empty()) throw UsageError("unexpected argument '" + args.positional()[0] + "' (see --help)");
  ExportSettings s;
  s.model = args.text("--model", s.model);
  s.labelbin = args.text("--labelbin", s.labelbin);
  s.onnx = args.text("--onnx", s.onnx);
  if (args.flag("--nchw")) s.layout = tnet::OnnxLayout::nchw;
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::weakly_canonical(s.onnx, error) == fs::weakly_canonical(s.model, error))
    throw UsageError("--onnx " + s.onnx + " is the model itself: give the ONNX file another name");
  FileSet files;
  files.input("--model", s.model);
  files.input("--labelbin", s.labelbin);
  files.output("--onnx", s.onnx, "ONNX file");
  files.check();
  return with_network(model_network(s.model), [&]<Network N>() { return export_network<N>(s); });
}

}  // namespace

int main(int argc, char** argv) {
  return fashion::guarded_main("fashion_export", 2, [&] { return run(argc, argv); });
}
