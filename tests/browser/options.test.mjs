// The npm package's option validation: every bad option is a NextscaleError E_BAD_REQUEST
// before anything reaches the worker.
//   node --test tests/browser/options.test.mjs     (after pkg/ is built)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NextscaleError } from '../../pkg/dist/errors.js';
import { MAX_THREADS, checkEngineOptions, checkGenerateOptions } from '../../pkg/dist/validate.js';

const badRequest = (fn) =>
  assert.throws(fn, (e) => e instanceof NextscaleError && e.code === 'E_BAD_REQUEST' && e.message.length > 0);

test('engine options', () => {
  // Node 20 has no navigator: one thread there; the cores, at most MAX_THREADS, elsewhere.
  const cores = typeof navigator === 'undefined' ? 1 : Math.min(navigator.hardwareConcurrency, MAX_THREADS);
  assert.deepEqual(checkEngineOptions({ model: 'm.safetensors' }), { backend: 'auto', threads: cores, sha256: null });
  assert.deepEqual(checkEngineOptions({ model: new ArrayBuffer(8), backend: 'cpu', threads: 3 }), { backend: 'cpu', threads: 3, sha256: null });
  const hash = 'A7B2413BC3DE69BD0D12636AD278E4F72C6437639592A2BF1EDA750C290149E0';
  assert.equal(checkEngineOptions({ model: 'm', sha256: hash }).sha256, hash.toLowerCase());
  for (const sha256 of [42, '', 'abc', hash.slice(1), `${hash}0`, 'g'.repeat(64), null]) badRequest(() => checkEngineOptions({ model: 'm', sha256 }));
  badRequest(() => checkEngineOptions({ model: 42 }));
  badRequest(() => checkEngineOptions({ model: 'm', backend: 'tpu' }));
  badRequest(() => checkEngineOptions({ model: 'm', onProgress: 'yes' }));
  for (const threads of [0, -2, 1.5, '4', Number.NaN]) badRequest(() => checkEngineOptions({ model: 'm', threads }));
});

test('generate options', () => {
  const signal = new AbortController().signal;
  const posted = checkGenerateOptions({ classLabel: 3, seed: 7, cfg: 2, topK: 10, topP: 0.5, preview: 'full', mode: 'var', signal });
  assert.deepEqual(posted, { classLabel: 3, seed: 7, cfg: 2, topK: 10, topP: 0.5, preview: 'full', mode: 'var' });
  assert.deepEqual(checkGenerateOptions({ classLabel: null }), { classLabel: null });
  for (const mode of ['var', 'dd1', 'dd2', 'parallel']) assert.deepEqual(checkGenerateOptions({ mode }), { mode });
  for (const bad of [
    { classLabel: -1 },
    { classLabel: 1.5 },
    { seed: -1 },
    { seed: 2 ** 60 },
    { cfg: Number.NaN },
    { cfg: -1 },
    { topK: 0.5 },
    { topP: 1.5 },
    { preview: 'sometimes' },
    { mode: 'dd3' },
    { mode: 'DD1' },
    { signal: 'stop' },
  ]) {
    badRequest(() => checkGenerateOptions(bad));
  }
});
