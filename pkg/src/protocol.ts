// Messages between the Engine (page), the engine worker and its pool workers. Internal to
// the package.

import type { Backend, EditMask, EngineInfo, Frame, GenerateOptions, MemoryStats, RgbaPixels } from './types.js';

/** An edit as posted: the image as pixels or a bitmap, and the mask. */
export interface PostedEdit {
  image: RgbaPixels | ImageBitmap;
  mask: EditMask;
}

/** Page → worker. */
export type Request =
  | { type: 'init'; model: string | ArrayBuffer; sha256: string | null; backend: Backend; threads: number }
  | { type: 'generate'; id: number; options: Omit<GenerateOptions, 'signal'>; edit?: PostedEdit }
  | { type: 'abort'; id: number }
  | { type: 'memory'; id: number }
  | { type: 'dispose' }
  /** Test only (tests/browser/device-loss.test.mjs): destroys the engine's WebGPU device, as
   * a GPU reset would lose it. No public API posts it. */
  | { type: 'lose-device' };

/** Worker → page. */
export type Reply =
  | { type: 'progress'; loaded: number; total: number | null; cached: boolean }
  | { type: 'ready'; info: EngineInfo; crashPorts: MessagePort[] }
  | { type: 'frame'; id: number; frame: Frame }
  | { type: 'done'; id: number }
  | { type: 'memory'; id: number; stats: MemoryStats }
  | { type: 'error'; id: number | null; code: string; message: string }
  | { type: 'disposed' };

/** Engine worker → pool worker: what it needs to run one thread of the threaded build. */
export interface PoolStart {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Address of the pool's thread receiver in wasm memory. */
  receiver: number;
  /** Where a crash is reported: the page, which can end the engine. */
  crashPort: MessagePort;
}

/** Pool worker → engine worker (and, for a crash, → page through its port). */
export type PoolReply = { type: 'pool-ready' } | { type: 'pool-crashed'; message: string };
