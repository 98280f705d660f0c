// The WebGPU device an engine runs on, watched from the engine worker. wgpu creates the
// device inside wasm, so the worker catches it as the engine starts: `requestDevice` on
// `GPUAdapter.prototype` is wrapped in this worker's own global scope for that call only.
// The watch says when the device is lost (a driver reset, the GPU gone, `destroy()`), so a
// generation on a lost device ends with an error instead of waiting, and later ones are
// refused; and it lets the tests destroy the device (the worker's `lose-device` message).

/** The little of `GPUDevice` the watch needs (TypeScript's lib has no WebGPU types). */
interface DeviceLike {
  lost: Promise<{ reason?: string; message?: string }>;
  destroy(): void;
}

interface AdapterPrototype {
  requestDevice(this: unknown, ...args: unknown[]): Promise<DeviceLike>;
}

/** The device an engine asked for, if any, and whether it has been lost. */
export class DeviceWatch {
  private device: DeviceLike | null = null;
  private lostReason: string | null = null;
  private readonly listeners = new Set<(reason: string) => void>();

  /** Why the device was lost, or null while it works (or when there is none). */
  get reason(): string | null {
    return this.lostReason;
  }

  /** Calls `listener` with the reason if the device is lost; returns what stops listening. */
  onLost(listener: (reason: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Why the device was lost, waiting at most `ms` to hear of it; null if it was not. */
  lostWithin(ms: number): Promise<string | null> {
    if (this.lostReason !== null) return Promise.resolve(this.lostReason);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        stop();
        resolve(null);
      }, ms);
      const stop = this.onLost((reason) => {
        clearTimeout(timer);
        stop();
        resolve(reason);
      });
    });
  }

  /** Destroys the device, as a lost GPU would take it away. For tests only. */
  destroy(): void {
    this.device?.destroy();
  }

  private attach(device: DeviceLike): void {
    this.device = device;
    void device.lost.then((info) => {
      const reason = info.message || info.reason || 'no reason given';
      this.lostReason = reason;
      for (const listener of [...this.listeners]) listener(reason);
      this.listeners.clear();
    });
  }

  /** Runs `start`, keeping the device it requests (the first, if several). */
  static async around<T>(start: () => Promise<T>): Promise<{ result: T; watch: DeviceWatch }> {
    const watch = new DeviceWatch();
    const adapter = (globalThis as { GPUAdapter?: { prototype: AdapterPrototype } }).GPUAdapter;
    if (!adapter) return { result: await start(), watch };
    const prototype = adapter.prototype;
    const original = prototype.requestDevice;
    prototype.requestDevice = function (this: unknown, ...args: unknown[]) {
      const requested = original.apply(this, args);
      requested.then(
        (device) => {
          if (!watch.device) watch.attach(device);
        },
        () => undefined,
      );
      return requested;
    };
    try {
      return { result: await start(), watch };
    } finally {
      prototype.requestDevice = original;
    }
  }
}
