// Idempotency keys per operation (CONTRACT section 11). Kept in a Storage (sessionStorage in a
// browser: they survive a reload while the call may be in flight) or in memory (Node).

/** The part of the Web Storage interface the manager needs. */
export interface KeyStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  readonly length: number;
  key(index: number): string | null;
}

/** A Storage in memory, for Node and tests. */
export class MemoryStorage implements KeyStorage {
  private readonly items = new Map<string, string>();
  get length(): number {
    return this.items.size;
  }
  key(i: number): string | null {
    return Array.from(this.items.keys())[i] ?? null;
  }
  getItem(k: string): string | null {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.items.set(k, v);
  }
  removeItem(k: string): void {
    this.items.delete(k);
  }
}

const PREFIX = "o11y.idem.";

function defaultStorage(): KeyStorage {
  const s = (globalThis as { sessionStorage?: KeyStorage }).sessionStorage;
  return s ?? new MemoryStorage();
}

function randomUuid(): string {
  const c = globalThis.crypto as Crypto & { randomUUID?: () => string };
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class IdempotencyManager {
  private readonly storage: KeyStorage;

  constructor(storage?: KeyStorage) {
    this.storage = storage ?? defaultStorage();
  }

  /** A new random key for operation, replacing any it had. */
  createKey(operation: string): string {
    const key = randomUuid();
    this.storage.setItem(PREFIX + operation, key);
    return key;
  }

  /** The operation's key until it is invalidated. */
  getOrCreateKey(operation: string): string {
    return this.storage.getItem(PREFIX + operation) ?? this.createKey(operation);
  }

  /** Forgets a key, named by itself or by its operation; true when one was found. */
  invalidateKey(keyOrOperation: string): boolean {
    if (this.storage.getItem(PREFIX + keyOrOperation) !== null) {
      this.storage.removeItem(PREFIX + keyOrOperation);
      return true;
    }
    for (let i = 0; i < this.storage.length; i++) {
      const name = this.storage.key(i);
      if (name?.startsWith(PREFIX) && this.storage.getItem(name) === keyOrOperation) {
        this.storage.removeItem(name);
        return true;
      }
    }
    return false;
  }

  /** Whether an answer used the key up: a 2xx, or a 4xx other than 400 VALIDATION_FAILED,
   * 409 IDEMPOTENCY_KEY_IN_USE and 429. No answer, or a 5xx: the call may still be running. */
  static spent(status: number, code: string): boolean {
    if (status >= 200 && status <= 299) return true;
    if (status < 400 || status > 499) return false;
    if (status === 429) return false;
    if (status === 400 && code === "VALIDATION_FAILED") return false;
    if (status === 409 && code === "IDEMPOTENCY_KEY_IN_USE") return false;
    return true;
  }
}
