// ONNX Runtime (npm's onnxruntime-node) runs tnet's two exports on INPUTS.bin and must give
// fashion_classify's probabilities (TNET.json) within 1e-4.
//   NODE_PATH=.../node_modules node onnxruntime_check.js NHWC.onnx NCHW.onnx INPUTS.bin TNET.json
const ort = require('onnxruntime-node');
const fs = require('fs');

const [nhwc, nchw, inputsPath, tnetJson] = process.argv.slice(2);
const tolerance = 1e-4;

function floats(path) {
  const bytes = fs.readFileSync(path);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
}

(async () => {
  const items = JSON.parse(fs.readFileSync(tnetJson, 'utf8'));
  const x = floats(inputsPath);
  const n = items.length, size = 96;
  const nchwData = new Float32Array(x.length);
  for (let i = 0; i < n; ++i)
    for (let y = 0; y < size; ++y)
      for (let w = 0; w < size; ++w)
        for (let c = 0; c < 3; ++c) nchwData[((i * 3 + c) * size + y) * size + w] = x[((i * size + y) * size + w) * 3 + c];
  let worst = 0;
  for (const [path, data, dims] of [[nhwc, x, [n, size, size, 3]], [nchw, nchwData, [n, 3, size, size]]]) {
    const session = await ort.InferenceSession.create(path);
    const names = Object.keys(items[0].probabilities);  // fashion_classify writes them in the model's order
    const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, dims) });
    const out = result[session.outputNames[0]];
    const classes = out.dims[1];
    let diff = 0;
    for (let i = 0; i < n; ++i)
      for (let k = 0; k < classes; ++k) diff = Math.max(diff, Math.abs(out.data[i * classes + k] - items[i].probabilities[names[k]]));
    console.log(`${path}: ONNX Runtime ${ort.env.versions.common}, ${n} photos x ${classes} classes, largest difference ${diff.toPrecision(3)}`);
    worst = Math.max(worst, diff);
  }
  if (!(worst <= tolerance)) {
    console.log(`FAILED: ONNX Runtime differs from fashion_classify by ${worst} > ${tolerance}`);
    process.exit(1);
  }
  console.log("ok: ONNX Runtime gives fashion_classify's probabilities");
})().catch((e) => {
  console.log('FAILED:', e.message);
  process.exit(1);
});
