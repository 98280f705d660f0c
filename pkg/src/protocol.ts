// Messages between the Engine (page) and the engine worker. Internal to the package.

import type { Backend, EngineInfo, Frame, GenerateOptions } from './types.js';

/** Page → worker. */
export type Request =
  | { type: 'init'; model: string | ArrayBuffer; backend: Backend }
  | { type: 'generate'; id: number; options: Omit<GenerateOptions, 'signal'> }
  | { type: 'abort'; id: number }
  | { type: 'dispose' };

/** Worker → page. */
export type Reply =
  | { type: 'progress'; loaded: number; total: number | null; cached: boolean }
  | { type: 'ready'; info: EngineInfo }
  | { type: 'frame'; id: number; frame: Frame }
  | { type: 'done'; id: number }
  | { type: 'error'; id: number | null; code: string; message: string }
  | { type: 'disposed' };
