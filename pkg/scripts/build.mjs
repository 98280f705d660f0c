// Builds the package: the wasm engine with wasm-pack (then npm binaryen's wasm-opt for
// release builds), then the TypeScript with tsc.
//   node scripts/build.mjs          release (profile wasm-release + wasm-opt -Oz)
//   node scripts/build.mjs --dev    dev profile, no wasm-opt (quick, for tests)
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const crateDir = resolve(pkgDir, '../crates/nextscale-wasm');
const outDir = join(pkgDir, 'dist', 'wasm');
const dev = process.argv.includes('--dev');
const require = createRequire(import.meta.url);

function run(cmd, args) {
  console.error(`[pkg] ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: pkgDir });
}

function sizes(file) {
  const bytes = readFileSync(file);
  const mb = (n) => (n / 1e6).toFixed(2);
  return `${mb(bytes.length)} MB raw, ${mb(gzipSync(bytes, { level: 9 }).length)} MB gzipped`;
}

rmSync(join(pkgDir, 'dist'), { recursive: true, force: true });
run('wasm-pack', [
  'build', crateDir, '--target', 'web', '--out-dir', outDir, '--out-name', 'nextscale_wasm',
  '--no-pack', '--no-gitignore', '--no-opt', dev ? '--dev' : '--profile=wasm-release',
  '--', '--locked',
]);
const wasm = join(outDir, 'nextscale_wasm_bg.wasm');
if (!dev) {
  // Debian's wasm-opt (binaryen 108) breaks wasm-bindgen's glue; npm's binaryen works.
  const wasmOpt = join(dirname(require.resolve('binaryen/package.json')), 'bin', 'wasm-opt');
  console.error(`[pkg] before wasm-opt: ${sizes(wasm)}`);
  const started = Date.now();
  run(process.execPath, [wasmOpt, wasm, '-o', wasm, '-Oz', '--enable-simd', '--enable-bulk-memory',
    '--enable-nontrapping-float-to-int', '--enable-sign-ext', '--enable-mutable-globals',
    '--enable-reference-types', '--enable-multivalue']);
  console.error(`[pkg] wasm-opt took ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
console.error(`[pkg] ${wasm}: ${sizes(wasm)} (${statSync(wasm).size} bytes)`);
run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', pkgDir]);
