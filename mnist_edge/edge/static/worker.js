// The model, on this device: preprocessing and onnxruntime-web (WebAssembly) in a module Web Worker,
// so the page's main thread only draws and the strokes stay smooth while the model thinks.
//
// Messages from the page:
//   {type: "init", ort: {module, loader, wasm}, modelUrl, mean, std}   absolute URLs, from config.json
//   {type: "predict", id, image: {width, height, data}}                RGBA pixels (data transferred)
// Answers:
//   {type: "ready", threads}                           the session is loaded and warmed up
//   {type: "result", id, logits, ms: {preprocess, model}}
//   {type: "error", id?, message}                      id is absent when loading failed

import { CANVAS, normalize, toMnist } from "./preprocess.js";

let ready = null;  // Promise of {ort, session, mean, std, threads}, set by init

self.onmessage = ({ data: msg }) => {
  if (msg.type === "init") {
    ready = load(msg);
    ready.then(({ threads }) => self.postMessage({ type: "ready", threads }),
               (e) => self.postMessage({ type: "error", message: String(e && e.message || e) }));
  } else if (msg.type === "predict") {
    predict(msg).catch((e) => self.postMessage({ type: "error", id: msg.id, message: String(e && e.message || e) }));
  }
};

/** wasm threads need SharedArrayBuffer, which only a cross-origin isolated page (COOP + COEP) has. */
function threadCount() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

async function load({ ort: files, modelUrl, mean, std }) {
  const ort = await import(files.module);
  // The loader and the wasm by URL: the bundle's default would look for files we do not ship.
  ort.env.wasm.wasmPaths = { mjs: files.loader, wasm: files.wasm };
  ort.env.wasm.numThreads = threadCount();
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`cannot load the model ${modelUrl}: HTTP ${response.status}`);
  const creating = ort.InferenceSession.create(new Uint8Array(await response.arrayBuffer()),
                                               { executionProviders: ["wasm"] });
  // While V8 compiles the wasm (~0.8 s, mostly on its own threads), run the preprocessing once: its
  // first, unoptimised run takes ~0.1 s that would otherwise delay the first answer.
  toMnist(warmUpDrawing());
  const state = { ort, session: await creating, mean, std, threads: ort.env.wasm.numThreads };
  await run(state, new Float32Array(CANVAS * CANVAS));  // the first run allocates: not on the user's time
  return state;
}

/** A 280x280 canvas with one white bar on black: it takes every step of the drawing's path. */
function warmUpDrawing() {
  const size = 280, data = new Uint8ClampedArray(4 * size * size);
  for (let i = 0; i < size * size; i++) {
    const x = i % size, y = Math.floor(i / size);
    data.fill(x >= 130 && x < 152 && y >= 60 && y < 220 ? 255 : 0, 4 * i, 4 * i + 3);
    data[4 * i + 3] = 255;
  }
  return { width: size, height: size, data };
}

async function run({ ort, session }, input) {
  const tensor = new ort.Tensor("float32", input, [1, 1, CANVAS, CANVAS]);
  const out = await session.run({ [session.inputNames[0]]: tensor });
  return out[session.outputNames[0]].data;
}

async function predict({ id, image }) {
  const state = await ready;
  const t0 = performance.now();
  const pixels = toMnist(image);
  const input = normalize(pixels, state.mean, state.std);
  const t1 = performance.now();
  const logits = await run(state, input);
  const t2 = performance.now();
  self.postMessage({ type: "result", id, logits, ms: { preprocess: t1 - t0, model: t2 - t1 } });
}
