// Shared by the npm package's browser tests (errors, soak, device-loss, integrity): serves
// the repository root cross-origin isolated (the built package in pkg/dist, the models in
// web/public/models, the page tests/browser/harness/index.html, which puts the package on
// `window.nextscale`), launches Debian's Chromium, and opens that page with its console
// watched (the engine worker's console included). Not a test file itself.
import { readFileSync } from 'node:fs';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
/** `--enable-unsafe-webgpu`: WebGPU on SwiftShader. */
export const WEBGPU = '--enable-unsafe-webgpu';
const ROOT = new URL('../..', import.meta.url).pathname;
/** The models' folder as the page sees it. */
export const MODELS = '/web/public/models';
/** The fixture model (random weights, 4 scales, 10 classes): quick on every backend. */
export const TINY = `${MODELS}/var-tiny-a.safetensors`;

/** A file of web/public/models. */
export function modelFile(name) {
  return readFileSync(`${ROOT}web/public/models/${name}`);
}

/**
 * Serves the repository root (with `routes`, see scripts/serve.mjs) and launches Chromium
 * with `flags` besides the usual ones. `open()` gives a fresh harness page and the console
 * errors, warnings and uncaught exceptions it has logged so far.
 */
export async function start({ routes = {}, flags = [] } = {}) {
  const server = await serve(ROOT, 0, { routes });
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...flags] });
  return {
    base,
    browser,
    async open() {
      const page = await browser.newPage();
      const problems = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
      await page.goto(`${base}/tests/browser/harness/index.html`);
      await page.waitForFunction(() => document.title === 'ready');
      return { page, problems };
    },
    async close() {
      await browser.close();
      server.close();
    },
  };
}

/**
 * One harness page for a whole test file: `before` its tests (node:test hooks) it starts a
 * harness with `routes` and `flags` and opens the page, and with `engine` (createEngine's
 * options) makes `window.engine` there; `after` them it disposes the engine and closes all.
 * The returned object's `harness`, `page` and `problems` are set once `before` has run.
 */
export function sharedPage({ routes, flags, engine } = {}) {
  const shared = {};
  before(async () => {
    shared.harness = await start({ routes, flags });
    Object.assign(shared, await shared.harness.open());
    if (engine) {
      await shared.page.evaluate(async (options) => {
        window.engine = await window.nextscale.createEngine(options);
      }, engine);
    }
  });
  after(async () => {
    if (engine) await shared.page?.evaluate(() => window.engine?.dispose());
    await shared.harness?.close();
  });
  return shared;
}

/** A route that answers `body` with its whole length announced, and cuts the connection
 * after `after` bytes of it. */
export function cutAfter(body, after) {
  return (_req, res) => {
    res.on('error', () => undefined);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.write(body.subarray(0, after), () => setTimeout(() => res.socket?.destroy(), 50));
  };
}

/** A route that answers `bytes`. */
export function served(bytes) {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
    res.end(bytes);
  };
}

/** A route that answers `body()` (a Buffer) and counts its requests in `route.requests`. */
export function counted(body) {
  const route = (req, res) => {
    route.requests += 1;
    served(body())(req, res);
  };
  route.requests = 0;
  return route;
}

/** A safetensors file of f32 tensors (`{ name: shape }`, zero-filled) with `metadata`. */
export function safetensors(tensors, metadata) {
  const header = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  return Buffer.concat([length, padded, Buffer.alloc(offset)]);
}
