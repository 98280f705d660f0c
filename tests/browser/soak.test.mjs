// Soak and leaks, in headless Chromium on the CPU backend with the bundled model (emoji32,
// the manifest's default), through the built package: 300 generations in one engine,
// measuring every 50 the engine's wasm memory (`engine.memory()`) and the JS heaps of the
// engine worker and of the page (`performance.measureUserAgentSpecificMemory()` on the
// cross-origin isolated page, which measures after a garbage collection and attributes
// bytes to each worker; `--enable-blink-features=ForceEagerMeasureMemory` makes it answer at
// once). The engine's memory may grow by at most 5 % after the first 50 (the page's heap is
// reported; see below). Then 50 generations aborted at seeded random points, and one full
// generation that must give exactly the image a fresh engine gives for its seed.
// The engine runs on one thread (the single-threaded build): with the threaded build the
// measurement cannot reach the pool workers, which wait in `Atomics.wait`, so it gives up on
// them after 60 s, and it counts the shared wasm memory as the engine worker's JS heap.
//   node --test tests/browser/soak.test.mjs   (after pkg/ is built)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MODELS, sharedPage } from './harness.mjs';

const TIMEOUT = 600_000;
const MODEL = `${MODELS}/emoji32.safetensors`;
const GENERATIONS = 300;
const EVERY = 50;
/** Largest growth allowed after the first measurement, as a fraction, of the engine's wasm
 * memory and of its worker's JS heap. */
const GROWTH = 0.05;

const shared = sharedPage({
  flags: ['--enable-blink-features=ForceEagerMeasureMemory'],
  engine: { model: MODEL, backend: 'cpu', threads: 1 },
});

/** The engine's wasm memory and the JS heaps in use, in bytes: each heap the least of three
 * measurements, each after a garbage collection (the page's heap moves by a few per cent
 * from one to the next). */
function measure() {
  return shared.page.evaluate(async () => {
    const { wasmBytes } = await window.engine.memory();
    const heaps = { engineWorker: Infinity, page: Infinity };
    for (let i = 0; i < 3; i++) {
      const { breakdown } = await performance.measureUserAgentSpecificMemory();
      const heap = (pattern) =>
        breakdown
          .filter((entry) => entry.types.includes('JavaScript') && entry.attribution.some((a) => pattern.test(a.url)))
          .reduce((sum, entry) => sum + entry.bytes, 0);
      heaps.engineWorker = Math.min(heaps.engineWorker, heap(/\/pkg\/dist\/worker\.js$/));
      heaps.page = Math.min(heaps.page, heap(/\/harness\/index\.html$/));
    }
    return { wasm: wasmBytes, ...heaps };
  });
}

test(`${GENERATIONS} generations in one engine: the engine's memory grows by at most 5 % after the first ${EVERY}`, { timeout: TIMEOUT }, async (t) => {
  const info = await shared.page.evaluate(() => ({ threads: window.engine.info.threads, classes: window.engine.info.classNames.length }));
  t.diagnostic(`CPU backend, ${info.threads} threads`);
  // The first measurement allocates for the API itself: keep it out of the samples.
  await measure();
  const samples = [];
  const started = Date.now();
  for (let done = 0; done < GENERATIONS; done += EVERY) {
    const scales = await shared.page.evaluate(
      async ([from, count, classes]) => {
        const seen = [];
        for (let i = from; i < from + count; i++) {
          const { scales } = await window.drain(window.engine.generate({ classLabel: i % classes, seed: i }));
          seen.push(scales.length);
        }
        return seen;
      },
      [done, EVERY, info.classes],
    );
    assert.ok(scales.every((n) => n === scales[0] && n > 1), `every generation streams all its frames: ${scales}`);
    const sample = { generations: done + EVERY, seconds: (Date.now() - started) / 1000, ...(await measure()) };
    samples.push(sample);
    t.diagnostic(JSON.stringify(sample));
  }
  const [first, ...rest] = samples;
  for (const key of ['wasm', 'engineWorker']) {
    assert.ok(first[key] > 0, `${key} is measured`);
    const most = Math.max(...rest.map((s) => s[key]));
    const growth = most / first[key] - 1;
    t.diagnostic(`${key}: ${first[key]} bytes after ${EVERY}, at most ${most} after (${(100 * growth).toFixed(2)} %)`);
    assert.ok(growth <= GROWTH, `${key} grew ${(100 * growth).toFixed(2)} % after the first ${EVERY}: ${rest.map((s) => s[key])}`);
  }
  // The page's heap also holds this test's own code, which V8 recompiles as it runs, and its
  // measurement jumps by more than 5 % from one call to the next: reported, not asserted. The
  // package's page side is checked by what it holds instead: nothing once all has ended.
  t.diagnostic(`page: ${samples.map((s) => s.page).join(', ')} bytes`);
  const held = await shared.page.evaluate(() => ({ streams: window.engine.streams.size, waiters: window.engine.memoryWaiters.size }));
  assert.deepEqual(held, { streams: 0, waiters: 0 }, 'the Engine holds no finished generation or request');
  assert.deepEqual(shared.problems.splice(0), []);
});

test('50 generations aborted at seeded random points, then a full one: exactly a fresh engine\'s image', { timeout: TIMEOUT }, async (t) => {
  const result = await shared.page.evaluate(async (model) => {
    // mulberry32: a small seeded generator, so the abort points repeat from run to run.
    let state = 20251130;
    const random = () => {
      state = (state + 0x6d2b79f5) | 0;
      let x = Math.imul(state ^ (state >>> 15), 1 | state);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
    };
    const { engine } = window;
    const scales = engine.info.scales;
    const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    const stops = [];
    for (let i = 0; i < 50; i++) {
      // Abort after `frames` frames (0: before the first), `delay` ms later.
      const frames = Math.floor(random() * scales);
      const delay = Math.floor(random() * 10);
      const controller = new AbortController();
      const options = { classLabel: Math.floor(random() * engine.info.classNames.length), seed: Math.floor(random() * 1e6), signal: controller.signal };
      const outcome = await window.outcome(async () => {
        const generation = engine.generate(options);
        if (frames === 0) {
          await pause(delay);
          controller.abort();
        }
        return window.drain(generation, async (_, n) => {
          if (n === frames) {
            await pause(delay);
            controller.abort();
          }
        });
      });
      stops.push(outcome.error?.code ?? 'finished');
    }
    const wanted = { classLabel: 4, seed: 4242 };
    const after = await window.drain(engine.generate(wanted));
    const fresh = await window.nextscale.createEngine({ model, backend: 'cpu', threads: 1 });
    const reference = await window.drain(fresh.generate(wanted));
    await fresh.dispose();
    return { stops, after, reference, streams: engine.streams.size };
  }, MODEL);
  t.diagnostic(`outcomes: ${result.stops.filter((s) => s === 'E_ABORTED').length} aborted, ${result.stops.filter((s) => s === 'finished').length} finished`);
  assert.deepEqual(result.stops, new Array(50).fill('E_ABORTED'), 'every one aborted');
  assert.deepEqual(result.after.tokens, result.reference.tokens);
  assert.ok(result.after.pixels.length > 0);
  assert.deepEqual(result.after.pixels, result.reference.pixels, 'byte-equal pixels');
  assert.equal(result.streams, 0, 'the Engine holds no aborted generation');
  assert.deepEqual(shared.problems.splice(0), []);
});
