// nextscale: image generation in the browser with next-scale prediction (VAR).
// The engine (Rust compiled to wasm, WebGPU or CPU) runs in a module Web Worker; this
// module is its typed front.

import { NextscaleError } from './errors.js';
import type { PostedEdit, Reply, Request } from './protocol.js';
import type { EditOptions, EngineInfo, EngineOptions, Frame, GenerateOptions, MemoryStats } from './types.js';
import { checkEditOptions, checkEngineOptions, checkGenerateOptions } from './validate.js';

export { NextscaleError } from './errors.js';
export { MAX_THREADS } from './validate.js';
export type * from './types.js';

/** Frames of one generation, as they arrive from the worker. */
class FrameStream {
  private readonly frames: Frame[] = [];
  private wake: (() => void) | null = null;
  private ended = false;
  private error: NextscaleError | null = null;

  push(frame: Frame): void {
    this.frames.push(frame);
    this.notify();
  }

  /** Ends the stream after the frames it holds, with `error` if there is one. */
  end(error: NextscaleError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.notify();
  }

  /** Ends the stream at the consumer's next step with `error`, dropping the frames it has
   * not read yet (an abort, a disposal, a crash). */
  fail(error: NextscaleError): void {
    this.frames.length = 0;
    this.ended = true;
    this.error = error;
    this.notify();
  }

  private notify(): void {
    this.wake?.();
    this.wake = null;
  }

  async *iterate(): AsyncGenerator<Frame, void, undefined> {
    for (;;) {
      const frame = this.frames.shift();
      if (frame) {
        yield frame;
      } else if (this.ended) {
        if (this.error) throw this.error;
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }
}

/** A model loaded in a worker, ready to generate. Create it with {@link createEngine}. */
export class Engine {
  /** Backend, adapter, model config and class names. */
  readonly info: EngineInfo;
  private readonly worker: Worker;
  private readonly streams = new Map<number, FrameStream>();
  private readonly memoryWaiters = new Map<number, { resolve: (stats: MemoryStats) => void; reject: (error: NextscaleError) => void }>();
  private nextId = 1;
  private disposed = false;

  /** @internal Use {@link createEngine}. */
  constructor(worker: Worker, info: EngineInfo, crashPorts: MessagePort[]) {
    this.worker = worker;
    this.info = info;
    worker.onmessage = (event: MessageEvent<Reply>) => this.receive(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.failAll(new NextscaleError('E_BACKEND', `engine worker failed: ${event.message}`));
    };
    // A trapped pool thread leaves the engine worker waiting on it forever: end the engine.
    for (const port of crashPorts) {
      port.onmessage = (event: MessageEvent<{ message: string }>) => {
        this.disposed = true;
        worker.terminate();
        this.failAll(new NextscaleError('E_BACKEND', `a CPU thread of the engine failed: ${event.data.message}`));
      };
    }
  }

  /**
   * Generates one image and yields a frame after every scale (the preview the options ask
   * for; with `passEvents`, an HMAR model's passes between too), ending with the final image
   * (`final: true`). One engine runs one generation (or
   * edit) at a time: a call while another runs is queued, and starts when the earlier ones
   * end, in call order. Throws a {@link NextscaleError}: `E_BAD_REQUEST` for bad options
   * (at the call), `E_ABORTED` after `signal` aborts (at the call when it already has),
   * `E_DISPOSED` after {@link Engine.dispose} (at the call) or when it interrupts the
   * generation, `E_BACKEND` when the backend fails (a lost WebGPU device: every later
   * generation too).
   */
  generate(options: GenerateOptions = {}): AsyncGenerator<Frame, void, undefined> {
    return this.start(checkGenerateOptions(options), options.signal, undefined);
  }

  /**
   * Edits an image with no training: keeps its tokens where `mask` says and lets the model
   * generate the rest scale by scale (in-painting, out-painting, or class editing with
   * another `classLabel`), streaming frames exactly as {@link Engine.generate} does. The
   * image is centre-cropped to a square, composited on white and resized to the model's
   * resolution; the box is in fractions of that square. Needs a model file with the VQ-VAE
   * encoder (else `E_BAD_REQUEST`).
   */
  edit(options: EditOptions): AsyncGenerator<Frame, void, undefined> {
    const { posted, edit } = checkEditOptions(options);
    return this.start(posted, options.signal, edit);
  }

  private start(
    posted: Omit<GenerateOptions, 'signal'>,
    signal: AbortSignal | undefined,
    edit: PostedEdit | undefined,
  ): AsyncGenerator<Frame, void, undefined> {
    if (this.disposed) throw new NextscaleError('E_DISPOSED', 'the engine was disposed');
    if (signal?.aborted) throw new NextscaleError('E_ABORTED', 'generation aborted');
    const id = this.nextId++;
    const stream = new FrameStream();
    this.streams.set(id, stream);
    // The worker stops at its next step; the consumer hears nothing more of this id.
    const stop = () => {
      if (this.streams.delete(id)) this.post({ type: 'abort', id });
    };
    const abort = () => {
      stream.fail(new NextscaleError('E_ABORTED', 'generation aborted'));
      stop();
    };
    signal?.addEventListener('abort', abort, { once: true });
    const transfer: Transferable[] = [];
    if (edit) {
      transfer.push('data' in edit.image ? edit.image.data.buffer : edit.image);
      if ('alpha' in edit.mask) transfer.push(edit.mask.alpha.buffer);
    }
    this.worker.postMessage({ type: 'generate', id, options: posted, ...(edit ? { edit } : {}) } satisfies Request, transfer);
    const frames = stream.iterate();
    return (async function* () {
      try {
        yield* frames;
      } finally {
        signal?.removeEventListener('abort', abort);
        // A consumer that stops early (break) aborts the rest of the work.
        stop();
      }
    })();
  }

  /** The memory the engine holds now, after the generations started before this call. */
  memory(): Promise<MemoryStats> {
    if (this.disposed) return Promise.reject(new NextscaleError('E_DISPOSED', 'the engine was disposed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.memoryWaiters.set(id, { resolve, reject });
      this.post({ type: 'memory', id });
    });
  }

  /** Frees the model's memory (GPU included) and ends the worker. A generation still
   * running (or queued) ends at once with `E_DISPOSED`. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.failAll(new NextscaleError('E_DISPOSED', 'the engine was disposed before the request ended'));
    const closed = new Promise<void>((resolve) => {
      this.worker.addEventListener('message', (event: MessageEvent<Reply>) => {
        if (event.data.type === 'disposed') resolve();
      });
      setTimeout(resolve, 5000);
    });
    this.post({ type: 'dispose' });
    await closed;
    this.worker.terminate();
  }

  private post(request: Request): void {
    this.worker.postMessage(request);
  }

  private receive(reply: Reply): void {
    switch (reply.type) {
      case 'frame':
        this.streams.get(reply.id)?.push(reply.frame);
        break;
      case 'done':
        this.streams.get(reply.id)?.end(null);
        this.streams.delete(reply.id);
        break;
      case 'memory':
        this.memoryWaiters.get(reply.id)?.resolve(reply.stats);
        this.memoryWaiters.delete(reply.id);
        break;
      case 'error':
        if (reply.id !== null) {
          this.streams.get(reply.id)?.end(new NextscaleError(reply.code as NextscaleError['code'], reply.message));
          this.streams.delete(reply.id);
        }
        break;
      default:
        break;
    }
  }

  private failAll(error: NextscaleError): void {
    for (const stream of this.streams.values()) stream.fail(error);
    this.streams.clear();
    for (const waiter of this.memoryWaiters.values()) waiter.reject(error);
    this.memoryWaiters.clear();
  }
}

/**
 * Starts an engine worker, downloads the model (with progress, cached in the Cache API) and
 * loads it on `backend` (`auto`: WebGPU when the browser has an adapter, else the CPU).
 */
export function createEngine(options: EngineOptions): Promise<Engine> {
  let checked;
  try {
    checked = checkEngineOptions(options);
  } catch (error) {
    return Promise.reject(error);
  }
  const { backend, threads, sha256 } = checked;
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'nextscale' });
  const model = typeof options.model === 'string' ? new URL(options.model, location.href).href : options.model;
  return new Promise<Engine>((resolve, reject) => {
    const failed = (error: NextscaleError) => {
      worker.terminate();
      reject(error);
    };
    worker.onmessage = (event: MessageEvent<Reply>) => {
      const reply = event.data;
      if (reply.type === 'progress') {
        options.onProgress?.({ loaded: reply.loaded, total: reply.total, cached: reply.cached });
      } else if (reply.type === 'ready') {
        resolve(new Engine(worker, reply.info, reply.crashPorts));
      } else if (reply.type === 'error') {
        failed(new NextscaleError(reply.code as NextscaleError['code'], reply.message));
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      failed(new NextscaleError('E_BACKEND', `engine worker failed to start: ${event.message}`));
    };
    const init: Request = { type: 'init', model, sha256, backend, threads };
    worker.postMessage(init, model instanceof ArrayBuffer ? [model] : []);
  });
}
