// The API client (CONTRACT section 11): trace headers per attempt, typed errors, and retries
// only where repeating is safe, with full jitter, Retry-After and an overall deadline.

import { StandardizedAPIError, type UserMessages } from "./errors.js";
import { IdempotencyManager } from "./idempotency.js";
import { childContext, newTraceContext, traceHeaders, type TraceContext } from "./trace.js";

export interface ApiClientOptions {
  /** http(s)://host[:port][/prefix] */
  baseUrl: string;
  /** One attempt's timeout; default 30 s. */
  timeoutMs?: number;
  /** A whole call with its retries; default 60 s. */
  deadlineMs?: number;
  /** Default 4; 1 turns retries off. */
  maxAttempts?: number;
  /** Full jitter: a wait is random in [0, min(cap, base * 2^n)); defaults 200 ms and 10 s. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  userMessages?: UserMessages;
  /** Another fetch (tests, instrumentation); default globalThis.fetch. */
  fetch?: typeof fetch;
  idempotency?: IdempotencyManager;
  /** Called after every attempt (the logger's performance records use it). */
  onAttempt?: (info: AttemptInfo) => void;
}

export interface AttemptInfo {
  method: string;
  path: string;
  status: number;
  code: string;
  attempt: number;
  durationMs: number;
  span: TraceContext;
}

export interface RequestOptions {
  body?: unknown;
  idempotencyKey?: string;
  /** The user action's context; each attempt is a child span of it. Default: a new trace. */
  trace?: TraceContext;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  deadlineMs?: number;
  accept?: string;
}

export interface ApiResponse<T> {
  status: number;
  data: T;
  traceId: string;
  headers: Headers;
  attempts: number;
}

const SAFE = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);
const RETRIED_STATUSES = new Set([429, 502, 503, 504]);

/** Retry-After in milliseconds (seconds or HTTP-date; a past date is 0), or -1. */
export function retryAfterMs(value: string | null, now = Date.now()): number {
  if (!value) return -1;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return Math.min(Number(v), 1e9) * 1000;
  const when = Date.parse(v);
  if (Number.isNaN(when)) return -1;
  return Math.max(0, when - now);
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

export class ApiClient {
  readonly baseUrl: string;
  private readonly o: Required<Omit<ApiClientOptions, "userMessages" | "onAttempt" | "idempotency" | "fetch">>;
  private readonly messages: UserMessages | undefined;
  private readonly doFetch: typeof fetch;
  readonly idempotency: IdempotencyManager;
  private readonly onAttempt: ((info: AttemptInfo) => void) | undefined;

  constructor(options: ApiClientOptions) {
    if (!/^https?:\/\/[^?#\s]+$/.test(options.baseUrl)) throw new TypeError("baseUrl must be an http(s) URL without query");
    this.baseUrl = options.baseUrl.replace(/\/$/, "");
    this.o = {
      baseUrl: this.baseUrl,
      timeoutMs: options.timeoutMs ?? 30_000,
      deadlineMs: options.deadlineMs ?? 60_000,
      maxAttempts: options.maxAttempts ?? 4,
      backoffBaseMs: options.backoffBaseMs ?? 200,
      backoffCapMs: options.backoffCapMs ?? 10_000,
    };
    this.messages = options.userMessages;
    this.doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.idempotency = options.idempotency ?? new IdempotencyManager();
    this.onAttempt = options.onAttempt;
  }

  get<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>("GET", path, opts);
  }
  post<T>(path: string, body: unknown, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>("POST", path, { ...opts, body });
  }
  patch<T>(path: string, body: unknown, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>("PATCH", path, { ...opts, body });
  }
  delete<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>("DELETE", path, opts);
  }

  /** postIdempotent: the operation's key (kept until the answer spends it) on every attempt. */
  async postIdempotent<T>(operation: string, path: string, body: unknown,
                          opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const key = this.idempotency.getOrCreateKey(operation);
    try {
      const r = await this.request<T>("POST", path, { ...opts, body, idempotencyKey: key });
      this.idempotency.invalidateKey(key);
      return r;
    } catch (e) {
      if (e instanceof StandardizedAPIError && IdempotencyManager.spent(e.status, e.code))
        this.idempotency.invalidateKey(key);
      throw e;
    }
  }

  /** One call: attempts until a 2xx, an answer not worth retrying, maxAttempts, or the
   * deadline; throws StandardizedAPIError otherwise. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const parent = opts.trace ?? newTraceContext();
    const repeatable = SAFE.has(method) || ((method === "POST" || method === "PATCH") && !!opts.idempotencyKey);
    const deadline = Date.now() + (opts.deadlineMs ?? this.o.deadlineMs);
    for (let attempt = 1; ; attempt++) {
      const span = childContext(parent);
      const headers: Record<string, string> = {
        Accept: opts.accept ?? "application/json",
        ...traceHeaders(span),
        ...(opts.headers ?? {}),
      };
      if (opts.body !== undefined) headers["Content-Type"] ??= "application/json";
      if (opts.idempotencyKey) headers["Idempotency-Key"] = opts.idempotencyKey;
      const remaining = deadline - Date.now();
      const timeout = AbortSignal.timeout(Math.max(1, Math.min(this.o.timeoutMs, remaining)));
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      const started = performance.now();
      let error: StandardizedAPIError;
      let retryAfter = -1;
      try {
        const res = await this.doFetch(this.baseUrl + path, {
          method,
          headers,
          body: opts.body === undefined ? null : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
          signal,
        });
        const text = await res.text();
        const status = res.status;
        const traceId = res.headers.get("X-Trace-Id") ?? span.traceId;
        if (status >= 200 && status <= 299) {
          this.report(method, path, status, "", attempt, started, span);
          let data: unknown = undefined;
          if (text && (res.headers.get("Content-Type") ?? "").includes("json")) data = JSON.parse(text);
          return { status, data: data as T, traceId, headers: res.headers, attempts: attempt };
        }
        error = StandardizedAPIError.fromAnswer(status, text, res.headers.get("X-Trace-Id"), span.traceId, this.messages);
        retryAfter = retryAfterMs(res.headers.get("Retry-After"));
      } catch (e) {
        if (opts.signal?.aborted) throw e; /* the caller's own abort is not ours to type */
        const timedOut = timeout.aborted;
        error = StandardizedAPIError.network(timedOut ? "TIMEOUT" : "NETWORK_ERROR",
          timedOut ? "The request timed out" : String((e as Error)?.message ?? e), span.traceId, this.messages);
      }
      this.report(method, path, error.status, error.code, attempt, started, span);
      const retried = error.status === 0 || RETRIED_STATUSES.has(error.status) ||
        (error.status === 409 && error.code === "IDEMPOTENCY_KEY_IN_USE");
      if (!repeatable || !retried || attempt >= this.o.maxAttempts) throw error;
      const ceiling = Math.min(this.o.backoffCapMs, this.o.backoffBaseMs * 2 ** (attempt - 1));
      const wait = Math.max(Math.random() * ceiling, retryAfter);
      /* no attempt starts that the deadline cannot finish */
      if (Date.now() + wait + 50 > deadline) throw error;
      await sleep(wait, opts.signal);
    }
  }

  private report(method: string, path: string, status: number, code: string, attempt: number,
                 started: number, span: TraceContext): void {
    this.onAttempt?.({ method, path, status, code, attempt, durationMs: performance.now() - started, span });
  }
}
