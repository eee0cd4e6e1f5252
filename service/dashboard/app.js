// vidhook's operations dashboard: a client of the public /v1 API, nothing more.
//
// - The API key lives in sessionStorage (this tab only) and travels as `Authorization: Bearer`;
//   never in a URL, so it is in no history, log or Referer.
// - Server-sent events are read with fetch() and a stream parser, because EventSource cannot
//   send an Authorization header.
// - Every value shown is user input or upstream data: the DOM is built with createElement and
//   textContent only, never innerHTML, and URLs are used only when they are http(s).
// - Which parts exist on this server is read once from /openapi.json, so a missing endpoint
//   is a section that says so, not a 404 in the console.

const KEY_STORAGE = "vidhook.dashboard.key";
const STATUSES = ["queued", "submitting", "submitted", "in_progress", "completed", "failed", "cancelled"];
const ACTIVE = ["queued", "submitting", "submitted", "in_progress"];
const TERMINAL = ["completed", "failed", "cancelled"];
const PAGE_SIZE = 20;
const POLL_MS = 5000;
const STATS_REFRESH_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { scope: null, paths: null, viewAbort: null };

// ---------- DOM ----------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (name.startsWith("on") || name === "style" || name === "srcdoc") throw new Error(`refused attribute ${name}`);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

function safeUrl(value) {
  // Only http(s) URLs become links or media sources: no javascript:, data: or blob: from data.
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value, location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function usd(value) {
  return typeof value === "number" ? `$${value.toFixed(2)}` : "—";
}

function badge(status) {
  return el("span", { className: `badge s-${STATUSES.includes(status) ? status : "unknown"}`, text: status ?? "?" });
}

function notice(text, kind = "muted") {
  return el("p", { className: kind, text });
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${key()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, signal, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  // Only /v1/stats decides whether the key is still good: an operator key is refused (401) by
  // tenant-only endpoints such as /v1/endpoints, and that must not sign the operator out.
  if (response.status === 401 && path === "/v1/stats" && key()) {
    signOut("The server no longer accepts this key.");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}

async function loadPaths() {
  if (state.paths) return state.paths;
  const response = await fetch("/openapi.json", { cache: "no-store", credentials: "omit" });
  const document_ = await response.json();
  const paths = new Set();
  for (const [path, item] of Object.entries(document_.paths || {})) {
    for (const method of Object.keys(item)) paths.add(`${method.toUpperCase()} ${path}`);
  }
  state.paths = paths;
  return paths;
}

function has(method, path) {
  return Boolean(state.paths && state.paths.has(`${method} ${path}`));
}

// Server-sent events over fetch. Calls onEvent({id, event, data}) for each; resolves when the
// server ends the stream. `lastEventId` resumes where an earlier stream stopped.
async function readEvents(path, { onEvent, signal, lastEventId }) {
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${key()}` };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers, signal, cache: "no-store", credentials: "omit" });
  if (!response.ok || !response.body) throw new ApiError(response.status, null);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { id: null, event: "message", data: [] };
  let lastId = lastEventId || null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return lastId;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (message.data.length) {
          if (message.id !== null) lastId = message.id;
          let data = message.data.join("\n");
          try {
            data = JSON.parse(data);
          } catch {
            // not JSON: hand it on as text
          }
          onEvent({ id: message.id ?? lastId, event: message.event, data });
        }
        message = { id: null, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") message.data.push(text);
      else if (field === "id") message.id = text;
      else if (field === "event") message.event = text;
    }
  }
}

// Follow an endless stream (GET /v1/events), resuming after drops, until `signal` aborts.
async function followEvents(path, onEvent, signal, onState) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      onState("live");
      lastId = await readEvents(path, { onEvent, signal, lastEventId: lastId });
      delay = 500;
    } catch (error) {
      if (signal.aborted) return;
      onState("reconnecting");
      if (error instanceof ApiError && error.status === 401) return;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// A job's event fields, whichever names the stream uses for them.
function transition(data) {
  if (!data || typeof data !== "object") return null;
  const to = data.to ?? data.to_status ?? data.status;
  if (!to) return null;
  const at = data.at ?? (data.at_ms ? new Date(Number(data.at_ms)).toISOString() : null);
  return { jobId: data.job_id ?? data.id, from: data.from ?? data.from_status ?? null, to, at, reason: data.reason ?? "" };
}

// ---------- sign-in ----------

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.scope = null;
  showSignIn(message);
}

function showSignIn(message) {
  if (state.viewAbort) state.viewAbort.abort();
  clear(document.getElementById("view"));
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("signin").hidden = false;
  const error = document.getElementById("signin-error");
  error.hidden = !message;
  error.textContent = message || "";
  document.getElementById("key").focus();
}

async function signIn(candidate) {
  const response = await fetch("/v1/stats", {
    headers: { Accept: "application/json", Authorization: `Bearer ${candidate}` },
    cache: "no-store", credentials: "omit",
  });
  if (response.status === 401) return "That key was not accepted.";
  if (!response.ok) return `The server answered ${response.status}.`;
  const stats = await response.json();
  sessionStorage.setItem(KEY_STORAGE, candidate);
  state.scope = stats.scope;
  return null;
}

function showSignedIn() {
  document.getElementById("signin").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  const scope = state.scope || {};
  document.getElementById("who").textContent = scope.all_tenants ? "operator · all tenants" : `tenant ${scope.tenant}`;
}

// ---------- overview ----------

function card(title, ...body) {
  return el("div", { className: "card" }, el("h3", { text: title }), ...body);
}

function big(value, suffix) {
  return el("p", { className: "big" }, String(value), suffix ? el("small", { text: ` ${suffix}` }) : null);
}

function sparkline(series) {
  const width = 360;
  const height = 64;
  const values = series.map((point) => (point.completed || 0) + (point.failed || 0) + (point.cancelled || 0));
  const failed = series.map((point) => point.failed || 0);
  const top = Math.max(1, ...values);
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `jobs ended per minute, last ${series.length} minutes`);
  const line = (data, className) => {
    const step = width / Math.max(1, data.length - 1);
    const points = data.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 6)).toFixed(1)}`);
    const polyline = document.createElementNS(SVG_NS, "polyline");
    polyline.setAttribute("points", points.join(" "));
    polyline.setAttribute("class", className);
    svg.append(polyline);
  };
  line(values, "spark-all");
  line(failed, "spark-failed");
  return svg;
}

function renderStats(target, stats, usage) {
  const counts = stats.counts || {};
  const last = stats.last_hour || {};
  const inFlight = stats.in_flight || {};
  const queue = stats.queue || {};
  const series = stats.throughput?.series || [];
  const perMinute = series.slice(-5).reduce((sum, p) => sum + (p.completed || 0), 0) / 5;
  const cards = [
    card("Jobs by state",
      el("ul", { className: "states" },
        ACTIVE.map((s) => el("li", { "data-status": s }, badge(s), el("b", { text: counts[s] ?? 0 }))),
        TERMINAL.map((s) => el("li", { "data-status": s }, badge(s), el("b", { text: last[s] ?? 0 }), el("small", { text: " last hour" }))))),
    card("In flight at fal",
      big(inFlight.leases ?? inFlight.count ?? 0, inFlight.budget ? `of ${inFlight.budget}` : ""),
      inFlight.budget ? meter(inFlight.leases ?? inFlight.count ?? 0, inFlight.budget) : notice("No in-flight budget on this server."),
      stats.dispatch?.paused ? notice(`Dispatch paused: ${stats.dispatch.paused.reason}`, "warn") : null),
    card("Queue",
      big(queue.depth ?? 0, "queued"),
      el("p", { text: `oldest waiting ${age(queue.oldest_age_s)}` }),
      queue.tasks_due !== null && queue.tasks_due !== undefined ? el("p", { className: "muted", text: `${queue.tasks_due} worker tasks due` }) : null),
    card("Last hour",
      el("p", {}, el("b", { className: "bad", text: last.failed ?? 0 }), " failed"),
      deadLetters(stats)),
    card("Throughput",
      sparkline(series),
      el("p", { className: "muted", text: `${perMinute.toFixed(1)} completed/min (last 5 min)` })),
    // /v1/stats carries spend against caps for every tenant in scope (operator keys too).
    card("Spend today", usageBody(stats.spend ?? usage)),
  ];
  clear(target);
  append(target, cards);
  if (stats.tenants) {
    const rows = Object.entries(stats.tenants).map(([tenant, c]) =>
      el("tr", {}, el("td", { text: tenant }), ACTIVE.map((s) => el("td", { className: "num", text: c[s] ?? 0 }))));
    target.append(card("Tenants",
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "tenant" }), ACTIVE.map((s) => el("th", { text: s })))), el("tbody", {}, rows))));
  }
  if (stats.complete === false) target.append(notice("Counts are catching up with the event stream (or some events were trimmed before they were counted).", "warn"));
}

function meter(value, max) {
  return el("meter", { min: 0, max, value, high: Math.floor(max * 0.9), optimum: 0 });
}

function deadLetters(stats) {
  if (typeof stats.dead_letters_last_hour === "number") {
    return el("p", {}, el("b", { className: "bad", text: stats.dead_letters_last_hour }), " dead-lettered callbacks");
  }
  return notice("Dead-lettered callbacks: not available on this server.");
}

function usageBody(usage) {
  if (usage === undefined) return notice("Spend: not available on this server.");
  if (usage === null) return notice("Spend could not be read.", "warn");
  // GET /v1/usage: one row per tenant, each with today's spend and its cap.
  const rows = Array.isArray(usage.data) ? usage.data : Array.isArray(usage.tenants) ? usage.tenants : [usage];
  return el("table", { className: "usage" },
    el("thead", {}, el("tr", {}, el("th", { text: "tenant" }), el("th", { text: "today" }), el("th", { text: "cap" }))),
    el("tbody", {}, rows.map((row) => {
      const spent = row.spend_today_usd ?? row.today?.spend_usd ?? row.today_usd;
      const cap = row.daily_cap_usd ?? row.cap_today_usd ?? row.today?.cap_usd ?? null;
      return el("tr", {},
        el("td", { text: row.tenant ?? state.scope?.tenant ?? "" }),
        el("td", { className: "num", text: usd(spent) }),
        el("td", { className: "num" }, cap ? append(el("span"), [usd(cap), " ", meter(spent || 0, cap)]) : "no cap"));
    })));
}

async function overviewView(view, signal) {
  const liveNote = el("p", { className: "muted live", text: "connecting…" });
  const grid = el("div", { className: "grid", id: "overview" });
  const feed = el("ol", { className: "feed", id: "feed" });
  append(view, [el("div", { className: "title" }, el("h1", { text: "Overview" }), liveNote), grid]);
  const readUsage = async () => {
    if (!has("GET", "/v1/usage")) return undefined;
    try {
      return (await api("/v1/usage", { signal })).data;
    } catch (error) {
      if (signal.aborted) throw error;
      return null;
    }
  };
  let pending = null;
  const refresh = async () => {
    const stats = await api("/v1/stats", { signal });
    // /v1/stats carries spend against caps itself; /v1/usage (tenant keys only) is the fallback.
    const usage = stats.data.spend ? undefined : await readUsage();
    renderStats(grid, stats.data, usage);
  };
  // At most one refresh per STATS_REFRESH_MS, however fast events arrive.
  const schedule = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      refresh().catch(() => {});
    }, STATS_REFRESH_MS);
  };
  signal.addEventListener("abort", () => clearTimeout(pending));
  await refresh();
  // The event streams answer tenant keys only (an operator key gets 401): operators poll.
  if (has("GET", "/v1/events") && !state.scope?.all_tenants) {
    view.append(card("Recent state changes", feed));
    followEvents("/v1/events", ({ data }) => {
      const move = transition(data);
      if (!move) return;
      feed.prepend(el("li", {},
        el("a", { href: `#/jobs/${encodeURIComponent(move.jobId ?? "")}`, text: move.jobId ?? "?" }), " ",
        move.from ? badge(move.from) : null, move.from ? " → " : null, badge(move.to),
        el("small", { text: ` ${move.reason} · ${when(move.at)}` })));
      while (feed.children.length > 20) feed.lastChild.remove();
      schedule();
    }, signal, (s) => { liveNote.textContent = s === "live" ? "live · event stream" : "reconnecting to the event stream…"; });
  } else {
    liveNote.textContent = `the event stream (GET /v1/events) is not available to this key: refreshing every ${POLL_MS / 1000} s`;
    const timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
    signal.addEventListener("abort", () => clearInterval(timer));
  }
}

// ---------- jobs list ----------

function hashQuery() {
  const hash = location.hash.replace(/^#/, "");
  const at = hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
}

function toIso(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function jobOpener() {
  const input = el("input", { type: "text", name: "job_id", placeholder: "job_…", spellcheck: "false", "aria-label": "job id" });
  const form = el("form", { className: "opener", on: { submit: (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/jobs/${encodeURIComponent(id)}`;
  } } }, el("label", { text: "Open a job by id " }), input, el("button", { type: "submit", text: "Open" }));
  return form;
}

async function jobsView(view, signal) {
  const query = hashQuery();
  append(view, [el("div", { className: "title" }, el("h1", { text: "Jobs" })), jobOpener()]);
  if (!has("GET", "/v1/jobs")) {
    view.append(notice("The job list (GET /v1/jobs) is not available on this server; open a job by its id.", "warn"));
    return;
  }
  const operator = Boolean(state.scope?.all_tenants);
  const field = (name, node) => el("label", {}, el("span", { text: name }), node);
  const status = el("select", { name: "status" }, el("option", { value: "", text: "any" }),
    STATUSES.map((s) => el("option", { value: s, text: s, selected: query.get("status") === s })));
  const endpoint = el("input", { name: "endpoint", list: "endpoints", value: query.get("endpoint") || "", placeholder: "any" });
  const endpoints = el("datalist", { id: "endpoints" });
  const tenant = operator ? el("input", { name: "tenant", value: query.get("tenant") || "", placeholder: "any" }) : null;
  const after = el("input", { type: "datetime-local", name: "created_after" });
  const before = el("input", { type: "datetime-local", name: "created_before" });
  const filters = el("form", { className: "filters", id: "filters", on: { submit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (status.value) next.set("status", status.value);
    if (endpoint.value.trim()) next.set("endpoint", endpoint.value.trim());
    if (tenant && tenant.value.trim()) next.set("tenant", tenant.value.trim());
    if (toIso(after.value)) next.set("created_after", toIso(after.value));
    if (toIso(before.value)) next.set("created_before", toIso(before.value));
    location.hash = `#/jobs?${next}`;
  } } },
  field("state", status), field("endpoint", endpoint), endpoints, tenant ? field("tenant", tenant) : null,
  field("created after", after), field("created before", before), el("button", { type: "submit", text: "Filter" }));
  const table = el("table", { className: "jobs", id: "jobs" });
  const pager = el("div", { className: "pager" });
  append(view, [filters, table, pager]);
  if (!operator) api("/v1/endpoints", { signal }).then(({ data }) => {
    append(endpoints, (data.endpoints || []).map((e) => el("option", { value: e.endpoint })));
  }).catch(() => {});

  const params = new URLSearchParams();
  for (const name of ["status", "endpoint", "tenant", "created_after", "created_before", "cursor"]) {
    if (query.get(name)) params.set(name, query.get(name));
  }
  params.set("limit", String(PAGE_SIZE));
  let page;
  try {
    page = (await api(`/v1/jobs?${params}`, { signal })).data;
  } catch (error) {
    if (error instanceof ApiError) {
      view.append(notice(`The server refused the filters: ${error.message}`, "error"));
      return;
    }
    throw error;
  }
  const head = el("tr", {}, ["job", operator ? "tenant" : null, "endpoint", "state", "created", "cost"]
    .filter(Boolean).map((name) => el("th", { text: name })));
  const rows = (page.data || []).map((job) => el("tr", { "data-job": job.id },
    el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, text: job.id })),
    operator ? el("td", { text: job.tenant ?? "" }) : null,
    el("td", { text: job.endpoint }),
    el("td", {}, badge(job.status)),
    el("td", { text: when(job.created_at) }),
    el("td", { className: "num", text: usd(job.estimated_cost_usd) })));
  append(table, [el("thead", {}, head), el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, text: "No jobs match." })))]);
  if (query.get("cursor")) pager.append(el("button", { type: "button", className: "quiet", text: "← Newer", on: { click: () => history.back() } }));
  if (page.next_cursor) {
    const next = new URLSearchParams(query);
    next.set("cursor", page.next_cursor);
    pager.append(el("a", { className: "button", href: `#/jobs?${next}`, text: "Older →" }));
  }
}

// ---------- job page ----------

function formatBytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KiB`;
  return `${(count / 1024 / 1024).toFixed(1)} MiB`;
}

function inputValue(value) {
  if (typeof value === "string") {
    const data = /^data:([a-z]+\/[-+.\w]+)?[;,]/i.exec(value);
    if (data) {
      const type = (data[1] || "application/octet-stream").toLowerCase();
      const size = formatBytes(Math.floor((value.length - value.indexOf(",") - 1) * 0.75));
      if (type.startsWith("image/")) {
        return el("figure", { className: "thumb" }, el("img", { src: value, alt: `input image (${type})` }), el("figcaption", { text: `${type}, ${size}` }));
      }
      return el("span", { className: "muted", text: `${type} data URI, ${size}` });
    }
    const url = /^https?:\/\//i.test(value) ? safeUrl(value) : null;
    if (url) return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: value });
    return el("span", { className: "text", text: value });
  }
  if (Array.isArray(value)) return el("ol", { className: "list" }, value.map((item) => el("li", {}, inputValue(item))));
  if (value && typeof value === "object") return fields(value);
  return el("code", { text: JSON.stringify(value) });
}

function fields(object) {
  return el("dl", { className: "fields" }, Object.entries(object).map(([name, value]) => [el("dt", { text: name }), el("dd", {}, inputValue(value))]));
}

function fact(name, value) {
  return [el("dt", { text: name }), el("dd", {}, value ?? "—")];
}

function timelineRow(move) {
  return el("li", {}, el("time", { text: when(move.at) }), " ", move.from ? [badge(move.from), " → "] : null, badge(move.to), move.reason ? el("small", { text: ` ${move.reason}` }) : null);
}

function derivedTimeline(job) {
  // Without the job event stream: the moments the job resource itself records.
  const moves = [{ at: job.created_at, from: null, to: "queued", reason: "created" }];
  const step = (at, to, reason = "") => moves.push({ at, from: moves[moves.length - 1].to, to, reason });
  if (job.submitted_at) step(job.submitted_at, "submitted");
  if (job.status === "in_progress") step(job.updated_at, "in_progress");
  if (TERMINAL.includes(job.status)) step(job.completed_at || job.updated_at, job.status);
  return moves;
}

function resultBody(job) {
  if (job.status === "failed") return el("pre", { className: "error", text: JSON.stringify(job.error, null, 2) });
  if (job.status !== "completed") return notice(job.status === "cancelled" ? "Cancelled: no result." : "No result yet.");
  const video = job.result?.video;
  const url = safeUrl(video?.url);
  const parts = [];
  if (url) {
    parts.push(el("video", { id: "result-video", src: url, controls: true, muted: true, playsinline: true, preload: "metadata", crossorigin: null }));
    parts.push(el("p", {}, el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: video.file_name || "video" }),
      video.file_size ? ` · ${formatBytes(video.file_size)}` : "", video.content_type ? ` · ${video.content_type}` : ""));
  }
  parts.push(el("details", {}, el("summary", { text: "result JSON" }), el("pre", { text: JSON.stringify(job.result, null, 2) })));
  return el("div", {}, parts);
}

// GET /v1/jobs/{id}/deliveries: one delivery per event type, each with its attempts.
function deliveryRows(data) {
  return Array.isArray(data?.data) ? data.data : [];
}

function deliveriesTable(data) {
  const rows = deliveryRows(data);
  if (!rows.length) return notice("No delivery attempts yet.");
  const body = [];
  for (const delivery of rows) {
    const next = delivery.status === "scheduled" && delivery.next_attempt_at ? ` · next ${when(delivery.next_attempt_at)}` : "";
    const dead = delivery.dead_letter_reason ? ` · ${delivery.dead_letter_reason}` : "";
    body.push(el("tr", { className: "delivery" },
      el("th", { colspan: 3 },
        el("span", { className: "mono", text: delivery.event }), " ", badge(delivery.status),
        el("span", { className: "muted", text: ` ${delivery.webhook_id}${next}${dead}` }))));
    const attempts = Array.isArray(delivery.attempts) ? delivery.attempts : [];
    if (!attempts.length) body.push(el("tr", {}, el("td", { colspan: 3, className: "muted", text: "not attempted yet" })));
    for (const attempt of attempts) {
      const answer = attempt.status_code ? `HTTP ${attempt.status_code}` : "no answer";
      body.push(el("tr", { className: "attempt" },
        el("td", { text: `${attempt.series > 0 ? `redelivery ${attempt.series}, ` : ""}#${attempt.number} ${when(attempt.at)}` }),
        el("td", { text: attempt.error && attempt.status_code ? answer : (attempt.error ?? answer) }),
        el("td", { className: "num", text: typeof attempt.latency_ms === "number" ? `${Math.round(attempt.latency_ms)} ms` : "—" })));
    }
  }
  return el("table", { className: "deliveries", id: "deliveries" },
    el("thead", {}, el("tr", {}, ["attempt", "outcome", "latency"].map((name) => el("th", { text: name })))),
    el("tbody", {}, body));
}

async function jobView(view, signal, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let job;
  try {
    job = (await api(path, { signal })).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      append(view, [el("h1", { text: "Job not found" }), notice(`No job ${jobId} for this key.`, "warn"), jobOpener()]);
      return;
    }
    throw error;
  }
  const header = el("div", { className: "title" });
  const facts = el("dl", { className: "facts" });
  const actions = el("div", { className: "actions" });
  const message = el("p", { className: "muted", id: "action-message", role: "status" });
  const result = el("section", { className: "card wide", id: "result" });
  const timeline = el("ol", { className: "timeline", id: "timeline" });
  const input = el("section", { className: "card wide", id: "input" }, el("h3", { text: "Input" }));
  const metadata = el("section", { className: "card", id: "metadata" }, el("h3", { text: "Metadata" }));
  const deliveries = el("section", { className: "card", id: "callback" }, el("h3", { text: "Callback deliveries" }));
  append(view, [header, el("div", { className: "grid job" },
    el("section", { className: "card" }, el("h3", { text: "Details" }), facts, actions, message),
    el("section", { className: "card" }, el("h3", { text: "Timeline" }), timeline),
    result, input, metadata, deliveries)]);

  let lastRenderedStatus = null;
  let followUps = 0;
  const render = () => {
    clear(header);
    append(header, [el("h1", { className: "mono", text: job.id }), badge(job.status)]);
    clear(facts);
    append(facts, [
      state.scope?.all_tenants && job.tenant ? fact("tenant", job.tenant) : null,
      fact("endpoint", job.endpoint),
      fact("fal request id", job.fal_request_id ? el("code", { id: "fal-request-id", text: job.fal_request_id }) : null),
      fact("estimated cost", usd(job.estimated_cost_usd)),
      fact("created", when(job.created_at)),
      fact("submitted", when(job.submitted_at)),
      fact("finished", when(job.completed_at)),
      job.cancel_requested_at ? fact("cancel requested", when(job.cancel_requested_at)) : null,
      fact("submissions", `${job.submissions?.attempts ?? 0} (resubmits ${job.submissions?.resubmits ?? 0})`),
    ]);
    clear(actions);
    if (!TERMINAL.includes(job.status)) {
      actions.append(el("button", { type: "button", id: "cancel", className: "danger", text: "Cancel job", on: { click: cancel } }));
    }
    if (job.callback && TERMINAL.includes(job.status) && has("POST", "/v1/jobs/{job_id}/callback/redeliver")) {
      actions.append(el("button", { type: "button", id: "redeliver", text: "Redeliver callback", on: { click: redeliver } }));
    }
    if (job.status !== lastRenderedStatus) {
      // Re-rendering the result on every event would restart a playing video.
      clear(result);
      append(result, [el("h3", { text: "Result" }), resultBody(job)]);
      lastRenderedStatus = job.status;
    }
    renderCallback();
    clear(metadata);
    append(metadata, [el("h3", { text: "Metadata" }), job.metadata ? fields(job.metadata) : notice("None.")]);
  };
  const renderCallback = async () => {
    const body = [el("h3", { text: "Callback deliveries" })];
    if (!job.callback) {
      clear(deliveries);
      append(deliveries, [...body, notice("This job has no callback URL.")]);
      return;
    }
    body.push(el("p", {}, el("span", { className: "mono", text: job.callback.url }), " ", el("b", { id: "callback-status", text: job.callback.status }),
      ` · ${job.callback.attempts} attempt(s)`, job.callback.last_error ? el("span", { className: "error", text: ` · ${job.callback.last_error}` }) : null));
    if (has("GET", "/v1/jobs/{job_id}/deliveries")) {
      try {
        const { data } = await api(`${path}/deliveries`, { signal });
        body.push(deliveriesTable(data));
        // While a delivery is still being sent, look again shortly (a handful of times).
        if (deliveryRows(data).some((d) => d.status === "scheduled") && followUps < 20) {
          followUps += 1;
          setTimeout(() => { if (!signal.aborted) renderCallback(); }, 1000);
        }
      } catch (error) {
        if (signal.aborted) return;
        body.push(notice(`The delivery log could not be read: ${error.message}`, "warn"));
      }
    } else {
      body.push(notice("The delivery log (GET /v1/jobs/{id}/deliveries) is not available on this server."));
    }
    clear(deliveries);
    append(deliveries, body);
  };
  const reload = async () => {
    job = (await api(path, { signal })).data;
    render();
  };
  const act = async (question, call, done) => {
    if (!window.confirm(question)) return;
    message.textContent = "…";
    try {
      const { status } = await call();
      message.textContent = done(status);
    } catch (error) {
      message.textContent = `Refused: ${error.message}`;
    }
    await reload();
  };
  async function cancel() {
    await act(`Cancel job ${job.id}?`, () => api(`${path}/cancel`, { method: "POST", signal }),
      (status) => (status === 202 ? "Cancel requested at fal." : "Cancelled."));
  }
  async function redeliver() {
    followUps = 0;
    await act(`Send the callback of ${job.id} again?`, () => api(`${path}/callback/redeliver`, { method: "POST", signal }),
      () => "Redelivery queued.");
  }
  render();

  api(`${path}/input`, { signal }).then(({ data }) => {
    clear(input);
    const gone = "Not kept: this job's input was dropped before vidhook kept inputs in the media store.";
    append(input, [el("h3", { text: "Input" }), data.input ? fields(data.input) : notice(TERMINAL.includes(job.status) ? gone : "None.")]);
  }).catch((error) => {
    if (!signal.aborted) input.append(notice(`The input could not be read: ${error.message}`, "warn"));
  });

  if (has("GET", "/v1/jobs/{job_id}/events") && !state.scope?.all_tenants) {
    // Replays the job's history, follows it live, and ends after the terminal event.
    let lastId = null;
    const onEvent = ({ id, data }) => {
      const move = transition(data);
      if (!move) return;
      lastId = id;
      timeline.append(timelineRow(move));
      if (move.to !== job.status) reload().catch(() => {});
    };
    (async () => {
      for (let tries = 0; tries < 5 && !signal.aborted; tries += 1) {
        try {
          lastId = await readEvents(`${path}/events`, { onEvent, signal, lastEventId: lastId });
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      if (!signal.aborted) await reload();
    })().catch(() => {});
  } else {
    const drawDerived = () => {
      clear(timeline);
      append(timeline, derivedTimeline(job).map(timelineRow));
      timeline.append(el("li", { className: "muted", text: "(from the job's timestamps: the job event stream is not available to this key)" }));
    };
    drawDerived();
    const timer = setInterval(async () => {
      if (TERMINAL.includes(job.status)) return clearInterval(timer);
      try {
        await reload();
        drawDerived();
      } catch {
        // the next tick tries again
      }
    }, 1000);
    signal.addEventListener("abort", () => clearInterval(timer));
  }
}

// ---------- routing ----------

async function route() {
  if (state.viewAbort) state.viewAbort.abort();
  if (!key()) return showSignIn();
  const controller = new AbortController();
  state.viewAbort = controller;
  const view = clear(document.getElementById("view"));
  const hash = location.hash.replace(/^#/, "") || "/";
  const [pathPart] = hash.split("?");
  const job = /^\/jobs\/(.+)$/.exec(pathPart);
  const name = job ? "job" : pathPart.startsWith("/jobs") ? "jobs" : "overview";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === (job ? "jobs" : name));
  try {
    if (job) await jobView(view, controller.signal, decodeURIComponent(job[1]));
    else if (name === "jobs") await jobsView(view, controller.signal);
    else await overviewView(view, controller.signal);
  } catch (error) {
    if (controller.signal.aborted) return;
    view.append(notice(`Something went wrong: ${error.message}`, "error"));
  }
}

async function start() {
  await loadPaths();
  document.getElementById("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    const problem = await signIn(input.value.trim());
    input.value = "";
    if (problem) return showSignIn(problem);
    showSignedIn();
    route();
  });
  document.getElementById("signout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", () => route());
  if (key()) {
    const problem = await signIn(key());
    if (problem) return signOut(problem);
    showSignedIn();
  }
  route();
}

start();
