import { defineConfig } from 'vite';

// Cross-origin isolation (COOP + COEP) lets the engine run wasm threads on shared memory.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

// `base: './'` keeps the built page working from any folder.
export default defineConfig({
  base: './',
  server: { headers: isolation },
  preview: { headers: isolation },
  build: { target: 'es2022' },
  worker: { format: 'es' },
});
