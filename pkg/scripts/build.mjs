// Builds the package: the two wasm builds of the engine, then the TypeScript with tsc.
//   dist/wasm/          single-threaded: WebGPU and the CPU backend (wasm-pack, stable)
//   dist/wasm-threads/  threaded, CPU only: wasm threads on shared memory and relaxed SIMD's
//                       fused multiply-adds (pinned nightly, `-Z build-std`, `+atomics`;
//                       cargo then wasm-bindgen)
// Release builds then run npm binaryen's wasm-opt.
//   node scripts/build.mjs          release (profile wasm-release + wasm-opt -Oz)
//   node scripts/build.mjs --dev    dev profile, no wasm-opt (quick, for tests)
//   --threads-only                  only the threaded build, into dist/wasm-threads (no
//                                   tsc; scripts/test.sh warms its cargo build up with it)
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const rootDir = resolve(pkgDir, '..');
const crateDir = resolve(rootDir, 'crates/nextscale-wasm');
const dev = process.argv.includes('--dev');
const threadsOnly = process.argv.includes('--threads-only');
const require = createRequire(import.meta.url);
const WASM_OPT_FEATURES = ['--enable-simd', '--enable-bulk-memory', '--enable-nontrapping-float-to-int',
  '--enable-sign-ext', '--enable-mutable-globals', '--enable-reference-types', '--enable-multivalue'];

function run(cmd, args, env = process.env) {
  console.error(`[pkg] ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: pkgDir, env });
}

function sizes(file) {
  const bytes = readFileSync(file);
  const mb = (n) => (n / 1e6).toFixed(2);
  return `${mb(bytes.length)} MB raw, ${mb(gzipSync(bytes, { level: 9 }).length)} MB gzipped`;
}

function wasmOpt(wasm, extra = []) {
  // Debian's wasm-opt (binaryen 108) breaks wasm-bindgen's glue; npm's binaryen works.
  const bin = join(dirname(require.resolve('binaryen/package.json')), 'bin', 'wasm-opt');
  console.error(`[pkg] before wasm-opt: ${sizes(wasm)}`);
  const started = Date.now();
  run(process.execPath, [bin, wasm, '-o', wasm, '-Oz', ...WASM_OPT_FEATURES, ...extra]);
  console.error(`[pkg] wasm-opt took ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** The single-threaded build, WebGPU and CPU. */
function buildSingle() {
  const outDir = join(pkgDir, 'dist', 'wasm');
  run('wasm-pack', [
    'build', crateDir, '--target', 'web', '--out-dir', outDir, '--out-name', 'nextscale_wasm',
    '--no-pack', '--no-gitignore', '--no-opt', dev ? '--dev' : '--profile=wasm-release',
    '--', '--locked',
  ]);
  const wasm = join(outDir, 'nextscale_wasm_bg.wasm');
  if (!dev) wasmOpt(wasm);
  console.error(`[pkg] ${wasm}: ${sizes(wasm)} (${statSync(wasm).size} bytes)`);
}

/** scripts/test.sh lints through the stable clippy-driver as cargo's workspace wrapper, which
 * cannot drive the nightly build (`-Z build-std`); undefined drops the variable for the child. */
const NO_STABLE_WRAPPER = { RUSTC_WORKSPACE_WRAPPER: undefined, CLIPPY_ARGS: undefined };

/** The threaded CPU build: std rebuilt with atomics, memory shared and imported (at most
 * 4 GiB), the TLS symbols exported for wasm-bindgen's thread start-up, and the matrix
 * kernels on relaxed SIMD (feature `threads`; the engine worker takes this build only where
 * the browser validates relaxed SIMD). */
function buildThreads() {
  const toolchain = execFileSync(join(rootDir, 'scripts/nightly.sh'), { encoding: 'utf8' }).trim();
  const targetDir = resolve(process.env.CARGO_TARGET_DIR ?? join(rootDir, 'target'), 'wasm-threads');
  const profile = dev ? 'dev' : 'wasm-release';
  const rustflags = [
    '-C target-feature=+atomics,+bulk-memory,+simd128',
    '-C link-arg=--shared-memory', '-C link-arg=--import-memory', '-C link-arg=--max-memory=4294967296',
    ...['__wasm_init_tls', '__tls_size', '__tls_align', '__tls_base'].map((s) => `-C link-arg=--export=${s}`),
  ].join(' ');
  run('cargo', [
    `+${toolchain}`, 'build', '--locked', '-p', 'nextscale-wasm', '--lib', '--target', 'wasm32-unknown-unknown',
    '--no-default-features', '--features', 'threads', '--profile', profile,
    '-Z', 'build-std=panic_abort,std', '--target-dir', targetDir,
  ], { ...process.env, RUSTFLAGS: rustflags, ...NO_STABLE_WRAPPER });
  const built = join(targetDir, 'wasm32-unknown-unknown', dev ? 'debug' : profile, 'nextscale_wasm.wasm');
  const outDir = join(pkgDir, 'dist', 'wasm-threads');
  rmSync(outDir, { recursive: true, force: true });
  run('wasm-bindgen', ['--target', 'web', '--out-dir', outDir, '--out-name', 'nextscale_wasm', built]);
  const wasm = join(outDir, 'nextscale_wasm_bg.wasm');
  if (!dev) wasmOpt(wasm, ['--enable-threads', '--enable-relaxed-simd']);
  console.error(`[pkg] ${wasm}: ${sizes(wasm)} (${statSync(wasm).size} bytes)`);
}

if (threadsOnly) {
  buildThreads();
} else {
  rmSync(join(pkgDir, 'dist'), { recursive: true, force: true });
  buildSingle();
  buildThreads();
  run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', pkgDir]);
}
