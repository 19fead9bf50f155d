// The drawing page: strokes and uploads in, the digit, its ten probabilities and the time taken out.
//
// config.json (beside index.html; written by the web exporter, served by `mnist-edge serve`) says
// what is on offer. The answer comes from an engine: the model in worker.js, on this device, where
// the browser has WebAssembly and config.json names the model and onnxruntime-web's files; else
// POST predict to `mnist-edge serve` (mode "server"). An exported app (mode "local") has no server:
// without WebAssembly it says so. A module script, as CSP's script-src 'self' allows no inline code.

import { WORK_SIZE } from "./preprocess.js";

const PREDICT_EVERY_MS = { local: 50, server: 150 };  // while drawing, at most one prediction per this
// With a server to ask, a model that neither loads nor fails in this time gives way to it. Without
// one there is no timeout: a slow network only delays the first visit (the 14 MB wasm).
const LOAD_TIMEOUT_MS = 20_000;
const BRUSH = 22;  // px on the 280 px canvas: MNIST strokes are ~2 px of 28

const $ = (id) => document.getElementById(id);
const canvas = $("pad");
const ctx = canvas.getContext("2d", { willReadFrequently: true });  // read back for every prediction
const digitEl = $("digit"), confEl = $("conf"), barsEl = $("bars"), errorEl = $("error"), timingEl = $("timing");
const badge = $("badge"), hint = $("hint"), preview = $("preview"), caption = $("preview-caption");
const fileInput = $("file");

let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let predictEvery = PREDICT_EVERY_MS.local;  // the engine's, once it is known
let hasInk = false, drawing = false, last = null, timer = null;
let generation = 0;          // bumped by Clear / upload: answers for older input are dropped
let inFlight = false, queued = false, previewUrl = null, answered = false;

// ------------------------------------------------------------------------------------ engines
// An engine: {kind: "local" | "server", where: text for the footer, every: ms between predictions,
// fromCanvas(canvas), fromFile(file)}; both give a Promise of {probabilities, timing}, or reject
// with an Error whose message is for the user.

/** Why the model cannot run in this browser, or null when it can try. */
function localProblem(config) {
  if (!config.model || !config.ort) return "the model or onnxruntime-web is not offered to browsers";
  if (typeof WebAssembly !== "object") return "this browser has no WebAssembly";
  if (typeof Worker !== "function") return "this browser has no Web Workers";
  return null;
}

async function startEngine(config, base) {
  let problem = localProblem(config);
  if (problem === null) {
    try {
      return await localEngine(config, base, config.mode === "server" ? LOAD_TIMEOUT_MS : null);
    } catch (e) {
      problem = e.message;
    }
  }
  if (config.mode === "server") return serverEngine();
  throw new Error(`Cannot run the model in this browser (${problem}), and this app has no server to ask.`);
}

function localEngine(config, base, timeoutMs) {
  const url = (path) => new URL(path, base).href;  // config.json's paths are relative to it
  const worker = new Worker("worker.js", { type: "module" });
  const pending = new Map();
  let nextId = 0;

  function ask(image) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ type: "predict", id, image }, [image.data.buffer]);
    });
  }

  return new Promise((resolve, reject) => {
    const timeout = timeoutMs && setTimeout(() => reject(new Error("the model did not load in time")), timeoutMs);
    const fail = (message) => { clearTimeout(timeout); worker.terminate(); reject(new Error(message)); };
    worker.onerror = (e) => { e.preventDefault(); fail(e.message || "its worker did not start"); };
    worker.onmessage = ({ data: m }) => {
      if (m.type === "ready") {
        clearTimeout(timeout);
        const toAnswer = (r) => localAnswer(r, m.threads);
        resolve({
          kind: "local",
          where: "in this browser: nothing leaves this device",
          every: PREDICT_EVERY_MS.local,
          fromCanvas: (c) => ask(c.getContext("2d").getImageData(0, 0, c.width, c.height)).then(toAnswer),
          fromFile: (file) => decode(file).then(ask).then(toAnswer),
        });
      } else if (m.type === "result" || m.type === "error") {
        if (m.id === undefined) { fail(m.message); return; }  // loading failed
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.type === "result") p.resolve(m); else p.reject(new Error(`Prediction failed: ${m.message}`));
      }
    };
    worker.postMessage({
      type: "init",
      ort: { module: url(config.ort.module), loader: url(config.ort.loader), wasm: url(config.ort.wasm) },
      modelUrl: url(config.model.url),
      mean: config.metadata.mean,
      std: config.metadata.std,
    });
  });
}

function localAnswer({ logits, ms }, threads) {
  const where = `in this browser, WebAssembly, ${threads} thread${threads === 1 ? "" : "s"}`;
  return { probabilities: softmax(logits),
           timing: `Model ${ms.model.toFixed(1)} ms, preprocessing ${ms.preprocess.toFixed(1)} ms (${where})` };
}

function serverEngine() {
  return {
    kind: "server",
    where: "on the mnist-edge server",
    every: PREDICT_EVERY_MS.server,
    fromCanvas: (c) => new Promise((resolve) => c.toBlob(resolve, "image/png")).then(post),
    fromFile: (file) => {
      const form = new FormData();
      form.append("file", file, file.name);
      return post(form);
    },
  };
}

async function post(body) {
  const start = performance.now();
  let res;
  try {
    res = await fetch("predict", { method: "POST", body });
  } catch (_) {
    throw new Error("Cannot reach the mnist-edge server: is it still running?");
  }
  const data = await res.json().catch(() => ({ error: `server answered ${res.status}` }));
  if (!res.ok) throw new Error(data.error || `server answered ${res.status}`);
  return { probabilities: data.probabilities, timing: `Server answered in ${(performance.now() - start).toFixed(0)} ms` };
}

/** An uploaded file -> its RGBA pixels, at most WORK_SIZE on the long side (as preprocess.py reduces it). */
async function decode(file) {
  if (file.size === 0) throw new Error(`${file.name}: empty file (0 bytes)`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });  // camera rotation, like EXIF
  } catch (_) {
    throw new Error(`${file.name}: not an image (or a format this browser cannot read)`);
  }
  const scale = Math.min(1, WORK_SIZE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const cx = c.getContext("2d", { willReadFrequently: true });
  cx.imageSmoothingQuality = "high";
  cx.drawImage(bitmap, 0, 0, w, h);
  bitmap.close();
  return cx.getImageData(0, 0, w, h);
}

function softmax(logits) {
  const top = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

// ------------------------------------------------------------------------------------ showing

function buildBars() {
  barsEl.replaceChildren(...classes.map((name) => {
    const li = document.createElement("li");
    li.innerHTML = '<span class="lbl"></span><span class="track"><span class="fill"></span></span>' +
                   '<span class="pct">–</span>';
    li.querySelector(".lbl").textContent = name;
    li.setAttribute("aria-label", `${name}: no prediction yet`);
    return li;
  }));
}

function showResult({ probabilities, timing }) {
  const digit = probabilities.indexOf(Math.max(...probabilities));
  const label = classes[digit] ?? String(digit), confidence = probabilities[digit];
  errorEl.hidden = true;
  digitEl.textContent = label;
  digitEl.className = "digit" + (label.length > 2 ? " long" : "");
  confEl.innerHTML = "<strong></strong>";
  confEl.firstChild.textContent = confidence >= 0.5 ? `It's a ${label}` : `Maybe a ${label}?`;
  confEl.append(`${(100 * confidence).toFixed(1)}% confident`);
  [...barsEl.children].forEach((li, i) => {
    const p = probabilities[i] ?? 0;
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
    li.classList.toggle("top", i === digit);
    li.setAttribute("aria-label", `${classes[i]}: ${(100 * p).toFixed(1)} percent`);
  });
  badge.innerHTML = "<span></span><small></small>";
  badge.firstChild.textContent = label;
  badge.lastChild.textContent = `${Math.round(100 * confidence)}%`;
  badge.classList.add("on");
  timingEl.textContent = timing;
  timingEl.hidden = false;
  if (!answered) { answered = true; performance.mark("mnist-edge:first-answer"); }
}

function showNothing() {
  errorEl.hidden = true;
  timingEl.hidden = true;
  badge.classList.remove("on");
  digitEl.textContent = "–";
  digitEl.className = "digit none";
  confEl.innerHTML = "<strong>Nothing yet</strong>The model's guess appears here as you draw.";
  [...barsEl.children].forEach((li, i) => {
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "–";
    li.classList.remove("top");
    li.setAttribute("aria-label", `${classes[i]}: no prediction yet`);
  });
}

function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = false;
}

/** Run one prediction for the current input; answers that arrive after Clear / a new upload are dropped. */
async function answer(predict) {
  const gen = generation;
  try {
    const result = await predict(await engine);
    if (gen === generation) showResult(result);
  } catch (e) {
    if (gen === generation) { showNothing(); showError(e.message); }
  }
}

// ------------------------------------------------------------------------------------ drawing

// One prediction at a time for the drawing; a change made meanwhile is predicted when the answer is in.
async function predictDrawing() {
  clearTimeout(timer); timer = null;
  if (!hasInk) return;
  if (inFlight) { queued = true; return; }
  inFlight = true;
  await answer((e) => e.fromCanvas(canvas));
  inFlight = false;
  if (queued) { queued = false; predictDrawing(); }
}

function schedule() {
  if (timer === null) timer = setTimeout(predictDrawing, predictEvery);
}

function resetCanvas() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  hasInk = false;
}

function point(e) {
  const r = canvas.getBoundingClientRect();
  return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
}

function stroke(from, to) {
  ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff";
  ctx.lineWidth = BRUSH; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x, to.y); ctx.stroke();
}

function hidePreview() {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  preview.hidden = true; caption.hidden = true;
  preview.removeAttribute("src");
}

function forgetInput() {
  generation++; queued = false; clearTimeout(timer); timer = null;
  hidePreview(); resetCanvas();
}

preview.addEventListener("error", () => { preview.hidden = true; });  // not an image the browser shows

canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 && e.pointerType === "mouse") return;
  e.preventDefault();
  if (!preview.hidden) forgetInput();
  try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* keep drawing without capture */ }
  drawing = true; hint.hidden = true; hasInk = true;
  last = point(e);
  stroke(last, last);  // a dot for a tap
  schedule();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of (events.length ? events : [e])) { const p = point(ev); stroke(last, p); last = p; }
  schedule();
});
const end = () => { if (!drawing) return; drawing = false; predictDrawing(); };
canvas.addEventListener("pointerup", end);
canvas.addEventListener("pointercancel", end);
canvas.addEventListener("lostpointercapture", end);
canvas.addEventListener("contextmenu", (e) => e.preventDefault());

$("clear").addEventListener("click", () => {
  forgetInput(); hint.hidden = false; showNothing();
  fileInput.value = "";
});

fileInput.addEventListener("change", () => {
  const file = fileInput.files && fileInput.files[0];
  if (!file) return;
  forgetInput(); hint.hidden = true;
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl; preview.alt = `Uploaded image ${file.name}`;
  preview.hidden = false;
  caption.textContent = file.name; caption.hidden = false;
  answer((e) => e.fromFile(file));
});

// ------------------------------------------------------------------------------------ start

function describeModel(config) {
  const m = config.metadata;
  const acc = typeof m.test_acc === "number" ? `, ${(100 * m.test_acc).toFixed(2)}% test accuracy` : "";
  return config.model ? `Model ${config.model.name} (${config.model.format}${acc})` : `The ${m.arch} model${acc}`;
}

async function loadConfig(url) {
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.json();
  } catch (e) {
    throw new Error(`Cannot load this app's config.json (${e.message}).`);
  }
}

/** Load config.json and start the engine; drawing before it is ready waits for it. */
async function start() {
  const base = new URL("config.json", document.baseURI);
  const config = await loadConfig(base);
  if (Array.isArray(config.metadata.class_names) && config.metadata.class_names.length) {
    classes = config.metadata.class_names.map(String);
    buildBars();
  }
  if (config.service_worker && "serviceWorker" in navigator) {
    // The exported app: cached for offline use and installable; a failure only loses that.
    navigator.serviceWorker.register(new URL(config.service_worker, base)).catch(() => {});
  }
  try {
    const e = await startEngine(config, base);
    performance.mark("mnist-edge:model-ready");
    document.documentElement.dataset.engine = e.kind;
    predictEvery = e.every;
    $("model-info").textContent = `${describeModel(config)}, running ${e.where}.`;
    return e;
  } catch (e) {
    $("model-info").textContent = `${describeModel(config)}: it cannot run here.`;
    throw e;
  }
}

buildBars();
resetCanvas();
const engine = start();
engine.catch((e) => showError(e.message));
