// The npm API's bad-input matrix in headless Chromium, through the built package and its
// real engine worker: every E_* code reached through the public API (E_BACKEND also in
// device-loss.test.mjs), a wrong value for every option of createEngine, generate and edit,
// dispose against generate, two generations at once, aborts before, during and after a
// generation, a model URL that 404s or breaks off, and files that are valid safetensors but
// not nextscale models. Each case asserts the code and that the message names the problem,
// and that nothing reached the console (the worker's included).
//   node --test tests/browser/errors.test.mjs     (after pkg/ is built and scripts/models.sh)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TINY, cutAfter, modelFile, safetensors, served, sharedPage } from './harness.mjs';

const TIMEOUT = 120_000;
const tiny = modelFile('var-tiny-a.safetensors');
/** The fixture model's config, for a file that has it but not the model's tensors. */
const tinyConfig = JSON.parse(tiny.subarray(8, 8 + Number(tiny.readBigUInt64LE(0))).toString()).__metadata__;

const routes = {
  '/errors/no-config.safetensors': served(safetensors({ 'linear.weight': [4, 4], 'linear.bias': [4] })),
  '/errors/wrong-tensors.safetensors': served(safetensors({ 'linear.weight': [4, 4] }, tinyConfig)),
  '/errors/broken.safetensors': cutAfter(tiny, tiny.length >> 1),
  // Announces 3 GB, more than the engine's 2 GiB limit on a file, then stops.
  '/errors/huge.safetensors': (_req, res) => {
    res.on('error', () => undefined);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 3_000_000_000 });
    res.write(tiny.subarray(0, 1 << 16));
  },
};

// No --enable-unsafe-webgpu: this Chromium has no WebGPU adapter.
const shared = sharedPage({ routes, engine: { model: TINY, backend: 'cpu' } });

/** What `body` (the source of an async function run in the page, with `nextscale`, `engine`
 * and `drain` in scope) returned or threw. */
function run(body, arg) {
  return shared.page.evaluate(
    ([source, value]) => window.outcome(() => new Function('arg', `return (${source})(arg);`)(value)),
    [body, arg],
  );
}

/** Asserts that `result` is a NextscaleError with `code` whose message matches `message`, and
 * that the console stayed clean. */
function assertError(result, code, message) {
  assert.ok(result.error, `expected ${code}, got ${JSON.stringify(result.value)?.slice(0, 200)}`);
  assert.equal(result.error.typed, true, `a NextscaleError: ${JSON.stringify(result.error)}`);
  assert.equal(result.error.name, 'NextscaleError');
  assert.equal(result.error.code, code, result.error.message);
  assert.match(result.error.message, message);
  assertQuiet();
}

function assertQuiet() {
  assert.deepEqual(shared.problems.splice(0), [], 'nothing on the console');
}

// A wrong value for every option. `call` is the expression run in the page; it may throw at
// the call or from the first frame.
const optionCases = [
  ['createEngine: options not an object', `nextscale.createEngine('${TINY}')`, /createEngine needs an options object/],
  ['createEngine: model a number', '(nextscale.createEngine({ model: 42 }))', /model must be a URL string or an ArrayBuffer/],
  ['createEngine: model a Uint8Array', '(nextscale.createEngine({ model: new Uint8Array(8) }))', /model must be a URL string or an ArrayBuffer/],
  ['createEngine: backend unknown', `(nextscale.createEngine({ model: '${TINY}', backend: 'tpu' }))`, /backend must be one of auto, webgpu, cpu; got tpu/],
  ['createEngine: backend a number', `(nextscale.createEngine({ model: '${TINY}', backend: 1 }))`, /backend must be one of auto, webgpu, cpu; got 1/],
  ['createEngine: threads a string', `(nextscale.createEngine({ model: '${TINY}', threads: '4' }))`, /threads must be an integer ≥ 1; got 4/],
  ['createEngine: threads 0', `(nextscale.createEngine({ model: '${TINY}', threads: 0 }))`, /threads must be an integer ≥ 1; got 0/],
  ['createEngine: threads fractional', `(nextscale.createEngine({ model: '${TINY}', threads: 1.5 }))`, /threads must be an integer ≥ 1; got 1.5/],
  ['createEngine: onProgress not a function', `(nextscale.createEngine({ model: '${TINY}', onProgress: 'yes' }))`, /onProgress must be a function/],
  ['createEngine: sha256 a number', `(nextscale.createEngine({ model: '${TINY}', sha256: 42 }))`, /sha256 must be 64 hex digits; got 42/],
  ['createEngine: sha256 too short', `(nextscale.createEngine({ model: '${TINY}', sha256: 'abc' }))`, /sha256 must be 64 hex digits; got "abc"/],
  ['createEngine: sha256 not hex', `(nextscale.createEngine({ model: '${TINY}', sha256: 'z'.repeat(64) }))`, /sha256 must be 64 hex digits; got "z{64}"/],
  ['generate: options a string', "drain(engine.generate('fast'))", /generate needs an options object/],
  ['generate: options null', 'drain(engine.generate(null))', /generate needs an options object/],
  ['generate: classLabel a string', "drain(engine.generate({ classLabel: '3' }))", /classLabel must be an integer ≥ 0; got 3/],
  ['generate: classLabel negative', 'drain(engine.generate({ classLabel: -1 }))', /classLabel must be an integer ≥ 0; got -1/],
  ['generate: classLabel fractional', 'drain(engine.generate({ classLabel: 1.5 }))', /classLabel must be an integer ≥ 0; got 1.5/],
  ['generate: classLabel past the model (worker)', 'drain(engine.generate({ classLabel: 99 }))', /class label 99 is out of range: the model has 10 classes/],
  ['generate: seed a string', "drain(engine.generate({ seed: '7' }))", /seed must be an integer ≥ 0; got 7/],
  ['generate: seed negative', 'drain(engine.generate({ seed: -1 }))', /seed must be an integer ≥ 0; got -1/],
  ['generate: seed past 2^53', 'drain(engine.generate({ seed: 2 ** 60 }))', /seed must be an integer ≥ 0/],
  ['generate: cfg a string', "drain(engine.generate({ cfg: '2' }))", /cfg must be a number in \[0, /],
  ['generate: cfg NaN', 'drain(engine.generate({ cfg: NaN }))', /cfg must be a number in \[0, .*got NaN/],
  ['generate: cfg negative', 'drain(engine.generate({ cfg: -1 }))', /cfg must be a number in \[0, .*got -1/],
  ['generate: topK a string', "drain(engine.generate({ topK: '10' }))", /topK must be an integer ≥ 0; got 10/],
  ['generate: topK fractional', 'drain(engine.generate({ topK: 0.5 }))', /topK must be an integer ≥ 0; got 0.5/],
  ['generate: topP a string', "drain(engine.generate({ topP: '0.5' }))", /topP must be a number in \[0, 1\]; got 0.5/],
  ['generate: topP above 1', 'drain(engine.generate({ topP: 1.5 }))', /topP must be a number in \[0, 1\]; got 1.5/],
  ['generate: preview a number', 'drain(engine.generate({ preview: 1 }))', /preview must be one of none, fast, full; got 1/],
  ['generate: preview unknown', "drain(engine.generate({ preview: 'sometimes' }))", /preview must be one of none, fast, full; got sometimes/],
  ['generate: mode a number', 'drain(engine.generate({ mode: 0 }))', /mode must be one of var, dd1, dd2, parallel; got 0/],
  ['generate: mode unknown', "drain(engine.generate({ mode: 'dd3' }))", /mode must be one of var, dd1, dd2, parallel; got dd3/],
  ['generate: mode dd1 without a student (worker)', "drain(engine.generate({ mode: 'dd1' }))", /this model has no Distilled-Decoding student; use mode var/],
  ['generate: an unknown option (worker)', 'drain(engine.generate({ sed: 1 }))', /unknown generate option `sed`; known: /],
  ['generate: signal a string', "drain(engine.generate({ signal: 'stop' }))", /signal must be an AbortSignal/],
  ['generate: signal look-alike', 'drain(engine.generate({ signal: { aborted: true, addEventListener() {} } }))', /signal must be an AbortSignal/],
  ['edit: no options', 'drain(engine.edit())', /edit needs an options object/],
  ['edit: no image', "drain(engine.edit({ mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))", /edit needs an image/],
  ['edit: image a string', "drain(engine.edit({ image: 'cat.png', mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))", /edit needs an image/],
  ['edit: image.data an Array', "drain(engine.edit({ image: { data: [0, 0, 0, 255], width: 1, height: 1 }, mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))", /image.data must be a Uint8Array or Uint8ClampedArray/],
  ['edit: image.data the wrong length', "drain(engine.edit({ image: { data: new Uint8Array(12), width: 2, height: 2 }, mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))", /image.data has 12 bytes; 16 expected/],
  ['edit: image.width a string', "drain(engine.edit({ image: { data: new Uint8Array(16), width: '2', height: 2 }, mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))", /image.width must be an integer ≥ 1; got 2/],
  ['edit: no mask', 'drain(engine.edit({ image: new ImageData(8, 8) }))', /edit needs a mask/],
  ['edit: mask.box of three', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 1], mode: 'inpaint' } }))", /mask.box must be \[y0, x0, y1, x1\]/],
  ['edit: mask.box strings', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: ['0', '0', '1', '1'], mode: 'inpaint' } }))", /mask.box must be \[y0, x0, y1, x1\]/],
  ['edit: mask.box empty', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0.5, 0.5, 0.2, 0.2], mode: 'inpaint' } }))", /must have y0 < y1 and x0 < x1/],
  ['edit: mask.mode unknown', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'paint' } }))", /mask.mode must be one of inpaint, outpaint; got paint/],
  ['edit: mask.mode missing', 'drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5] } }))', /mask.mode must be 'inpaint' or 'outpaint'/],
  ['edit: mask.alpha another size', 'drain(engine.edit({ image: new ImageData(8, 8), mask: { alpha: new Uint8Array(16), width: 4, height: 4 } }))', /the mask is 4×4; the image is 8×8/],
  ['edit: mask.alpha an Array', 'drain(engine.edit({ image: new ImageData(2, 2), mask: { alpha: [0, 0, 0, 0], width: 2, height: 2 } }))', /mask.alpha must be a Uint8Array or Uint8ClampedArray/],
  ['edit: mode dd1', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, mode: 'dd1' }))", /only the VAR teacher can edit/],
  ['edit: seed a string', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, seed: 'x' }))", /seed must be an integer ≥ 0; got x/],
  ['edit: cfg a string', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, cfg: '1' }))", /cfg must be a number in \[0, .*got 1/],
  ['edit: topK negative', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, topK: -5 }))", /topK must be an integer ≥ 0; got -5/],
  ['edit: topP NaN', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, topP: NaN }))", /topP must be a number in \[0, 1\]; got NaN/],
  ['edit: preview unknown', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, preview: 'all' }))", /preview must be one of none, fast, full; got all/],
  ['edit: signal a string', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, signal: 'stop' }))", /signal must be an AbortSignal/],
  ['edit: classLabel past the model (worker)', "drain(engine.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' }, classLabel: 42 }))", /class label 42 is out of range: the model has 10 classes/],
];

for (const [name, call, message] of optionCases) {
  test(`E_BAD_REQUEST: ${name}`, { timeout: TIMEOUT }, async () => {
    assertError(await run(`async () => ${call}`), 'E_BAD_REQUEST', message);
  });
}

test('the engine still generates after every bad request', { timeout: TIMEOUT }, async () => {
  const result = await run('async () => drain(engine.generate({ classLabel: 3, seed: 1 }))');
  assert.deepEqual(result.value?.scales, [1, 2, 3, 4], JSON.stringify(result.error));
  assertQuiet();
});

test('E_MODEL_FORMAT: valid safetensors without a nextscale config', { timeout: TIMEOUT }, async () => {
  const result = await run("async () => nextscale.createEngine({ model: '/errors/no-config.safetensors', backend: 'cpu' })");
  assertError(result, 'E_MODEL_FORMAT', /no config in the model file metadata/);
});

test('E_MODEL_FORMAT: valid safetensors with a nextscale config but another model\'s tensors', { timeout: TIMEOUT }, async () => {
  const result = await run("async () => nextscale.createEngine({ model: '/errors/wrong-tensors.safetensors', backend: 'cpu' })");
  assertError(result, 'E_MODEL_FORMAT', /invalid config: depth 2 would need more tensors than the file's 1/);
});

test('E_NETWORK: a model URL that 404s', { timeout: TIMEOUT }, async () => {
  const result = await run("async () => nextscale.createEngine({ model: '/errors/missing.safetensors', backend: 'cpu' })");
  assertError(result, 'E_NETWORK', /cannot fetch http:\/\/127\.0\.0\.1:\d+\/errors\/missing\.safetensors: HTTP 404/);
});

test('E_NETWORK: a download whose connection breaks off', { timeout: TIMEOUT }, async () => {
  const result = await run("async () => nextscale.createEngine({ model: '/errors/broken.safetensors', backend: 'cpu' })");
  assertError(result, 'E_NETWORK', /the download of \S+\/errors\/broken\.safetensors broke off after \d+ bytes/);
});

test('E_BACKEND: a model file larger than the browser engine can hold', { timeout: TIMEOUT }, async () => {
  const result = await run("async () => nextscale.createEngine({ model: '/errors/huge.safetensors', backend: 'cpu' })");
  assertError(result, 'E_BACKEND', /the model file is 3\.00 GB; the browser engine holds at most 2\.15 GB/);
});

test('E_WEBGPU_UNAVAILABLE: backend webgpu in a browser without an adapter', { timeout: TIMEOUT }, async () => {
  const result = await run(`async () => nextscale.createEngine({ model: '${TINY}', backend: 'webgpu' })`);
  assertError(result, 'E_WEBGPU_UNAVAILABLE', /WebGPU is unavailable: /);
});

test('E_ABORTED: a signal aborted before the call throws at the call', { timeout: TIMEOUT }, async () => {
  const result = await run('async () => { engine.generate({ signal: AbortSignal.abort() }); return "no throw"; }');
  assertError(result, 'E_ABORTED', /generation aborted/);
});

test('E_ABORTED: an abort before the first frame ends the generation with no frame', { timeout: TIMEOUT }, async () => {
  const result = await run(`async () => {
    const controller = new AbortController();
    const frames = engine.generate({ seed: 2, signal: controller.signal });
    controller.abort();
    let count = 0;
    try {
      for await (const _ of frames) count += 1;
    } catch (error) {
      error.message += \` (after \${count} frames)\`;
      throw error;
    }
  }`);
  assertError(result, 'E_ABORTED', /^generation aborted \(after 0 frames\)$/);
});

test('E_ABORTED: an abort mid-run ends the generation at once', { timeout: TIMEOUT }, async () => {
  const result = await run(`async () => {
    const controller = new AbortController();
    let count = 0;
    try {
      await drain(engine.generate({ seed: 3, signal: controller.signal }), (_, n) => {
        count = n;
        if (n === 2) controller.abort();
      });
    } catch (error) {
      error.message += \` (after \${count} frames)\`;
      throw error;
    }
  }`);
  assertError(result, 'E_ABORTED', /^generation aborted \(after 2 frames\)$/);
});

test('an abort after the end changes nothing', { timeout: TIMEOUT }, async () => {
  const result = await run(`async () => {
    const controller = new AbortController();
    const first = await drain(engine.generate({ seed: 4, signal: controller.signal }));
    controller.abort();
    const again = await drain(engine.generate({ seed: 4 }));
    return { first, again };
  }`);
  assert.ok(result.value, JSON.stringify(result.error));
  assert.deepEqual(result.value.first.scales, [1, 2, 3, 4]);
  assert.deepEqual(result.value.again.pixels, result.value.first.pixels, 'the same seed, the same image');
  assertQuiet();
});

test('two generations at once are queued: the second starts when the first ends', { timeout: TIMEOUT }, async () => {
  const result = await run(`async () => {
    const [a, b] = await Promise.all([
      drain(engine.generate({ classLabel: 1, seed: 5 })),
      drain(engine.generate({ classLabel: 2, seed: 6 })),
    ]);
    const aloneB = await drain(engine.generate({ classLabel: 2, seed: 6 }));
    return { a, b, aloneB };
  }`);
  assert.ok(result.value, JSON.stringify(result.error));
  const { a, b, aloneB } = result.value;
  assert.deepEqual(a.scales, [1, 2, 3, 4]);
  assert.deepEqual(b.scales, [1, 2, 3, 4]);
  assert.ok(b.times[0] >= a.times.at(-1), 'the second generation\'s first frame comes after the first\'s final frame');
  assert.deepEqual(b.pixels, aloneB.pixels, 'queued, the second gives the image it gives alone');
  assertQuiet();
});

test('E_DISPOSED: dispose during a generation ends it at once', { timeout: TIMEOUT }, async () => {
  const result = await run(`async (model) => {
    const own = await nextscale.createEngine({ model, backend: 'cpu' });
    let count = 0;
    let disposed;
    try {
      await drain(own.generate({ seed: 7 }), (_, n) => {
        count = n;
        if (n === 1) disposed = own.dispose();
      });
    } catch (error) {
      await disposed;
      error.message += \` (after \${count} frames)\`;
      throw error;
    }
  }`, TINY);
  assertError(result, 'E_DISPOSED', /^the engine was disposed before the request ended \(after 1 frames\)$/);
});

test('E_DISPOSED: generate, edit and memory after dispose', { timeout: TIMEOUT }, async () => {
  await run(`async (model) => { window.gone = await nextscale.createEngine({ model, backend: 'cpu' }); await window.gone.dispose(); }`, TINY);
  assertError(await run('async () => gone.generate({ seed: 1 })'), 'E_DISPOSED', /the engine was disposed/);
  assertError(
    await run("async () => gone.edit({ image: new ImageData(8, 8), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } })"),
    'E_DISPOSED',
    /the engine was disposed/,
  );
  assertError(await run('async () => gone.memory()'), 'E_DISPOSED', /the engine was disposed/);
  const again = await run('async () => gone.dispose()');
  assert.equal(again.error, undefined, 'a second dispose is a no-op');
});
