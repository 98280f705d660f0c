// A thread of the threaded CPU engine: instantiates the threaded wasm build on the engine's
// shared memory and runs one rayon thread until the engine ends. If the thread traps (a
// panic aborts in this build), it tells the page through its port, because the engine
// worker, blocked waiting on the pool, could not hear it.

import { initSync, runPoolWorker } from './wasm-threads/nextscale_wasm.js';
import type { PoolStart } from './protocol.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;

scope.onmessage = (event: MessageEvent<PoolStart>) => {
  const { module, memory, receiver, crashPort } = event.data;
  try {
    initSync({ module, memory });
    scope.postMessage({ type: 'pool-ready' });
    runPoolWorker(receiver);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    crashPort.postMessage({ type: 'pool-crashed', message });
    scope.postMessage({ type: 'pool-crashed', message });
  }
};
