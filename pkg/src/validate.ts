// Typed validation of the public options, before anything reaches the worker.

import { NextscaleError } from './errors.js';
import type { PostedEdit } from './protocol.js';
import type { Backend, EditOptions, EngineOptions, GenerateOptions, Mode, PreviewMode, RgbaPixels } from './types.js';

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

/** The most threads the CPU backend takes by default. */
export const MAX_THREADS = 16;

/** A SHA-256 in hex: 64 digits, either case. */
const SHA256_HEX = /^[0-9a-f]{64}$/i;

/** Checks {@link EngineOptions} and returns the backend, thread count and expected SHA-256
 * (lowercase, or null) to use. */
export function checkEngineOptions(options: EngineOptions): { backend: Backend; threads: number; sha256: string | null } {
  if (options === null || typeof options !== 'object') throw bad('createEngine needs an options object');
  const { model, onProgress, sha256 } = options;
  if (typeof model !== 'string' && !(model instanceof ArrayBuffer)) {
    throw bad('model must be a URL string or an ArrayBuffer');
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') throw bad('onProgress must be a function');
  if (sha256 !== undefined && (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256))) {
    throw bad(`sha256 must be 64 hex digits; got ${typeof sha256 === 'string' ? JSON.stringify(sha256) : String(sha256)}`);
  }
  const backend = oneOf('backend', options.backend, BACKENDS) ?? 'auto';
  const cores = typeof navigator !== 'undefined' && navigator.hardwareConcurrency > 0 ? navigator.hardwareConcurrency : 1;
  const threads = integer('threads', options.threads, 1) ?? Math.min(cores, MAX_THREADS);
  return { backend, threads, sha256: sha256?.toLowerCase() ?? null };
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
  const schedule: unknown = options.maskSchedule;
  if (schedule !== undefined) {
    const entries = Array.isArray(schedule) ? (schedule as unknown[]) : [];
    const valid = Array.isArray(schedule) && entries.every((e) => Array.isArray(e) && e.every((n) => Number.isSafeInteger(n) && n >= 0));
    if (!valid) throw bad(`maskSchedule must be an array of arrays of integers ≥ 0; got ${JSON.stringify(schedule)}`);
  }
  if (options.passEvents !== undefined && typeof options.passEvents !== 'boolean') {
    throw bad(`passEvents must be a boolean; got ${String(options.passEvents)}`);
  }
  const posted: Omit<GenerateOptions, 'signal'> = { ...options };
  delete (posted as GenerateOptions).signal;
  return posted;
}

function bytesOf(name: string, value: unknown, length: number): Uint8Array | Uint8ClampedArray {
  if (!(value instanceof Uint8Array) && !(value instanceof Uint8ClampedArray)) {
    throw bad(`${name} must be a Uint8Array or Uint8ClampedArray`);
  }
  if (value.length !== length) throw bad(`${name} has ${value.length} bytes; ${length} expected`);
  return value;
}

/** The image of an edit as a copy of its pixels (the caller's buffer is left alone), or its
 * bitmap, with its size. */
function editImage(image: unknown): { posted: RgbaPixels | ImageBitmap; width: number; height: number } {
  if (typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap) {
    return { posted: image, width: image.width, height: image.height };
  }
  if (image === null || typeof image !== 'object') throw bad('edit needs an image: ImageData, ImageBitmap or { data, width, height }');
  const { data, width, height } = image as Partial<RgbaPixels>;
  integer('image.width', width, 1);
  integer('image.height', height, 1);
  const pixels = bytesOf('image.data', data, (width as number) * (height as number) * 4);
  return { posted: { data: new Uint8ClampedArray(pixels), width: width as number, height: height as number }, width: width as number, height: height as number };
}

/** Checks {@link EditOptions}: returns the generate options to post and the edit itself. */
export function checkEditOptions(options: EditOptions): { posted: Omit<GenerateOptions, 'signal'>; edit: PostedEdit } {
  if (options === null || typeof options !== 'object') throw bad('edit needs an options object');
  const { image, mask, ...rest } = options;
  if ('mode' in rest && (rest as GenerateOptions).mode !== 'var') {
    throw bad('only the VAR teacher can edit (mode var); a distilled student has no teacher forcing');
  }
  const posted = checkGenerateOptions(rest);
  const { posted: postedImage, width, height } = editImage(image);
  if (mask === null || typeof mask !== 'object') throw bad('edit needs a mask: { box, mode } or { alpha, width, height }');
  let postedMask: PostedEdit['mask'];
  if ('box' in mask) {
    const { box } = mask;
    if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1)) {
      throw bad('mask.box must be [y0, x0, y1, x1], fractions of the image in [0, 1]');
    }
    const [y0, x0, y1, x1] = box;
    if (!(y0 < y1 && x0 < x1)) throw bad(`mask.box [${box.join(', ')}] must have y0 < y1 and x0 < x1`);
    oneOf('mask.mode', mask.mode, ['inpaint', 'outpaint'] as const);
    if (mask.mode === undefined) throw bad("mask.mode must be 'inpaint' or 'outpaint'");
    postedMask = { box: [y0, x0, y1, x1], mode: mask.mode };
  } else {
    const { alpha } = mask;
    if (mask.width !== width || mask.height !== height) {
      throw bad(`the mask is ${String(mask.width)}×${String(mask.height)}; the image is ${width}×${height}`);
    }
    postedMask = { alpha: new Uint8Array(bytesOf('mask.alpha', alpha, width * height)), width, height };
  }
  return { posted, edit: { image: postedImage, mask: postedMask } };
}
