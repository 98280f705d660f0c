// The engine worker: picks a wasm build, streams the model into it (model-source.ts), runs
// one generation at a time, posts frames with their pixels transferred, and on WebGPU
// watches the device (device-watch.ts).
//
// Two builds of the engine ship. The single-threaded one has WebGPU and the CPU backend;
// the threaded one (wasm threads on shared memory, rayon's pool on Web Workers) is CPU only.
// The CPU backend takes the threaded build when the page is cross-origin isolated and more
// than one thread is allowed.

import { DeviceWatch } from './device-watch.js';
import { codeOf, coded, messageOf } from './errors.js';
import { fromBuffer, fromUrl } from './model-source.js';
import type { PoolReply, PoolStart, PostedEdit, Reply, Request } from './protocol.js';
import type { Backend, EngineInfo, Frame } from './types.js';

type Glue = typeof import('./wasm/nextscale_wasm.js');
type ThreadsGlue = typeof import('./wasm-threads/nextscale_wasm.js');
type WasmEngine = import('./wasm/nextscale_wasm.js').Engine;

const scope = self as unknown as DedicatedWorkerGlobalScope;
let engine: WasmEngine | null = null;
let glue: Glue | ThreadsGlue | null = null;
/** The engine's WebGPU device, when it runs on one. */
let device: DeviceWatch | null = null;
let queue: Promise<void> = Promise.resolve();
const pending = new Set<number>();
const aborted = new Set<number>();

function post(reply: Reply, transfer: Transferable[] = []): void {
  scope.postMessage(reply, transfer);
}

function fail(id: number | null, error: unknown): void {
  post({ type: 'error', id, code: codeOf(error), message: messageOf(error) });
}

/** The little of WebGPU that picking a build needs (TypeScript's lib has no WebGPU types). */
interface AdapterLike {
  isFallbackAdapter?: boolean;
  info?: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean };
}

/** Why WebGPU would not be used by `auto`, or null when a hardware adapter is there. */
async function noHardwareAdapter(): Promise<string | null> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<AdapterLike | null> } }).gpu;
  if (!gpu) return 'WebGPU is not available (no navigator.gpu)';
  let adapter: AdapterLike | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (error) {
    return `navigator.gpu.requestAdapter() failed: ${messageOf(error)}`;
  }
  if (!adapter) return 'no WebGPU adapter (requestAdapter() returned null)';
  const info = adapter.info;
  if (info?.isFallbackAdapter ?? adapter.isFallbackAdapter) {
    const name = info?.description || `${info?.vendor ?? ''} ${info?.architecture ?? ''}`.trim() || 'unknown adapter';
    return `the only WebGPU adapter (${name}) is a software fallback, slower than the CPU backend; ask for webgpu to use it anyway`;
  }
  return null;
}

/** A module whose one function uses `f32x4.relaxed_madd`: valid where relaxed SIMD is. */
function relaxedSimdProbe(): Uint8Array<ArrayBuffer> {
  const v128Zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const body = [0x00, ...v128Zero, ...v128Zero, ...v128Zero, 0xfd, 0x85, 0x02, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of that type
    0x0a, body.length + 2, 0x01, body.length, ...body, // its code
  ]);
}

/** Why the CPU backend cannot run threaded here, or null when it can. */
function noThreads(threads: number): string | null {
  if (threads <= 1) return 'one thread was asked for';
  if (!scope.crossOriginIsolated) {
    return 'the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    return 'this browser has no shared WebAssembly memory';
  }
  if (!WebAssembly.validate(relaxedSimdProbe())) {
    return 'this browser has no relaxed SIMD, which the threaded build uses';
  }
  return null;
}

/** Starts rayon's pool of `threads` workers on the threaded build's memory. */
async function startPool(threads: ThreadsGlue, count: number): Promise<MessagePort[]> {
  const builder = new threads.PoolBuilder(count);
  const pagePorts: MessagePort[] = [];
  const started = Array.from({ length: count }, (_, i) => {
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: `nextscale-pool-${i}` });
    const channel = new MessageChannel();
    pagePorts.push(channel.port1);
    return new Promise<void>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<PoolReply>) => {
        if (event.data.type === 'pool-ready') resolve();
        else reject(coded('E_BACKEND', `a pool worker failed to start: ${event.data.message}`));
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        reject(coded('E_BACKEND', `a pool worker failed to start: ${event.message}`));
      };
      const start: PoolStart = {
        module: builder.module as WebAssembly.Module,
        memory: builder.memory as WebAssembly.Memory,
        receiver: builder.receiver(),
        crashPort: channel.port2,
      };
      worker.postMessage(start, [channel.port2]);
    });
  });
  await Promise.all(started);
  builder.build();
  // The builder's receiver stays alive: every worker has taken its thread from it.
  return pagePorts;
}

/** Loads the build that fits `backend` and `threads`; says which and why. */
async function pickBuild(
  backend: Backend,
  threads: number,
): Promise<{ wasm: Glue | ThreadsGlue; backendArg: Backend; cpuReason: string | null; threadNote: string; crashPorts: MessagePort[] }> {
  let cpuReason: string | null = backend === 'cpu' ? 'the CPU backend was requested' : null;
  if (backend === 'auto') cpuReason = await noHardwareAdapter();
  if (cpuReason !== null) {
    const why = noThreads(threads);
    if (why === null) {
      const wasm = await import('./wasm-threads/nextscale_wasm.js');
      await wasm.default();
      const crashPorts = await startPool(wasm, threads);
      return { wasm, backendArg: 'cpu', cpuReason, threadNote: `${wasm.poolThreads()} threads`, crashPorts };
    }
    const wasm = await import('./wasm/nextscale_wasm.js');
    await wasm.default();
    return { wasm, backendArg: 'cpu', cpuReason, threadNote: `1 thread: ${why}`, crashPorts: [] };
  }
  const wasm = await import('./wasm/nextscale_wasm.js');
  await wasm.default();
  return { wasm, backendArg: backend, cpuReason: null, threadNote: '1 thread: WebGPU runs in the single-threaded build', crashPorts: [] };
}

async function load(model: string | ArrayBuffer, sha256: string | null, backend: Backend, threads: number): Promise<void> {
  const build = await pickBuild(backend, threads);
  glue = build.wasm;
  const progress = (loaded: number, total: number | null, cached: boolean) => post({ type: 'progress', loaded, total, cached });
  const bytes =
    typeof model === 'string'
      ? await fromUrl(build.wasm.ModelBytes, model, sha256, progress)
      : fromBuffer(build.wasm.ModelBytes, model, sha256);
  const create = () => build.wasm.Engine.create(bytes, build.backendArg);
  if (build.backendArg === 'cpu') {
    engine = await create();
  } else {
    const started = await DeviceWatch.around(create);
    engine = started.result;
    if ((engine.info as EngineInfo).backend === 'webgpu') device = started.watch;
  }
  const info = engine.info as EngineInfo;
  if (info.backend === 'cpu') {
    info.reason = `${build.cpuReason ?? info.reason}; ${build.threadNote}`;
  }
  post({ type: 'ready', info, crashPorts: build.crashPorts }, build.crashPorts);
}

/** Lets queued messages (an abort) in, then says whether to go on. */
function checkpoint(id: number): Promise<boolean> {
  return new Promise((resolve) => setTimeout(() => resolve(!aborted.has(id)), 0));
}

/** `source` (`width × height`) centre-cropped to a square and drawn at `size × size` on
 * `background`, as RGBA bytes. */
function squareAt(source: CanvasImageSource, width: number, height: number, size: number, background: string): Uint8ClampedArray {
  const side = Math.min(width, height);
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  if (!context) throw coded('E_BACKEND', 'no 2D canvas in this worker to resize the image');
  context.fillStyle = background;
  context.fillRect(0, 0, size, size);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  context.drawImage(source, (width - side) / 2, (height - side) / 2, side, side, 0, 0, size, size);
  return context.getImageData(0, 0, size, size).data;
}

/** Pixels as a canvas source. */
function drawable(data: Uint8ClampedArray, width: number, height: number): OffscreenCanvas {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d')?.putImageData(new ImageData(new Uint8ClampedArray(data), width, height), 0, 0);
  return canvas;
}

/** The edit's image (composited on white) and mask at the model's resolution. */
function prepareEdit(edit: PostedEdit, size: number): { image: Uint8ClampedArray; mask: object } {
  const { image, mask } = edit;
  const [source, width, height] =
    'data' in image ? [drawable(new Uint8ClampedArray(image.data), image.width, image.height), image.width, image.height] : [image, image.width, image.height];
  const pixels = squareAt(source, width, height, size, 'white');
  if ('box' in mask) return { image: pixels, mask };
  // The mask as grey levels on black, resized like the image, read from its red channel.
  const grey = new Uint8ClampedArray(mask.width * mask.height * 4);
  mask.alpha.forEach((a, i) => grey.set([a, a, a, 255], i * 4));
  const resized = squareAt(drawable(grey, mask.width, mask.height), mask.width, mask.height, size, 'black');
  return { image: pixels, mask: { pixels: resized.filter((_, i) => i % 4 === 0) } };
}

/** The error of every generation once the WebGPU device is lost. */
function deviceLost(reason: string): Error {
  return coded('E_BACKEND', `the WebGPU device was lost (${reason}); this engine cannot generate any more: create a new one`);
}

/** How long a generation on WebGPU that failed in the backend waits to hear whether the
 * device was lost (the failed read can come before the browser's lost event), in ms. */
const LOST_GRACE_MS = 250;

/** A generation's promise, ended at once with {@link deviceLost} if the device goes. */
function unlessDeviceLost(running: Promise<void>): Promise<void> {
  const watch = device;
  if (!watch) return running;
  return new Promise<void>((resolve, reject) => {
    const stop = watch.onLost((reason) => reject(deviceLost(reason)));
    running
      .then(resolve, async (error: unknown) => {
        const reason = codeOf(error) === 'E_BACKEND' ? await watch.lostWithin(LOST_GRACE_MS) : null;
        reject(reason === null ? error : deviceLost(reason));
      })
      .finally(stop);
  });
}

async function generate(id: number, options: object, edit: PostedEdit | undefined): Promise<void> {
  if (!engine) throw coded('E_DISPOSED', 'the engine is not ready');
  if (device?.reason) throw deviceLost(device.reason);
  if (aborted.has(id)) throw coded('E_ABORTED', 'generation aborted');
  const onFrame = (frame: Frame | (Omit<Frame, 'pixels'> & { pixels: null })) => {
    if (frame.pixels) {
      const transfer: Transferable[] = [frame.pixels.buffer];
      if (frame.tokens) transfer.push(frame.tokens.buffer);
      if (frame.pass) transfer.push(frame.pass.masked.buffer);
      post({ type: 'frame', id, frame: frame as Frame }, transfer);
    }
    return checkpoint(id);
  };
  if (edit) {
    const size = (engine.info as EngineInfo).imageSize;
    await unlessDeviceLost(engine.edit({ ...options, ...prepareEdit(edit, size) }, onFrame));
  } else {
    await unlessDeviceLost(engine.generate(options, onFrame));
  }
}

function memoryStats(): { wasmBytes: number; jsHeapBytes: number | null } {
  const heap = (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory;
  return { wasmBytes: glue?.wasmMemoryBytes() ?? 0, jsHeapBytes: heap ? heap.usedJSHeapSize : null };
}

scope.onmessage = (event: MessageEvent<Request>) => {
  const request = event.data;
  switch (request.type) {
    case 'init':
      load(request.model, request.sha256, request.backend, request.threads).catch((error: unknown) => fail(null, error));
      break;
    case 'generate': {
      const { id, options, edit } = request;
      pending.add(id);
      queue = queue
        .then(() =>
          generate(id, options, edit).then(
            () => post({ type: 'done', id }),
            (error: unknown) => fail(id, error),
          ),
        )
        .finally(() => {
          pending.delete(id);
          aborted.delete(id);
        });
      break;
    }
    case 'abort':
      if (pending.has(request.id)) aborted.add(request.id);
      break;
    case 'memory': {
      const { id } = request;
      // After the generations queued before it, so the numbers include their work.
      queue = queue.then(() => post({ type: 'memory', id, stats: memoryStats() }));
      break;
    }
    case 'lose-device':
      device?.destroy();
      break;
    case 'dispose':
      for (const id of pending) aborted.add(id);
      queue.finally(() => {
        engine?.free();
        engine = null;
        post({ type: 'disposed' });
        scope.close();
      });
      break;
  }
};
