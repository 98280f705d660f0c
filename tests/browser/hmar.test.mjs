// HMAR in headless Chromium through the built package and the demo page, on the
// hmar-tiny-a fixture model (random weights, converted by scripts/models.sh): the engine
// reports the family and mask schedule and offers only `var`; a generation streams one frame
// per scale (the last is the final image) and repeats by seed; a mask schedule of its own
// changes the tokens; with passEvents a frame comes after every pass that leaves tokens
// masked, and the scales' tokens stay the same; what only VAR does, and a schedule that does
// not fit, are E_BAD_REQUEST with the reason; the demo page labels the model HMAR, generates
// with it and shows the refinement passes in its timeline; the bundled HMAR emoji model
// (hmar-emoji32) generates in the page at its recommended sampling.
//   node --test tests/browser/hmar.test.mjs   (after pkg/ and web/ are built and scripts/models.sh)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { MODELS, TINY, sharedPage } from './harness.mjs';

const TIMEOUT = 120_000;
const HMAR = `${MODELS}/hmar-tiny-a.safetensors`;

const shared = sharedPage({ engine: { model: HMAR, backend: 'cpu' } });

/** Every frame's tokens and the final pixels of one generation (run in the page). */
function generate(options) {
  return shared.page.evaluate(async (o) => {
    const frames = [];
    for await (const frame of window.engine.generate(o)) {
      frames.push({
        scale: frame.scale,
        final: frame.final,
        tokens: frame.tokens ? Array.from(frame.tokens) : null,
        pixels: frame.final ? Array.from(frame.pixels) : null,
        pass: frame.pass ? { index: frame.pass.index, of: frame.pass.of, masked: Array.from(frame.pass.masked) } : null,
      });
    }
    return frames;
  }, options);
}

test('the engine says HMAR, its mask schedule and its one mode', { timeout: TIMEOUT }, async () => {
  const info = await shared.page.evaluate(() => window.engine.info);
  assert.equal(info.family, 'hmar');
  assert.deepEqual(info.maskSchedule, [[1], [1, 3], [1, 1, 2, 5], [16]]);
  assert.deepEqual(info.modes, ['var']);
  assert.equal(info.scales, 4);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('a generation streams a frame per scale, repeats by seed, and follows the schedule', { timeout: TIMEOUT }, async () => {
  const a = await generate({ classLabel: 3, seed: 11 });
  assert.equal(a.length, 4, 'a frame per scale, the last one the final image');
  assert.ok(a[3].final);
  assert.deepEqual(a.map((f) => f.tokens.length), [1, 4, 9, 16]);
  const pixels = a[3].pixels;
  assert.equal(pixels.length, 64 * 64 * 4);
  assert.ok(pixels.some((v, i) => v !== pixels[i % 4]), 'not a uniform image');
  assert.deepEqual(await generate({ classLabel: 3, seed: 11 }), a);
  // Without refinement HMAR samples differently at some scale.
  const plain = await generate({ classLabel: 3, seed: 11, maskSchedule: [[1], [4], [9], [16]] });
  assert.notDeepEqual(plain.map((f) => f.tokens), a.map((f) => f.tokens));
  assert.deepEqual(shared.problems.splice(0), []);
});

test('pass events: a frame after every pass that leaves tokens masked, the same scales', { timeout: TIMEOUT }, async () => {
  const scales = await generate({ classLabel: 2, seed: 5 });
  const frames = await generate({ classLabel: 2, seed: 5, passEvents: true });
  // The schedule [[1], [1, 3], [1, 1, 2, 5], [16]]: one pass frame at the 2×2 scale, three at
  // the 3×3 scale, each with the tokens still masked (the later passes' share).
  const passes = frames.filter((f) => f.pass);
  assert.deepEqual(
    passes.map((f) => [f.scale, f.pass.index, f.pass.of, f.pass.masked.length]),
    [[2, 0, 2, 3], [3, 0, 4, 8], [3, 1, 4, 7], [3, 2, 4, 5]],
  );
  for (const f of passes) {
    assert.equal(f.tokens.length, [1, 4, 9, 16][f.scale - 1]);
    assert.ok(f.pass.masked.every((i) => i < f.tokens.length));
  }
  assert.deepEqual(frames.filter((f) => !f.pass), scales, 'the scale frames do not change');
  const refused = (options) =>
    shared.page.evaluate((o) => window.outcome(() => window.drain(window.engine.generate(o))), options);
  const notBoolean = await refused({ passEvents: 'yes' });
  assert.equal(notBoolean.error?.code, 'E_BAD_REQUEST', JSON.stringify(notBoolean));
  assert.match(notBoolean.error.message, /passEvents must be a boolean/);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('what only VAR does, and a schedule that does not fit, are refused with the reason', { timeout: TIMEOUT }, async () => {
  const refused = (options) =>
    shared.page.evaluate((o) => window.outcome(() => window.drain(window.engine.generate(o))), options);
  const cases = [
    [{ mode: 'parallel' }, /needs a VAR model/],
    [{ moreSmooth: true }, /no Gumbel path/],
    [{ maskSchedule: [[1], [1, 2], [9], [16]] }, /entry 1 \[1, 2\] must sum to the scale's 4 tokens/],
    [{ maskSchedule: [[1], [4]] }, /2 entries for 4 scales/],
    [{ maskSchedule: [[1], [-4]] }, /maskSchedule must be an array of arrays of integers ≥ 0/],
  ];
  for (const [options, message] of cases) {
    const result = await refused(options);
    assert.equal(result.error?.code, 'E_BAD_REQUEST', JSON.stringify(result));
    assert.match(result.error.message, message);
  }
  const edit = await shared.page.evaluate(() =>
    window.outcome(() => window.drain(window.engine.edit({ image: new ImageData(64, 64), mask: { box: [0, 0, 0.5, 0.5], mode: 'inpaint' } }))),
  );
  assert.equal(edit.error?.code, 'E_BAD_REQUEST', JSON.stringify(edit));
  assert.match(edit.error.message, /editing needs a VAR model/);
  // A VAR model takes no schedule.
  const onVar = await shared.page.evaluate(async (model) => {
    const engine = await window.nextscale.createEngine({ model, backend: 'cpu' });
    const result = await window.outcome(() => window.drain(engine.generate({ maskSchedule: [[1], [4], [9], [16]] })));
    await engine.dispose();
    return result;
  }, TINY);
  assert.equal(onVar.error?.code, 'E_BAD_REQUEST', JSON.stringify(onVar));
  assert.match(onVar.error.message, /a mask schedule needs an HMAR model/);
  const passesOnVar = await shared.page.evaluate(async (model) => {
    const engine = await window.nextscale.createEngine({ model, backend: 'cpu' });
    const result = await window.outcome(() => window.drain(engine.generate({ passEvents: true })));
    await engine.dispose();
    return result;
  }, TINY);
  assert.equal(passesOnVar.error?.code, 'E_BAD_REQUEST', JSON.stringify(passesOnVar));
  assert.match(passesOnVar.error.message, /pass events need an HMAR model/);
  assert.deepEqual(shared.problems.splice(0), []);
});

test('the demo page labels the model HMAR, generates with it and times its passes', { timeout: TIMEOUT }, async () => {
  const demo = await shared.harness.browser.newPage();
  const problems = [];
  demo.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
  });
  await demo.goto(`${shared.harness.base}/web/dist/?backend=cpu&model=hmar-tiny-a`);
  const status = () => demo.getByTestId('status').textContent();
  await demo.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: TIMEOUT });
  assert.equal(await status(), 'ready', await demo.getByTestId('error').textContent());
  const picked = await demo.getByTestId('model-select').evaluate((s) => s.selectedOptions[0].text);
  assert.match(picked, /^hmar-tiny-a · HMAR \(/);
  const modes = await demo.getByTestId('mode-select').evaluate((s) => [...s.options].filter((o) => !o.disabled).map((o) => o.value));
  assert.deepEqual(modes, ['var']);
  await demo.getByTestId('generate').click();
  await demo.waitForFunction(() => ['done', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: TIMEOUT });
  assert.equal(await status(), 'done', await demo.getByTestId('error').textContent());
  // Four scales, and the four passes that leave tokens masked between them.
  assert.equal(await demo.locator('[data-testid=timeline] li').count(), 8);
  const passes = await demo.locator('[data-testid=timeline] li.pass').evaluateAll((items) =>
    items.map((li) => [li.dataset.pass, li.dataset.masked.split(',').length]),
  );
  assert.deepEqual(passes, [['0/2', 3], ['0/4', 8], ['1/4', 7], ['2/4', 5]]);
  assert.deepEqual(problems, []);
  await demo.close();
});

test('the bundled HMAR emoji model generates in the page with its own sampling', { timeout: TIMEOUT }, async () => {
  const demo = await shared.harness.browser.newPage();
  const problems = [];
  demo.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
  });
  await demo.goto(`${shared.harness.base}/web/dist/?backend=cpu&model=hmar-emoji32`);
  const status = () => demo.getByTestId('status').textContent();
  await demo.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: TIMEOUT });
  assert.equal(await status(), 'ready', await demo.getByTestId('error').textContent());
  const picked = await demo.getByTestId('model-select').evaluate((s) => s.selectedOptions[0].text);
  assert.match(picked, /^hmar-emoji32 · HMAR \(/);
  // The page starts from the file's recommended sampling (tune-sampling's choice).
  const bytes = readFileSync(new URL('../../web/dist/models/hmar-emoji32.safetensors', import.meta.url));
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  const recommended = JSON.parse(header.__metadata__['nextscale.config']).sampling;
  const control = async (id) => Number(await demo.locator(`#${id}`).inputValue());
  assert.deepEqual({ cfg: await control('cfg'), top_k: await control('top-k'), top_p: await control('top-p') }, recommended);
  await demo.getByTestId('class-select').selectOption('8');
  await demo.getByTestId('generate').click();
  await demo.waitForFunction(() => ['done', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: TIMEOUT });
  assert.equal(await status(), 'done', await demo.getByTestId('error').textContent());
  // Six scales, and the four passes that leave tokens masked at the 2×2 and 3×3 scales.
  assert.equal(await demo.locator('[data-testid=timeline] li').count(), 10);
  assert.equal(await demo.locator('[data-testid=timeline] li.pass').count(), 4);
  assert.deepEqual(problems, []);
  await demo.close();
});
