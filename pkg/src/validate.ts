// Typed validation of the public options, before anything reaches the worker.

import { NextscaleError } from './errors.js';
import type { Backend, EngineOptions, GenerateOptions, Mode, PreviewMode } from './types.js';

const BACKENDS: readonly Backend[] = ['auto', 'webgpu', 'cpu'];
const PREVIEWS: readonly PreviewMode[] = ['none', 'fast', 'full'];
const MODES: readonly Mode[] = ['var', 'dd1', 'dd2', 'parallel'];

function bad(message: string): NextscaleError {
  return new NextscaleError('E_BAD_REQUEST', message);
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw bad(`${name} must be one of ${allowed.join(', ')}; got ${String(value)}`);
  }
  return value as T;
}

function integer(name: string, value: unknown, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw bad(`${name} must be an integer ≥ ${min}; got ${String(value)}`);
  }
  return value;
}

function finite(name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw bad(`${name} must be a number in [${min}, ${max}]; got ${String(value)}`);
  }
  return value;
}

/** Checks {@link EngineOptions} and returns the backend to use. */
export function checkEngineOptions(options: EngineOptions): Backend {
  if (options === null || typeof options !== 'object') throw bad('createEngine needs an options object');
  const { model, onProgress } = options;
  if (typeof model !== 'string' && !(model instanceof ArrayBuffer)) {
    throw bad('model must be a URL string or an ArrayBuffer');
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') throw bad('onProgress must be a function');
  return oneOf('backend', options.backend, BACKENDS) ?? 'auto';
}

/** Checks {@link GenerateOptions} and returns them without the signal, ready to post. */
export function checkGenerateOptions(options: GenerateOptions): Omit<GenerateOptions, 'signal'> {
  if (options === null || typeof options !== 'object') throw bad('generate needs an options object');
  const { classLabel, signal } = options;
  if (classLabel !== undefined && classLabel !== null) integer('classLabel', classLabel, 0);
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw bad('signal must be an AbortSignal');
  integer('seed', options.seed, 0);
  finite('cfg', options.cfg, 0, Number.MAX_VALUE);
  integer('topK', options.topK, 0);
  finite('topP', options.topP, 0, 1);
  oneOf('preview', options.preview, PREVIEWS);
  oneOf('mode', options.mode, MODES);
  const posted: Omit<GenerateOptions, 'signal'> = { ...options };
  delete (posted as GenerateOptions).signal;
  return posted;
}
