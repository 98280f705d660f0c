// The CPU engine on threads, in Debian's headless Chromium through playwright-core: the
// threaded build on a cross-origin isolated page, one thread (and the reason) without
// isolation, the same tokens and image as the single-threaded build and as native flex,
// what `?model=` accepts, and a large download that breaks off.
//   node --test tests/browser/threads.test.mjs   (after scripts/models.sh, the page build and
//   the native binary: NEXTSCALE_BIN, default target/debug/nextscale)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
const TIMEOUT = 180_000;
const MODEL = 'var-tiny-a.safetensors';
const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = process.env.NEXTSCALE_BIN ?? join(ROOT, process.env.CARGO_TARGET_DIR ?? 'target', 'debug', 'nextscale');
/** What a full-size VAR-d16 file in f16 announces (`nextscale init --random d16`). */
const D16_BYTES = 838_520_526;

/** A download that announces a d16-sized body, sends 4 MB of it and then either breaks the
 * connection (`broken`) or ends early without having announced a length (`short`). */
function partialDownload(kind) {
  return (_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      ...(kind === 'broken' ? { 'content-length': D16_BYTES } : {}),
    });
    // A safetensors header that claims one d16-sized tensor, then zeros.
    const header = Buffer.from(JSON.stringify({ w: { dtype: 'F16', shape: [D16_BYTES / 2 - 64], data_offsets: [0, D16_BYTES - 128] } }).padEnd(112));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    res.write(Buffer.concat([length, header]));
    let sent = 0;
    const chunk = Buffer.alloc(1 << 16);
    const more = () => {
      if (sent >= 4 << 20) {
        if (kind === 'broken') res.socket.destroy();
        else res.end();
        return;
      }
      sent += chunk.length;
      if (res.write(chunk)) setImmediate(more);
      else res.once('drain', more);
    };
    more();
  };
}

let isolated;
let plain;
let browser;
const servers = [];
const base = (server) => `http://127.0.0.1:${server.address().port}/`;

before(async () => {
  const dist = new URL('../../web/dist', import.meta.url).pathname;
  const routes = {
    '/models/broken.safetensors': partialDownload('broken'),
    '/models/short.safetensors': partialDownload('short'),
  };
  isolated = await serve(dist, 0, { routes });
  plain = await serve(dist, 0, { isolate: false });
  servers.push(isolated, plain);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  await browser?.close();
  for (const server of servers) server.close();
});

async function waitStatus(page, wanted) {
  await page.waitForFunction(
    (w) => [w, 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''),
    wanted,
    { timeout: TIMEOUT },
  );
  return page.getByTestId('status').textContent();
}

/** Opens the page and waits until it is ready (or shows an error), recording console problems. */
async function open(server, query) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  await page.goto(`${base(server)}${query}`);
  const status = await waitStatus(page, 'ready');
  return { page, problems, status };
}

/** Generates class 3, seed 11; returns each frame's tokens and the final image's pixels at
 * the model's resolution (the canvas shows it upscaled without smoothing). */
async function generate(page) {
  await page.getByTestId('class-select').selectOption('3');
  await page.getByTestId('seed-input').fill('11');
  await page.getByTestId('generate').click();
  assert.equal(await waitStatus(page, 'done'), 'done', await page.getByTestId('error').textContent());
  return page.evaluate(() => {
    const tokens = [...document.querySelectorAll('[data-testid=timeline] li')].map((li) => li.dataset.tokens);
    const canvas = document.querySelector('[data-testid=canvas]');
    const size = Number(/(\d+)×/.exec(document.querySelector('[data-testid=timeline] li.final span')?.textContent ?? '')?.[1]);
    const copy = Object.assign(document.createElement('canvas'), { width: size, height: size });
    const context = copy.getContext('2d', { willReadFrequently: true });
    context.imageSmoothingEnabled = false;
    context.drawImage(canvas, 0, 0, size, size);
    return { tokens, size, pixels: Array.from(context.getImageData(0, 0, size, size).data) };
  });
}

/** A PNG's RGBA pixels, decoded by the page. */
function decodePng(page, png) {
  return page.evaluate(async (base64) => {
    const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
    const bitmap = await createImageBitmap(blob);
    const canvas = Object.assign(document.createElement('canvas'), { width: bitmap.width, height: bitmap.height });
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return Array.from(context.getImageData(0, 0, bitmap.width, bitmap.height).data);
  }, png.toString('base64'));
}

function maxDifference(a, b) {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const results = {};

test('a cross-origin isolated page runs the CPU backend threaded, and says so', { timeout: TIMEOUT }, async () => {
  const { page, problems, status } = await open(isolated, `?backend=cpu&model=${MODEL}`);
  assert.equal(status, 'ready');
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  const badge = await page.getByTestId('backend').textContent();
  const threads = Number(/CPU \(wasm, (\d+) threads\)/.exec(badge)?.[1]);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  assert.equal(threads, Math.min(cores, 16), badge);
  assert.ok(threads > 1, `this machine has ${cores} cores`);
  results.threaded = await generate(page);
  assert.deepEqual(problems, []);
  await page.close();
});

test('one thread when asked: the single-threaded build gives the same tokens and image', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(isolated, `?backend=cpu&threads=1&model=${MODEL}`);
  const badge = await page.getByTestId('backend').textContent();
  assert.match(badge, /^CPU \(wasm, 1 thread\)/);
  assert.match(badge, /one thread was asked for/);
  results.single = await generate(page);
  assert.ok(results.threaded, 'the threaded run above passed');
  assert.equal(results.single.tokens.length, 4, 'a frame per scale');
  assert.ok(results.single.tokens.every((t) => t && t.length > 0), 'every frame carries its tokens');
  assert.deepEqual(results.threaded.tokens, results.single.tokens);
  // The builds sum in another order (fused multiply-adds in the threaded one): the decoder's
  // pixels may round differently by one level.
  assert.ok(maxDifference(results.threaded.pixels, results.single.pixels) <= 1);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the browser image is native flex\'s image for the same seed', { timeout: TIMEOUT }, async () => {
  assert.ok(results.threaded, 'the threaded run above passed');
  const out = mkdtempSync(join(tmpdir(), 'nextscale-native-'));
  try {
    const model = join(ROOT, 'web/dist/models', MODEL);
    execFileSync(BIN, ['sample', '--model', model, '--class', '3', '--seed', '11', '--count', '1', '--out', out]);
    const page = await browser.newPage();
    await page.goto(base(isolated));
    const written = readdirSync(out).filter((f) => f.endsWith('.png'));
    assert.deepEqual(written, ['class_3_11.png'], 'one image, named by class and seed');
    const native = await decodePng(page, readFileSync(join(out, written[0])));
    await page.close();
    assert.equal(native.length, results.threaded.size * results.threaded.size * 4);
    assert.ok(maxDifference(native, results.threaded.pixels) <= 1, 'pixels within one level');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a page that is not cross-origin isolated runs on one thread and says why', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await open(plain, `?backend=cpu&model=${MODEL}`);
  assert.equal(await page.evaluate(() => crossOriginIsolated), false);
  const badge = await page.getByTestId('backend').textContent();
  assert.match(badge, /^CPU \(wasm, 1 thread\)/);
  assert.match(badge, /not cross-origin isolated/);
  assert.deepEqual((await generate(page)).tokens, results.single?.tokens);
  assert.deepEqual(problems, []);
  await page.close();
});

test('?model= takes a manifest name or a URL; an unknown name lists the manifest', { timeout: TIMEOUT }, async () => {
  const byName = await open(isolated, '?backend=cpu&model=var-tiny-a');
  assert.equal(byName.status, 'ready');
  await byName.page.close();
  const byUrl = await open(isolated, `?backend=cpu&model=models/${MODEL}`);
  assert.equal(byUrl.status, 'ready');
  assert.equal(await byUrl.page.getByTestId('model-select').inputValue(), `url:models/${MODEL}`);
  await byUrl.page.close();
  const unknown = await open(isolated, '?backend=cpu&model=d16-f16.safetensors');
  assert.equal(unknown.status, 'error');
  const message = await unknown.page.getByTestId('error').textContent();
  assert.match(message, /unknown model "d16-f16\.safetensors"/);
  assert.match(message, /emoji32/);
  assert.match(message, /var-tiny-a/);
  await unknown.page.close();
});

test('a d16-sized download that breaks off is an error, not a hang', { timeout: TIMEOUT }, async () => {
  for (const [file, code] of [['broken', /^E_NETWORK: /], ['short', /^E_MODEL_FORMAT: /]]) {
    const { page, status } = await open(isolated, `?backend=cpu&model=models/${file}.safetensors`);
    assert.equal(status, 'error', file);
    const message = await page.getByTestId('error').textContent();
    assert.match(message, code, `${file}: ${message}`);
    // The page goes on working: the bundled model loads after it.
    await page.getByTestId('model-select').selectOption(MODEL);
    assert.equal(await waitStatus(page, 'ready'), 'ready', file);
    await page.close();
  }
});
