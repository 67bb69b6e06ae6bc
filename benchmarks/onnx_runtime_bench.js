// SmallerVGGNet's ONNX export in ONNX Runtime (npm's onnxruntime-node), timed as bench_smallervgg
// times tnet: inference on a batch of 32 (images/s) and batch-1 latency, after a warm-up run.
//   NODE_PATH=.cache/onnxruntime-node/node_modules node benchmarks/onnx_runtime_bench.js MODEL.onnx THREADS STEPS
const ort = require('onnxruntime-node');

(async () => {
  const [model, threads, steps] = [process.argv[2], Number(process.argv[3] || 2), Number(process.argv[4] || 10)];
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' });
  const input = session.inputNames[0];
  const nchw = model.includes('nchw');  // fashion_export --nchw's file, by its name here
  const feed = (n) => {
    const data = new Float32Array(n * 96 * 96 * 3);
    for (let i = 0; i < data.length; ++i) data[i] = ((i * 2654435761) % 1000) / 1000;
    return { [input]: new ort.Tensor('float32', data, nchw ? [n, 3, 96, 96] : [n, 96, 96, 3]) };
  };
  const batch = feed(32), one = feed(1);
  await session.run(batch);
  let start = process.hrtime.bigint();
  for (let s = 0; s < steps; ++s) await session.run(batch);
  const infer = Number(process.hrtime.bigint() - start) / 1e9;
  await session.run(one);
  start = process.hrtime.bigint();
  for (let s = 0; s < steps * 4; ++s) await session.run(one);
  const latency = Number(process.hrtime.bigint() - start) / 1e9 / (steps * 4);
  console.log(`infer_images_per_s ${(steps * 32 / infer).toFixed(3)}`);
  console.log(`infer_latency_batch1_ms ${(latency * 1e3).toFixed(3)}`);
  console.log(`peak_rss_mb ${(process.resourceUsage().maxRSS / 1024).toFixed(3)}`);
})();
