// Public types of the nextscale package.

/**
 * Where the model runs: `auto` takes WebGPU when the browser has a hardware adapter, else the
 * CPU (a software fallback adapter is slower than the CPU backend); `webgpu` takes any adapter.
 */
export type Backend = 'auto' | 'webgpu' | 'cpu';

/** What each scale's frame shows: nothing, the nearly free linear preview, or a full decode. */
export type PreviewMode = 'none' | 'fast' | 'full';

/**
 * Sampling mode: the VAR teacher (a frame per scale), a Distilled-Decoding student in one
 * or two steps (a frame per step; needs a model file with a student), or the naive
 * one-pass baseline that samples every scale's tokens independently.
 */
export type Mode = 'var' | 'dd1' | 'dd2' | 'parallel';

/**
 * Stable error codes, shared with the Rust engine:
 * - `E_MODEL_FORMAT`: the model file is not a nextscale model (bad header, no config, a
 *   missing or misshapen tensor, cut short), or model bytes differ from `sha256`;
 * - `E_BAD_REQUEST`: an option is of the wrong type or out of range, or the model cannot do
 *   what was asked (a class it lacks, a mode without a student, an edit without an encoder);
 * - `E_ABORTED`: the generation's `signal` aborted;
 * - `E_BACKEND`: the backend failed: a model too large for wasm32's memory, a lost WebGPU
 *   device, a crashed worker or thread;
 * - `E_WEBGPU_UNAVAILABLE`: `backend: 'webgpu'` and no adapter or device;
 * - `E_NETWORK`: the model URL cannot be fetched (HTTP error, broken connection), or its
 *   bytes differ from `sha256` twice;
 * - `E_DISPOSED`: the engine was disposed.
 */
export type ErrorCode =
  | 'E_MODEL_FORMAT'
  | 'E_BAD_REQUEST'
  | 'E_ABORTED'
  | 'E_BACKEND'
  | 'E_WEBGPU_UNAVAILABLE'
  | 'E_NETWORK'
  | 'E_DISPOSED';

/** Model download progress. `total` is null when the server does not say. */
export interface Progress {
  loaded: number;
  total: number | null;
  /** True when the bytes came from the Cache API. */
  cached: boolean;
}

/** Options of {@link createEngine}. */
export interface EngineOptions {
  /** URL of a `.safetensors` model file, or its bytes. */
  model: string | ArrayBuffer;
  /** Default `auto`. */
  backend?: Backend;
  /**
   * Threads of the CPU backend (an integer ≥ 1). Default: `navigator.hardwareConcurrency`,
   * at most 16 (`MAX_THREADS`). More than one needs a cross-origin isolated page (COOP
   * `same-origin` and COEP `require-corp`); elsewhere the engine runs on one thread and
   * `info.reason` says why.
   */
  threads?: number;
  /** Called as the model downloads. */
  onProgress?: (progress: Progress) => void;
  /**
   * The model file's SHA-256, 64 hex digits. The bytes are hashed as they stream in (from
   * the network or the Cache API, without a second copy); a copy that differs is dropped
   * and downloaded again once, then the engine fails with `E_NETWORK` naming the expected
   * and actual hash. Model bytes given as an `ArrayBuffer` that differ: `E_MODEL_FORMAT`.
   */
  sha256?: string;
}

/** The WebGPU adapter as the browser describes it. */
export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
}

/** What an engine runs on and what its model offers. */
export interface EngineInfo {
  backend: 'webgpu' | 'cpu';
  /** Why this backend (the adapter, or why WebGPU was not used) and, on the CPU, why this
   * many threads. */
  reason: string;
  /** Threads the CPU backend runs on (1 on WebGPU). */
  threads: number;
  adapter: AdapterInfo | null;
  /** The model config as stored in the file (official VAR hyper-parameters and metadata). */
  config: Record<string, unknown>;
  /** The next-scale family: VAR, or HMAR (each scale attends within itself, then
   * refinement passes re-predict its least confident tokens). */
  family: 'var' | 'hmar';
  /** HMAR: the default {@link GenerateOptions.maskSchedule}; `null` for VAR. */
  maskSchedule: number[][] | null;
  classNames: string[];
  /** Number of scales, i.e. frames of a `var` generation (other modes: one per step). */
  scales: number;
  imageSize: number;
  modes: Mode[];
  /** What `generate` uses when its options leave cfg, top-k or top-p out. */
  sampling: SamplingDefaults;
}

/** The default sampling of a model: its file's recommendation, else the official VAR one. */
export interface SamplingDefaults {
  cfg: number;
  topK: number;
  topP: number;
  /** True when the model file recommends these (tuned with `nextscale tune-sampling`). */
  fromModel: boolean;
}

/** Options of {@link Engine.generate}. Absent fields take the defaults below; absent cfg,
 * top-k and top-p take the model's default sampling ({@link EngineInfo.sampling}). */
export interface GenerateOptions {
  /** Class label in `0..classNames.length`; `null` or absent for unconditional. */
  classLabel?: number | null;
  /** Seed of the sampler (a safe integer ≥ 0). Default 0. */
  seed?: number;
  /** Classifier-free guidance strength (≥ 0). Default: the model's, else 1.5. */
  cfg?: number;
  /** Keep the k most likely tokens, at most the model's V (0 keeps all). Default: the
   * model's, else 900 capped at V. */
  topK?: number;
  /** Nucleus mass in [0, 1]. Default: the model's, else 0.96. */
  topP?: number;
  /** Default `fast`. */
  preview?: PreviewMode;
  /** Default `var`. */
  mode?: Mode;
  /** HMAR models only: per scale, how many tokens the next-scale pass fixes, then how many
   * each refinement pass fixes (each entry sums to the scale's tokens, the first is `[1]`).
   * Default: the model's ({@link EngineInfo.maskSchedule}). */
  maskSchedule?: number[][];
  /** HMAR models only: also a frame after every pass that leaves tokens of its scale masked
   * for the next (see {@link Frame.pass}). Default false. */
  passEvents?: boolean;
  /** Aborts the generation; the iterator then throws an `E_ABORTED` error. */
  signal?: AbortSignal;
}

/** RGBA pixels of any size, row-major (`width·height·4` bytes). */
export interface RgbaPixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/** The image an edit starts from: it is centre-cropped to a square, composited on white and
 * resized to the model's resolution, and boxes and masks refer to that square. */
export type EditImage = ImageData | ImageBitmap | RgbaPixels;

/**
 * What an edit keeps. A box in fractions of the (square) image, `[y0, x0, y1, x1]`, that
 * is generated (`inpaint`) or kept while everything around it is generated (`outpaint`);
 * or a per-pixel mask the size of the image, one byte per pixel, 128 and above generated.
 * Class editing is in-painting with another `classLabel`.
 */
export type EditMask =
  | { box: [number, number, number, number]; mode: 'inpaint' | 'outpaint' }
  | { alpha: Uint8Array | Uint8ClampedArray; width: number; height: number };

/** Options of {@link Engine.edit}: the image, the mask and the sampling of the rest (the VAR
 * teacher only; a distilled student cannot edit). */
export interface EditOptions extends Omit<GenerateOptions, 'mode'> {
  image: EditImage;
  mask: EditMask;
}

/** Memory the engine holds, for monitoring (see {@link Engine.memory}). */
export interface MemoryStats {
  /** The wasm memory, in bytes: model weights (on the CPU), caches and buffers. It grows as
   * needed and never shrinks. */
  wasmBytes: number;
  /** The engine worker's JS heap in use, in bytes, where the worker has `performance.memory`;
   * null elsewhere (Chromium 156 gives it to pages only, not to workers). */
  jsHeapBytes: number | null;
}

/** Per-stage wall time of a finished generation, in milliseconds. */
export interface Timings {
  scaleMs: number[];
  previewMs: number[];
  decodeMs: number;
  totalMs: number;
}

/** One image as it sharpens: a preview after each scale, then the final image. */
export interface Frame {
  /** 1-based scale index (step index in the `dd1`, `dd2` and `parallel` modes). */
  scale: number;
  scales: number;
  width: number;
  height: number;
  /** RGBA, `width·height·4` bytes, transferred from the worker (not copied). */
  pixels: Uint8ClampedArray<ArrayBuffer>;
  /**
   * The token indices this step chose, row-major: the scale's `pn × pn` map in `var` mode
   * (the final frame carries the last scale's), the whole sequence of every scale in the
   * one-pass modes. The same seed gives the same tokens on every backend.
   */
  tokens: Uint32Array<ArrayBuffer> | null;
  /** True for the final full-resolution image (`scale === scales`). */
  final: boolean;
  /** Milliseconds since the generation started. */
  elapsedMs: number;
  /** Present on the final frame. */
  timings?: Timings;
  /** Present on a frame between the passes of an HMAR scale (with
   * {@link GenerateOptions.passEvents}): `scale` is the scale in progress and `tokens` its
   * tokens so far. */
  pass?: PassInfo;
}

/** Where an HMAR scale stands between its passes. */
export interface PassInfo {
  /** The pass just done: 0 is the next-scale pass, then the refinement passes. */
  index: number;
  /** The scale's passes (its mask schedule entry's length); the last one ends in the
   * scale's own frame. */
  of: number;
  /** Raster positions within the scale's `pn × pn` map that the next pass re-predicts,
   * least confident first. */
  masked: Uint32Array<ArrayBuffer>;
}
