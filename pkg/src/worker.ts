// The engine worker: loads the wasm engine and the model, runs one generation at a time,
// and posts frames with their pixels transferred.

import init, { Engine as WasmEngine } from './wasm/nextscale_wasm.js';
import { codeOf, messageOf } from './errors.js';
import type { Reply, Request } from './protocol.js';
import type { EngineInfo, Frame } from './types.js';

const CACHE_NAME = 'nextscale-models-v1';

const scope = self as unknown as DedicatedWorkerGlobalScope;
let engine: WasmEngine | null = null;
let queue: Promise<void> = Promise.resolve();
const pending = new Set<number>();
const aborted = new Set<number>();

function post(reply: Reply, transfer: Transferable[] = []): void {
  scope.postMessage(reply, transfer);
}

function fail(id: number | null, error: unknown): void {
  post({ type: 'error', id, code: codeOf(error), message: messageOf(error) });
}

/** Fetches the model with progress, from the Cache API when it is there. */
async function download(url: string): Promise<ArrayBuffer> {
  const cache = typeof caches === 'undefined' ? null : await caches.open(CACHE_NAME).catch(() => null);
  const hit = await cache?.match(url);
  if (hit) {
    const bytes = await hit.arrayBuffer();
    post({ type: 'progress', loaded: bytes.byteLength, total: bytes.byteLength, cached: true });
    return bytes;
  }
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw Object.assign(new Error(`cannot fetch ${url}: ${messageOf(error)}`), { code: 'E_NETWORK' });
  }
  if (!response.ok) {
    throw Object.assign(new Error(`cannot fetch ${url}: HTTP ${response.status}`), { code: 'E_NETWORK' });
  }
  const header = Number(response.headers.get('content-length'));
  const total = Number.isFinite(header) && header > 0 ? header : null;
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  post({ type: 'progress', loaded, total, cached: false });
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      post({ type: 'progress', loaded, total, cached: false });
    }
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  // A cache failure (quota, opaque origin) only costs the next visit a download.
  await cache?.put(url, new Response(bytes.slice())).catch(() => undefined);
  return bytes.buffer;
}

async function load(model: string | ArrayBuffer, backend: string): Promise<void> {
  await init();
  const bytes = typeof model === 'string' ? await download(model) : model;
  engine = await WasmEngine.create(new Uint8Array(bytes), backend);
  post({ type: 'ready', info: engine.info as EngineInfo });
}

/** Lets queued messages (an abort) in, then says whether to go on. */
function checkpoint(id: number): Promise<boolean> {
  return new Promise((resolve) => setTimeout(() => resolve(!aborted.has(id)), 0));
}

async function generate(id: number, options: object): Promise<void> {
  if (!engine) throw Object.assign(new Error('the engine is not ready'), { code: 'E_DISPOSED' });
  if (aborted.has(id)) throw Object.assign(new Error('generation aborted'), { code: 'E_ABORTED' });
  await engine.generate(options, (frame: Frame | (Omit<Frame, 'pixels'> & { pixels: null })) => {
    if (frame.pixels) post({ type: 'frame', id, frame: frame as Frame }, [frame.pixels.buffer]);
    return checkpoint(id);
  });
}

scope.onmessage = (event: MessageEvent<Request>) => {
  const request = event.data;
  switch (request.type) {
    case 'init':
      load(request.model, request.backend).catch((error: unknown) => fail(null, error));
      break;
    case 'generate': {
      const { id, options } = request;
      pending.add(id);
      queue = queue.then(() =>
        generate(id, options).then(
          () => post({ type: 'done', id }),
          (error: unknown) => fail(id, error),
        ),
      ).finally(() => {
        pending.delete(id);
        aborted.delete(id);
      });
      break;
    }
    case 'abort':
      if (pending.has(request.id)) aborted.add(request.id);
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
