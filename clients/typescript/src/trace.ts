// Trace context per user action (CONTRACT sections 2 and 11): ids from crypto.getRandomValues,
// a traceparent per attempt whose trace-id is the same 128 bits as the X-Trace-Id when that is a
// UUID, as the service derives it.

export interface TraceContext {
  traceId: string;
  /** This unit of work's span: 16 lowercase hex digits. */
  spanId: string;
  parentSpanId?: string | undefined;
  jobId?: string | undefined;
  projectId?: string | undefined;
  /** W3C trace-flags; 1: sampled. */
  flags: number;
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return b;
}

/** A UUIDv7 (RFC 9562): milliseconds since the epoch, then random bits. */
export function newTraceId(): string {
  const b = randomBytes(16);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x70;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function newSpanId(): string {
  for (;;) {
    const s = hex(randomBytes(8));
    if (s !== "0000000000000000") return s;
  }
}

/** A context for a new user action: a new trace. */
export function newTraceContext(): TraceContext {
  return { traceId: newTraceId(), spanId: newSpanId(), flags: 1 };
}

/** A span under parent: same trace, job and project; a new span id; parent's span as parent. */
export function childContext(parent: TraceContext): TraceContext {
  return { ...parent, spanId: newSpanId(), parentSpanId: parent.spanId };
}

/** The 32 hex digits of the W3C trace-id for a trace id: its own bits for a UUID or 32 hex
 * digits; otherwise a fresh one (the C kit hashes instead; either is valid W3C). */
export function w3cTraceId(traceId: string): string {
  const compact = traceId.replace(/-/g, "").toLowerCase();
  if (/^[0-9a-f]{32}$/.test(compact) && !/^0{32}$/.test(compact)) return compact;
  return hex(randomBytes(16));
}

export function traceparent(ctx: TraceContext): string {
  return `00-${w3cTraceId(ctx.traceId)}-${ctx.spanId}-${(ctx.flags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The headers of one attempt, made in span. */
export function traceHeaders(span: TraceContext): Record<string, string> {
  const h: Record<string, string> = { "X-Trace-Id": span.traceId, traceparent: traceparent(span) };
  if (span.jobId) h["X-Job-Id"] = span.jobId;
  if (span.projectId) h["X-Project-Id"] = span.projectId;
  return h;
}

export function traceIdValid(s: string): boolean {
  return /^[A-Za-z0-9._:-]{1,128}$/.test(s);
}
