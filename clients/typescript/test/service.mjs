// Starts the real generation-service on a free loopback port for a test, and reads its log.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
export const GS_BINARY = process.env.GS_BINARY ?? resolve(here, "../../../build/services/generation-service/generation-service");

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

function canConnect(port) {
  return new Promise((ok) => {
    const c = connect(port, "127.0.0.1", () => { c.destroy(); ok(true); });
    c.on("error", () => ok(false));
  });
}

export async function startService(args = []) {
  const dir = mkdtempSync(join(tmpdir(), "o11y-ts-"));
  const port = await freePort();
  const log = join(dir, "gs.log");
  const proc = spawn(GS_BINARY, ["--port", String(port), "--db", join(dir, "gs.db"), "--log-file", log, ...args],
                     { stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; i < 500; i++) {
    if (await canConnect(port)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, dir, log, proc,
    lines() {
      return readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    },
    async waitLines(pred, n, ms = 5000) {
      const end = Date.now() + ms;
      for (;;) {
        const got = this.lines().filter(pred);
        if (got.length >= n || Date.now() > end) return got;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      const done = new Promise((r) => proc.once("exit", (code) => r(code)));
      proc.kill("SIGTERM");
      const code = await done;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

export async function json(url, method, path, body, headers = {}) {
  const res = await fetch(url + path, {
    method,
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : undefined };
}
