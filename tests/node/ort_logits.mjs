// Logits of onnxruntime-web (wasm backend, the vendored files the page ships) for MNIST images (tests/test_web.py).
//   node ort_logits.mjs MODEL.onnx PIXELS.bin N MEAN STD OUT.bin ORT_DIR
// PIXELS.bin: N x 28 x 28 uint8; normalised here by preprocess.js as the page does. OUT.bin: N x C
// float32 logits, one batch-1 run per image, as the page runs them. Prints {n, classes, p50_ms, threads}.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { CANVAS, normalize } from "../../mnist_edge/edge/static/preprocess.js";

const [model, pixelsPath, count, mean, std, outPath, ortDir] = process.argv.slice(2);
const n = Number(count);
const file = (name) => pathToFileURL(`${ortDir}/${name}`).href;
const ort = await import(file("ort.wasm.min.mjs"));
ort.env.wasm.wasmPaths = { mjs: file("ort-wasm-simd-threaded.mjs"), wasm: file("ort-wasm-simd-threaded.wasm") };
ort.env.wasm.numThreads = 1;

const session = await ort.InferenceSession.create(readFileSync(model), { executionProviders: ["wasm"] });
const pixels = readFileSync(pixelsPath);
const size = CANVAS * CANVAS;
if (pixels.length !== n * size) throw new Error(`${pixelsPath}: ${pixels.length} bytes, expected ${n * size}`);

const chunks = [], times = [];
for (let i = 0; i < n; i++) {
  const x = normalize(pixels.subarray(i * size, (i + 1) * size), Number(mean), Number(std));
  const t = performance.now();
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, [1, 1, CANVAS, CANVAS]) });
  times.push(performance.now() - t);
  chunks.push(Float32Array.from(out[session.outputNames[0]].data));
}
const classes = chunks[0].length;
const logits = new Float32Array(n * classes);
chunks.forEach((c, i) => logits.set(c, i * classes));
writeFileSync(outPath, Buffer.from(logits.buffer));
times.sort((a, b) => a - b);
console.log(JSON.stringify({ n, classes, p50_ms: times[n >> 1], threads: ort.env.wasm.numThreads }));
