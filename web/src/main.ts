// The nextscale demo page: pick a model and a class, watch the image sharpen scale by scale.

import { createEngine, NextscaleError, type Backend, type Engine, type Frame, type GenerateOptions } from 'nextscale';
import './style.css';

/** `models/manifest.json`, written by scripts/models.sh. */
interface Manifest {
  default: string;
  models: { file: string; name: string; bytes: number; sha256: string; family: 'var' | 'hmar' }[];
}

/** A manifest model's URL, versioned by its content so a changed file bypasses the cache. */
function modelUrl(manifest: Manifest, file: string): string {
  const entry = manifest.models.find((m) => m.file === file);
  return entry ? `models/${file}?v=${entry.sha256.slice(0, 16)}` : `models/${file}`;
}

/**
 * What `?model=` names: a manifest model (by file or name), or any URL (anything with a `/`
 * or a scheme, relative to the page). A bare name the manifest lacks is an error that lists
 * the manifest's models.
 */
function resolveModelParam(manifest: Manifest, value: string): { file: string } | { url: string } {
  const entry = manifest.models.find((m) => m.file === value || m.name === value);
  if (entry) return { file: entry.file };
  if (value.includes('/') || /^[a-z][a-z0-9+.-]*:/i.test(value)) return { url: value };
  const known = manifest.models.map((m) => m.name).join(', ');
  throw new Error(`unknown model "${value}": the manifest has ${known}; for another file give its URL, e.g. ?model=models/${value}`);
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
  memory: $<HTMLSpanElement>('memory'),
  timeline: $<HTMLOListElement>('timeline'),
  error: $<HTMLParagraphElement>('error'),
  grid: $<HTMLDivElement>('grid'),
  note: $<HTMLParagraphElement>('model-note'),
  canvasWrap: $<HTMLDivElement>('canvas-wrap'),
  editBox: $<HTMLDivElement>('edit-box'),
  editMode: $<HTMLSelectElement>('edit-mode'),
  editFile: $<HTMLInputElement>('edit-file'),
  edit: $<HTMLButtonElement>('edit'),
  undo: $<HTMLButtonElement>('undo'),
};

/** The image being edited (the last final image, or an uploaded one at the model's
 * resolution), the images before each edit (for undo), and the dragged box. */
const editing: { image: ImageData | null; history: ImageData[]; box: [number, number, number, number] | null } = {
  image: null,
  history: [],
  box: null,
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
  // Editing needs an image, a box, and a VAR model file with its VQ-VAE encoder.
  const canEncode = engine?.info.config.encoder !== false;
  const isVar = engine?.info.family !== 'hmar';
  ui.edit.disabled = !ready || !canEncode || !isVar || editing.image === null || editing.box === null;
  ui.edit.title = !isVar
    ? 'zero-shot editing needs a VAR model; this one is HMAR'
    : canEncode
      ? ''
      : 'this model file has no VQ-VAE encoder, so it cannot edit';
  ui.undo.disabled = !ready || editing.history.length === 0;
}

/** Draws RGBA pixels onto a canvas, upscaled without smoothing. */
function draw(canvas: HTMLCanvasElement, frame: Pick<Frame, 'pixels' | 'width' | 'height'>): void {
  const small = new OffscreenCanvas(frame.width, frame.height);
  const smallCtx = small.getContext('2d');
  const ctx = canvas.getContext('2d');
  if (!smallCtx || !ctx) return;
  smallCtx.putImageData(new ImageData(new Uint8ClampedArray(frame.pixels), frame.width, frame.height), 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

/** Greys out the cells of a `pn × pn` token map that the next pass re-predicts. */
function shadeMasked(canvas: HTMLCanvasElement, masked: Uint32Array, pn: number): void {
  const ctx = canvas.getContext('2d');
  if (!ctx || pn < 1) return;
  const cell = canvas.width / pn;
  ctx.fillStyle = 'rgba(128, 128, 128, 0.75)';
  for (const i of masked) ctx.fillRect((i % pn) * cell, Math.floor(i / pn) * cell, cell, cell);
}

function showBackend(e: Engine): void {
  const { backend, adapter, reason } = e.info;
  ui.badge.dataset.backend = backend;
  if (backend === 'webgpu') {
    const name = adapter ? adapter.description || `${adapter.vendor} ${adapter.architecture}`.trim() : '';
    ui.badge.textContent = `WebGPU · ${name || 'adapter'}`;
  } else {
    const { threads } = e.info;
    ui.badge.textContent = `CPU (wasm, ${threads} thread${threads === 1 ? '' : 's'})`;
  }
  ui.badge.title = reason;
  ui.badge.append(Object.assign(document.createElement('small'), { textContent: reason }));
}

function showModel(e: Engine, label: string): void {
  const { classNames, modes, imageSize, scales, config, sampling, family } = e.info;
  const previous = ui.cls.value;
  ui.cls.replaceChildren(
    ...classNames.map((name, i) => new Option(`${i} · ${name}`, String(i))),
    new Option('unconditional', 'none'),
  );
  if ([...ui.cls.options].some((o) => o.value === previous)) ui.cls.value = previous;
  for (const option of ui.mode.options) {
    option.disabled = !(modes as string[]).includes(option.value);
    const why = family === 'hmar' ? 'VAR only' : 'no student';
    if (option.disabled && option.value !== 'var') option.textContent = `${option.textContent?.split(' (')[0]} (${why})`;
  }
  ui.mode.value = 'var';
  // Each model brings its default sampling (its tuned recommendation, else the official one).
  ui.cfg.value = String(sampling.cfg);
  ui.cfgOut.textContent = ui.cfg.value;
  ui.topK.value = String(sampling.topK);
  ui.topK.max = String(config.V);
  ui.topP.value = String(sampling.topP);
  const attribution = typeof config.attribution === 'string' ? ` · ${config.attribution}` : '';
  ui.note.textContent = `${label}: ${family.toUpperCase()}, ${imageSize}×${imageSize} px, ${scales} scales, ${classNames.length} classes${attribution}`;
}

/** The engine's wasm memory in the status bar (`data-bytes` holds the exact count). */
async function showMemory(e: Engine): Promise<void> {
  const { wasmBytes } = await e.memory();
  ui.memory.textContent = `wasm ${(wasmBytes / 1e9).toFixed(2)} GB`;
  ui.memory.dataset.bytes = String(wasmBytes);
}

/** `?threads=N` caps the CPU backend's threads (default: every core, up to 16). */
function threadsParam(): number | undefined {
  const value = Number(params.get('threads'));
  return Number.isSafeInteger(value) && value >= 1 ? value : undefined;
}

/** Loads `model` (a URL or bytes; with `sha256`, the file's expected hash) and shows it as
 * `label`. */
async function loadEngine(model: string | ArrayBuffer, label: string, sha256?: string): Promise<void> {
  const previous = engine;
  engine = null;
  setBusy(false);
  setStatus('loading');
  clearError();
  ui.badge.textContent = 'loading…';
  ui.progress.hidden = false;
  ui.progressBar.style.width = '0%';
  try {
    const threads = threadsParam();
    const next = await createEngine({
      model,
      backend: ui.backendChoice.value as Backend,
      ...(threads === undefined ? {} : { threads }),
      ...(sha256 === undefined ? {} : { sha256 }),
      onProgress: ({ loaded, total }) => {
        ui.progressBar.style.width = total ? `${(100 * loaded) / total}%` : '50%';
      },
    });
    await previous?.dispose();
    engine = next;
    // Images of another model cannot be edited with this one.
    Object.assign(editing, { image: null, history: [], box: null });
    ui.editBox.hidden = true;
    showBackend(next);
    showModel(next, label);
    await showMemory(next);
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
    // HMAR: a frame after every pass that leaves tokens masked, for the timeline.
    passEvents: engine?.info.family === 'hmar',
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
    await showMemory(engine);
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

/** One image on the big canvas, with a timeline entry per scale (or step); a fresh image
 * starts a fresh edit history. */
async function generate(e: Engine, signal: AbortSignal): Promise<void> {
  const image = await show(e.generate(options(seedValue(), signal)), ui.mode.value);
  editing.history = [];
  editing.image = image;
}

/** The current image edited as the Edit panel says; the image before it goes on the undo
 * stack. */
async function edit(e: Engine, signal: AbortSignal): Promise<void> {
  const { image, box } = editing;
  if (!image || !box) return;
  const { mode: _mode, ...rest } = options(seedValue(), signal);
  const mask = { box, mode: ui.editMode.value as 'inpaint' | 'outpaint' };
  const edited = await show(e.edit({ ...rest, image, mask }), 'var');
  editing.history.push(image);
  editing.image = edited;
}

/** Streams frames onto the big canvas and the timeline; returns the final image. */
async function show(frames: AsyncGenerator<Frame, void, undefined>, mode: string): Promise<ImageData | null> {
  ui.timeline.replaceChildren();
  ui.frameCount.textContent = '0';
  ui.download.disabled = true;
  let count = 0;
  let last = 0;
  let final: ImageData | null = null;
  for await (const frame of frames) {
    draw(ui.canvas, frame);
    count += 1;
    ui.frameCount.textContent = String(count);
    const { pass } = frame;
    const passText = pass ? ` · pass ${pass.index + 1}/${pass.of}` : '';
    ui.scaleLabel.textContent = `${unitOf(mode)} ${frame.scale}/${frame.scales}${passText}`;
    const step = frame.elapsedMs - last;
    last = frame.elapsedMs;
    const item = document.createElement('li');
    if (pass) {
      // An HMAR pass that leaves tokens masked: its preview with those cells greyed out.
      shadeMasked(ui.canvas, pass.masked, Math.round(Math.sqrt(frame.tokens?.length ?? 0)));
      item.className = 'pass';
      item.dataset.pass = `${pass.index}/${pass.of}`;
      item.dataset.masked = pass.masked.join(',');
      item.title = `${pass.index === 0 ? 'next-scale pass' : `refinement pass ${pass.index}`}; ${pass.masked.length} tokens re-masked for the next`;
      item.innerHTML = `<b>${frame.scale}.${pass.index + 1}</b><span>${pass.masked.length} masked</span><span>${step.toFixed(0)} ms</span>`;
    } else {
      item.innerHTML = `<b>${frame.scale}</b><span>${frame.width}×${frame.height}</span><span>${step.toFixed(0)} ms</span>`;
    }
    if (frame.final) item.className = 'final';
    if (frame.tokens) item.dataset.tokens = frame.tokens.join(',');
    if (frame.timings) item.dataset.decodeMs = frame.timings.decodeMs.toFixed(0);
    ui.timeline.append(item);
    ui.elapsed.textContent = `${frame.elapsedMs.toFixed(0)} ms`;
    if (frame.final) {
      ui.download.disabled = false;
      final = new ImageData(new Uint8ClampedArray(frame.pixels), frame.width, frame.height);
    }
  }
  return final;
}

/** Undo: the image before the last edit. */
function undo(): void {
  const previous = editing.history.pop();
  if (!previous) return;
  editing.image = previous;
  draw(ui.canvas, { pixels: previous.data, width: previous.width, height: previous.height });
  setBusy(false);
}

/** An uploaded image becomes the image to edit: centre-cropped, on white, at the model's
 * resolution. */
async function upload(file: File): Promise<void> {
  if (!engine) return;
  try {
    const bitmap = await createImageBitmap(file);
    const size = engine.info.imageSize;
    const side = Math.min(bitmap.width, bitmap.height);
    const canvas = new OffscreenCanvas(size, size);
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.fillStyle = 'white';
    ctx.fillRect(0, 0, size, size);
    ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, size, size);
    const image = ctx.getImageData(0, 0, size, size);
    editing.image = image;
    editing.history = [];
    draw(ui.canvas, { pixels: image.data, width: size, height: size });
    clearError();
  } catch (error) {
    showError(new Error(`cannot read ${file.name} as an image: ${error instanceof Error ? error.message : String(error)}`));
  }
  setBusy(false);
}

/** Dragging on the canvas sets the edit box, in fractions of the image. */
function trackBox(): void {
  let start: [number, number] | null = null;
  const at = (event: PointerEvent): [number, number] => {
    const rect = ui.canvas.getBoundingClientRect();
    const clamp = (v: number) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientY - rect.top) / rect.height), clamp((event.clientX - rect.left) / rect.width)];
  };
  const place = (a: [number, number], b: [number, number]) => {
    const [y0, y1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
    const [x0, x1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
    const rect = ui.canvas.getBoundingClientRect();
    const wrap = ui.canvasWrap.getBoundingClientRect();
    Object.assign(ui.editBox.style, {
      top: `${rect.top - wrap.top + y0 * rect.height}px`,
      left: `${rect.left - wrap.left + x0 * rect.width}px`,
      height: `${(y1 - y0) * rect.height}px`,
      width: `${(x1 - x0) * rect.width}px`,
    });
    ui.editBox.hidden = false;
    return [y0, x0, y1, x1] as [number, number, number, number];
  };
  ui.canvas.addEventListener('pointerdown', (event) => {
    start = at(event);
    ui.canvas.setPointerCapture(event.pointerId);
  });
  ui.canvas.addEventListener('pointermove', (event) => {
    if (start) place(start, at(event));
  });
  ui.canvas.addEventListener('pointerup', (event) => {
    if (!start) return;
    const box = place(start, at(event));
    start = null;
    // A click without a drag clears the box.
    const big = box[2] - box[0] > 0.02 && box[3] - box[1] > 0.02;
    editing.box = big ? box : null;
    ui.editBox.hidden = !big;
    ui.editBox.dataset.box = big ? box.map((v) => v.toFixed(3)).join(',') : '';
    setBusy(busy);
  });
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
    ...manifest.models.map((m) => new Option(`${m.name} · ${m.family.toUpperCase()} (${(m.bytes / 1e6).toFixed(1)} MB)`, m.file)),
  );
  const asked = params.get('model');
  let chosen: { file: string } | { url: string } = { file: manifest.default };
  try {
    if (asked !== null) chosen = resolveModelParam(manifest, asked);
  } catch (error) {
    ui.badge.textContent = 'no engine';
    showError(error);
    return;
  }
  if ('url' in chosen) {
    // A file from outside the manifest gets its own entry, loaded from its URL as given.
    const label = chosen.url.split('/').pop()?.split('?')[0] || chosen.url;
    ui.model.append(new Option(label, `url:${chosen.url}`));
    ui.model.value = `url:${chosen.url}`;
  } else {
    ui.model.value = chosen.file;
  }
  const loadSelected = () => {
    const value = ui.model.value;
    const label = ui.model.selectedOptions[0]?.text ?? value;
    if (value.startsWith('url:')) return loadEngine(value.slice(4), label);
    // A manifest model is checked against the manifest's hash as it downloads.
    return loadEngine(modelUrl(manifest, value), label, manifest.models.find((m) => m.file === value)?.sha256);
  };
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
ui.edit.addEventListener('click', () => void task(edit));
ui.undo.addEventListener('click', undo);
ui.editFile.addEventListener('change', () => {
  const file = ui.editFile.files?.[0];
  if (file) void upload(file);
});
trackBox();
ui.download.addEventListener('click', download);
ui.randomSeed.addEventListener('click', () => {
  ui.seed.value = String(Math.floor(Math.random() * 1_000_000));
});
ui.cfg.addEventListener('input', () => (ui.cfgOut.textContent = ui.cfg.value));
void start();
