// The nextscale demo page: pick a model and a class, watch the image sharpen scale by scale.

import { createEngine, NextscaleError, type Backend, type Engine, type Frame, type GenerateOptions } from 'nextscale';
import './style.css';

/** `models/manifest.json`, written by scripts/models.sh. */
interface Manifest {
  default: string;
  models: { file: string; name: string; bytes: number; sha256: string }[];
}

/** A manifest model's URL, versioned by its content so a changed file bypasses the cache. */
function modelUrl(manifest: Manifest, file: string): string {
  const entry = manifest.models.find((m) => m.file === file);
  return entry ? `models/${file}?v=${entry.sha256.slice(0, 16)}` : `models/${file}`;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
};

const ui = {
  form: $<HTMLFormElement>('controls'),
  model: $<HTMLSelectElement>('model'),
  modelFile: $<HTMLInputElement>('model-file'),
  backendChoice: $<HTMLSelectElement>('backend-choice'),
  progress: $<HTMLDivElement>('progress'),
  progressBar: $<HTMLDivElement>('progress-bar'),
  cls: $<HTMLSelectElement>('class'),
  seed: $<HTMLInputElement>('seed'),
  randomSeed: $<HTMLButtonElement>('random-seed'),
  cfg: $<HTMLInputElement>('cfg'),
  cfgOut: $<HTMLOutputElement>('cfg-out'),
  topK: $<HTMLInputElement>('top-k'),
  topP: $<HTMLInputElement>('top-p'),
  preview: $<HTMLSelectElement>('preview'),
  mode: $<HTMLSelectElement>('mode'),
  generate: $<HTMLButtonElement>('generate'),
  abort: $<HTMLButtonElement>('abort'),
  batch: $<HTMLButtonElement>('batch'),
  download: $<HTMLButtonElement>('download'),
  badge: $<HTMLSpanElement>('backend'),
  canvas: $<HTMLCanvasElement>('canvas'),
  status: $<HTMLSpanElement>('status'),
  scaleLabel: $<HTMLSpanElement>('scale-label'),
  frameCount: $<HTMLElement>('frame-count'),
  elapsed: $<HTMLSpanElement>('elapsed'),
  timeline: $<HTMLOListElement>('timeline'),
  error: $<HTMLParagraphElement>('error'),
  grid: $<HTMLDivElement>('grid'),
  note: $<HTMLParagraphElement>('model-note'),
};

const params = new URLSearchParams(location.search);
let engine: Engine | null = null;
let running: AbortController | null = null;
let busy = false;

function setStatus(status: 'loading' | 'ready' | 'generating' | 'done' | 'aborted' | 'error'): void {
  ui.status.textContent = status;
  ui.status.dataset.state = status;
}

function showError(error: unknown): void {
  const code = error instanceof NextscaleError ? error.code : 'E_PAGE';
  const message = error instanceof Error ? error.message : String(error);
  ui.error.textContent = `${code}: ${message}`;
  ui.error.hidden = false;
  setStatus('error');
}

function clearError(): void {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

function setBusy(value: boolean): void {
  busy = value;
  const ready = engine !== null && !busy;
  ui.generate.disabled = !ready;
  ui.batch.disabled = !ready;
  ui.abort.disabled = !busy;
}

/** Draws RGBA pixels onto a canvas, upscaled without smoothing. */
function draw(canvas: HTMLCanvasElement, frame: Frame): void {
  const small = new OffscreenCanvas(frame.width, frame.height);
  const smallCtx = small.getContext('2d');
  const ctx = canvas.getContext('2d');
  if (!smallCtx || !ctx) return;
  smallCtx.putImageData(new ImageData(frame.pixels, frame.width, frame.height), 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function showBackend(e: Engine): void {
  const { backend, adapter, reason } = e.info;
  ui.badge.dataset.backend = backend;
  if (backend === 'webgpu') {
    const name = adapter ? adapter.description || `${adapter.vendor} ${adapter.architecture}`.trim() : '';
    ui.badge.textContent = `WebGPU · ${name || 'adapter'}`;
  } else {
    ui.badge.textContent = 'CPU (wasm)';
  }
  ui.badge.title = reason;
  ui.badge.append(Object.assign(document.createElement('small'), { textContent: reason }));
}

function showModel(e: Engine, label: string): void {
  const { classNames, modes, imageSize, scales, config, sampling } = e.info;
  const previous = ui.cls.value;
  ui.cls.replaceChildren(
    ...classNames.map((name, i) => new Option(`${i} · ${name}`, String(i))),
    new Option('unconditional', 'none'),
  );
  if ([...ui.cls.options].some((o) => o.value === previous)) ui.cls.value = previous;
  for (const option of ui.mode.options) {
    option.disabled = !(modes as string[]).includes(option.value);
    if (option.disabled && option.value !== 'var') option.textContent = `${option.textContent?.split(' (')[0]} (no student)`;
  }
  ui.mode.value = 'var';
  // Each model brings its default sampling (its tuned recommendation, else the official one).
  ui.cfg.value = String(sampling.cfg);
  ui.cfgOut.textContent = ui.cfg.value;
  ui.topK.value = String(sampling.topK);
  ui.topP.value = String(sampling.topP);
  const attribution = typeof config.attribution === 'string' ? ` · ${config.attribution}` : '';
  ui.note.textContent = `${label}: ${imageSize}×${imageSize} px, ${scales} scales, ${classNames.length} classes${attribution}`;
}

async function loadEngine(model: string | ArrayBuffer, label: string): Promise<void> {
  const previous = engine;
  engine = null;
  setBusy(false);
  setStatus('loading');
  clearError();
  ui.badge.textContent = 'loading…';
  ui.progress.hidden = false;
  ui.progressBar.style.width = '0%';
  try {
    const next = await createEngine({
      model,
      backend: ui.backendChoice.value as Backend,
      onProgress: ({ loaded, total }) => {
        ui.progressBar.style.width = total ? `${(100 * loaded) / total}%` : '50%';
      },
    });
    await previous?.dispose();
    engine = next;
    showBackend(next);
    showModel(next, label);
    setStatus('ready');
  } catch (error) {
    // Keep the engine we had, so the page goes on working after a bad file.
    engine = previous;
    if (previous) showBackend(previous);
    else ui.badge.textContent = 'no engine';
    showError(error);
  } finally {
    ui.progress.hidden = true;
    setBusy(false);
  }
}

function options(seed: number, signal: AbortSignal): GenerateOptions {
  return {
    classLabel: ui.cls.value === 'none' ? null : Number(ui.cls.value),
    seed,
    cfg: Number(ui.cfg.value),
    topK: Number(ui.topK.value),
    topP: Number(ui.topP.value),
    preview: ui.preview.value as GenerateOptions['preview'] & string,
    mode: ui.mode.value as GenerateOptions['mode'] & string,
    signal,
  };
}

function seedValue(): number {
  const seed = Number(ui.seed.value);
  return Number.isSafeInteger(seed) && seed >= 0 ? seed : 0;
}

/** Runs one generation task: one at a time, abortable with Stop, errors shown in the page. */
async function task(body: (engine: Engine, signal: AbortSignal) => Promise<void>): Promise<void> {
  if (!engine || busy) return;
  const controller = new AbortController();
  running = controller;
  setBusy(true);
  clearError();
  setStatus('generating');
  try {
    await body(engine, controller.signal);
    setStatus('done');
  } catch (error) {
    if (error instanceof NextscaleError && error.code === 'E_ABORTED') setStatus('aborted');
    else showError(error);
  } finally {
    running = null;
    setBusy(false);
  }
}

/** What a frame counts: scales for VAR, network passes for the one/two-step modes. */
function unitOf(mode: string): string {
  return mode === 'var' ? 'scale' : 'step';
}

/** One image on the big canvas, with a timeline entry per scale (or step). */
async function generate(e: Engine, signal: AbortSignal): Promise<void> {
  ui.timeline.replaceChildren();
  ui.frameCount.textContent = '0';
  ui.download.disabled = true;
  let frames = 0;
  let last = 0;
  for await (const frame of e.generate(options(seedValue(), signal))) {
    draw(ui.canvas, frame);
    frames += 1;
    ui.frameCount.textContent = String(frames);
    ui.scaleLabel.textContent = `${unitOf(ui.mode.value)} ${frame.scale}/${frame.scales}`;
    const step = frame.elapsedMs - last;
    last = frame.elapsedMs;
    const item = document.createElement('li');
    item.innerHTML = `<b>${frame.scale}</b><span>${frame.width}×${frame.height}</span><span>${step.toFixed(0)} ms</span>`;
    if (frame.final) item.className = 'final';
    ui.timeline.append(item);
    ui.elapsed.textContent = `${frame.elapsedMs.toFixed(0)} ms`;
    if (frame.final) ui.download.disabled = false;
  }
}

/** Four seeds from the current one, in the grid. */
async function batch(e: Engine, signal: AbortSignal): Promise<void> {
  const first = seedValue();
  const cells = [0, 1, 2, 3].map((i) => {
    const figure = document.createElement('figure');
    const canvas = Object.assign(document.createElement('canvas'), { width: 128, height: 128 });
    const caption = Object.assign(document.createElement('figcaption'), { textContent: `seed ${first + i}` });
    figure.append(canvas, caption);
    return { figure, canvas, caption };
  });
  ui.grid.replaceChildren(...cells.map((c) => c.figure));
  for (const [i, cell] of cells.entries()) {
    for await (const frame of e.generate(options(first + i, signal))) {
      draw(cell.canvas, frame);
      cell.caption.textContent = `seed ${first + i} · ${frame.final ? `${frame.elapsedMs.toFixed(0)} ms` : `${unitOf(ui.mode.value)} ${frame.scale}/${frame.scales}`}`;
    }
  }
}

function download(): void {
  ui.canvas.toBlob((blob) => {
    if (!blob) return;
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    const cls = ui.cls.value === 'none' ? 'uncond' : ui.cls.value;
    link.download = `nextscale_${cls}_${seedValue()}.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }, 'image/png');
}

async function start(): Promise<void> {
  const backend = params.get('backend');
  if (backend === 'auto' || backend === 'webgpu' || backend === 'cpu') ui.backendChoice.value = backend;
  let manifest: Manifest;
  try {
    const response = await fetch('models/manifest.json');
    if (!response.ok) throw new Error(`models/manifest.json: HTTP ${response.status}`);
    manifest = (await response.json()) as Manifest;
  } catch (error) {
    showError(error);
    return;
  }
  ui.model.replaceChildren(
    ...manifest.models.map((m) => new Option(`${m.name} (${(m.bytes / 1e6).toFixed(1)} MB)`, m.file)),
  );
  ui.model.value = params.get('model') ?? manifest.default;
  const loadSelected = () =>
    loadEngine(modelUrl(manifest, ui.model.value), ui.model.selectedOptions[0]?.text ?? ui.model.value);
  ui.model.addEventListener('change', () => void loadSelected());
  ui.backendChoice.addEventListener('change', () => void loadSelected());
  ui.modelFile.addEventListener('change', () => {
    const file = ui.modelFile.files?.[0];
    if (file) void file.arrayBuffer().then((bytes) => loadEngine(bytes, file.name));
  });
  await loadSelected();
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  void task(generate);
});
ui.abort.addEventListener('click', () => running?.abort());
ui.batch.addEventListener('click', () => void task(batch));
ui.download.addEventListener('click', download);
ui.randomSeed.addEventListener('click', () => {
  ui.seed.value = String(Math.floor(Math.random() * 1_000_000));
});
ui.cfg.addEventListener('input', () => (ui.cfgOut.textContent = ui.cfg.value));
void start();
