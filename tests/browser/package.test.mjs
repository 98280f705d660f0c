// The npm tarball from pkg/ installs into a fresh Vite app, and the README's example, run
// as that app's whole program, generates an image in headless Chromium through the public
// API alone.
//   node --test tests/browser/package.test.mjs     (after pkg/ is built and scripts/models.sh)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

const ROOT = new URL('../..', import.meta.url).pathname;
const VITE = JSON.parse(readFileSync(join(ROOT, 'web/package.json'), 'utf8')).devDependencies.vite;
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

test('the packed package works in a fresh Vite app (README example)', { timeout: 600_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nextscale-app-'));
  let server;
  let browser;
  try {
    const tarball = npm(['pack', '--silent', '--pack-destination', dir], join(ROOT, 'pkg')).trim().split('\n').pop();
    const app = join(dir, 'app');
    mkdirSync(join(app, 'public/models'), { recursive: true });
    copyFileSync(join(ROOT, 'web/public/models/var-tiny-a.safetensors'), join(app, 'public/models/var-tiny-a.safetensors'));
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
    writeFileSync(join(app, 'index.html'), '<link rel="icon" href="data:,"><canvas width="64" height="64"></canvas><script type="module" src="/main.ts"></script>\n');
    const readme = readFileSync(join(ROOT, 'pkg/README.md'), 'utf8');
    const example = readme.match(/```ts\n([\s\S]*?)```/)?.[1];
    assert.ok(example, 'the README has a ts example');
    writeFileSync(join(app, 'main.ts'), `${example}document.title = 'done';\n`);
    npm(['install', '--no-audit', '--no-fund', '--silent', join(dir, tarball), `vite@${VITE}`], app);
    execFileSync(join(app, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], { cwd: app, stdio: 'inherit' });

    server = await serve(join(app, 'dist'), 0);
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
    const page = await browser.newPage();
    const problems = [];
    page.on('console', (msg) => msg.type() === 'error' && problems.push(msg.text()));
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('response', (response) => response.status() >= 400 && problems.push(`HTTP ${response.status()} ${response.url()}`));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => document.title === 'done' , undefined, { timeout: 120_000 }).catch(() => undefined);
    assert.deepEqual(problems, []);
    assert.equal(await page.title(), 'done');
    const colours = await page.evaluate(() => {
      const data = document.querySelector('canvas').getContext('2d').getImageData(0, 0, 64, 64).data;
      const seen = new Set();
      for (let i = 0; i < data.length; i += 4) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
      return seen.size;
    });
    assert.ok(colours > 16, `the final image has ${colours} colours`);
  } finally {
    await browser?.close();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
