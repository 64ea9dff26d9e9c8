// Checks the service's web page in headless Chromium: opens it, uploads a photo through its
// file input, waits for the colour-mapped depth and for the 3D view to draw the GLB (mesh,
// then point cloud), screenshots the 3D view and counts the pixels that differ from its
// background.
//
//   node scripts/node/web_check.mjs URL PHOTO SCREENSHOT.png [--timeout-ms N] [--min-fraction F]
//
// Writes SCREENSHOT.png (the mesh) and SCREENSHOT-points.png (the point cloud). Exits 0
// when both drew more than F (default 0.02) of the view and the depth image appeared,
// else 1 with the reason. Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's
// `chromium`); WebGL runs on SwiftShader, so no GPU is needed.

import { realpathSync, writeFileSync } from "node:fs";
import { inflateSync } from "node:zlib";
import puppeteer from "puppeteer-core";

function usage(message) {
  console.error(`web_check: ${message}`);
  console.error("usage: node web_check.mjs URL PHOTO SCREENSHOT.png [--timeout-ms N] [--min-fraction F]");
  process.exit(2);
}

const positional = [];
const options = { timeoutMs: 60000, minFraction: 0.02 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--timeout-ms") options.timeoutMs = Number(argv[++i]);
  else if (argv[i] === "--min-fraction") options.minFraction = Number(argv[++i]);
  else positional.push(argv[i]);
}
if (positional.length !== 3) usage("expected URL, PHOTO and SCREENSHOT");
if (!(options.timeoutMs > 0) || !(options.minFraction >= 0)) usage("bad --timeout-ms or --min-fraction");
const [url, photo, screenshot] = positional;

// A PNG as {width, height, channels, pixels} (8-bit grey, RGB or RGBA, not interlaced:
// what Chromium writes).
function decodePng(bytes) {
  const signature = "89504e470d0a1a0a";
  if (bytes.subarray(0, 8).toString("hex") !== signature) throw new Error("not a PNG");
  let at = 8, width = 0, height = 0, channels = 0;
  const data = [];
  while (at < bytes.length) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString("latin1", at + 4, at + 8);
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colour];
      if (depth !== 8 || !channels || interlace !== 0) {
        throw new Error(`unsupported PNG (bit depth ${depth}, colour type ${colour}, interlace ${interlace})`);
      }
    } else if (type === "IDAT") {
      data.push(body);
    } else if (type === "IEND") {
      break;
    }
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[x - channels] : 0;
      const b = up[x];
      const c = x >= channels ? up[x - channels] : 0;
      let predicted;
      switch (filter) {
        case 0: predicted = 0; break;
        case 1: predicted = a; break;
        case 2: predicted = b; break;
        case 3: predicted = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`bad PNG filter ${filter}`);
      }
      out[x] = (row[x] + predicted) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

// The share of pixels whose colour differs from `background` ("#rrggbb") by more than
// `tolerance` in some channel (antialiasing and colour management move it by a few).
function drawnFraction(png, background, tolerance = 8) {
  const rgb = [1, 3, 5].map((i) => parseInt(background.slice(i, i + 2), 16));
  const { width, height, channels, pixels } = png;
  let drawn = 0;
  for (let i = 0; i < width * height; i++) {
    const p = i * channels;
    const colour = channels >= 3 ? [pixels[p], pixels[p + 1], pixels[p + 2]] : [pixels[p], pixels[p], pixels[p]];
    if (colour.some((v, k) => Math.abs(v - rgb[k]) > tolerance)) drawn++;
  }
  return drawn / (width * height);
}

// Errors the page logged, shown with the outcome.
const problems = [];

async function main() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    page.on("requestfailed", (request) => {
      problems.push(`${request.method()} ${request.url()} failed: ${request.failure()?.errorText}`);
    });
    page.on("response", (response) => {
      if (response.status() >= 400 && !response.url().endsWith("/favicon.ico")) problems.push(`${response.url()}: ${response.status()}`);
    });
    await page.setViewport({ width: 1100, height: 900 });
    await page.goto(url, { waitUntil: "load", timeout: options.timeoutMs });

    const input = await page.$("#photo");
    if (!input) throw new Error("the page has no file input #photo");
    // Chromium reads the file when the page sends it, and fails (net::ERR_FAILED) on a
    // path with `..` in it.
    await input.uploadFile(realpathSync(photo));

    const results = {};
    for (const kind of ["mesh", "cloud"]) {
      if (kind !== "mesh") await page.click(`input[name="shape"][value="${kind}"]`);
      // Done when the view says it drew this kind (and, first, the depth image is shown),
      // or when the page reports an error.
      const outcome = await page.waitForFunction(
        (kind, needDepth) => {
          const status = document.getElementById("status");
          if (status.classList.contains("error")) return { error: status.textContent };
          const image = document.getElementById("depth");
          const depthShown = !image.hidden && image.complete && image.naturalWidth > 0;
          const viewer = document.getElementById("viewer");
          if (viewer.dataset.rendered === kind && (depthShown || !needDepth)) {
            return { depth: [image.naturalWidth, image.naturalHeight], background: viewer.dataset.background };
          }
          return false;
        },
        { timeout: options.timeoutMs, polling: 100 },
        kind,
        kind === "mesh",
      ).then((handle) => handle.jsonValue()).catch((error) => ({ error: `timed out: ${error.message}` }));
      if (outcome.error) {
        const text = await page.$eval("#status", (s) => s.textContent).catch(() => "");
        throw new Error(`${kind}: ${outcome.error}${text && !outcome.error.includes(text) ? ` (status: ${text})` : ""}`);
      }
      if (outcome.depth) results.depth = outcome.depth;

      const canvas = await page.$("#viewer canvas");
      const box = canvas && (await canvas.boundingBox());
      if (!box || box.width < 10 || box.height < 10) throw new Error("the 3D view has no canvas on screen");
      const bytes = Buffer.from(await page.screenshot({ clip: box, type: "png" }));
      const path = kind === "mesh" ? screenshot : screenshot.replace(/(\.png)?$/i, "-points.png");
      writeFileSync(path, bytes);
      const png = decodePng(bytes);
      const fraction = drawnFraction(png, outcome.background || "#202428");
      results[kind] = { fraction, size: [png.width, png.height], path };
    }

    const [w, h] = results.depth;
    for (const kind of ["mesh", "cloud"]) {
      const { fraction, size, path } = results[kind];
      console.log(
        `web_check: ${kind}: ${(100 * fraction).toFixed(1)}% of the ${size[0]}x${size[1]} view drawn (${path})`,
      );
    }
    console.log(`web_check: depth image ${w}x${h}`);
    const thin = ["mesh", "cloud"].filter((k) => results[k].fraction <= options.minFraction);
    if (thin.length) {
      throw new Error(`${thin.join(" and ")}: at most ${(100 * options.minFraction).toFixed(1)}% of the view drawn`);
    }
    if (!(w > 0 && h > 0)) throw new Error("the depth image did not appear");
    console.log("web_check: ok");
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    for (const p of problems) console.error(`web_check: note: ${p}`);
    process.exit(0);
  },
  (error) => {
    for (const p of problems) console.error(`web_check: note: ${p}`);
    console.error(`web_check: FAILED: ${error.message}`);
    process.exit(1);
  },
);
