// An ONNX model under onnxruntime-web's wasm backend, the engine the browser app runs, for `check` and `bench`.
//   node ort_web.mjs MODEL.onnx ORT_MODULE ORT_LOADER ORT_WASM INPUT_DIMS_JSON
// stdin: requests [uint32 n, little-endian][n images of float32, already normalised];
// stdout: for each request, n x C float32 logits. One wasm thread, as the page runs it.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [model, modulePath, loaderPath, wasmPath, dimsJson] = process.argv.slice(2);
const dims = JSON.parse(dimsJson);
const size = dims.reduce((a, b) => a * b, 1);
const ort = await import(pathToFileURL(modulePath).href);
ort.env.wasm.wasmPaths = { mjs: pathToFileURL(loaderPath).href, wasm: pathToFileURL(wasmPath).href };
ort.env.wasm.numThreads = 1;
const session = await ort.InferenceSession.create(readFileSync(model), { executionProviders: ["wasm"] });

let pending = Buffer.alloc(0);
for await (const chunk of process.stdin) {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  while (pending.length >= 4) {
    const n = pending.readUInt32LE(0);
    const end = 4 + n * size * 4;
    if (pending.length < end) break;
    const x = new Float32Array(n * size);
    Buffer.from(x.buffer).set(pending.subarray(4, end));
    pending = pending.subarray(end);
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, [n, ...dims]) });
    const y = out[session.outputNames[0]].data;
    process.stdout.write(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
}
