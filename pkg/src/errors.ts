import type { ErrorCode } from './types.js';

/** Every failure of the package: an `Error` with a stable {@link ErrorCode}. */
export class NextscaleError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'NextscaleError';
    this.code = code;
  }
}

const CODES: readonly string[] = [
  'E_MODEL_FORMAT',
  'E_BAD_REQUEST',
  'E_ABORTED',
  'E_BACKEND',
  'E_WEBGPU_UNAVAILABLE',
  'E_NETWORK',
  'E_DISPOSED',
];

/** The code of an error thrown by the wasm engine, or `E_BACKEND` for anything else. */
export function codeOf(error: unknown): ErrorCode {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CODES.includes(code) ? (code as ErrorCode) : 'E_BACKEND';
}

/** An `Error` with a `code`, the form errors take inside the worker (the wasm engine throws
 * them so too) before they cross to the page as a code and a message. */
export function coded(code: ErrorCode, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
