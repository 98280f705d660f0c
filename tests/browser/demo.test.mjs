// End-to-end tests of the built demo page (web/dist) in Debian's headless Chromium, driven
// by playwright-core: WebGPU (SwiftShader, with --enable-unsafe-webgpu) and the CPU fallback
// (without it), cross-backend determinism, a corrupt model file, abort, a clean console.
//   node --test tests/browser/demo.test.mjs     (after scripts/models.sh and the web build)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
const TIMEOUT = 180_000;
const TEST_MODEL = process.env.NEXTSCALE_TEST_MODEL ?? 'var-tiny-a.safetensors';
const SHOTS = process.env.SCREENSHOTS;

let server;
let url;
const browsers = {};
const finalImages = {};

before(async () => {
  server = await serve(new URL('../../web/dist', import.meta.url).pathname, 0);
  url = `http://127.0.0.1:${server.address().port}/`;
  browsers.webgpu = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, '--enable-unsafe-webgpu'] });
  browsers.plain = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  await Promise.all(Object.values(browsers).map((b) => b.close()));
  server?.close();
});

/** Opens the page and records every console error and uncaught exception. */
async function open(browser, query = '') {
  // The tests pin the tiny fixture model (fast on SwiftShader), whatever the manifest's
  // default; NEXTSCALE_TEST_MODEL picks another file in web/public/models.
  const params = new URLSearchParams(query);
  if (!params.has('model')) params.set('model', TEST_MODEL);
  query = `?${params}`;
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  await page.goto(url + query);
  await waitStatus(page, 'ready');
  return { page, problems };
}

async function waitStatus(page, status) {
  await page.waitForFunction(
    ([s]) => {
      const now = document.querySelector('[data-testid=status]')?.textContent;
      return now === s || (now === 'error' && s !== 'error');
    },
    [status],
    { timeout: TIMEOUT },
  );
  const now = await page.getByTestId('status').textContent();
  if (now !== status) assert.fail(`status ${now}, wanted ${status}: ${await page.getByTestId('error').textContent()}`);
}

async function generate(page) {
  await page.getByTestId('generate').click();
  await waitStatus(page, 'done');
}

/**
 * The canvas's RGBA bytes, read through a fresh copy each time (repeated getImageData on the
 * page's own context makes Chromium log a performance warning, which the console checks
 * would catch).
 */
function canvasPixels(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('[data-testid=canvas]');
    const copy = Object.assign(document.createElement('canvas'), { width: canvas.width, height: canvas.height });
    const context = copy.getContext('2d', { willReadFrequently: true });
    context.drawImage(canvas, 0, 0);
    return Array.from(context.getImageData(0, 0, copy.width, copy.height).data);
  });
}

function assertNotUniform(pixels) {
  const distinct = new Set();
  for (let i = 0; i < pixels.length; i += 4) distinct.add(`${pixels[i]},${pixels[i + 1]},${pixels[i + 2]}`);
  assert.ok(distinct.size > 16, `the final canvas has only ${distinct.size} colours`);
}

async function scales(page) {
  return page.evaluate(() => {
    const text = document.querySelector('#scale-label')?.textContent ?? '';
    return Number(text.split('/')[1]);
  });
}

/** Generates class 3, seed 11 and checks a frame per scale and a non-uniform final image. */
async function generateChecked(page, shot) {
  await page.getByTestId('seed-input').fill('11');
  await page.getByTestId('class-select').selectOption('3');
  await generate(page);
  assert.equal(Number(await page.getByTestId('frame-count').textContent()), await scales(page));
  const pixels = await canvasPixels(page);
  assertNotUniform(pixels);
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${shot}.png`, fullPage: true });
  return pixels;
}

/** The config a model file in web/dist/models carries in its safetensors header. */
function modelConfig(file) {
  const bytes = readFileSync(new URL(`../../web/dist/models/${file}`, import.meta.url));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  return JSON.parse(header.__metadata__['nextscale.config']);
}

/** The page's cfg, top-k and top-p controls. */
async function samplingControls(page) {
  const value = async (id) => Number(await page.locator(`#${id}`).inputValue());
  return { cfg: await value('cfg'), top_k: await value('top-k'), top_p: await value('top-p') };
}

function enabledModes(page) {
  return page.locator('[data-testid=mode-select] option:not([disabled])').evaluateAll((o) => o.map((x) => x.value));
}

test('the bundled model streams its distilled student: dd2 a preview then the image, dd1 one frame', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.plain, '?backend=cpu&model=emoji32.safetensors');
  assert.deepEqual(await enabledModes(page), ['var', 'dd1', 'dd2', 'parallel']);
  // The controls start at the sampling the file recommends (nextscale tune-sampling).
  const recommended = modelConfig('emoji32.safetensors').sampling;
  assert.ok(recommended, 'the bundled model recommends a sampling');
  assert.deepEqual(await samplingControls(page), recommended);
  await page.getByTestId('seed-input').fill('5');
  for (const [mode, frames] of [['dd2', 2], ['dd1', 1], ['parallel', 1]]) {
    await page.getByTestId('mode-select').selectOption(mode);
    await generate(page);
    assert.equal(Number(await page.getByTestId('frame-count').textContent()), frames, mode);
    assert.equal(await page.locator('#scale-label').textContent(), `step ${frames}/${frames}`, mode);
    assertNotUniform(await canvasPixels(page));
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/cpu-${mode}.png`, fullPage: true });
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('WebGPU: the badge says WebGPU, one frame per scale, a non-uniform image', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.webgpu, '?backend=webgpu');
  assert.match(await page.getByTestId('backend').textContent(), /^WebGPU/);
  finalImages.webgpu = await generateChecked(page, 'webgpu');
  assert.deepEqual(problems, []);
  await page.close();
});

test('auto passes over the software WebGPU adapter (SwiftShader) for the CPU and says why', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.webgpu);
  const badge = await page.getByTestId('backend').textContent();
  assert.match(badge, /^CPU \(wasm, \d+ threads?\)/);
  assert.match(badge, /software fallback/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('without WebGPU the CPU fallback is shown and generation completes', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.plain);
  // The fixture model recommends nothing: the official sampling, top-k capped at V.
  const { sampling, V } = modelConfig(TEST_MODEL);
  assert.equal(sampling, undefined);
  assert.deepEqual(await samplingControls(page), { cfg: 1.5, top_k: Math.min(900, V), top_p: 0.96 });
  assert.equal(await page.locator('#top-k').getAttribute('max'), String(V));
  const badge = await page.getByTestId('backend').textContent();
  assert.match(badge, /^CPU \(wasm, \d+ threads?\)/);
  assert.match(badge, /WebGPU/, 'the badge says why WebGPU is not used');
  finalImages.cpu = await generateChecked(page, 'cpu');
  // This model has no distilled student, so only VAR and the naive baseline are offered.
  assert.deepEqual(await enabledModes(page), ['var', 'parallel']);
  // The downloaded model is in the Cache API for the next visit, under a URL versioned by
  // the file's content (manifest.json), so a changed file is fetched anew.
  const cached = await page.evaluate(async () => (await (await caches.open('nextscale-models-v1')).keys()).map((r) => r.url));
  const sha256 = createHash('sha256').update(readFileSync(new URL(`../../web/dist/models/${TEST_MODEL}`, import.meta.url))).digest('hex');
  assert.ok(cached.some((u) => u.endsWith(`/models/${TEST_MODEL}?v=${sha256.slice(0, 16)}`)), `cache holds ${cached}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the same seed gives the same image on WebGPU and on the CPU', () => {
  assert.ok(finalImages.webgpu && finalImages.cpu, 'both runs above passed');
  // Tokens are exact across backends; decoder floats may round differently by one level.
  let worst = 0;
  for (let i = 0; i < finalImages.cpu.length; i++) worst = Math.max(worst, Math.abs(finalImages.cpu[i] - finalImages.webgpu[i]));
  assert.ok(worst <= 1, `max pixel difference ${worst}`);
});

test('a corrupt model file shows an error and the page keeps working', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.plain, '?backend=cpu');
  await page.getByTestId('model-file-input').setInputFiles({
    name: 'corrupt.safetensors',
    mimeType: 'application/octet-stream',
    buffer: Buffer.from('\x10\x00\x00\x00\x00\x00\x00\x00{"not": "a model"}'),
  });
  await waitStatus(page, 'error');
  assert.match(await page.getByTestId('error').textContent(), /E_MODEL_FORMAT/);
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/error.png`, fullPage: true });
  await generate(page);
  assertNotUniform(await canvasPixels(page));
  assert.deepEqual(problems, []);
  await page.close();
});

test('abort in mid-generation, then generate again', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.plain, '?backend=cpu');
  // Both clicks in one task: the worker sees the abort at its first checkpoint (after scale 1).
  await page.evaluate(() => {
    document.querySelector('[data-testid=generate]').click();
    document.querySelector('[data-testid=abort]').click();
  });
  await waitStatus(page, 'aborted');
  assert.ok(Number(await page.getByTestId('frame-count').textContent()) < (await scales(page) || 4));
  await generate(page);
  assert.equal(Number(await page.getByTestId('frame-count').textContent()), await scales(page));
  await page.getByTestId('batch').click();
  await waitStatus(page, 'done');
  assert.equal(await page.locator('[data-testid=grid] canvas').count(), 4);
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/batch.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test('asking for WebGPU without it is a typed error in the page', { timeout: TIMEOUT }, async () => {
  const page = await browsers.plain.newPage();
  await page.goto(`${url}?backend=webgpu`);
  await waitStatus(page, 'error');
  assert.match(await page.getByTestId('error').textContent(), /^E_WEBGPU_UNAVAILABLE: /);
  assert.equal(await page.getByTestId('generate').isDisabled(), true);
  await page.close();
});

test('edit: drag a box, in-paint it, undo', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(browsers.plain, '?backend=cpu&model=emoji32.safetensors');
  // The image at the model's resolution, read from the upscaled canvas.
  const image = () =>
    page.evaluate(() => {
      const canvas = document.querySelector('[data-testid=canvas]');
      const copy = Object.assign(document.createElement('canvas'), { width: 32, height: 32 });
      const context = copy.getContext('2d', { willReadFrequently: true });
      context.imageSmoothingEnabled = false;
      context.drawImage(canvas, 0, 0, 32, 32);
      return Array.from(context.getImageData(0, 0, 32, 32).data);
    });
  const meanDiff = (a, b, where) => {
    let sum = 0;
    let count = 0;
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        if (!where(y, x)) continue;
        for (let c = 0; c < 3; c++) sum += Math.abs(a[(y * 32 + x) * 4 + c] - b[(y * 32 + x) * 4 + c]);
        count += 3;
      }
    }
    return sum / count;
  };
  assert.equal(await page.getByTestId('edit').isDisabled(), true, 'nothing to edit yet');
  await page.getByTestId('class-select').selectOption('0');
  await page.getByTestId('seed-input').fill('11');
  await generate(page);
  const original = await image();
  // Drag the centre quarter of the canvas.
  const box = await page.getByTestId('canvas').boundingBox();
  await page.mouse.move(box.x + box.width * 0.25, box.y + box.height * 0.25);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await page.mouse.move(box.x + box.width * 0.75, box.y + box.height * 0.75);
  await page.mouse.up();
  assert.equal(await page.getByTestId('edit-box').getAttribute('data-box'), '0.250,0.250,0.750,0.750');
  await page.getByTestId('edit-mode').selectOption('inpaint');
  await page.getByTestId('class-select').selectOption('2');
  await page.getByTestId('edit').click();
  await waitStatus(page, 'done');
  assert.equal(Number(await page.getByTestId('frame-count').textContent()), 6, 'a frame per scale');
  const edited = await image();
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/edit.png`, fullPage: true });
  // Inside the box the image is generated anew; far from it (the border, at least two of
  // the 8×8 tokens away) the kept tokens decode as before: the image is a VQ-VAE decode,
  // so its own reconstruction. Measured here: 27 and 3.4 levels on average.
  const inside = (y, x) => y >= 10 && y < 22 && x >= 10 && x < 22;
  const far = (y, x) => y < 4 || y >= 28 || x < 4 || x >= 28;
  const changed = meanDiff(edited, original, inside);
  const kept = meanDiff(edited, original, far);
  assert.ok(kept <= 6, `far pixels moved by ${kept.toFixed(2)} levels on average`);
  assert.ok(changed >= 3 * kept && changed >= 10, `inside ${changed.toFixed(2)} against far ${kept.toFixed(2)}`);
  await page.getByTestId('undo').click();
  assert.deepEqual(await image(), original, 'undo restores the image');
  assert.equal(await page.getByTestId('undo').isDisabled(), true);
  assert.deepEqual(problems, []);
  await page.close();
});
