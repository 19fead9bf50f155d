// The page's preprocessing: one digit's RGBA pixels -> uint8 28x28, light ink on black, like MNIST.
//
// A port of mnist_edge/edge/preprocess.py `to_mnist` (read its docstrings for the reasons behind each
// step), so that a drawing gives the model the same input in the browser as through `mnist-edge
// predict` or POST /predict: grayscale -> polarity (ink light on black) -> an MNIST-like 28x28 image
// is only re-centred; otherwise the paper is removed, the ink cropped, fitted into the 20-px box
// (Pillow's BOX resampling down, LANCZOS up) and pasted into 28x28 by its centre of mass.
// numpy computes most of it in float32: Math.fround marks where this port rounds the same way.
// A plain ES module without DOM use: the Web Worker and the Node tests import it alike.

export const CANVAS = 28;
export const DIGIT_BOX = 20;
const COM_TARGET = CANVAS / 2;
const COM_SLACK = 0.6;
// preprocess.py first area-averages bigger images to this longest side; the page decodes uploads
// at most this big, and toMnist refuses bigger ones rather than differ from Python.
export const WORK_SIZE = 800;
const MIN_CONTRAST = 12.0;
const NOISE_SIGMAS = 4.0;
const REL_THRESHOLD = 0.1;
const SPECK_FRACTION = 0.02;
const MIN_STROKE = 1.0;
const TARGET_STROKE = 2.0;
const FAST_BORDER = 16;

const f32 = Math.fround;

// ------------------------------------------------------------------------------------ public API

/**
 * One digit's pixels -> Uint8Array(28 * 28), light ink (up to 255) on black (0); no ink -> all zeros.
 * @param {{width: number, height: number, data: Uint8ClampedArray | Uint8Array}} image RGBA, row-major
 *   (an ImageData, or its fields).
 */
export function toMnist(image) {
  const { width, height } = image;
  if (!(width > 0 && height > 0) || image.data.length !== 4 * width * height) {
    throw new RangeError(`toMnist needs RGBA pixels of a non-empty image, got ${width} x ${height}`);
  }
  if (Math.max(width, height) > WORK_SIZE) {
    throw new RangeError(`toMnist takes images up to ${WORK_SIZE} px on the long side, got ${width} x ${height}`);
  }
  const gray = inkLight(toGray(image));
  if (mnistLike(gray)) return center(gray);
  const paperless = removePaper(gray);
  if (paperless === null) return new Uint8Array(CANVAS * CANVAS);
  const box = fitBox(cropToInk(paperless));
  if (!(max(box.data) > 0)) return new Uint8Array(CANVAS * CANVAS);
  return pasteByCom(box);
}

/** uint8 pixels -> the float32 model input, (pixel / 255 - mean) / std, bit for bit as metadata.normalize. */
export function normalize(pixels, mean, std) {
  const m = f32(mean), s = f32(std);
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) x[i] = f32(f32(f32(pixels[i] / 255) - m) / s);
  return x;
}

// -------------------------------------------------------------------------- planes and statistics
// A plane is {h, w, data: Float32Array} in row-major order, numpy's (H, W) float32 array.

const plane = (h, w, data = new Float32Array(h * w)) => ({ h, w, data });

function max(a) {
  let m = -Infinity;
  for (const v of a) if (v > m) m = v;
  return m;
}

function sum(a) {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

/** Python's round(): halves go to the even neighbour (numpy's rint does the same). */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy.percentile (method "linear") of every q in qs: two order statistics each, by selection. */
function percentiles(values, qs) {
  const a = Float64Array.from(values);
  const n = a.length;
  return qs.map((q) => {
    const v = (q / 100) * (n - 1);
    const lo = Math.floor(v), t = v - lo;
    const below = select(a, lo);
    const above = lo + 1 < n ? minFrom(a, lo + 1) : below;  // select left everything after lo >= it
    const d = above - below;
    return t >= 0.5 ? above - d * (1 - t) : below + d * t;  // numpy's _lerp, exact at both ends
  });
}

/** Reorder `a` so that a[k] is its k-th smallest value, smaller ones before it, larger after (Hoare). */
function select(a, k) {
  let lo = 0, hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { const x = a[i]; a[i] = a[j]; a[j] = x; i++; j--; }
    }
    if (k <= j) hi = j; else if (k >= i) lo = i; else break;
  }
  return a[k];
}

function minFrom(a, start) {
  let m = Infinity;
  for (let i = start; i < a.length; i++) if (a[i] < m) m = a[i];
  return m;
}

const percentile = (values, q) => percentiles(values, [q])[0];
const median = (values) => percentile(values, 50);

/** Boolean mask (Uint8Array) of the outer ring, 2% of the short side wide (at least one pixel). */
function border(h, w) {
  const b = Math.max(1, roundHalfEven(0.02 * Math.min(h, w)));
  const mask = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) mask[y * w + x] = y < b || y >= h - b || x < b || x >= w - b ? 1 : 0;
  }
  return mask;
}

const pick = (a, mask) => a.filter((_, i) => mask[i]);

/** Intensity-weighted centre of mass [row, col] in pixel-index coordinates; p must not be blank. */
function com(p) {
  let m = 0, sy = 0, sx = 0;
  for (let y = 0; y < p.h; y++) {
    for (let x = 0; x < p.w; x++) {
      const v = p.data[y * p.w + x];
      m += v; sy += v * y; sx += v * x;
    }
  }
  return [sy / m, sx / m];
}

// ------------------------------------------------------------------------------------ grayscale

/** RGBA -> gray plane in 0..255: Pillow's "L" (ITU-R 601 luma), transparency put on the paper. */
function toGray({ width: w, height: h, data }) {
  const lum = new Float32Array(w * h), alpha = new Float32Array(w * h);
  let transparent = false;
  for (let i = 0; i < w * h; i++) {
    // Pillow's integer "L" (L24) formula
    lum[i] = (data[4 * i] * 19595 + data[4 * i + 1] * 38470 + data[4 * i + 2] * 7471 + 0x8000) >> 16;
    alpha[i] = f32(data[4 * i + 3] / 255);
    transparent ||= data[4 * i + 3] < 255;
  }
  return plane(h, w, transparent ? composite(lum, alpha, h, w) : lum);
}

/** preprocess._composite: the opaque border's colour as the paper, else whatever contrasts the ink. */
function composite(lum, alpha, h, w) {
  const ring = border(h, w);
  let ringOpaque = 0, ringCount = 0, anyOpaque = false, wsum = 0, wlum = 0;
  const paperSamples = [];
  for (let i = 0; i < lum.length; i++) {
    const opaque = alpha[i] >= 0.5;
    anyOpaque ||= opaque;
    wsum += alpha[i]; wlum += alpha[i] * lum[i];
    if (ring[i]) {
      ringCount++;
      if (opaque) { ringOpaque++; paperSamples.push(lum[i]); }
    }
  }
  let paper = 255.0;  // fully transparent: blank either way
  if (ringOpaque / ringCount >= 0.5) paper = f32(median(paperSamples));
  else if (anyOpaque) paper = wlum / wsum < 128 ? 255.0 : 0.0;
  return lum.map((v, i) => f32(f32(alpha[i] * v) + f32(f32(1 - alpha[i]) * paper)));
}

/** Invert dark ink on light paper (preprocess._ink_light): whichever residual tail is further out is ink. */
function inkLight(gray) {
  const bg = background(gray, "either");
  const [lo, hi] = percentiles(gray.data.map((v, i) => v - bg[i]), [0.05, 99.95]);
  return -lo > hi ? plane(gray.h, gray.w, gray.data.map((v) => 255 - v)) : gray;
}

// ---------------------------------------------------------------------------- MNIST-like 28x28

/** preprocess._mnist_like: a 28x28 image that already is a centred MNIST digit. */
function mnistLike(gray) {
  if (gray.h !== CANVAS || gray.w !== CANVAS) return false;
  if (median(pick(gray.data, border(CANVAS, CANVAS))) > FAST_BORDER) return false;
  const peak = max(gray.data);
  if (peak <= 2 * FAST_BORDER) return false;
  const level = f32(Math.max(FAST_BORDER, 0.1 * peak));
  let r0 = CANVAS, r1 = -1, c0 = CANVAS, c1 = -1;
  gray.data.forEach((v, i) => {
    if (v > level) {
      const y = Math.floor(i / CANVAS), x = i % CANVAS;
      r0 = Math.min(r0, y); r1 = Math.max(r1, y); c0 = Math.min(c0, x); c1 = Math.max(c1, x);
    }
  });
  const side = Math.max(r1 - r0, c1 - c0) + 1;
  const [cy, cx] = com(plane(CANVAS, CANVAS, gray.data.map((v) => Math.max(v - FAST_BORDER, 0))));
  return DIGIT_BOX - 3 <= side && side <= DIGIT_BOX + 1
      && Math.max(Math.abs(cy - COM_TARGET), Math.abs(cx - COM_TARGET)) <= 1.5;
}

/** preprocess._center: a whole-pixel shift bringing the centre of mass near 14 (MNIST: a no-op). */
function center(gray) {
  const [cy, cx] = com(gray);
  const [dy, dx] = [COM_TARGET - cy, COM_TARGET - cx].map((d) => (Math.abs(d) > COM_SLACK ? roundHalfEven(d) : 0));
  const out = new Uint8Array(CANVAS * CANVAS);
  for (let y = 0; y < CANVAS; y++) {
    for (let x = 0; x < CANVAS; x++) {
      const sy = y - dy, sx = x - dx;
      if (sy >= 0 && sy < CANVAS && sx >= 0 && sx < CANVAS) {
        out[y * CANVAS + x] = Math.min(255, Math.max(0, roundHalfEven(gray.data[sy * CANVAS + sx])));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------- the paper

/** preprocess._remove_paper: light-ink plane -> ink 0..1 on exactly 0, or null when there is no ink. */
function removePaper(gray) {
  const side = Math.max(gray.h, gray.w);
  const bg = background(gray, "light");
  const r = boxBlur(plane(gray.h, gray.w, gray.data.map((v, i) => v - bg[i])), Math.floor(side / 300));
  const [med, top] = percentiles(r.data, [50, 99.95]).map(f32);
  const noise = fineNoise(r);
  const contrast = top - med;
  if (contrast < Math.max(MIN_CONTRAST, 2 * NOISE_SIGMAS * noise)) return null;
  // numpy compares a float32 array with a Python float in float32 (NEP 50): so do these thresholds.
  const weakLevel = f32(med + Math.max(NOISE_SIGMAS * noise, REL_THRESHOLD * contrast));
  const strongLevel = f32(med + 0.5 * contrast);
  const strong = plane(r.h, r.w, r.data.map((v) => (v > strongLevel ? 1 : 0)));
  const near = windowMax(strong, 2 * Math.max(1, Math.floor(side / 40)) + 1).data;
  const mask = r.data.map((v, i) => (v > weakLevel && near[i] > 0 ? 1 : 0));
  const solid = f32(percentile(pick(r.data, mask), 90));
  const scale = f32(Math.max(solid - med, 1e-6));
  return plane(r.h, r.w, r.data.map((v, i) => (mask[i] ? Math.min(1, Math.max(0, f32(f32(v - med) / scale))) : 0)));
}

/** Mean over a (2k+1) x (2k+1) window, edge-padded, like preprocess._box_blur; k = 0 returns p. */
function boxBlur(p, k) {
  if (k <= 0) return p;
  const { h, w } = p, n = 2 * k + 1;
  const rows = new Float64Array(h * w), out = new Float32Array(h * w);
  const clamp = (i, len) => Math.min(Math.max(i, 0), len - 1);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let d = -k; d <= k; d++) s += p.data[clamp(y + d, h) * w + x];
      rows[y * w + x] = s / n;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let d = -k; d <= k; d++) s += rows[y * w + clamp(x + d, w)];
      out[y * w + x] = s / n;
    }
  }
  return plane(h, w, out);
}

/** Robust sigma of pixel noise from horizontal neighbour differences (preprocess._fine_noise). */
function fineNoise(p) {
  if (p.w < 2) return 0;
  const d = new Float32Array(p.h * (p.w - 1));
  for (let y = 0; y < p.h; y++) {
    for (let x = 0; x < p.w - 1; x++) d[y * (p.w - 1) + x] = p.data[y * p.w + x + 1] - p.data[y * p.w + x];
  }
  const m = f32(median(d));
  return (1.4826 * f32(median(d.map((v) => Math.abs(v - m))))) / Math.SQRT2;
}

/**
 * The paper's level under the ink (preprocess._background): a quadratic surface in (x, y) fitted to
 * a grid of cell medians, first to the border cells, then to every cell that does not stand out of
 * the fit (above it for "light" ink, on either side for "either"), until that set settles.
 * Returns a Float32Array of the plane's size.
 */
function background(gray, ink, cells = 16) {
  const { h, w } = gray;
  const c = Math.max(1, Math.ceil(Math.max(h, w) / cells));
  const gh = Math.ceil(h / c), gw = Math.ceil(w / c);
  const grid = new Float64Array(gh * gw), cell = new Float32Array(c * c);
  for (let gy = 0; gy < gh; gy++) {
    for (let gx = 0; gx < gw; gx++) {
      let k = 0;  // the image is edge-padded to whole cells
      for (let y = gy * c; y < (gy + 1) * c; y++) {
        for (let x = gx * c; x < (gx + 1) * c; x++) cell[k++] = gray.data[Math.min(y, h - 1) * w + Math.min(x, w - 1)];
      }
      grid[gy * gw + gx] = f32(median(cell));
    }
  }
  const scale = Math.max(h, w) / 2;  // coordinates scaled to about -1..1 for a well-conditioned fit
  const basis = (y, x) => [1, x, y, x * x, x * y, y * y];
  const rows = Array.from(grid, (_, i) => basis(
    ((Math.floor(i / gw) + 0.5) * c - h / 2) / scale, (((i % gw) + 0.5) * c - w / 2) / scale));
  const ring = border(gh, gw);
  const [q25, q50, q75] = percentiles(pick(grid, ring), [25, 50, 75]).map(f32);
  let keep = grid.map((v, i) => (ring[i] && (ink === "light" ? v <= q50 : v >= q25 && v <= q75) ? 1 : 0));
  let coef = [0, 0, 0, 0, 0, 0];
  for (let iter = 0; iter < 6 && sum(keep) >= 6; iter++) {
    coef = leastSquares(pick(rows, keep), pick(grid, keep));
    const err = grid.map((v, i) => v - dot(rows[i], coef));
    const tol = Math.max(3 * 1.4826 * median(pick(err, keep).map(Math.abs)), 2.0);
    const next = err.map((e) => ((ink === "light" ? e : Math.abs(e)) <= tol ? 1 : 0));
    if (next.every((v, i) => v === keep[i])) break;
    keep = next;
  }
  if (sum(keep) < 6) return new Float32Array(h * w).fill(percentile(grid, 10));  // nearly all inked: flat
  const out = new Float32Array(h * w);
  const [c0, cx, cy, cxx, cxy, cyy] = coef;
  for (let i = 0; i < h; i++) {
    const y = (i - h / 2 + 0.5) / scale;
    for (let j = 0; j < w; j++) {
      const x = (j - w / 2 + 0.5) / scale;
      out[i * w + j] = c0 + cx * x + cy * y + cxx * x * x + cxy * x * y + cyy * y * y;
    }
  }
  return out;
}

const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);

/**
 * The least-squares coefficients of rows * coef ~ values, the minimum-norm one when the rows leave
 * some direction free (kept cells on two lines), as numpy.linalg.lstsq gives: the pseudo-inverse
 * of the normal equations, through a Jacobi eigendecomposition (the system is only 6 x 6).
 */
function leastSquares(rows, values) {
  const n = rows[0].length;
  const ata = Array.from({ length: n }, () => new Float64Array(n)), atb = new Float64Array(n);
  rows.forEach((r, k) => {
    for (let i = 0; i < n; i++) {
      atb[i] += r[i] * values[k];
      for (let j = 0; j < n; j++) ata[i][j] += r[i] * r[j];
    }
  });
  const { values: lambda, vectors } = symmetricEigen(ata);
  const cutoff = 1e-12 * Math.max(...lambda);  // relative to the largest, like lstsq's rcond
  const coef = new Array(n).fill(0);
  lambda.forEach((l, k) => {
    if (!(l > cutoff)) return;
    const v = vectors.map((row) => row[k]);
    const c = dot(v, atb) / l;
    for (let i = 0; i < n; i++) coef[i] += c * v[i];
  });
  return coef;
}

/** Eigenvalues and eigenvectors (columns of `vectors`) of a small symmetric matrix: cyclic Jacobi. */
function symmetricEigen(matrix) {
  const n = matrix.length;
  const a = matrix.map((row) => Float64Array.from(row));
  const v = Array.from({ length: n }, (_, i) => Float64Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += a[i][j] * a[i][j];
    if (off < 1e-30 * a.reduce((s, row, i) => s + row[i] * row[i], 0)) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (a[p][q] === 0) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cos = 1 / Math.sqrt(t * t + 1), sin = t * cos;
        for (let k = 0; k < n; k++) {  // a <- a J (columns p, q), then J^T a (rows p, q)
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = cos * akp - sin * akq; a[k][q] = sin * akp + cos * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = cos * apk - sin * aqk; a[q][k] = sin * apk + cos * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p], vkq = v[k][q];
          v[k][p] = cos * vkp - sin * vkq; v[k][q] = sin * vkp + cos * vkq;
        }
      }
    }
  }
  return { values: a.map((row, i) => row[i]), vectors: v };
}

/** Max over a k x k window, edge-padded (preprocess._window with np.max): separable, rows then columns. */
function windowMax(p, k) {
  const { h, w } = p;
  const lo = Math.floor(k / 2), hi = k - 1 - lo;
  const tmp = new Float32Array(h * w), out = new Float32Array(h * w);
  const line = new Float32Array(Math.max(h, w) + k);  // one row or column, edge-padded
  const slide = (src, dst, start, step, n) => {
    for (let i = -lo; i < n + hi; i++) line[i + lo] = src[start + step * Math.min(Math.max(i, 0), n - 1)];
    for (let i = 0; i < n; i++) {
      let m = line[i];
      for (let d = 1; d < k; d++) if (line[i + d] > m) m = line[i + d];
      dst[start + step * i] = m;
    }
  };
  for (let x = 0; x < w; x++) slide(p.data, tmp, x, w, h);  // along each column: numpy's axis 0
  for (let y = 0; y < h; y++) slide(tmp, out, y * w, 1, w);
  return plane(h, w, out);
}

// ------------------------------------------------------------------------------- crop and scale

function rowSums(p) {
  const s = new Float64Array(p.h);
  for (let y = 0; y < p.h; y++) for (let x = 0; x < p.w; x++) s[y] += p.data[y * p.w + x];
  return s;
}

function colSums(p) {
  const s = new Float64Array(p.w);
  for (let y = 0; y < p.h; y++) for (let x = 0; x < p.w; x++) s[x] += p.data[y * p.w + x];
  return s;
}

function crop(p, r0, r1, c0, c1) {
  const out = plane(r1 - r0, c1 - c0);
  for (let y = r0; y < r1; y++) out.data.set(p.data.subarray(y * p.w + c0, y * p.w + c1), (y - r0) * out.w);
  return out;
}

/** Crop to the ink's bounding box, leaving out specks separated from the digit at the edges. */
function cropToInk(ink) {
  const [r0, r1] = inkSpan(rowSums(ink));
  const [c0, c1] = inkSpan(colSums(crop(ink, r0, r1, 0, ink.w)));
  return crop(ink, r0, r1, c0, c1);
}

/** [start, stop) of the inked rows (or columns), dropping small end runs (preprocess._ink_span). */
function inkSpan(profile) {
  const runs = [];
  profile.forEach((v, i) => {
    if (!(v > 0)) return;
    const last = runs[runs.length - 1];
    if (last && last[1] === i) last[1] = i + 1; else runs.push([i, i + 1]);
  });
  const total = sum(profile);
  const mass = runs.map(([a, b]) => sum(profile.subarray(a, b)));
  let i = 0, j = runs.length - 1;
  while (i < j && (mass[i] < SPECK_FRACTION * total || mass[j] < SPECK_FRACTION * total)) {
    if (mass[i] <= mass[j]) i++; else j--;
  }
  return [runs[i][0], runs[j][1]];
}

/** Mean stroke width in pixels: 2 * area / total variation, the crop's edge counting as an edge. */
function strokeWidth(p) {
  const { h, w, data } = p;
  let tv = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = data[y * w + x];
      if (y + 1 < h) tv += Math.abs(data[(y + 1) * w + x] - v);
      if (x + 1 < w) tv += Math.abs(data[y * w + x + 1] - v);
      if (y === 0) tv += v;
      if (y === h - 1) tv += v;
      if (x === 0) tv += v;
      if (x === w - 1) tv += v;
    }
  }
  return tv > 0 ? (2 * sum(data)) / tv : 0;
}

/** Scale the cropped ink so its longest side is DIGIT_BOX (preprocess._fit_box); full ink at the peak. */
function fitBox(ink) {
  let p = ink;
  if ((strokeWidth(p) * DIGIT_BOX) / Math.max(p.h, p.w) < MIN_STROKE) p = thicken(p);
  const side = Math.max(p.h, p.w);
  const w = Math.max(1, roundHalfEven((p.w * DIGIT_BOX) / side));
  const h = Math.max(1, roundHalfEven((p.h * DIGIT_BOX) / side));
  const filter = side >= DIGIT_BOX ? BOX : LANCZOS;
  const box = resize(p, h, w, filter).data.map((v) => Math.min(1, Math.max(0, v)));
  const peak = max(box);
  return plane(h, w, peak > 0 ? box.map((v) => v / peak) : box);
}

/** Grow thin strokes to TARGET_STROKE box pixels by a grayscale dilation (preprocess._thicken). */
function thicken(ink, scale = 4) {
  let p = ink;
  const f = Math.floor(Math.max(p.h, p.w) / (DIGIT_BOX * scale));
  if (f >= 2) p = maxPool(p, f);  // keeps hairlines at full ink where an average would fade them
  const target = (TARGET_STROKE * Math.max(p.h, p.w)) / DIGIT_BOX;
  const k = roundHalfEven(target - strokeWidth(p)) + 1;
  if (k < 2) return p;
  const padded = plane(p.h + 2 * k, p.w + 2 * k);  // room for the strokes to grow outwards
  for (let y = 0; y < p.h; y++) padded.data.set(p.data.subarray(y * p.w, (y + 1) * p.w), (y + k) * padded.w + k);
  return cropToInk(windowMax(padded, k));
}

/** f x f max-pooling, the plane zero-padded at its bottom and right to whole blocks. */
function maxPool(p, f) {
  const h = Math.ceil(p.h / f), w = Math.ceil(p.w / f);
  const out = plane(h, w);
  for (let y = 0; y < p.h; y++) {
    for (let x = 0; x < p.w; x++) {
      const o = Math.floor(y / f) * w + Math.floor(x / f);
      out.data[o] = Math.max(out.data[o], p.data[y * p.w + x]);
    }
  }
  return out;
}

/** preprocess._paste_by_com: into 28x28 with the centre of mass at 14, never past the edges. */
function pasteByCom(box) {
  const [cy, cx] = com(box);
  const top = Math.min(Math.max(roundHalfEven(COM_TARGET - cy), 0), CANVAS - box.h);
  const left = Math.min(Math.max(roundHalfEven(COM_TARGET - cx), 0), CANVAS - box.w);
  const out = new Uint8Array(CANVAS * CANVAS);
  for (let y = 0; y < box.h; y++) {
    for (let x = 0; x < box.w; x++) {
      out[(top + y) * CANVAS + left + x] = Math.min(255, Math.max(0, roundHalfEven(f32(box.data[y * box.w + x] * 255))));
    }
  }
  return out;
}

// ------------------------------------------------------------------- Pillow's resampling, mode "F"
// Pillow (Resample.c) resizes in two passes, horizontal then vertical, each with normalised filter
// weights in double precision and float32 pixels in between; a pass whose size is unchanged is skipped.

const BOX = { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) };
const sinc = (x) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
const LANCZOS = { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) };

/** For each output pixel, the first input pixel and the weights of the inputs it averages. */
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  return Array.from({ length: outSize }, (_, i) => {
    const center = (i + 0.5) * scale;
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const stop = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = [];
    for (let x = first; x < stop; x++) weights.push(filter.weight((x - center + 0.5) / filterScale));
    const total = sum(weights);
    return { first, weights: total !== 0 ? weights.map((v) => v / total) : weights };
  });
}

function resize(p, h, w, filter) {
  let src = p;
  if (w !== src.w) {
    const coef = coefficients(src.w, w, filter), out = plane(src.h, w);
    for (let y = 0; y < src.h; y++) {
      coef.forEach(({ first, weights }, x) => {
        let s = 0;
        weights.forEach((k, j) => { s += src.data[y * src.w + first + j] * k; });
        out.data[y * w + x] = s;
      });
    }
    src = out;
  }
  if (h !== src.h) {
    const coef = coefficients(src.h, h, filter), out = plane(h, src.w);
    coef.forEach(({ first, weights }, y) => {
      for (let x = 0; x < src.w; x++) {
        let s = 0;
        weights.forEach((k, j) => { s += src.data[(first + j) * src.w + x] * k; });
        out.data[y * src.w + x] = s;
      }
    });
    src = out;
  }
  return src;
}
