import { defineConfig } from 'vite';

// `base: './'` keeps the built page working from any folder.
export default defineConfig({
  base: './',
  build: { target: 'es2022' },
  worker: { format: 'es' },
});
