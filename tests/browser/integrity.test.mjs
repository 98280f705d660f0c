// The `sha256` engine option in headless Chromium, through the built package: a model is
// hashed as it streams in; a copy that differs (from a server that sends wrong bytes, or a
// Cache API entry the page overwrote) is dropped and downloaded again once, then the engine
// fails with E_NETWORK naming the expected and the actual hash. The demo page passes its
// manifest's hash.
//   node --test tests/browser/integrity.test.mjs   (after pkg/ and web/ are built and
//   scripts/models.sh)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { counted, modelFile, sharedPage } from './harness.mjs';

const TIMEOUT = 120_000;
const CACHE = 'nextscale-models-v1';
const good = modelFile('var-tiny-a.safetensors');
/** The same file with its last weight byte changed: still a loadable model. */
const bad = Buffer.from(good);
bad[bad.length - 1] ^= 0xff;
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const GOOD = sha(good);
const BAD = sha(bad);

const routes = {
  '/integrity/good.safetensors': counted(() => good),
  '/integrity/bad.safetensors': counted(() => bad),
  '/integrity/bad-cached.safetensors': counted(() => bad),
  // The demo page's copy of the fixture model, wrong.
  '/web/dist/models/var-tiny-a.safetensors': counted(() => bad),
  // The wrong bytes, for the page to write into its cache or pass as a buffer.
  '/integrity/wrong-bytes': counted(() => bad),
};

const shared = sharedPage({ routes });

/** Loads `path` with `sha256` on the CPU and generates one image; the outcome, with the
 * progress events' `cached` flags. */
function load(path, sha256) {
  return shared.page.evaluate(
    ([model, hash]) => {
      const cached = [];
      return window.outcome(async () => {
        const engine = await window.nextscale.createEngine({ model, sha256: hash, backend: 'cpu', onProgress: (p) => cached.push(p.cached) });
        const { scales } = await window.drain(engine.generate({ seed: 1 }));
        await engine.dispose();
        return { scales, cached: [...new Set(cached)] };
      });
    },
    [path, sha256],
  );
}

/** Writes the wrong bytes, cut to `length`, into the engine's Cache API entry for `path`. */
function overwriteCache(path, length) {
  return shared.page.evaluate(
    async ([name, url, end]) => {
      const wrong = await (await fetch('/integrity/wrong-bytes')).arrayBuffer();
      const cache = await caches.open(name);
      await cache.put(new URL(url, location.href).href, new Response(wrong.slice(0, end)));
    },
    [CACHE, path, length],
  );
}

/** The SHA-256 of the Cache API entry for `path`, or null without one. */
function cachedSha(path) {
  return shared.page.evaluate(
    async ([name, url]) => {
      const hit = await (await caches.open(name)).match(new URL(url, location.href).href);
      if (!hit) return null;
      const digest = await crypto.subtle.digest('SHA-256', await hit.arrayBuffer());
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
    },
    [CACHE, path],
  );
}

test('a model whose hash matches loads, and its cached copy is used next time', { timeout: TIMEOUT }, async () => {
  const path = '/integrity/good.safetensors';
  // Either case of hex digits.
  const first = await load(path, GOOD.toUpperCase());
  assert.deepEqual(first.value, { scales: [1, 2, 3, 4], cached: [false] }, JSON.stringify(first.error));
  const second = await load(path, GOOD);
  assert.deepEqual(second.value, { scales: [1, 2, 3, 4], cached: [true] }, JSON.stringify(second.error));
  assert.equal(routes[path].requests, 1);
  assert.equal(await cachedSha(path), GOOD);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('a corrupted Cache API entry is dropped and downloaded again', { timeout: TIMEOUT }, async () => {
  const path = '/integrity/good.safetensors';
  const before = routes[path].requests;
  await overwriteCache(path, bad.length);
  assert.equal(await cachedSha(path), BAD);
  const result = await load(path, GOOD);
  assert.deepEqual(result.value, { scales: [1, 2, 3, 4], cached: [true, false] }, JSON.stringify(result.error));
  assert.equal(routes[path].requests, before + 1, 'one download');
  assert.equal(await cachedSha(path), GOOD, 'the cache holds the right bytes again');
  assert.deepEqual(shared.problems.splice(0), []);
});

test('a server that sends wrong bytes: downloaded twice, then E_NETWORK naming both hashes', { timeout: TIMEOUT }, async () => {
  const path = '/integrity/bad.safetensors';
  const result = await load(path, GOOD);
  assert.equal(result.error?.code, 'E_NETWORK', JSON.stringify(result));
  assert.match(result.error.message, new RegExp(`bad\\.safetensors has SHA-256 ${BAD}, not the expected ${GOOD}: it was downloaded twice and differed both times`));
  assert.equal(routes[path].requests, 2);
  assert.equal(await cachedSha(path), null, 'nothing wrong stays cached');
  assert.deepEqual(shared.problems.splice(0), []);
});

test('a corrupted cache entry and a server that sends wrong bytes: one download, then E_NETWORK', { timeout: TIMEOUT }, async () => {
  const path = '/integrity/bad-cached.safetensors';
  await overwriteCache(path, 1000);
  const result = await load(path, GOOD);
  assert.equal(result.error?.code, 'E_NETWORK', JSON.stringify(result));
  assert.match(result.error.message, new RegExp(`has SHA-256 ${BAD}, not the expected ${GOOD}: the cached copy differed and was dropped, and a fresh download differs too`));
  assert.equal(routes[path].requests, 1);
  assert.equal(await cachedSha(path), null);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('model bytes given as an ArrayBuffer are checked too: E_MODEL_FORMAT naming both hashes', { timeout: TIMEOUT }, async () => {
  const result = await shared.page.evaluate(
    (hash) =>
      window.outcome(async () => {
        const model = await (await fetch('/integrity/wrong-bytes')).arrayBuffer();
        const engine = await window.nextscale.createEngine({ model, sha256: hash, backend: 'cpu' });
        await engine.dispose();
      }),
    GOOD,
  );
  assert.equal(result.error?.code, 'E_MODEL_FORMAT', JSON.stringify(result));
  assert.equal(result.error.message, `the model bytes have SHA-256 ${BAD}, not the expected ${GOOD}`);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('the demo page checks a manifest model against the manifest\'s hash', { timeout: TIMEOUT }, async () => {
  const demo = await shared.harness.browser.newPage();
  await demo.goto(`${shared.harness.base}/web/dist/?backend=cpu&model=var-tiny-a`);
  await demo.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: TIMEOUT });
  const message = await demo.getByTestId('error').textContent();
  assert.match(message, new RegExp(`^E_NETWORK: .*var-tiny-a\\.safetensors\\?v=\\w+ has SHA-256 ${BAD}, not the expected ${GOOD}`));
  assert.equal(routes['/web/dist/models/var-tiny-a.safetensors'].requests, 2);
  await demo.close();
});
