// A model file's bytes into wasm memory, inside the engine worker: by URL from the Cache API
// when it is there, else from the network while a copy streams into the cache; or from a
// buffer the page transferred. Chunks go straight into the engine's memory with progress;
// when the caller knows the file's SHA-256, the engine hashes its copy (Rust's sha2, in
// wasm memory, so no second copy of the file exists).

import { coded, messageOf } from './errors.js';

type ModelBytes = import('./wasm/nextscale_wasm.js').ModelBytes;

/** Either build's `ModelBytes` class: a buffer in wasm memory for `expected` bytes. */
export type ModelBytesClass = new (expected?: number) => ModelBytes;

/** Where download progress goes. */
export type ProgressSink = (loaded: number, total: number | null, cached: boolean) => void;

const CACHE_NAME = 'nextscale-models-v1';
/** Progress is reported at most this often, in bytes. */
const PROGRESS_STEP = 1 << 20;

/** The bytes of one read, and their SHA-256 when one was asked for. */
interface Read {
  bytes: ModelBytes;
  sha256: string | null;
}

/** A response body (network or Cache API) streamed into wasm memory. */
async function streamInto(
  Bytes: ModelBytesClass,
  response: Response,
  cached: boolean,
  url: string,
  hash: boolean,
  progress: ProgressSink,
): Promise<Read> {
  const header = Number(response.headers.get('content-length'));
  const total = Number.isFinite(header) && header > 0 ? header : null;
  const bytes = new Bytes(total ?? undefined);
  let loaded = 0;
  let reported = 0;
  progress(loaded, total, cached);
  if (!response.body) {
    bytes.free();
    throw coded('E_NETWORK', `${url}: the response has no body`);
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw coded('E_NETWORK', `the download of ${url} broke off after ${loaded} bytes: ${messageOf(error)}`);
      }
      if (chunk.done) break;
      bytes.push(chunk.value);
      loaded += chunk.value.byteLength;
      if (loaded - reported >= PROGRESS_STEP) {
        reported = loaded;
        progress(loaded, total, cached);
      }
    }
  } catch (error) {
    bytes.free();
    await reader.cancel().catch(() => undefined);
    throw error;
  }
  progress(loaded, total, cached);
  return { bytes, sha256: hash ? bytes.sha256() : null };
}

/** One download from the network into wasm memory; a copy streams into `cache` (dropped
 * again if the download fails). `reload` bypasses the browser's HTTP cache. */
async function fromNetwork(
  Bytes: ModelBytesClass,
  url: string,
  cache: Cache | null,
  hash: boolean,
  reload: boolean,
  progress: ProgressSink,
): Promise<Read> {
  const controller = new AbortController();
  let response: Response;
  try {
    response = await fetch(url, { signal: controller.signal, ...(reload ? { cache: 'reload' as const } : {}) });
  } catch (error) {
    throw coded('E_NETWORK', `cannot fetch ${url}: ${messageOf(error)}`);
  }
  if (!response.ok) throw coded('E_NETWORK', `cannot fetch ${url}: HTTP ${response.status}`);
  if (!cache || !response.body) return streamInto(Bytes, response, false, url, hash, progress);
  const [forEngine, forCache] = response.body.tee();
  const headers = new Headers(response.headers);
  // A failed cache write (quota, opaque origin) only costs the next visit a download.
  const stored = cache.put(url, new Response(forCache, { headers })).catch(() => undefined);
  try {
    const read = await streamInto(Bytes, new Response(forEngine, { headers }), false, url, hash, progress);
    await stored;
    return read;
  } catch (error) {
    controller.abort();
    await stored;
    await cache.delete(url).catch(() => false);
    throw error;
  }
}

/**
 * Fetches the model at `url` into wasm memory: from the Cache API when it is there, else
 * from the network while a copy streams into the cache. With `sha256` (64 lowercase hex
 * digits) the bytes are hashed once they are in; a copy that differs, cached or downloaded, is
 * dropped and downloaded again once, and a second difference is an `E_NETWORK` error naming
 * the expected and the actual hash.
 */
export async function fromUrl(Bytes: ModelBytesClass, url: string, sha256: string | null, progress: ProgressSink): Promise<ModelBytes> {
  const cache = typeof caches === 'undefined' ? null : await caches.open(CACHE_NAME).catch(() => null);
  const hit = await cache?.match(url).catch(() => undefined);
  const hash = sha256 !== null;
  let read = hit ? await streamInto(Bytes, hit, true, url, hash, progress) : await fromNetwork(Bytes, url, cache, hash, false, progress);
  if (read.sha256 === sha256) return read.bytes;
  read.bytes.free();
  await cache?.delete(url).catch(() => false);
  // Once more, past the HTTP cache too.
  read = await fromNetwork(Bytes, url, cache, hash, true, progress);
  if (read.sha256 === sha256) return read.bytes;
  read.bytes.free();
  await cache?.delete(url).catch(() => false);
  const history = hit
    ? 'the cached copy differed and was dropped, and a fresh download differs too'
    : 'it was downloaded twice and differed both times';
  throw coded('E_NETWORK', `${url} has SHA-256 ${String(read.sha256)}, not the expected ${String(sha256)}: ${history}`);
}

/** A model the page passed as bytes, copied into wasm memory; with `sha256`, checked first
 * (an `E_MODEL_FORMAT` error naming both hashes when it differs). */
export function fromBuffer(Bytes: ModelBytesClass, buffer: ArrayBuffer, sha256: string | null): ModelBytes {
  const bytes = new Bytes(buffer.byteLength);
  bytes.push(new Uint8Array(buffer));
  if (sha256 !== null) {
    const actual = bytes.sha256();
    if (actual !== sha256) {
      bytes.free();
      throw coded('E_MODEL_FORMAT', `the model bytes have SHA-256 ${actual}, not the expected ${sha256}`);
    }
  }
  return bytes;
}
