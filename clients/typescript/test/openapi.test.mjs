// The OpenAPI document against the real service: every route's answers, errors included, and the
// event stream's payloads are validated with a JSON Schema validator (Ajv, draft 2020-12, the
// dialect of OpenAPI 3.1), so the document cannot drift from the C code. An answer whose status
// the document does not list fails too.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { json, startService } from "./service.mjs";

let svc, doc, ajv;
const checked = new Set();

before(async () => {
  svc = await startService(["--step-ms", "20", "--max-body", "4096", "--workers", "1", "--queue", "1",
                            "--rate-limit-generations", "0", "--rate-limit-client-logs", "3/60"]);
  const r = await json(svc.url, "GET", "/openapi.json");
  assert.equal(r.status, 200);
  doc = r.body;
  assert.equal(doc.openapi, "3.1.0");
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, "openapi.json");
});
after(async () => assert.equal(await svc.stop(), 0));

const pointer = (...parts) => parts.map((p) => encodeURIComponent(String(p).replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");

/** Validates an answer of (template, method) against the document. */
function check(template, method, status, contentType, body) {
  const op = doc.paths[template]?.[method.toLowerCase()];
  assert.ok(op, `${method} ${template} is not in the document`);
  let response = op.responses[String(status)];
  assert.ok(response, `${method} ${template} answered ${status}, which the document does not list`);
  let base = `#/${pointer("paths", template, method.toLowerCase(), "responses", String(status))}`;
  if (response.$ref) {
    base = response.$ref;
    response = response.$ref.split("/").slice(1).reduce((o, k) => o[k], doc);
  }
  const ct = (contentType ?? "").split(";")[0].trim();
  if (!response.content) {
    assert.ok(!body, `${method} ${template} ${status} should have no body`);
    checked.add(`${method} ${template} ${status}`);
    return;
  }
  assert.ok(response.content[ct], `${method} ${template} ${status}: content type ${ct} is not in the document`);
  const validate = ajv.getSchema(`openapi.json${base}/${pointer("content", ct, "schema")}`);
  assert.ok(validate, `no schema at ${base}`);
  const value = ct.includes("json") ? JSON.parse(body) : body;
  assert.ok(validate(value), `${method} ${template} ${status}: ${ajv.errorsText(validate.errors)}\n${body}`);
  checked.add(`${method} ${template} ${status}`);
}

async function call(template, method, path, body, headers = {}) {
  const res = await fetch(svc.url + path, {
    method,
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  check(template, method, res.status, res.headers.get("Content-Type"), text);
  return { status: res.status, body: text && (res.headers.get("Content-Type") ?? "").includes("json") ? JSON.parse(text) : text };
}

test("every route's answers match the document", async () => {
  const P = "/projects/{projectId}", E = "/projects/{projectId}/episodes", EE = "/projects/{projectId}/episodes/{episodeId}";
  const project = (await call("/projects", "POST", "/projects", { name: "p" })).body.id;
  await call("/projects", "POST", "/projects", { name: "p" }, { "Idempotency-Key": "a" });
  await call("/projects", "POST", "/projects", { name: "p" }, { "Idempotency-Key": "a" }); /* 200 replay */
  await call("/projects", "POST", "/projects", { name: "q" }, { "Idempotency-Key": "a" }); /* 422 */
  await call("/projects", "POST", "/projects", {});                                           /* 400 */
  await call("/projects", "POST", "/projects", "{}", { "Content-Type": "text/plain" });      /* 415 */
  await call("/projects", "POST", "/projects", { name: "x".repeat(5000) });                   /* 413 */
  await call(P, "GET", `/projects/${project}`);
  await call(P, "GET", "/projects/proj_00000000000000000000000000000000");
  const episode = (await call(E, "POST", `/projects/${project}/episodes`, { number: 1, title: "t", content: "c" })).body.id;
  await call(E, "POST", `/projects/${project}/episodes`, { number: 2, title: "t" });
  await call(E, "POST", `/projects/${project}/episodes`, { number: 1, title: "t" });          /* 409 */
  await call(E, "POST", "/projects/proj_00000000000000000000000000000000/episodes", { number: 1, title: "t" });
  await call(E, "GET", `/projects/${project}/episodes?limit=1`);                                /* nextCursor */
  await call(E, "GET", `/projects/${project}/episodes?include=content`);
  await call(E, "GET", `/projects/${project}/episodes?limit=0`);                                /* 400 */
  await call(EE, "GET", `/projects/${project}/episodes/${episode}`);
  await call(EE, "GET", `/projects/${project}/episodes/ep_00000000000000000000000000000000`);
  await call(EE, "PATCH", `/projects/${project}/episodes/${episode}`, { title: "t2" });
  await call(EE, "PATCH", `/projects/${project}/episodes/${episode}`, { number: 2 });          /* 409 */
  await call(EE, "PATCH", `/projects/${project}/episodes/${episode}`, { bogus: 1 });           /* 400 */
  await call("/stats/episodes", "GET", "/stats/episodes?days=3");
  await call("/stats/episodes", "GET", "/stats/episodes?days=0");
  const gen = (await call("/generations", "POST", "/generations", { projectId: project, episodeId: episode, prompt: "p" })).body;
  await call("/generations", "POST", "/generations", { projectId: project, episodeId: "ep_00000000000000000000000000000000", prompt: "p" });
  await call("/generations", "POST", "/generations", { projectId: project, prompt: "p" });     /* 400 */
  /* the stream: its payloads */
  const res = await fetch(`${svc.url}/generations/${gen.id}/events`);
  const text = await res.text();
  check("/generations/{id}/events", "GET", res.status, res.headers.get("Content-Type"), text);
  const payload = { progress: "ProgressEvent", completed: "CompletedEvent", failed: "FailedEvent", cancelled: "CancelledEvent" };
  let events = 0;
  for (const block of text.split("\n\n")) {
    const type = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (!type || !data) continue;
    const validate = ajv.getSchema(`openapi.json#/components/schemas/${payload[type]}`);
    assert.ok(validate(JSON.parse(data)), `${type}: ${ajv.errorsText(validate.errors)}`);
    events++;
  }
  assert.ok(events >= 2);
  await call("/generations/{id}/events", "GET", "/generations/gen_00000000000000000000000000000000/events");
  await call("/generations/{id}", "GET", `/generations/${gen.id}`);
  await call("/generations/{id}", "DELETE", `/generations/${gen.id}`);
  await call("/generations/{id}", "GET", "/generations/gen_00000000000000000000000000000000");
  await call("/generations/{id}", "DELETE", "/generations/gen_00000000000000000000000000000000");
  await call(EE, "DELETE", `/projects/${project}/episodes/${episode}`);                         /* 204 */
  await call(EE, "DELETE", `/projects/${project}/episodes/${episode}`);                         /* 404 */
  await call("/client-logs", "POST", "/client-logs", { logs: [{ level: "info", message: "m" }] });
  await call("/client-logs", "POST", "/client-logs", { logs: {} });                            /* 400 */
  await call("/client-logs", "POST", "/client-logs", { logs: [] });
  await call("/client-logs", "POST", "/client-logs", { logs: [] });                            /* 429 */
  await call("/health", "GET", "/health");
  await call("/health/live", "GET", "/health/live");
  await call("/health/ready", "GET", "/health/ready");
  await call("/metrics/summary", "GET", "/metrics/summary");
  await call("/metrics", "GET", "/metrics");
  await call("/openapi.json", "GET", "/openapi.json");
  /* problem details */
  await call(P, "GET", "/projects/proj_00000000000000000000000000000000", undefined, { Accept: "application/problem+json" });
  /* every path and method of the document was exercised */
  for (const [template, item] of Object.entries(doc.paths))
    for (const method of ["get", "post", "patch", "delete"])
      if (item[method])
        assert.ok([...checked].some((c) => c.startsWith(`${method.toUpperCase()} ${template} `)),
                  `${method.toUpperCase()} ${template} was never called`);
});
