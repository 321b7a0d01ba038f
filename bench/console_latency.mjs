// Click to first progress event: the console in headless Chromium (the kit's POST, then its
// fetch-streamed SSE) next to curl doing the same two requests, same service, same run, five
// rounds each, medians. The service's built-in generator takes --step-ms 100 per step, so about
// 100 ms of each figure is the first step itself.
//   node bench/console_latency.mjs GS_BINARY CONSOLE_DIR
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const { default: puppeteer } = await import(resolve(here, "../clients/typescript/node_modules/puppeteer-core/lib/esm/puppeteer/puppeteer-core.js"));
const [gsBinary, consoleDir] = process.argv.slice(2);

const port = await new Promise((ok) => { const s = createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
const dir = mkdtempSync(join(tmpdir(), "o11y-bench-"));
const svc = spawn(gsBinary, ["--port", String(port), "--db", join(dir, "db"), "--log-file", join(dir, "log"),
                             "--console-dir", consoleDir, "--step-ms", "100", "--rate-limit-generations", "0"], { stdio: "ignore" });
for (let i = 0; i < 300; i++) {
  const ok = await new Promise((r) => { const c = connect(port, "127.0.0.1", () => { c.destroy(); r(true); }); c.on("error", () => r(false)); });
  if (ok) break;
  await new Promise((r) => setTimeout(r, 10));
}
const base = `http://127.0.0.1:${port}`;
const post = async (path, body) => (await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();
const project = await post("/projects", { name: "bench" });
const episode = await post(`/projects/${project.id}/episodes`, { number: 1, title: "Bench" });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/* curl: POST, then the stream until its first progress event */
function curlRound() {
  return new Promise((ok) => {
    const t0 = performance.now();
    const p = spawn("curl", ["-s", "-X", "POST", "-H", "Content-Type: application/json", "-d",
                             JSON.stringify({ projectId: project.id, episodeId: episode.id, prompt: "bench" }), `${base}/generations`]);
    let out = "";
    p.stdout.on("data", (d) => { out += d; });
    p.on("close", () => {
      const id = JSON.parse(out).id;
      const s = spawn("curl", ["-sN", `${base}/generations/${id}/events`]);
      let seen = "";
      s.stdout.on("data", (d) => {
        seen += d;
        if (seen.includes("event: progress")) { ok(performance.now() - t0); s.kill(); }
      });
    });
  });
}

const browser = await puppeteer.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
const page = await browser.newPage();
await page.goto(`${base}/console/index.html`);
await page.$eval("#project-id", (el, id) => { el.value = id; }, project.id);
await page.click("#project-open button[type=submit]");
await page.waitForFunction(() => document.querySelectorAll("#episode-rows tr").length === 1);
await page.click("button[aria-label='Generate episode 1']");
async function browserRound(i) {
  await page.$eval("#generation-prompt", (el, p) => { el.value = p; }, `bench ${i}`);
  await page.evaluate(() => {
    const el = document.getElementById("generation-percent");
    window.__first = new Promise((ok) => {
      const start = performance.now();
      window.__start = start;
      const mo = new MutationObserver(() => {
        if (el.textContent !== "0%") { mo.disconnect(); ok(performance.now() - start); }
      });
      mo.observe(el, { childList: true, characterData: true, subtree: true });
    });
  });
  await page.click("#generation-form button[type=submit]");
  const ms = await page.evaluate(() => window.__first);
  await page.waitForFunction(() => document.getElementById("generation-status")?.textContent === "completed");
  return ms;
}
const b = [], c = [];
for (let i = 0; i < 5; i++) {
  b.push(await browserRound(i));
  c.push(await curlRound());
}
console.log(`click to first progress event, console in Chromium: ${b.map((x) => x.toFixed(0)).join(" ")} ms (median ${median(b).toFixed(0)})`);
console.log(`POST to first progress event, curl:                  ${c.map((x) => x.toFixed(0)).join(" ")} ms (median ${median(c).toFixed(0)})`);
await browser.close();
svc.kill("SIGTERM");
await new Promise((r) => svc.once("exit", r));
rmSync(dir, { recursive: true, force: true });
