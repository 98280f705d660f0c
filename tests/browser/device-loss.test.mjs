// A WebGPU device lost mid-generation, in headless Chromium on SwiftShader: the engine
// worker's test-only `lose-device` message destroys the device wgpu created, after the first
// frame. The generation must end with E_BACKEND and a message (no hang, nothing on the
// console: no panic text), the engine must refuse later generations the same way, and
// `createEngine({ backend: 'auto' })` must still give a working engine afterwards.
//   node --test tests/browser/device-loss.test.mjs   (after pkg/ is built and scripts/models.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TINY, WEBGPU, start } from './harness.mjs';

const TIMEOUT = 180_000;
const LOST = /^the WebGPU device was lost \(.+\); this engine cannot generate any more: create a new one$/;

let harness;

before(async () => {
  harness = await start({ flags: [WEBGPU] });
});

after(async () => {
  await harness?.close();
});

test('a device lost mid-generation is E_BACKEND, later generations too, and auto still works', { timeout: TIMEOUT }, async () => {
  const { page, problems } = await harness.open();
  const result = await page.evaluate(async (model) => {
    const engine = await window.nextscale.createEngine({ model, backend: 'webgpu' });
    const backend = engine.info.backend;
    let frames = 0;
    const lost = await window.outcome(() =>
      window.drain(engine.generate({ classLabel: 3, seed: 11 }), (_, n) => {
        frames = n;
        // The worker's test-only hook (not in the public API): destroy the device now.
        if (n === 1) engine.worker.postMessage({ type: 'lose-device' });
      }),
    );
    const refused = await window.outcome(() => window.drain(engine.generate({ seed: 1 })));
    await engine.dispose();
    const fresh = await window.nextscale.createEngine({ model, backend: 'auto' });
    const after = await window.outcome(() => window.drain(fresh.generate({ classLabel: 3, seed: 11 })));
    const info = { backend: fresh.info.backend, reason: fresh.info.reason, scales: fresh.info.scales };
    await fresh.dispose();
    return { backend, frames, lost: lost.error, refused: refused.error, after, info };
  }, TINY);
  assert.equal(result.backend, 'webgpu');
  assert.equal(result.frames, 1, 'no frame after the loss');
  assert.equal(result.lost?.code, 'E_BACKEND', JSON.stringify(result.lost));
  assert.match(result.lost.message, LOST);
  assert.equal(result.refused?.code, 'E_BACKEND', JSON.stringify(result.refused));
  assert.match(result.refused.message, LOST);
  // SwiftShader is a fallback adapter, which auto passes over: the CPU.
  assert.equal(result.info.backend, 'cpu', result.info.reason);
  assert.deepEqual(result.after.value?.scales, [1, 2, 3, 4], JSON.stringify(result.after.error));
  assert.deepEqual(problems, [], 'nothing on the console');
  await page.close();
});
