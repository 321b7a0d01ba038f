// The web console in headless Chromium (Debian's, driven by puppeteer-core) against the real
// generation-service, the console served from a second origin so CORS is exercised for real:
// project -> episode -> generation to 100%, a 409 with its user message and trace id, a create
// interrupted by a reload and repeated making one episode, and the browser's log lines in the
// service's log under the trace of the click's request. Screenshots of each step go to
// build/test-artifacts/browser (not committed).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { startService } from "./service.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const CONSOLE_DIR = process.env.CONSOLE_DIR ?? resolve(here, "../../../build/console");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.O11Y_ARTIFACTS ?? resolve(here, "../../../build/test-artifacts/browser");

let svc, site, sitePort, browser, page;

/* The second origin: the built console as plain files. */
function serveConsole() {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };
  const server = createServer((req, res) => {
    const name = new URL(req.url, "http://x").pathname.replace(/^\/+/, "") || "index.html";
    const file = join(CONSOLE_DIR, name);
    if (!/^[A-Za-z0-9._-]+$/.test(name) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": types[extname(name)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

before(async () => {
  assert.ok(existsSync(join(CONSOLE_DIR, "console.js")), `the console is not built in ${CONSOLE_DIR} (make builds it)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (scripts/deps.sh test installs Debian's chromium)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  site = await serveConsole();
  sitePort = site.address().port;
  svc = await startService(["--cors-origins", `http://127.0.0.1:${sitePort}`, "--step-ms", "100"]);
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => { if (process.env.O11Y_BROWSER_LOG) console.error("browser:", m.type(), m.text()); });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  page.on("response", (r) => { if (process.env.O11Y_BROWSER_LOG) console.error("browser:", r.status(), r.request().method(), r.url()); });
});

after(async () => {
  await browser?.close();
  site?.close();
  if (svc) assert.equal(await svc.stop(), 0);
});

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
const text = (sel) => page.$eval(sel, (el) => el.textContent ?? "");

async function fill(sel, value) {
  await page.$eval(sel, (el) => { el.value = ""; });
  await page.type(sel, value);
}

test("the console drives the service from another origin", async () => {
  await page.goto(`http://127.0.0.1:${sitePort}/index.html?api=http://127.0.0.1:${svc.port}`);
  await page.waitForFunction(() => document.getElementById("health-status")?.textContent === "healthy");
  await shot("1-loaded");

  /* project */
  await fill("#project-name", "Browser show");
  await page.click("#project-form button[type=submit]");
  await page.waitForFunction(() => !document.getElementById("episodes")?.hidden);
  assert.equal(await text("#project-title"), "Browser show");
  const createProject = (await svc.waitLines((l) => l.event === "http_request" && l.metadata.route === "/projects" && l.metadata.method === "POST", 1))[0];
  assert.equal(createProject.metadata.status, 201);
  await shot("2-project");

  /* episode */
  await fill("#episode-number", "1");
  await fill("#episode-title", "Pilot");
  await page.click("#episode-submit");
  await page.waitForFunction(() => document.querySelectorAll("#episode-rows tr").length === 1);
  await shot("3-episode");

  /* generation, followed live to 100% */
  await page.click("button[aria-label='Generate episode 1']");
  await fill("#generation-prompt", "a pilot");
  await page.click("#generation-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("generation-status")?.textContent === "completed");
  assert.equal(await page.$eval("#generation-progress", (el) => el.value), 100);
  assert.match(await text("#generation-output"), /Tonight we talk about a pilot/);
  await shot("4-generated");

  /* a 409: its user message and trace id on the page */
  await fill("#episode-number", "1");
  await fill("#episode-title", "Pilot again");
  await page.click("#episode-submit");
  await page.waitForFunction(() => !document.getElementById("error")?.hidden);
  assert.equal(await text("#error-message"), "An episode with this number already exists in the project. Choose another number.");
  const trace = await text("#error-trace");
  const conflict = await svc.waitLines((l) => l.event === "http_request" && l.trace_id === trace && l.metadata.status === 409, 1);
  assert.equal(conflict.length, 1);
  await shot("5-conflict");
  /* the browser's lines for that click reached the service's log in the same trace */
  const browserLines = await svc.waitLines((l) => l.source === "browser" && l.trace_id === trace, 2);
  assert.ok(browserLines.some((l) => l.event === "user_action" && l.metadata.action === "create episode"));
  assert.ok(browserLines.some((l) => l.level === "ERROR" && l.metadata.errorCode === "EPISODE_NUMBER_CONFLICT"));
  await page.click("#error-close");

  /* a create interrupted by a reload, then repeated: one episode */
  const project = (await svc.waitLines((l) => l.event === "http_request" && l.metadata.status === 201 && l.metadata.route === "/projects", 1))[0].project_id;
  await page.setRequestInterception(true);
  let delivered;
  page.on("request", async (req) => {
    if (req.isInterceptResolutionHandled()) return;
    if (req.method() === "POST" && req.url().endsWith(`/projects/${project}/episodes`) && !delivered) {
      /* the request reaches the service; its answer never reaches the page */
      delivered = fetch(req.url(), { method: "POST", headers: req.headers(), body: req.postData() })
        .then((r) => r.status);
      return; /* left pending: the reload drops it */
    }
    await req.continue();
  });
  await fill("#episode-number", "2");
  await fill("#episode-title", "Two");
  await page.click("#episode-submit");
  await page.waitForFunction(() => true);
  for (let i = 0; i < 100 && !delivered; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await delivered, 201);
  await page.reload(); /* drops the pending request: its answer never reaches the page */
  await page.setRequestInterception(false);
  page.removeAllListeners("request");
  await shot("6-reloaded");
  await page.click("#project-list button");
  await page.waitForFunction(() => document.querySelectorAll("#episode-rows tr").length === 2);
  await fill("#episode-number", "2");
  await fill("#episode-title", "Two");
  await page.click("#episode-submit");
  await page.waitForFunction(() => document.getElementById("episode-title")?.value === "");
  const creates = await svc.waitLines((l) => l.event === "http_request" && l.metadata.method === "POST" &&
                                              l.metadata.route === "/projects/{projectId}/episodes" && l.project_id === project, 4);
  assert.deepEqual(creates.map((l) => l.metadata.status), [201, 409, 201, 200]); /* the last: the replay */
  assert.equal(await text("#episodes-total"), "2 episodes");
  assert.equal(await page.$eval("#error", (el) => el.hidden), true);
  await shot("7-one-episode");
});
