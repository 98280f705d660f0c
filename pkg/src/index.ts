// nextscale: image generation in the browser with next-scale prediction (VAR).
// The engine (Rust compiled to wasm, WebGPU or CPU) runs in a module Web Worker; this
// module is its typed front.

import { NextscaleError } from './errors.js';
import type { Reply, Request } from './protocol.js';
import type { EngineInfo, EngineOptions, Frame, GenerateOptions } from './types.js';
import { checkEngineOptions, checkGenerateOptions } from './validate.js';

export { NextscaleError } from './errors.js';
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

  end(error: NextscaleError | null): void {
    if (this.ended) return;
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
  private nextId = 1;
  private disposed = false;

  /** @internal Use {@link createEngine}. */
  constructor(worker: Worker, info: EngineInfo) {
    this.worker = worker;
    this.info = info;
    worker.onmessage = (event: MessageEvent<Reply>) => this.receive(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.failAll(new NextscaleError('E_BACKEND', `engine worker failed: ${event.message}`));
    };
  }

  /**
   * Generates one image and yields a frame after every scale (the preview the options ask
   * for), ending with the final image (`final: true`). Throws a {@link NextscaleError}:
   * `E_BAD_REQUEST` for bad options, `E_ABORTED` after `signal` aborts.
   */
  generate(options: GenerateOptions = {}): AsyncGenerator<Frame, void, undefined> {
    const posted = checkGenerateOptions(options);
    if (this.disposed) throw new NextscaleError('E_DISPOSED', 'the engine was disposed');
    const { signal } = options;
    if (signal?.aborted) throw new NextscaleError('E_ABORTED', 'generation aborted');
    const id = this.nextId++;
    const stream = new FrameStream();
    this.streams.set(id, stream);
    const abort = () => this.post({ type: 'abort', id });
    signal?.addEventListener('abort', abort, { once: true });
    this.post({ type: 'generate', id, options: posted });
    const frames = stream.iterate();
    const streams = this.streams;
    return (async function* () {
      let finished = false;
      try {
        yield* frames;
        finished = true;
      } finally {
        signal?.removeEventListener('abort', abort);
        // A consumer that stops early (break) aborts the rest of the work.
        if (!finished && streams.has(id)) abort();
      }
    })();
  }

  /** Frees the model's memory (GPU included) and ends the worker. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const closed = new Promise<void>((resolve) => {
      this.worker.addEventListener('message', (event: MessageEvent<Reply>) => {
        if (event.data.type === 'disposed') resolve();
      });
      setTimeout(resolve, 5000);
    });
    this.post({ type: 'dispose' });
    await closed;
    this.worker.terminate();
    this.failAll(new NextscaleError('E_DISPOSED', 'the engine was disposed'));
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
    for (const stream of this.streams.values()) stream.end(error);
    this.streams.clear();
  }
}

/**
 * Starts an engine worker, downloads the model (with progress, cached in the Cache API) and
 * loads it on `backend` (`auto`: WebGPU when the browser has an adapter, else the CPU).
 */
export function createEngine(options: EngineOptions): Promise<Engine> {
  let backend;
  try {
    backend = checkEngineOptions(options);
  } catch (error) {
    return Promise.reject(error);
  }
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
        resolve(new Engine(worker, reply.info));
      } else if (reply.type === 'error') {
        failed(new NextscaleError(reply.code as NextscaleError['code'], reply.message));
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      failed(new NextscaleError('E_BACKEND', `engine worker failed to start: ${event.message}`));
    };
    const init: Request = { type: 'init', model, backend };
    worker.postMessage(init, model instanceof ArrayBuffer ? [model] : []);
  });
}
