// The nbwatch dashboard: polls this node's API and draws tables and inline SVG charts.
// No framework and nothing from the internet: the daemon serves this file itself.
// Every value from the API is put into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;          // tables: members, services, alerts, events
const CHART_POLL_MS = 10000;   // charts: history is recorded every few seconds
const MAX_CHART_HOSTS = 32;    // a page of charts, not thousands
const MAX_EVENTS = 30;
const MAX_ALERTS = 20;
const MAX_REACH_GRID = 32;     // hosts in the who-hears-whom grid; past that, only the gaps
const MAX_GRAPH_HOSTS = 24;    // columns of the dependency graph; past that, only the summary
// Each window asks for about 120-240 averaged points. The default, an hour, in 15 s buckets,
// so a fresh cluster's first minute already draws a line.
const WINDOWS = {
  "10m": { since: "10m", step: "5s", stepMs: 5e3, ms: 600e3 },
  hour: { since: "1h", step: "15s", stepMs: 15e3, ms: 3600e3 },
  day: { since: "24h", step: "10m", stepMs: 600e3, ms: 86400e3 },
  week: { since: "7d", step: "1h", stepMs: 3600e3, ms: 7 * 86400e3 },
};
// Points further apart than this many buckets, and than a quiet host's longest silence (its
// samples within the dead-band are held back up to 30 s), are not joined: the gap is an outage.
const GAP_BUCKETS = 3;
const GAP_MIN_MS = 45e3;
const METRICS = [
  { key: "load1", label: "load (1 min)", cls: "load", max: null, unit: "" },
  { key: "mem_used_pct", label: "memory used", cls: "mem", max: 100, unit: "%" },
];
const SVG = "http://www.w3.org/2000/svg";

// The window in the address (`/#day`) wins, so a view can be bookmarked.
let windowName = WINDOWS[location.hash.slice(1)] ? location.hash.slice(1) : "hour";
let members = [];
let serverSkewMs = 0;          // server clock minus browser clock
let chartTimer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "-" : String(c)));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function pill(state) {
  return el("span", { class: "pill s-" + state }, state);
}

function age(iso, nowMs) {
  const t = Date.parse(iso);
  if (isNaN(t)) return "-";
  const s = Math.max(0, (nowMs - t) / 1000);
  if (s < 10) return s.toFixed(1) + "s ago";
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 48 * 3600) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "-";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmt(v, digits) {
  return typeof v === "number" ? v.toFixed(digits) : "-";
}

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error) || `${path}: HTTP ${r.status}`);
  return body;
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = document.querySelectorAll(`#${table} thead th`).length;
    body.append(el("tr", { "data-empty": "" }, el("td", { colspan: cols, class: "muted" }, "none")));
  }
}

function renderMembers(overview, nowMs) {
  members = overview.members;
  replaceRows("members", members.map((m) => {
    const gone = m.state === "down" || m.state === "left";
    return el("tr", { "data-member": m.name, "data-state": m.state, class: gone ? "gone" : null },
      el("td", {}, m.name),
      el("td", {}, m.addr),
      el("td", {}, pill(m.state)),
      el("td", { title: m.last_heard }, age(m.last_heard, nowMs)),
      el("td", { "data-leader": m.is_leader ? "yes" : "no" }, m.is_leader ? "★ leader" : ""),
      el("td", { class: "num" }, fmt(m.metrics && m.metrics.load1, 2)),
      el("td", { class: "num" }, m.metrics && typeof m.metrics.mem_used_pct === "number" ? fmt(m.metrics.mem_used_pct, 1) + " %" : "-"),
      el("td", { class: "num" }, m.incarnation),
      el("td", { class: "wrap" }, ...probePills(m)));
  }));
}

// Zones: shown once there is more than one; this zone first, marked.
function renderZones(zones) {
  document.getElementById("zones-section").hidden = zones.length < 2;
  const sorted = [...zones].sort((a, b) => (b.this - a.this) || a.name.localeCompare(b.name));
  replaceRows("zones", sorted.map((z) => {
    const state = z.reachable ? "reachable" : "unreachable";
    const load = z.aggregates && z.aggregates.load1;
    return el("tr", { "data-zone": z.name, "data-state": state, "data-up": z.members_up, class: z.reachable ? null : "gone" },
      el("td", {}, z.this ? `${z.name} (this zone)` : z.name),
      el("td", { title: z.since || "" }, pill(z.reachable ? "alive" : "down"), z.reachable ? "" : " since " + clock(z.since)),
      el("td", { class: "num" }, `${z.members_up}/${z.members_total}`),
      el("td", { class: "num" }, z.down),
      el("td", {}, z.leader || "-"),
      el("td", { class: "wrap" }, z.representatives.map((r) => r.node).join(", ")),
      el("td", { class: "num" }, z.incidents),
      el("td", { class: "num" }, load ? `${fmt(load.mean, 2)} / ${fmt(load.max, 2)}` : "-"));
  }));
}

// A host's probes: a pill per probe, its name and health, its perfdata in the tooltip.
function probePills(m) {
  const probes = Object.entries(m.probes || {});
  if (probes.length === 0) return ["-"];
  return probes.map(([name, p]) => {
    const items = Object.entries(p.perfdata || {})
      .map(([label, d]) => `${label}=${d.value}${d.unit}` + (d.warn || d.crit ? ` (warn ${d.warn || "-"}, crit ${d.crit || "-"})` : ""));
    const e = el("span", { class: "pill s-" + p.health, "data-probe": `${m.name}:${name}`, "data-health": p.health,
      title: items.join("\n") || p.health }, name);
    return e;
  });
}

function renderServices(overview, nowMs) {
  replaceRows("services", overview.services.map((s) => {
    const stale = s.node_state === "down" || s.node_state === "left";
    // A down host's services are not known to run: their last word is shown as stale.
    return el("tr", { "data-service": `${s.node}:${s.name}`, "data-state": s.state, "data-stale": String(stale),
                      class: stale ? "gone" : null,
                      title: stale ? `${s.node} is ${s.node_state}: last known ${s.state}, health ${s.health}` : null },
      el("td", {}, s.node),
      el("td", {}, s.name),
      el("td", {}, s.tree),
      el("td", {}, stale ? el("span", { class: "pill s-stale" }, `stale (${s.state})`) : pill(s.state)),
      el("td", {}, stale ? "-" : pill(s.health || "unknown")),
      el("td", { class: "num" }, s.pid),
      el("td", { class: "num" }, s.restarts),
      el("td", {}, s.last_exit),
      el("td", {}, s.since ? age(s.since, nowMs) : "-"));
  }));
}

function renderAlerts(overview) {
  const list = [...overview.alerts].sort((a, b) => (a.at < b.at ? 1 : -1)).slice(0, MAX_ALERTS);
  replaceRows("alerts", list.map((a) => el("tr", { "data-alert": a.id, "data-state": a.state },
    el("td", {}, clock(a.at)),
    el("td", {}, a.id),
    el("td", {}, pill(a.state)),
    el("td", {}, a.sent_by || a.by),
    el("td", { class: "sinks" }, (a.sinks || []).map((s) => `${s.sink}: ${s.result}`).join("; ") || "-"),
    el("td", { class: "wrap" }, a.summary))));
}

// Who hears whom directly: a grid (rows hear columns) for a small cluster, and always a line
// per host that does not hear some others, so a one-way or partial cut shows.
function renderReach(overview) {
  const r = overview.reachability || { nodes: [], rows: [], window_s: 0 };
  const gaps = r.rows.filter((row) => row.known && (row.unheard.length > 0 || row.more > 0));
  const unknown = r.rows.filter((row) => !row.known).map((row) => row.node);
  let summary = gaps.length === 0
    ? `Every live host hears every other directly (within ${r.window_s} s).`
    : gaps.map((row) => `${row.node} does not hear ${row.unheard.join(", ")}` +
        (row.more > 0 ? ` and ${row.more} more` : "")).join(" · ");
  if (unknown.length > 0) summary += ` · ${unknown.join(", ")} do not say`;
  document.getElementById("reach-summary").textContent = summary;
  const table = document.getElementById("reach");
  const names = r.nodes.length <= MAX_REACH_GRID ? r.nodes : [];
  if (names.length === 0) {
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    return;
  }
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "hears →"), ...names.map((n) => el("th", {}, n))));
  replaceRows("reach", r.rows.map((row) =>
    el("tr", { "data-reach": row.node },
      el("th", {}, row.node),
      ...names.map((n) => {
        const word = n === row.node ? "-" : !row.known ? "?" : row.unheard.includes(n) ? "no" : "yes";
        return el("td", { "data-to": n, class: word === "no" ? "s-down" : null }, word);
      }))));
}

// The last MAX_EVENTS events: the last day's once, then only those recorded since (`after`
// the newest id seen), so a busy history is not sent again every two seconds. Events from the
// daemon's memory (no database) have no ids and are fetched whole each time.
let recentEvents = [];
let lastEventId = null;

async function newEvents() {
  const path = lastEventId === null ? "/api/v1/events?since=24h" : `/api/v1/events?after=${lastEventId}`;
  const fresh = await getJson(path);
  if (fresh.some((e) => typeof e.id !== "number")) {
    // From memory: the whole recent list, every time.
    lastEventId = null;
    recentEvents = fresh.slice(-MAX_EVENTS);
    return recentEvents;
  }
  recentEvents = (lastEventId === null ? fresh : recentEvents.concat(fresh)).slice(-MAX_EVENTS);
  lastEventId = Math.max(lastEventId === null ? 0 : lastEventId, ...fresh.map((e) => e.id));
  return recentEvents;
}

function renderEvents(events) {
  const list = events.slice(-MAX_EVENTS).reverse();
  replaceRows("events", list.map((e) => el("tr", { "data-event": e.kind, "data-node": e.node },
    el("td", {}, clock(e.at)),
    el("td", {}, e.node),
    el("td", {}, e.kind),
    el("td", { class: "wrap" }, e.detail))));
}

// The dependency graph (/api/v1/graph): a column per host, its supervisors and services below
// it indented by depth, `requires` as dashed arrows between services. A vertex that failed by
// itself is red, one it takes down orange (`data-failed`, `data-down`).
const COL_W = 210, ROW_H = 28, BOX_H = 22, TOP = 8;

function renderGraph(graph) {
  const root = document.getElementById("graph");
  const vertices = graph.vertices || [];
  const hosts = vertices.filter((v) => v.kind === "host");
  const failed = vertices.filter((v) => v.failed).map((v) => v.id);
  const down = vertices.filter((v) => !v.failed && v.down_by.length > 0);
  document.getElementById("graph-summary").textContent = failed.length === 0
    ? `${vertices.length} vertices, nothing failed.`
    : `failed: ${failed.join(", ")} · taken down with them: ${down.map((v) => v.id).join(", ") || "nothing else"}`;
  if (hosts.length > MAX_GRAPH_HOSTS) {
    root.replaceChildren();
    root.setAttribute("width", 0);
    root.setAttribute("height", 0);
    return;
  }
  const at = {};
  let rows = 0;
  hosts.forEach((h, col) => {
    at[h.id] = { x: 8 + col * COL_W, y: TOP, depth: 0 };
    let row = 1;
    for (const v of vertices) {
      if (v.kind === "host" || v.node !== h.node) continue;
      const depth = v.kind === "supervisor" ? v.name.split("/").length : 0;
      at[v.id] = { x: 8 + col * COL_W, y: TOP + row * ROW_H, depth };
      row += 1;
    }
    rows = Math.max(rows, row);
  });
  // A service sits one step right of the supervisor above it.
  for (const e of graph.edges || []) {
    if (e.kind === "supervises" && at[e.to] && at[e.from] && at[e.to].depth === 0) {
      at[e.to].depth = at[e.from].depth + 1;
    }
  }
  const width = 16 + hosts.length * COL_W;
  const height = TOP * 2 + rows * ROW_H;
  const children = [svg("defs", {})];
  children[0].append(svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" }));
  children[0].firstChild.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  const box = (v) => {
    const p = at[v.id];
    const x = p.x + p.depth * 14;
    const w = COL_W - 24 - p.depth * 14;
    const state = v.failed ? "failed" : v.down_by.length > 0 ? "down" : "ok";
    const g = svg("g", { "data-vertex": v.id, "data-kind": v.kind, "data-failed": String(v.failed),
      "data-down": String(!v.failed && v.down_by.length > 0), class: `v ${v.kind} g-${state}` });
    g.append(svg("rect", { x, y: p.y, width: w, height: BOX_H, rx: v.kind === "service" ? 8 : 2 }));
    const label = v.kind === "host" ? v.id : v.kind === "supervisor" ? v.name.split("/").pop() : v.name;
    g.append(svg("text", { x: x + 6, y: p.y + 15 }, `${label} · ${v.state}`));
    const tip = svg("title", {}, v.down_by.length > 0 ? `${v.id}: down with ${v.down_by.join(", ")}` : v.id);
    g.append(tip);
    return g;
  };
  for (const e of graph.edges || []) {
    if (e.kind !== "requires" || !at[e.from] || !at[e.to]) continue;
    const a = at[e.from], b = at[e.to];
    const left = (p) => p.x + p.depth * 14, right = (p) => p.x + COL_W - 24;
    const y1 = a.y + BOX_H / 2, y2 = b.y + BOX_H / 2;
    // Leave from the side facing the other box; within one column, loop out on the right.
    let x1, x2, dir1, dir2;
    if (b.x > a.x) [x1, x2, dir1, dir2] = [right(a), left(b), 1, -1];
    else if (b.x < a.x) [x1, x2, dir1, dir2] = [left(a), right(b), -1, 1];
    else [x1, x2, dir1, dir2] = [right(a), right(b), 1, 1];
    const bend = Math.max(30, Math.abs(x2 - x1) / 3);
    children.push(svg("path", { d: `M${x1},${y1} C${x1 + dir1 * bend},${y1} ${x2 + dir2 * bend},${y2} ${x2},${y2}`,
      class: "requires", "marker-end": "url(#arrow)", "data-requires": `${e.from}>${e.to}` }));
  }
  for (const v of vertices) if (at[v.id]) children.push(box(v));
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.replaceChildren(...children);
}

function setStatus(state, text) {
  const s = document.getElementById("status");
  s.dataset.status = state;
  s.textContent = text;
}

async function poll() {
  try {
    const overview = await getJson("/api/v1/overview");
    const serverNow = Date.parse(overview.now);
    serverSkewMs = isNaN(serverNow) ? 0 : serverNow - Date.now();
    const nowMs = Date.now() + serverSkewMs;
    document.getElementById("node").textContent = `— ${overview.node} (v${overview.version})`;
    document.title = `nbwatch — ${overview.node}`;
    const up = overview.members.filter((m) => m.state === "alive" || m.state === "suspect").length;
    const failing = overview.services.filter((s) => s.state === "failed" || s.health === "critical").length;
    const open = overview.incidents.length;
    const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    document.getElementById("summary").textContent =
      `${up} of ${count(overview.members.length, "member", "members")} up · ` +
      `leader ${overview.leader || "none"} · ${count(failing, "failing service", "failing services")} · ` +
      count(open, "open incident", "open incidents");
    renderMembers(overview, nowMs);
    renderZones(await getJson("/api/v1/zones").catch(() => []));
    renderServices(overview, nowMs);
    renderAlerts(overview);
    renderReach(overview);
    renderGraph(await getJson("/api/v1/graph").catch(() => ({ vertices: [], edges: [] })));
    renderEvents(await newEvents().catch(() => recentEvents));
    setStatus("ok", "updated " + clock(new Date(nowMs).toISOString()));
    if (chartTimer === null) refreshCharts();
  } catch (e) {
    setStatus("error", "cannot reach the daemon: " + e.message);
  }
}

// ---- charts ----

function hostCard(name) {
  const id = "host-" + name;
  let card = document.getElementById(id);
  if (card) return card;
  card = el("div", { class: "host", id, "data-host": name },
    el("h3", {}, el("span", {}, name), el("span", { class: "state" })));
  for (const m of METRICS) {
    card.append(el("div", { class: "chart-title" }, el("span", {}, m.label), el("span", { class: "last" })));
    const chart = svg("svg", { class: "chart " + m.cls, "data-chart": `${name}:${m.key}`, "data-points": "0",
                                viewBox: "0 0 380 110", preserveAspectRatio: "none" });
    card.append(chart);
  }
  document.getElementById("charts").append(card);
  return card;
}

// A round number at or above v for the top of the y axis.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(chart, points, metric, win, nowMs) {
  const W = 380, H = 110, L = 34, R = 4, T = 6, B = 16;
  chart.replaceChildren();
  const end = nowMs, start = nowMs - win.ms;
  const top = metric.max !== null ? metric.max : niceMax(Math.max(0, ...points.map((p) => p.v)) * 1.1);
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(top * f), y2: y(top * f) }));
    chart.append(svg("text", { class: "axis", x: L - 3, y: y(top * f) + 3, "text-anchor": "end" },
      (top * f).toFixed(top * f >= 10 || f === 0 ? 0 : 1)));
  }
  for (const f of [0, 0.5, 1]) {
    const t = new Date(start + f * (end - start));
    const label = win.ms > 86400e3
      ? `${t.getMonth() + 1}/${t.getDate()}`
      : `${String(t.getHours()).padStart(2, "0")}:${String(t.getMinutes()).padStart(2, "0")}`;
    chart.append(svg("text", { class: "axis", x: x(start + f * (end - start)), y: H - 3,
                               "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, label));
  }
  chart.dataset.points = String(points.length);
  if (points.length === 0) {
    chart.append(svg("text", { class: "empty", x: (L + W) / 2, y: H / 2, "text-anchor": "middle" }, "no samples in this window"));
    return;
  }
  // One line per run of points; a silence longer than a few buckets (an outage) breaks it.
  const segments = [];
  for (const p of points) {
    const run = segments[segments.length - 1];
    if (run && p.t - run[run.length - 1].t <= Math.max(GAP_BUCKETS * win.stepMs, GAP_MIN_MS)) run.push(p);
    else segments.push([p]);
  }
  chart.dataset.segments = String(segments.length);
  for (const run of segments) {
    const coords = run.map((p) => `${x(p.t).toFixed(1)},${y(Math.min(p.v, top)).toFixed(1)}`);
    const first = x(run[0].t).toFixed(1), last = x(run[run.length - 1].t).toFixed(1);
    chart.append(svg("polygon", { class: "area", points: `${first},${y(0)} ${coords.join(" ")} ${last},${y(0)}` }));
    if (run.length === 1) {
      chart.append(svg("circle", { class: "dot", cx: first, cy: y(Math.min(run[0].v, top)).toFixed(1), r: 1.5 }));
    } else {
      chart.append(svg("polyline", { class: "line", points: coords.join(" ") }));
    }
  }
  chart.append(svg("title", {}, `${metric.label}: ${points.length} points, last ${points[points.length - 1].v.toFixed(2)}${metric.unit}`));
}

async function refreshCharts() {
  clearTimeout(chartTimer);
  chartTimer = setTimeout(refreshCharts, CHART_POLL_MS);
  const win = WINDOWS[windowName];
  const hosts = members.slice(0, MAX_CHART_HOSTS);
  for (const m of hosts) {
    const card = hostCard(m.name);
    card.classList.toggle("down", m.state === "down" || m.state === "left");
    card.querySelector("h3 .state").replaceChildren(pill(m.state));
    const lasts = card.querySelectorAll(".last");
    for (const [i, metric] of METRICS.entries()) {
      const chart = card.querySelector(`svg[data-chart="${CSS.escape(m.name + ":" + metric.key)}"]`);
      const path = `/api/v1/history/${encodeURIComponent(m.name)}?metric=${metric.key}&since=${win.since}&step=${win.step}`;
      let samples = [];
      try {
        samples = await getJson(path);
      } catch (e) {
        // Nothing recorded yet of a new host (or of this metric): an empty chart.
      }
      const points = samples.map((s) => ({ t: Date.parse(s.at), v: s.value }))
        .filter((p) => !isNaN(p.t) && typeof p.v === "number");
      drawChart(chart, points, metric, win, Date.now() + serverSkewMs);
      const lastPoint = points[points.length - 1];
      lasts[i].textContent = lastPoint ? lastPoint.v.toFixed(2) + metric.unit : "";
    }
  }
  const known = new Set(hosts.map((m) => "host-" + m.name));
  for (const card of [...document.querySelectorAll("#charts .host")]) {
    if (!known.has(card.id)) card.remove();
  }
}

for (const b of document.querySelectorAll("button[data-window]")) {
  b.addEventListener("click", () => {
    windowName = b.dataset.window;
    history.replaceState(null, "", "#" + windowName);
    showWindow();
    refreshCharts();
  });
}

function showWindow() {
  for (const o of document.querySelectorAll("button[data-window]")) {
    o.classList.toggle("active", o.dataset.window === windowName);
  }
}
showWindow();

poll();
setInterval(poll, POLL_MS);
