// preprocess.js toMnist on images written by Python (tests/test_web.py): what the page gives the model.
//   node preprocess_images.mjs IMAGES.bin INDEX.json OUT.bin
// IMAGES.bin: RGBA pixels of every image, back to back; INDEX.json: [[width, height], ...] in order.
// OUT.bin: N x 28 x 28 uint8. Prints {n, ms_per_image}.
import { readFileSync, writeFileSync } from "node:fs";
import { CANVAS, toMnist } from "../../mnist_edge/edge/static/preprocess.js";

const [imagesPath, indexPath, outPath] = process.argv.slice(2);
const images = readFileSync(imagesPath);
const index = JSON.parse(readFileSync(indexPath, "utf8"));
const out = new Uint8Array(index.length * CANVAS * CANVAS);
let offset = 0;
const start = performance.now();
index.forEach(([width, height], i) => {
  const data = images.subarray(offset, offset + 4 * width * height);
  offset += data.length;
  out.set(toMnist({ width, height, data }), i * CANVAS * CANVAS);
});
const ms = (performance.now() - start) / index.length;
if (offset !== images.length) throw new Error(`${imagesPath}: ${images.length - offset} bytes left over`);
writeFileSync(outPath, out);
console.log(JSON.stringify({ n: index.length, ms_per_image: ms }));
