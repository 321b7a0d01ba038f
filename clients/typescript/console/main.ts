// The web console: projects, episodes, generations followed live, health and metrics panels,
// all on the kit (../src). Plain DOM. The API is this page's origin, or ?api=URL (another origin:
// the service must allow this page's origin with --cors-origins).

import {
  ApiClient, FrontendLogger, StandardizedAPIError, followEvents, newTraceContext,
  type TraceContext, type components,
} from "../src/index.js";

type Project = components["schemas"]["Project"];
type Episode = components["schemas"]["Episode"];
type EpisodePage = components["schemas"]["EpisodePage"];
type Generation = components["schemas"]["Generation"];
type GenerationQueued = components["schemas"]["GenerationQueued"];
type Health = components["schemas"]["Health"];
type MetricsSummary = components["schemas"]["MetricsSummary"];

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
};

const apiBase = new URLSearchParams(location.search).get("api") ?? location.origin;
const api = new ApiClient({ baseUrl: apiBase });
let currentAction: TraceContext | undefined;
const logger = new FrontendLogger({
  intakeUrl: `${apiBase}/client-logs`,
  sessionId: sessionStorage.getItem("o11y.session") ?? (() => {
    const s = crypto.randomUUID();
    sessionStorage.setItem("o11y.session", s);
    return s;
  })(),
  currentTrace: () => currentAction,
});
$("api-url").textContent = apiBase;

/** Runs one user action in a trace of its own: its requests and its log lines share it. */
async function action<T>(name: string, element: string, fn: (t: TraceContext) => Promise<T>): Promise<T | undefined> {
  const t = newTraceContext();
  currentAction = t;
  logger.logUserAction(name, element, {}, t);
  const started = performance.now();
  try {
    const r = await fn(t);
    logger.logPerformance(name, performance.now() - started, true, {}, t);
    return r;
  } catch (e) {
    logger.logPerformance(name, performance.now() - started, false, {}, t);
    logger.logError(`${name} failed`, e, {}, t);
    showError(e);
    return undefined;
  } finally {
    void logger.flush();
  }
}

function showError(e: unknown): void {
  const box = $("error");
  if (e instanceof StandardizedAPIError) {
    $("error-message").textContent = e.getUserFriendlyMessage();
    $("error-trace").textContent = e.traceId;
    box.dataset["code"] = e.code;
  } else {
    $("error-message").textContent = "Something went wrong in this page.";
    $("error-trace").textContent = currentAction?.traceId ?? "";
  }
  box.hidden = false;
}
$("error-close").addEventListener("click", () => { $("error").hidden = true; });
$("error-copy").addEventListener("click", () => {
  void navigator.clipboard?.writeText($("error-trace").textContent ?? "");
});

/*=== projects ===*/

const known = (): Project[] => JSON.parse(localStorage.getItem("o11y.projects") ?? "[]") as Project[];
function remember(p: Project): void {
  const list = known().filter((x) => x.id !== p.id);
  list.unshift(p);
  localStorage.setItem("o11y.projects", JSON.stringify(list.slice(0, 20)));
  renderProjects();
}
function renderProjects(): void {
  const ul = $("project-list");
  ul.replaceChildren(...known().map((p) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${p.name} (${p.id})`;
    b.addEventListener("click", () => void openProject(p.id));
    li.append(b);
    return li;
  }));
}

let project: Project | undefined;
$("project-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ($("project-name") as HTMLInputElement).value;
  void action("create project", "form#project-form", async (t) => {
    const r = await api.postIdempotent<Project>(`create project ${name}`, "/projects", { name }, { trace: t });
    remember(r.data);
    await openProject(r.data.id, t);
  });
});
$("project-open").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void openProject(($("project-id") as HTMLInputElement).value.trim());
});

async function openProject(id: string, trace?: TraceContext): Promise<void> {
  await (trace ? load(trace) : action("open project", "form#project-open", load));
  async function load(t: TraceContext): Promise<void> {
    const r = await api.get<Project>(`/projects/${encodeURIComponent(id)}`, { trace: t });
    project = r.data;
    remember(r.data);
    $("project-title").textContent = r.data.name;
    $("episodes").hidden = false;
    pageStack.length = 0;
    await loadEpisodes(undefined, t);
  }
}

/*=== episodes ===*/

const pageStack: (string | undefined)[] = [];
let pageAfter: string | undefined;
async function loadEpisodes(after: string | undefined, t: TraceContext): Promise<void> {
  if (!project) return;
  const q = `?limit=10${after ? `&after=${encodeURIComponent(after)}` : ""}`;
  const r = await api.get<EpisodePage>(`/projects/${project.id}/episodes${q}`, { trace: t });
  pageAfter = after;
  const rows = r.data.items.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset["id"] = e.id;
    const cells = [String(e.number), e.title, `${e.contentLength ?? 0} chars`];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    const actions = document.createElement("td");
    for (const [label, fn] of [["Edit", () => void editEpisode(e.id)], ["Delete", () => void deleteEpisode(e.id)],
                               ["Generate", () => chooseEpisode(e.id, e.title)]] as const) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.setAttribute("aria-label", `${label} episode ${e.number}`);
      b.addEventListener("click", fn);
      actions.append(b);
    }
    tr.append(actions);
    return tr;
  });
  $("episode-rows").replaceChildren(...rows);
  $("episodes-total").textContent = `${r.data.total} episodes`;
  ($("episodes-next") as HTMLButtonElement).disabled = !r.data.nextCursor;
  ($("episodes-next") as HTMLButtonElement).dataset["cursor"] = r.data.nextCursor ?? "";
  ($("episodes-prev") as HTMLButtonElement).disabled = pageStack.length === 0;
}
$("episodes-next").addEventListener("click", () => {
  pageStack.push(pageAfter);
  const cursor = ($("episodes-next") as HTMLButtonElement).dataset["cursor"];
  void action("next page", "button#episodes-next", (t) => loadEpisodes(cursor, t));
});
$("episodes-prev").addEventListener("click", () => {
  const back = pageStack.pop();
  void action("previous page", "button#episodes-prev", (t) => loadEpisodes(back, t));
});

function resetEpisodeForm(): void {
  ($("episode-edit-id") as HTMLInputElement).value = "";
  ($("episode-form") as HTMLFormElement).reset();
  $("episode-submit").textContent = "Create episode";
  $("episode-cancel-edit").hidden = true;
}
$("episode-cancel-edit").addEventListener("click", resetEpisodeForm);

$("episode-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!project) return;
  const p = project;
  const editId = ($("episode-edit-id") as HTMLInputElement).value;
  const content = ($("episode-content") as HTMLTextAreaElement).value;
  const body: { number: number; title: string; content?: string } = {
    number: Number(($("episode-number") as HTMLInputElement).value),
    title: ($("episode-title") as HTMLInputElement).value,
  };
  /* a new episode without text has none; an edit sends what the field holds */
  if (content || editId) body.content = content;
  void action(editId ? "update episode" : "create episode", "form#episode-form", async (t) => {
    if (editId) {
      await api.patch<Episode>(`/projects/${p.id}/episodes/${editId}`, body, { trace: t });
    } else {
      /* the key lives in sessionStorage until the answer spends it: a reload mid-call and the
       * same create again is a replay, not a second episode */
      await api.postIdempotent<Episode>(`create episode ${p.id} ${body.number} ${body.title}`,
                                        `/projects/${p.id}/episodes`, body, { trace: t });
    }
    resetEpisodeForm();
    await loadEpisodes(pageAfter, t);
  });
});

async function editEpisode(id: string): Promise<void> {
  if (!project) return;
  const p = project;
  await action("edit episode", "button.edit", async (t) => {
    const r = await api.get<Episode>(`/projects/${p.id}/episodes/${id}`, { trace: t });
    ($("episode-edit-id") as HTMLInputElement).value = id;
    ($("episode-number") as HTMLInputElement).value = String(r.data.number);
    ($("episode-title") as HTMLInputElement).value = r.data.title;
    ($("episode-content") as HTMLTextAreaElement).value = r.data.content ?? "";
    $("episode-submit").textContent = "Save episode";
    $("episode-cancel-edit").hidden = false;
  });
}

async function deleteEpisode(id: string): Promise<void> {
  if (!project) return;
  const p = project;
  await action("delete episode", "button.delete", async (t) => {
    await api.delete(`/projects/${p.id}/episodes/${id}`, { trace: t });
    await loadEpisodes(pageAfter, t);
  });
}

/*=== generations ===*/

let episodeId: string | undefined;
let generationId: string | undefined;
function chooseEpisode(id: string, title: string): void {
  episodeId = id;
  $("generation-episode").textContent = title;
  $("generation").hidden = false;
}

function setProgress(pct: number, text: string): void {
  ($("generation-progress") as HTMLProgressElement).value = pct;
  $("generation-percent").textContent = `${pct}%`;
  $("generation-status").textContent = text;
}

$("generation-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!project || !episodeId) return;
  const body = { projectId: project.id, episodeId, prompt: ($("generation-prompt") as HTMLInputElement).value };
  void action("start generation", "form#generation-form", async (t) => {
    setProgress(0, "queued");
    $("generation-output").textContent = "";
    const q = await api.postIdempotent<GenerationQueued>(`generate ${body.episodeId} ${body.prompt}`, "/generations", body, { trace: t });
    generationId = q.data.id;
    t.jobId = q.data.jobId;
    ($("generation-cancel") as HTMLButtonElement).disabled = false;
    await followEvents(`${apiBase}/generations/${q.data.id}/events`, {
      trace: t,
      onEvent: (e) => {
        const data = JSON.parse(e.data) as { percentage?: number; step?: string; reason?: string; message?: string };
        if (e.event === "progress") setProgress(data.percentage ?? 0, data.step ?? "");
        else if (e.event === "completed") setProgress(100, "completed");
        else setProgress(($("generation-progress") as HTMLProgressElement).value, `${e.event}${data.message ? `: ${data.message}` : ""}`);
        if (e.event !== "progress") logger.logUserAction("generation ended", "progress#generation-progress", { outcome: e.event }, t);
      },
    });
    ($("generation-cancel") as HTMLButtonElement).disabled = true;
    const g = await api.get<Generation>(`/generations/${q.data.id}`, { trace: t });
    $("generation-output").textContent = g.data.output ?? "";
  });
});

$("generation-cancel").addEventListener("click", () => {
  if (!generationId) return;
  const id = generationId;
  void action("cancel generation", "button#generation-cancel", async (t) => {
    await api.delete<Generation>(`/generations/${id}`, { trace: t });
  });
});

/*=== health and metrics panels ===*/

async function refreshHealth(): Promise<void> {
  const started = performance.now();
  let h: Health | undefined;
  try {
    h = (await api.get<Health>("/health", { deadlineMs: 3000 })).data;
  } catch (e) {
    if (e instanceof StandardizedAPIError && e.status === 503) h = undefined;
  }
  const status = h?.status ?? "unreachable";
  const el = $("health-status");
  el.textContent = status;
  el.className = status;
  $("health-time").textContent = `(${Math.round(performance.now() - started)} ms)`;
  $("health-rows").replaceChildren(...(h?.dependencies ?? []).map((d) => {
    const tr = document.createElement("tr");
    for (const c of [d.name, d.status, `${d.responseTime} ms`]) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

const history = new Map<string, { p95: number[]; p99: number[] }>();
async function refreshMetrics(): Promise<void> {
  let m: MetricsSummary;
  try {
    m = (await api.get<MetricsSummary>("/metrics/summary", { deadlineMs: 3000 })).data;
  } catch {
    return;
  }
  const ops = m.operations.filter((o) => o.request_count > 0).slice(0, 12);
  $("metrics-rows").replaceChildren(...ops.map((o) => {
    const tr = document.createElement("tr");
    for (const c of [o.operation, String(o.request_count), o.p95_response_time_ms.toFixed(2),
                     o.p99_response_time_ms.toFixed(2), `${(o.error_rate * 100).toFixed(1)}%`]) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
  for (const o of ops) {
    const h = history.get(o.operation) ?? { p95: [], p99: [] };
    h.p95.push(o.p95_response_time_ms);
    h.p99.push(o.p99_response_time_ms);
    if (h.p95.length > 60) { h.p95.shift(); h.p99.shift(); }
    history.set(o.operation, h);
  }
  drawChart();
}

function drawChart(): void {
  const svg = $("metrics-chart");
  const ns = "http://www.w3.org/2000/svg";
  const w = 640, hgt = 200;
  const series = Array.from(history.entries()).slice(0, 6);
  const max = Math.max(1, ...series.flatMap(([, s]) => s.p99));
  const colours = ["#1565c0", "#2e7d32", "#b26a00", "#6a1b9a", "#c62828", "#00838f"];
  const nodes: SVGElement[] = [];
  series.forEach(([name, s], i) => {
    for (const [vals, dash] of [[s.p95, ""], [s.p99, "4 3"]] as const) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", colours[i] ?? "#333");
      if (dash) line.setAttribute("stroke-dasharray", dash);
      line.setAttribute("points", vals.map((v, k) => `${(k / 59) * (w - 160)},${hgt - (v / max) * (hgt - 10)}`).join(" "));
      nodes.push(line);
    }
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(w - 150));
    label.setAttribute("y", String(14 + i * 14));
    label.setAttribute("fill", colours[i] ?? "#333");
    label.textContent = name;
    nodes.push(label);
  });
  const axis = document.createElementNS(ns, "text");
  axis.setAttribute("x", "0");
  axis.setAttribute("y", "218");
  axis.textContent = `max ${max.toFixed(2)} ms (solid p95, dashed p99)`;
  nodes.push(axis);
  svg.replaceChildren(...nodes);
}

renderProjects();
void refreshHealth();
void refreshMetrics();
setInterval(() => void refreshHealth(), 5000);
setInterval(() => void refreshMetrics(), 5000);
