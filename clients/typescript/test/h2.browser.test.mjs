// Ten SSE streams from one page to one origin, in headless Chromium: over HTTP/2 (the h2o
// adapter, TLS with a certificate made here) all ten are streams of one connection and progress
// together; over HTTP/1.1 the browser opens at most six connections per origin, so the seventh
// stream waits for one of them to end.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { startService } from "./service.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const CONSOLE_DIR = process.env.CONSOLE_DIR ?? resolve(here, "../../../build/console");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

let dir, browser;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (scripts/deps.sh test installs Debian's chromium)`);
  dir = mkdtempSync(join(tmpdir(), "o11y-h2-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
                           "-subj", "/CN=localhost"], { stdio: "ignore" });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--ignore-certificate-errors"],
  });
});
after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

/* In the page: a project, an episode, a generation; then ten EventSources on it. Returns, per
 * stream, the time of its first event and of its end, and the protocol the page used. */
async function tenStreams(page) {
  return page.evaluate(async () => {
    const post = async (path, body) =>
      (await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();
    const p = await post("/projects", { name: "ten" });
    const e = await post(`/projects/${p.id}/episodes`, { number: 1, title: "t" });
    const g = await post("/generations", { projectId: p.id, episodeId: e.id, prompt: "ten" });
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 10 }, () => new Promise((ok) => {
      const es = new EventSource(`/generations/${g.id}/events`);
      const r = { first: -1, end: -1, events: 0 };
      const on = (ev) => {
        r.events++;
        if (r.first < 0) r.first = performance.now() - t0;
        if (ev.type === "completed") { r.end = performance.now() - t0; es.close(); ok(r); }
      };
      es.addEventListener("progress", on);
      es.addEventListener("completed", on);
    })));
    const protocols = [...new Set(performance.getEntriesByType("resource").map((x) => x.nextHopProtocol))];
    return { results, protocols };
  });
}

test("over HTTP/2 ten streams progress together on one connection", async () => {
  const svc = await startService(["--server", "h2o", "--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem"),
                                  "--console-dir", CONSOLE_DIR, "--step-ms", "300", "--rate-limit-generations", "0"]);
  try {
    const page = await browser.newPage();
    await page.goto(`https://127.0.0.1:${svc.port}/console/index.html`);
    const { results, protocols } = await tenStreams(page);
    assert.deepEqual(protocols.filter(Boolean), ["h2"]);
    assert.equal(results.length, 10);
    for (const r of results) assert.equal(r.events, 5); /* four progress events and completed */
    /* every stream had its first event before any stream ended */
    const firstEnd = Math.min(...results.map((r) => r.end));
    assert.ok(results.every((r) => r.first < firstEnd), JSON.stringify(results));
    await page.close();
  } finally {
    assert.equal(await svc.stop(), 0);
  }
});

test("over HTTP/1.1 the seventh stream waits for a connection", async () => {
  const svc = await startService(["--console-dir", CONSOLE_DIR, "--step-ms", "300", "--rate-limit-generations", "0"]);
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${svc.port}/console/index.html`);
    const { results, protocols } = await tenStreams(page);
    assert.deepEqual(protocols.filter(Boolean), ["http/1.1"]);
    const firstEnd = Math.min(...results.map((r) => r.end));
    assert.ok(results.some((r) => r.first >= firstEnd), JSON.stringify(results));
    await page.close();
  } finally {
    assert.equal(await svc.stop(), 0);
  }
});
