// Load time, time to the first preview and to the final image, and memory, in headless
// Chromium on the built page (web/dist), for each backend, thread count and sampling mode;
// cold (first generation after load) and warm runs. Prints a table and one JSON line.
//   node tests/browser/bench.mjs [--model M] [--modes var,dd1] [--backends cpu,webgpu]
//                                [--threads 1,2] [--runs 3] [--timeout-min 30]
//                                [--native target/release/nextscale] [--rounds 3]
// `--model` is a manifest model (`emoji32`) or a path under web/dist (`models/d16.safetensors`:
// copy a file made by `nextscale init` there). `--threads` applies to the CPU backend.
// `--native BIN` also runs `BIN bench` on the same file natively (flex, on as many threads as
// each CPU configuration, through RAYON_NUM_THREADS) before each browser configuration, and
// `--rounds N` repeats the whole list N times, so native and browser runs alternate.
// Memory: `wasmBytes` is the engine's wasm memory after the run; `rendererPeakRss` is the
// highest peak RSS (VmHWM) of Chromium's renderer processes, the page's and its workers'.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const { values: opts } = parseArgs({
  options: {
    model: { type: 'string' },
    modes: { type: 'string', default: 'var' },
    backends: { type: 'string', default: 'webgpu,cpu' },
    threads: { type: 'string', default: '' },
    runs: { type: 'string', default: '3' },
    'timeout-min': { type: 'string', default: '30' },
    native: { type: 'string' },
    rounds: { type: 'string', default: '1' },
  },
});
const runs = Number(opts.runs);
const timeout = Number(opts['timeout-min']) * 60_000;
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
const server = await serve(new URL('../../web/dist', import.meta.url).pathname, 0);
const base = `http://127.0.0.1:${server.address().port}/`;
const rows = [];

/** The largest peak RSS (VmHWM) of the running Chromium renderer processes, in bytes. */
function rendererPeakRss() {
  let peak = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      peak = Math.max(peak, kb * 1024);
    } catch {
      // The process ended while we looked.
    }
  }
  return peak;
}

async function waitStatus(page, wanted) {
  await page.waitForFunction(
    (w) => [...w, 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''),
    wanted,
    { timeout },
  );
  const status = await page.getByTestId('status').textContent();
  if (status === 'error') throw new Error(await page.getByTestId('error').textContent());
}

/** The model file on disk, for the native runs: a manifest name or a path under web/dist. */
function modelFile() {
  const dist = new URL('../../web/dist/', import.meta.url).pathname;
  const model = opts.model ?? JSON.parse(readFileSync(`${dist}models/manifest.json`, 'utf8')).default;
  return model.includes('/') ? `${dist}${model}` : `${dist}models/${model.replace(/(\.safetensors)?$/, '.safetensors')}`;
}

/** `nextscale bench` natively on `threads` threads (all when empty), one row per timed run. */
function benchNative(threads, round) {
  const env = threads ? { ...process.env, RAYON_NUM_THREADS: threads } : process.env;
  for (const mode of opts.modes.split(',')) {
    const args = ['bench', '--model', modelFile(), '--mode', mode, '--runs', String(Math.max(runs - 1, 1)), '--warmup', '1', '--json'];
    const report = JSON.parse(execFileSync(opts.native, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
    for (const total of report.totals_ms) {
      rows.push({ round, backend: `native flex${threads ? ` (${threads} thread${threads === '1' ? '' : 's'})` : ''}`, mode, run: 'warm', finalMs: Math.round(total), decodeMs: Math.round(report.decode_ms) });
    }
  }
}

const browserConfigs = opts.backends.split(',').flatMap((backend) =>
  backend === 'cpu' && opts.threads ? opts.threads.split(',').map((t) => ({ backend, threads: t })) : [{ backend, threads: '' }],
);
const configs = browserConfigs.flatMap((c) => (opts.native && c.backend === 'cpu' ? [{ ...c, native: true }, c] : [c]));
for (let round = 0; round < Number(opts.rounds); round++) for (const { backend, threads, native } of configs) {
  if (native) {
    benchNative(threads, round + 1);
    continue;
  }
  const args = backend === 'webgpu' ? [...FLAGS, '--enable-unsafe-webgpu'] : FLAGS;
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args });
  const page = await browser.newPage();
  const query = new URLSearchParams({ backend });
  if (opts.model) query.set('model', opts.model);
  if (threads) query.set('threads', threads);
  const loadStart = Date.now();
  await page.goto(`${base}?${query}`);
  await waitStatus(page, ['ready']);
  const loadMs = Date.now() - loadStart;
  const badge = (await page.getByTestId('backend').textContent())?.split('the ')[0].trim();
  for (const mode of opts.modes.split(',')) for (let run = 0; run < runs; run++) {
    await page.getByTestId('mode-select').selectOption(mode);
    await page.getByTestId('seed-input').fill(String(run));
    await page.getByTestId('generate').click();
    await waitStatus(page, ['done']);
    const times = await page.evaluate(() => {
      const items = [...document.querySelectorAll('[data-testid=timeline] li')];
      const ms = items.map((li) => Number(li.querySelector('span:last-child')?.textContent?.replace(' ms', '')));
      const total = Number(document.querySelector('#elapsed')?.textContent?.replace(' ms', ''));
      const wasmBytes = Number(document.querySelector('[data-testid=memory]')?.getAttribute('data-bytes'));
      const decodeMs = Number(items.at(-1)?.dataset.decodeMs);
      return { firstPreviewMs: ms[0], finalMs: total, decodeMs, scaleMs: ms, wasmBytes };
    });
    rows.push({
      round: round + 1, backend: badge, mode, run: run === 0 ? 'cold' : 'warm', loadMs, firstPreviewMs: times.firstPreviewMs,
      finalMs: times.finalMs, decodeMs: times.decodeMs, wasmMB: Math.round(times.wasmBytes / 1e6), rendererPeakMB: Math.round(rendererPeakRss() / 1e6),
      scaleMs: times.scaleMs.join(' '),
    });
  }
  await browser.close();
}
server.close();
console.table(rows.map(({ scaleMs, ...row }) => row));
console.log(JSON.stringify(rows));
