// The kit against the real generation-service: typed errors, retries counted by the server,
// keys that survive a reload, SSE across a forced disconnect, client logs in the trace.
import assert from "node:assert/strict";
import { createServer, connect } from "node:net";
import { after, before, describe, test } from "node:test";
import {
  ApiClient, FrontendLogger, IdempotencyManager, MemoryStorage, StandardizedAPIError,
  defaultUserMessage, followEvents, newTraceContext, retryAfterMs,
} from "../dist/index.js";
import { json, startService } from "./service.mjs";

async function typed(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof StandardizedAPIError, String(e));
    return e;
  }
  assert.fail("the call succeeded");
}

function expectError(e, status, code, trace) {
  assert.equal(e.status, status);
  assert.equal(e.code, code);
  assert.ok(e.message.length > 0);
  assert.equal(e.traceId, trace.traceId);
  assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(e.getUserFriendlyMessage(), defaultUserMessage(code, status));
}

describe("typed errors", () => {
  let svc, api, project, other, episode;
  before(async () => {
    svc = await startService(["--max-body", "2048", "--rate-limit-generations", "0"]);
    api = new ApiClient({ baseUrl: svc.url, maxAttempts: 1 });
    project = (await api.post("/projects", { name: "p" })).data.id;
    other = (await api.post("/projects", { name: "q" })).data.id;
    episode = (await api.post(`/projects/${project}/episodes`, { number: 1, title: "t" })).data.id;
  });
  after(async () => assert.equal(await svc.stop(), 0));

  test("every code the service produces", async () => {
    const t = newTraceContext();
    const cases = [
      [() => api.post("/projects", {}, { trace: t }), 400, "VALIDATION_FAILED"],
      [() => api.get("/nothing", { trace: t }), 404, "NOT_FOUND"],
      [() => api.get("/projects/proj_00000000000000000000000000000000", { trace: t }), 404, "PROJECT_NOT_FOUND"],
      [() => api.get(`/projects/${project}/episodes/ep_00000000000000000000000000000000`, { trace: t }), 404, "EPISODE_NOT_FOUND"],
      [() => api.get("/generations/gen_00000000000000000000000000000000", { trace: t }), 404, "GENERATION_NOT_FOUND"],
      [() => api.delete("/projects", { trace: t }), 405, "METHOD_NOT_ALLOWED"],
      [() => api.post(`/projects/${project}/episodes`, { number: 1, title: "again" }, { trace: t }), 409, "EPISODE_NUMBER_CONFLICT"],
      [() => api.post("/projects", { name: "x".repeat(3000) }, { trace: t }), 413, "PAYLOAD_TOO_LARGE"],
      [() => api.post("/projects", "{}", { trace: t, headers: { "Content-Type": "text/plain" } }), 415, "UNSUPPORTED_MEDIA_TYPE"],
      [() => api.post("/generations", { projectId: other, episodeId: episode, prompt: "x" }, { trace: t }), 422, "BUSINESS_RULE_VIOLATION"],
      [() => api.post("/projects", { name: "a" }, { trace: t, headers: { "Idempotency-Key": "k".repeat(300) } }), 400, "IDEMPOTENCY_KEY_INVALID"],
    ];
    for (const [call, status, code] of cases) expectError(await typed(call()), status, code, t);
    const conflict = await typed(api.post(`/projects/${project}/episodes`, { number: 1, title: "x" }, { trace: t }));
    assert.equal(conflict.details.projectId, project);
    assert.equal(conflict.isRetryable(), false);
    await api.post("/projects", { name: "first" }, { trace: t, idempotencyKey: "reused" });
    expectError(await typed(api.post("/projects", { name: "second" }, { trace: t, idempotencyKey: "reused" })),
                422, "IDEMPOTENCY_KEY_REUSED", t);
    /* problem details carry the same facts */
    const p = await typed(api.get("/projects/proj_00000000000000000000000000000000", { trace: t, accept: "application/problem+json" }));
    expectError(p, 404, "PROJECT_NOT_FOUND", t);
    /* (each call is made only when awaited: a rejection is never left unhandled) */
    /* the service saw each call under the trace it was given */
    const seen = await svc.waitLines((l) => l.event === "http_request" && l.trace_id === t.traceId, 15);
    assert.ok(seen.length >= 15);
  });

  test("user messages can be overridden; answers that are not the contract's", async () => {
    const custom = new ApiClient({ baseUrl: svc.url, maxAttempts: 1, userMessages: { NOT_FOUND: "Nothing here." } });
    assert.equal((await typed(custom.get("/nothing"))).getUserFriendlyMessage(), "Nothing here.");
    const html = new ApiClient({
      baseUrl: svc.url, maxAttempts: 3, backoffBaseMs: 5,
      fetch: async () => new Response("<html>502 Bad Gateway</html>", { status: 502, headers: { "Content-Type": "text/html" } }),
    });
    const e = await typed(html.get("/x"));
    assert.equal(e.code, "HTTP_502");
    assert.equal(e.isRetryable(), true);
    const down = new ApiClient({ baseUrl: "http://127.0.0.1:9", maxAttempts: 2, backoffBaseMs: 5 });
    const n = await typed(down.get("/x"));
    assert.equal(n.code, "NETWORK_ERROR");
    assert.equal(n.status, 0);
    assert.equal(retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
    assert.equal(retryAfterMs("3"), 3000);
    assert.equal(retryAfterMs("soon"), -1);
  });
});

describe("retries", () => {
  let svc, api, project, episode;
  before(async () => {
    svc = await startService(["--workers", "1", "--queue", "1", "--step-ms", "3000", "--rate-limit-generations", "0"]);
    api = new ApiClient({ baseUrl: svc.url, maxAttempts: 3, backoffBaseMs: 20, backoffCapMs: 100 });
    project = (await api.post("/projects", { name: "p" })).data.id;
    episode = (await api.post(`/projects/${project}/episodes`, { number: 1, title: "t" })).data.id;
    /* one running (the worker has taken it), then one waiting: the queue is full */
    const first = (await api.post("/generations", { projectId: project, episodeId: episode, prompt: "x" })).data;
    for (let i = 0; i < 200 && (await api.get(`/generations/${first.id}`)).data.status !== "running"; i++)
      await new Promise((r) => setTimeout(r, 10));
    await api.post("/generations", { projectId: project, episodeId: episode, prompt: "x" });
  });
  after(async () => assert.equal(await svc.stop(), 0));

  test("a 503 with a key is retried after Retry-After under one trace; without a key it is not", async () => {
    const body = { projectId: project, episodeId: episode, prompt: "x" };
    const t1 = newTraceContext();
    const once = await typed(api.post("/generations", body, { trace: t1 }));
    assert.equal(once.code, "GENERATION_QUEUE_FULL");
    assert.equal((await svc.waitLines((l) => l.event === "http_request" && l.trace_id === t1.traceId, 1)).length, 1);
    const t2 = newTraceContext();
    const started = Date.now();
    const e = await typed(api.post("/generations", body, { trace: t2, idempotencyKey: "queue-full" }));
    assert.equal(e.code, "GENERATION_QUEUE_FULL");
    assert.ok(Date.now() - started >= 3900, "Retry-After: 2, twice");
    const seen = await svc.waitLines((l) => l.event === "http_request" && l.trace_id === t2.traceId, 3);
    assert.equal(seen.length, 3);
    assert.ok(seen.every((l) => l.metadata.status === 503));
    assert.notEqual(seen[0].parent_span_id, seen[1].parent_span_id);
    /* a 422 is final */
    const t3 = newTraceContext();
    const missing = { projectId: "proj_00000000000000000000000000000000", episodeId: episode };
    await typed(api.post("/generations", { ...missing, prompt: "a" }, { trace: t3, idempotencyKey: "r" }));
    const reused = await typed(api.post("/generations", { ...missing, prompt: "b" }, { trace: t3, idempotencyKey: "r" }));
    assert.equal(reused.code, "IDEMPOTENCY_KEY_REUSED");
    assert.equal((await svc.waitLines((l) => l.event === "http_request" && l.trace_id === t3.traceId, 2)).length, 2);
  });
});

describe("idempotency keys across a reload", () => {
  let svc;
  before(async () => { svc = await startService(); });
  after(async () => assert.equal(await svc.stop(), 0));

  test("a create interrupted by a reload and repeated makes one episode", async () => {
    const storage = new MemoryStorage(); /* sessionStorage: survives the reload */
    const page1 = new IdempotencyManager(storage);
    const api = new ApiClient({ baseUrl: svc.url });
    const project = (await api.post("/projects", { name: "p" })).data.id;
    const op = `create episode 7 in ${project}`;
    const key = page1.getOrCreateKey(op);
    /* the request went out; the page reloaded before the answer came */
    const first = await json(svc.url, "POST", `/projects/${project}/episodes`, { number: 7, title: "Seven" },
                             { "Idempotency-Key": key });
    assert.equal(first.status, 201);
    const page2 = new ApiClient({ baseUrl: svc.url, idempotency: new IdempotencyManager(storage) });
    const again = await page2.postIdempotent(op, `/projects/${project}/episodes`, { number: 7, title: "Seven" });
    assert.equal(again.status, 200); /* the replay */
    assert.equal(again.data.id, first.body.id);
    assert.equal(again.headers.get("Idempotent-Replayed"), "true");
    const list = await api.get(`/projects/${project}/episodes`);
    assert.equal(list.data.total, 1);
    /* the answer spent the key */
    assert.notEqual(new IdempotencyManager(storage).getOrCreateKey(op), key);
    assert.equal(IdempotencyManager.spent(400, "VALIDATION_FAILED"), false);
    assert.equal(IdempotencyManager.spent(409, "IDEMPOTENCY_KEY_IN_USE"), false);
    assert.equal(IdempotencyManager.spent(404, "PROJECT_NOT_FOUND"), true);
  });
});

/* A TCP proxy that cuts its first connection in the middle of event 3. */
function cutter(upstream) {
  let connections = 0;
  const server = createServer((down) => {
    const first = connections++ === 0;
    const up = connect(upstream, "127.0.0.1");
    let seen = "";
    down.on("data", (d) => up.write(d));
    up.on("data", (d) => {
      if (!first) return down.write(d);
      const before = seen.length;
      seen += d.toString("latin1");
      const at = seen.indexOf("\nid: 3\n");
      if (at < 0) return down.write(d);
      down.write(d.subarray(0, Math.max(0, at + 7 - before)));
      down.destroy();
      up.destroy();
    });
    up.on("error", () => down.destroy());
    down.on("error", () => up.destroy());
    up.on("end", () => down.end());
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok({ server, port: server.address().port, count: () => connections })));
}

describe("Server-Sent Events", () => {
  let svc;
  before(async () => { svc = await startService(["--step-ms", "300"]); });
  after(async () => assert.equal(await svc.stop(), 0));

  test("a stream cut mid-event resumes with every event exactly once", async () => {
    const api = new ApiClient({ baseUrl: svc.url });
    const project = (await api.post("/projects", { name: "p" })).data.id;
    const episode = (await api.post(`/projects/${project}/episodes`, { number: 1, title: "t" })).data.id;
    const gen = (await api.post("/generations", { projectId: project, episodeId: episode, prompt: "cut" })).data;
    const proxy = await cutter(svc.port);
    const events = [];
    const connects = [];
    await followEvents(`http://127.0.0.1:${proxy.port}/generations/${gen.id}/events`, {
      onEvent: (ev) => events.push(ev),
      onConnect: (attempt, last) => connects.push([attempt, last]),
    });
    proxy.server.close();
    assert.deepEqual(events.map((e) => e.id), ["1", "2", "3", "4", "5"]);
    assert.equal(events[4].event, "completed");
    assert.deepEqual(JSON.parse(events[0].data), { percentage: 25, step: "outline" });
    assert.equal(proxy.count(), 2);
    assert.deepEqual(connects, [[1, ""], [2, "2"]]);
  });
});

describe("client-side logs", () => {
  let svc;
  before(async () => { svc = await startService(); });
  after(async () => assert.equal(await svc.stop(), 0));

  test("a click's log lines share the trace of its request", async () => {
    const api = new ApiClient({ baseUrl: svc.url });
    const logger = new FrontendLogger({ intakeUrl: `${svc.url}/client-logs`, sessionId: "s-1", flushIntervalMs: 0, maxBuffered: 3 });
    const click = newTraceContext();
    logger.logUserAction("create project", "button#create", { password: "hunter2" }, click);
    const started = performance.now();
    await api.post("/projects", { name: "from a click" }, { trace: click });
    logger.logPerformance("create project", performance.now() - started, true, {}, click);
    const e = await typed(api.get("/projects/proj_00000000000000000000000000000000", { trace: click }));
    logger.logError("could not open the project", e);
    logger.logUserAction("overflow", "x");
    assert.equal(logger.dropped, 1); /* bounded */
    await logger.flush();
    assert.equal(logger.pending, 0);
    logger.close();
    const browser = await svc.waitLines((l) => l.source === "browser", 3);
    assert.equal(browser.length, 3);
    assert.ok(browser.every((l) => l.trace_id === click.traceId));
    assert.equal(browser[0].metadata.password, "***");
    assert.equal(browser[0].metadata.session_id, "s-1");
    assert.equal(browser[2].level, "ERROR");
    assert.equal(browser[2].metadata.errorCode, "PROJECT_NOT_FOUND");
    const backend = await svc.waitLines((l) => l.event === "http_request" && l.trace_id === click.traceId, 2);
    assert.equal(backend.length, 2);
  });
});
