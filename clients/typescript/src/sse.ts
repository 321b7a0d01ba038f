// Server-Sent Events on fetch streaming (CONTRACT section 11): EventSource cannot send the trace
// headers, so this follows the stream itself: Last-Event-ID resume after the server's retry:,
// silence past twice the heartbeat as a drop, an id already delivered skipped.

import { StandardizedAPIError, type UserMessages } from "./errors.js";
import { childContext, newTraceContext, traceHeaders, type TraceContext } from "./trace.js";

export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

export interface FollowOptions {
  onEvent: (ev: SseEvent) => void;
  lastEventId?: string;
  finalEvents?: readonly string[];
  /** The server's heartbeat interval; default 15 s. */
  heartbeatMs?: number;
  /** Reconnects in a row without a new event; default 10. */
  maxReconnects?: number;
  trace?: TraceContext;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  userMessages?: UserMessages;
  fetch?: typeof fetch;
  /** Called on every (re)connection, for tests and logs. */
  onConnect?: (attempt: number, lastEventId: string) => void;
}

/** The event stream format, fed text as it arrives. */
export class SseParser {
  private buf = "";
  private data: string[] = [];
  private type = "";
  private pendingId: string | undefined;
  lastId = "";
  retryMs = -1;

  constructor(private readonly dispatch: (ev: SseEvent, ownId: boolean) => boolean) {}

  /** Feeds text; false when dispatch asked to stop. */
  feed(text: string): boolean {
    this.buf += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      /* a CR at the very end may be the first half of CRLF: wait for more */
      if (m[0] === "\r" && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      if (!this.line(line)) return false;
    }
    if (this.buf.length > 1 << 20) throw new Error("An event stream line was longer than 1 MiB");
    return true;
  }

  /** Forgets the partial line and event (a new connection). */
  restart(): void {
    this.buf = "";
    this.data = [];
    this.type = "";
    this.pendingId = undefined;
  }

  private line(l: string): boolean {
    if (l === "") {
      const ownId = this.pendingId !== undefined;
      if (ownId) this.lastId = this.pendingId ?? "";
      this.pendingId = undefined;
      if (this.data.length === 0) {
        this.type = "";
        return true;
      }
      const ev = { id: this.lastId, event: this.type || "message", data: this.data.join("\n") };
      this.data = [];
      this.type = "";
      return this.dispatch(ev, ownId);
    }
    if (l.startsWith(":")) return true;
    const colon = l.indexOf(":");
    const name = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? "" : l.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.type = value;
    else if (name === "id" && !value.includes("\0")) this.pendingId = value;
    else if (name === "retry" && /^[0-9]+$/.test(value)) this.retryMs = Number(value);
    return true;
  }
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

/** Follows url until a final event (resolves) or the stream cannot be resumed (rejects with a
 * StandardizedAPIError). Each event is delivered once, in order. */
export async function followEvents(url: string, opts: FollowOptions): Promise<void> {
  const finals = opts.finalEvents ?? ["completed", "failed", "cancelled"];
  const heartbeat = opts.heartbeatMs ?? 15_000;
  const maxReconnects = opts.maxReconnects ?? 10;
  const parent = opts.trace ?? newTraceContext();
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  let lastNumeric = opts.lastEventId && /^[0-9]+$/.test(opts.lastEventId) ? Number(opts.lastEventId) : -1;
  let finished = false;
  let delivered = 0;
  const parser = new SseParser((ev, ownId) => {
    if (ownId && /^[0-9]+$/.test(ev.id)) {
      const n = Number(ev.id);
      if (n <= lastNumeric) return true; /* already delivered */
      lastNumeric = n;
    }
    delivered++;
    opts.onEvent(ev);
    if (finals.includes(ev.event)) {
      finished = true;
      return false;
    }
    return true;
  });
  parser.lastId = opts.lastEventId ?? "";
  let failures = 0;
  for (let attempt = 1; ; attempt++) {
    const span = childContext(parent);
    const before = delivered;
    const abort = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, abort.signal]) : abort.signal;
    let silence: ReturnType<typeof setTimeout> | undefined;
    const arm = (): void => {
      if (silence) clearTimeout(silence);
      silence = setTimeout(() => abort.abort(new Error("heartbeat")), 2 * heartbeat);
    };
    let error: StandardizedAPIError | undefined;
    let retryAfter = -1;
    parser.restart();
    opts.onConnect?.(attempt, parser.lastId);
    try {
      arm();
      const headers: Record<string, string> = { Accept: "text/event-stream", ...traceHeaders(span), ...(opts.headers ?? {}) };
      if (parser.lastId) headers["Last-Event-ID"] = parser.lastId;
      const res = await doFetch(url, { headers, signal });
      const type = res.headers.get("Content-Type") ?? "";
      if (res.status !== 200 || !type.startsWith("text/event-stream")) {
        const text = await res.text();
        error = StandardizedAPIError.fromAnswer(res.status, text, res.headers.get("X-Trace-Id"), span.traceId, opts.userMessages);
        retryAfter = Number(res.headers.get("Retry-After") ?? "-1") * 1000;
      } else if (res.body) {
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          if (!parser.feed(decoder.decode(value, { stream: true }))) {
            await reader.cancel().catch(() => undefined);
            break;
          }
        }
        if (finished) return;
        error = StandardizedAPIError.network("NETWORK_ERROR", "The event stream ended before its final event", span.traceId, opts.userMessages);
      }
    } catch (e) {
      if (finished) return;
      if (opts.signal?.aborted) throw e;
      const why = abort.signal.aborted ? "The event stream went silent past its heartbeat" : String((e as Error)?.message ?? e);
      error = StandardizedAPIError.network("NETWORK_ERROR", why, span.traceId, opts.userMessages);
    } finally {
      if (silence) clearTimeout(silence);
    }
    if (finished) return;
    const err = error ?? StandardizedAPIError.network("NETWORK_ERROR", "The event stream ended", span.traceId, opts.userMessages);
    failures = delivered > before ? 1 : failures + 1;
    const answered = err.status !== 0;
    const retried = !answered || [429, 502, 503, 504].includes(err.status);
    /* a stream without ids cannot resume midway: a reconnect would start it over */
    const resumable = parser.lastId !== "" || delivered === 0;
    if (!retried || !resumable || failures > maxReconnects) throw err;
    let wait = parser.retryMs >= 0 ? parser.retryMs : 1000;
    for (let i = 1; i < failures && wait < 30_000; i++) wait *= 2;
    wait = Math.max(Math.min(wait, 30_000), retryAfter);
    await sleep(wait, opts.signal);
  }
}
