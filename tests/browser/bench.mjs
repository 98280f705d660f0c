// Time to the first preview and to the final image in headless Chromium, on WebGPU
// (SwiftShader) and on the CPU fallback, cold (first generation after load) and warm, for
// each sampling mode.
//   node tests/browser/bench.mjs [runs] [model file in web/public/models] [modes, comma-separated] [backends]
// (after the page is built into web/dist), e.g.
//   node tests/browser/bench.mjs 3 emoji32.safetensors var,dd1,dd2,parallel webgpu,cpu
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const runs = Number(process.argv[2] ?? 3);
const model = process.argv[3];
const modes = (process.argv[4] ?? 'var').split(',');
const backends = (process.argv[5] ?? 'webgpu,cpu').split(',');
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const server = await serve(new URL('../../web/dist', import.meta.url).pathname, 0);
const url = `http://127.0.0.1:${server.address().port}/`;
const rows = [];

for (const backend of backends) {
  const args = backend === 'webgpu' ? [...FLAGS, '--enable-unsafe-webgpu'] : FLAGS;
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args });
  const page = await browser.newPage();
  const loadStart = Date.now();
  await page.goto(`${url}?backend=${backend}${model ? `&model=${model}` : ''}`);
  await page.waitForFunction(() => document.querySelector('[data-testid=status]')?.textContent === 'ready', undefined, { timeout: 300_000 });
  const loadMs = Date.now() - loadStart;
  for (const mode of modes) for (let run = 0; run < runs; run++) {
    await page.getByTestId('mode-select').selectOption(mode);
    await page.getByTestId('seed-input').fill(String(run));
    await page.getByTestId('generate').click();
    await page.waitForFunction(() => ['done', 'error'].includes(document.querySelector('[data-testid=status]')?.textContent ?? ''), undefined, { timeout: 600_000 });
    const times = await page.evaluate(() => {
      const items = [...document.querySelectorAll('[data-testid=timeline] li')];
      const ms = items.map((li) => Number(li.querySelector('span:last-child')?.textContent?.replace(' ms', '')));
      const total = Number(document.querySelector('#elapsed')?.textContent?.replace(' ms', ''));
      return { firstPreviewMs: ms[0], finalMs: total };
    });
    rows.push({ backend, mode, run: run === 0 ? 'cold' : 'warm', pageLoadToReadyMs: loadMs, ...times });
  }
  await browser.close();
}
server.close();
console.table(rows);
console.log(JSON.stringify(rows));
