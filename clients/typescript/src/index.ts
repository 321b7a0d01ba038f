// @o11y/client: the frontend kit of the o11y contract, for browsers and Node >= 20.
export { ApiClient, retryAfterMs } from "./client.js";
export type { ApiClientOptions, ApiResponse, AttemptInfo, RequestOptions } from "./client.js";
export { StandardizedAPIError, codeRetryable, defaultUserMessage } from "./errors.js";
export type { StandardizedAPIErrorInit, UserMessages } from "./errors.js";
export { IdempotencyManager, MemoryStorage } from "./idempotency.js";
export type { KeyStorage } from "./idempotency.js";
export { FrontendLogger } from "./logger.js";
export type { Level, LogRecord, LoggerOptions } from "./logger.js";
export { SseParser, followEvents } from "./sse.js";
export type { FollowOptions, SseEvent } from "./sse.js";
export { childContext, newSpanId, newTraceContext, newTraceId, traceHeaders, traceIdValid, traceparent, w3cTraceId } from "./trace.js";
export type { TraceContext } from "./trace.js";
export type { components, operations, paths } from "./generated/api.js";
