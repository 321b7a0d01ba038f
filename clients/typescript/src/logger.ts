// Client-side logs (CONTRACT sections 10 and 11): records in the backend's structure, camelCase,
// with the current trace context, batched to the service's intake, bounded in memory, flushed
// with sendBeacon when the page is hidden.

import type { TraceContext } from "./trace.js";

export type Level = "debug" | "info" | "warn" | "error";

export interface LogRecord {
  timestamp: string;
  level: Level;
  message: string;
  traceId?: string;
  spanId?: string;
  jobId?: string;
  projectId?: string;
  event?: string;
  sessionId?: string;
  metadata?: Record<string, unknown>;
  durationMs?: number;
}

export interface LoggerOptions {
  /** The intake, e.g. http://127.0.0.1:8001/client-logs */
  intakeUrl: string;
  sessionId?: string;
  /** Records kept while unsent; more are dropped and counted. Default 500. */
  maxBuffered?: number;
  /** Default 2 s; 0: only explicit flushes. */
  flushIntervalMs?: number;
  /** At most this many per request (the intake takes 100). */
  batchSize?: number;
  fetch?: typeof fetch;
  /** The context of the current user action, read at each record. */
  currentTrace?: () => TraceContext | undefined;
}

export class FrontendLogger {
  private buffer: LogRecord[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Records dropped because the buffer was full. */
  dropped = 0;
  private readonly o: Required<Omit<LoggerOptions, "sessionId" | "fetch" | "currentTrace">> & {
    sessionId: string | undefined;
    currentTrace: (() => TraceContext | undefined) | undefined;
  };
  private readonly doFetch: typeof fetch;
  private readonly onHide = (): void => {
    if ((globalThis as { document?: Document }).document?.visibilityState === "hidden") this.beacon();
  };

  constructor(options: LoggerOptions) {
    this.o = {
      intakeUrl: options.intakeUrl,
      maxBuffered: options.maxBuffered ?? 500,
      flushIntervalMs: options.flushIntervalMs ?? 2000,
      batchSize: Math.min(options.batchSize ?? 100, 100),
      sessionId: options.sessionId,
      currentTrace: options.currentTrace,
    };
    this.doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (this.o.flushIntervalMs > 0) {
      this.timer = setInterval(() => void this.flush(), this.o.flushIntervalMs);
      (this.timer as { unref?: () => void }).unref?.();
    }
    const doc = (globalThis as { document?: Document }).document;
    doc?.addEventListener("visibilitychange", this.onHide);
    (globalThis as { addEventListener?: typeof addEventListener }).addEventListener?.("pagehide", () => this.beacon());
  }

  logUserAction(action: string, element: string, data: Record<string, unknown> = {}, trace?: TraceContext): void {
    this.add("info", `user action: ${action}`, "user_action", { action, element, ...data }, undefined, trace);
  }

  logPerformance(operation: string, ms: number, success: boolean, data: Record<string, unknown> = {}, trace?: TraceContext): void {
    this.add(success ? "info" : "warn", `performance: ${operation}`, "performance", { operation, success, ...data }, ms, trace);
  }

  logError(message: string, error?: unknown, data: Record<string, unknown> = {}, trace?: TraceContext): void {
    const e = error as { name?: string; message?: string; code?: string; traceId?: string } | undefined;
    const meta: Record<string, unknown> = { ...data };
    if (e) {
      meta["errorName"] = e.name;
      meta["errorMessage"] = e.message;
      if (e.code) meta["errorCode"] = e.code;
      if (e.traceId) meta["errorTraceId"] = e.traceId;
    }
    this.add("error", message, "frontend_error", meta, undefined, trace ?? (e?.traceId ? { traceId: e.traceId, spanId: "", flags: 1 } : undefined));
  }

  /** Records waiting to be sent. */
  get pending(): number {
    return this.buffer.length;
  }

  private add(level: Level, message: string, event: string, metadata: Record<string, unknown>,
              durationMs: number | undefined, trace: TraceContext | undefined): void {
    if (this.buffer.length >= this.o.maxBuffered) {
      this.dropped++;
      return;
    }
    const t = trace ?? this.o.currentTrace?.();
    const r: LogRecord = { timestamp: new Date().toISOString(), level, message, event, metadata };
    if (t?.traceId) r.traceId = t.traceId;
    if (t?.spanId) r.spanId = t.spanId;
    if (t?.jobId) r.jobId = t.jobId;
    if (t?.projectId) r.projectId = t.projectId;
    if (this.o.sessionId) r.sessionId = this.o.sessionId;
    if (durationMs !== undefined) r.durationMs = Math.max(0, durationMs);
    this.buffer.push(r);
  }

  /** Sends what is buffered; records of a refused batch are dropped (and counted), never resent
   * forever. */
  async flush(): Promise<void> {
    while (this.buffer.length) {
      const batch = this.buffer.splice(0, this.o.batchSize);
      try {
        const res = await this.doFetch(this.o.intakeUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ logs: batch }),
          keepalive: true,
        });
        if (res.status === 429 || res.status >= 500) {
          this.buffer.unshift(...batch.slice(0, this.o.maxBuffered - this.buffer.length));
          return; /* later */
        }
        if (res.status >= 400) this.dropped += batch.length;
      } catch {
        this.buffer.unshift(...batch.slice(0, this.o.maxBuffered - this.buffer.length));
        return;
      }
    }
  }

  /** The page is going away: what is buffered goes with sendBeacon (text/plain, no preflight). */
  beacon(): void {
    const nav = (globalThis as { navigator?: Navigator }).navigator;
    while (this.buffer.length && nav?.sendBeacon) {
      const batch = this.buffer.splice(0, this.o.batchSize);
      if (!nav.sendBeacon(this.o.intakeUrl, JSON.stringify({ logs: batch }))) this.dropped += batch.length;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    (globalThis as { document?: Document }).document?.removeEventListener("visibilitychange", this.onHide);
  }
}
