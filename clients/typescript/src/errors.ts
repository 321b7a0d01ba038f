// The typed error of CONTRACT section 11: every failed call becomes one StandardizedAPIError,
// whether the service answered with its envelope, problem details, a proxy's HTML page, or
// nothing at all.

/** Codes of the contract's catalog (section 1) worth retrying, and their sentences for a person. */
const CATALOG: Record<string, { retryable: boolean; userMessage: string }> = {
  VALIDATION_FAILED: { retryable: false, userMessage: "Some of the information is not valid. Check it and try again." },
  IDEMPOTENCY_KEY_INVALID: { retryable: false, userMessage: "The request could not be sent safely. Try again." },
  IDEMPOTENCY_KEY_MISSING: { retryable: false, userMessage: "The request could not be sent safely. Try again." },
  ORIGIN_NOT_ALLOWED: { retryable: false, userMessage: "This application is not allowed to use the service." },
  NOT_FOUND: { retryable: false, userMessage: "What you asked for does not exist." },
  PROJECT_NOT_FOUND: { retryable: false, userMessage: "The project does not exist. It may have been deleted." },
  EPISODE_NOT_FOUND: { retryable: false, userMessage: "The episode does not exist. It may have been deleted." },
  GENERATION_NOT_FOUND: { retryable: false, userMessage: "The generation does not exist." },
  METHOD_NOT_ALLOWED: { retryable: false, userMessage: "This action is not available here." },
  EPISODE_NUMBER_CONFLICT: { retryable: false, userMessage: "An episode with this number already exists in the project. Choose another number." },
  IDEMPOTENCY_KEY_IN_USE: { retryable: true, userMessage: "The same request is still being processed. Wait a moment." },
  PAYLOAD_TOO_LARGE: { retryable: false, userMessage: "What you sent is too large." },
  UNSUPPORTED_MEDIA_TYPE: { retryable: false, userMessage: "The request was sent in a format the service does not accept." },
  IDEMPOTENCY_KEY_REUSED: { retryable: false, userMessage: "This request was already made with different content. Start it again." },
  BUSINESS_RULE_VIOLATION: { retryable: false, userMessage: "This action is not allowed in the current state." },
  RATE_LIMITED: { retryable: true, userMessage: "Too many requests. Wait a moment and try again." },
  INTERNAL_ERROR: { retryable: true, userMessage: "Something went wrong on our side. Try again later." },
  NOT_IMPLEMENTED: { retryable: false, userMessage: "The service does not support this request." },
  SERVICE_UNAVAILABLE: { retryable: true, userMessage: "The service is temporarily unavailable. Try again shortly." },
  EPISODE_SAVE_FAILED: { retryable: true, userMessage: "The episode could not be saved. Try again shortly." },
  GENERATION_QUEUE_FULL: { retryable: true, userMessage: "Too many generations are waiting. Try again in a moment." },
  LLM_UNAVAILABLE: { retryable: true, userMessage: "The script generator is unavailable. Try again later." },
  NETWORK_ERROR: { retryable: true, userMessage: "The service could not be reached. Check your connection." },
  TIMEOUT: { retryable: true, userMessage: "The service took too long to answer. Try again." },
};

/** A person's sentence for a code (and status when the code is unknown, e.g. HTTP_502). */
export function defaultUserMessage(code: string, status: number): string {
  const known = CATALOG[code];
  if (known) return known.userMessage;
  if (status === 401) return "You need to sign in again.";
  if (status === 403) return "You are not allowed to do this.";
  if (status === 404) return "What you asked for does not exist.";
  if (status === 429) return "Too many requests. Wait a moment and try again.";
  if (status >= 400 && status < 500) return "The request could not be completed.";
  if (status === 502 || status === 503 || status === 504)
    return "The service is temporarily unavailable. Try again shortly.";
  return "Something went wrong. Try again later.";
}

/** Whether a code is worth retrying by the catalog; unknown codes by their status. */
export function codeRetryable(code: string, status: number): boolean {
  const known = CATALOG[code];
  if (known) return known.retryable;
  return status === 429 || (status >= 500 && status !== 501);
}

/** Overrides of the user messages, per code. */
export type UserMessages = Partial<Record<string, string>>;

export interface StandardizedAPIErrorInit {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown> | undefined;
  traceId: string;
  timestamp?: string | undefined;
  userMessage?: string | undefined;
}

export class StandardizedAPIError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  /** From the body, else the X-Trace-Id header, else the one sent. */
  readonly traceId: string;
  /** From the body; "" when absent. */
  readonly timestamp: string;
  readonly retryable: boolean;
  readonly userMessage: string;

  constructor(init: StandardizedAPIErrorInit) {
    super(init.message);
    this.name = "StandardizedAPIError";
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.traceId = init.traceId;
    this.timestamp = init.timestamp ?? "";
    this.retryable = codeRetryable(init.code, init.status);
    this.userMessage = init.userMessage ?? defaultUserMessage(init.code, init.status);
  }

  getUserFriendlyMessage(): string {
    return this.userMessage;
  }

  isRetryable(): boolean {
    return this.retryable;
  }

  /** A failure without an answer. */
  static network(code: "NETWORK_ERROR" | "TIMEOUT", message: string, traceId: string,
                 messages?: UserMessages): StandardizedAPIError {
    return new StandardizedAPIError({ status: 0, code, message, traceId, userMessage: messages?.[code] });
  }

  /** An answer that is not a 2xx: its envelope or problem details, else HTTP_<status>. */
  static fromAnswer(status: number, bodyText: string, headerTraceId: string | null,
                    sentTraceId: string, messages?: UserMessages): StandardizedAPIError {
    let parsed: unknown;
    try {
      parsed = bodyText ? JSON.parse(bodyText) : undefined;
    } catch {
      parsed = undefined;
    }
    const root = isObject(parsed) ? parsed : undefined;
    const src = root && isObject(root["error"]) ? root["error"] : root;
    const code = src && typeof src["code"] === "string" && /^[A-Z][A-Z0-9_]{0,62}$/.test(src["code"])
      ? src["code"]
      : undefined;
    const traceFallback = headerTraceId && /^[A-Za-z0-9._:-]{1,128}$/.test(headerTraceId)
      ? headerTraceId
      : sentTraceId;
    if (!src || !code) {
      const c = `HTTP_${status}`;
      return new StandardizedAPIError({ status, code: c, message: `HTTP ${status}`, traceId: traceFallback,
                                        userMessage: messages?.[c] });
    }
    const message = str(src["message"]) ?? str(src["detail"]) ?? str(src["title"]) ?? `HTTP ${status}`;
    const bodyTrace = str(src["traceId"]);
    return new StandardizedAPIError({
      status,
      code,
      message,
      details: isObject(src["details"]) ? src["details"] : undefined,
      traceId: bodyTrace && /^[A-Za-z0-9._:-]{1,128}$/.test(bodyTrace) ? bodyTrace : traceFallback,
      timestamp: str(src["timestamp"]),
      userMessage: messages?.[code],
    });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}
