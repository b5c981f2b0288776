// app.js is the console: a page per KPI over a chosen range, drawn from
// the read API with the signed-in query token, and a record page that
// proves the record in the browser. Everything on screen is built with
// DOM calls and textContent, never parsed HTML: tool names and error
// messages come from records, which callers write.

import { lineChart } from "./chart.js";
import { verifyBundle } from "./verify.js";

const TOKEN = "proofline.token";
const PINNED = "proofline.verifier_key";
const RANGES = { "1h": ["1h", "5m"], "24h": ["24h", "1h"], "7d": ["7d", "6h"], "28d": ["28d", "1d"] };
const PAGES = [
  ["latency", "Latency"], ["burn", "Error budget"], ["cost", "Cost"], ["plans", "Failed plans"],
  ["onboarding", "Onboarding"], ["records", "Records"],
];

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "onclick" || k === "onsubmit" || k === "onchange") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params) {
  const q = params ? "?" + new URLSearchParams(params).toString() : "";
  const res = await fetch(path + q, { headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN) } });
  const body = await res.text();
  let v;
  try { v = JSON.parse(body); } catch { v = null; }
  if (!res.ok) {
    if (res.status === 401) sessionStorage.removeItem(TOKEN);
    throw new APIError(res.status, (v && v.error && v.error.message) || `${res.status} ${res.statusText}`);
  }
  return v;
}

// table is a <table data-table=name>; each cell has data-col so a test
// (or a person's script) can read a column.
function table(name, columns, rows) {
  return h("table", { "data-table": name },
    h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "nothing in this range"))
      : rows.map((r) => h("tr", {}, columns.map(([label, get, col]) => {
        const v = get(r);
        return h("td", { "data-col": col || label }, v instanceof Node ? v : v === undefined || v === null ? "–" : String(v));
      })))));
}

const num = (v, d = 1) => (typeof v === "number" ? v.toFixed(d) : "–");
const pct = (v) => (typeof v === "number" ? (v * 100).toFixed(2) + " %" : "–");
const points = (ps, get) => (ps || []).map((p) => ({ t: new Date(p.start), v: get(p) }));

function rangeOf(query) {
  const r = RANGES[query.get("range")] ? query.get("range") : "24h";
  const [span, step] = RANGES[r];
  const to = new Date();
  const ms = { h: 3600e3, d: 86400e3 }[span.slice(-1)] * Number(span.slice(0, -1));
  return { name: r, step, from: new Date(to.getTime() - ms).toISOString(), to: to.toISOString(), axis: { from: new Date(to.getTime() - ms), to } };
}

function rangePicker(page, current) {
  return h("nav", { class: "ranges" }, "Range: ", Object.keys(RANGES).map((r) =>
    h("a", { href: `#/${page}?range=${r}`, class: r === current ? "on" : undefined }, r)));
}

const pages = {
  async latency(q) {
    const r = rangeOf(q);
    const v = await api("/v1/kpi/latency", { by: "tool", from: r.from, to: r.to, step: r.step });
    const name = (s) => (s.server ? `${s.server}/${s.key}` : s.key);
    return [rangePicker("latency", r.name),
      lineChart({ title: "p95 latency per tool", unit: "ms", ...r.axis, series: (v.series || []).map((s) => ({ name: name(s), points: points(s.points, (p) => p.p95_ms) })) }),
      table("latency", [["tool", name, "tool"], ["calls", (x) => x.calls, "calls"], ["p50 ms", (x) => num(x.p50_ms), "p50_ms"],
        ["p95 ms", (x) => num(x.p95_ms), "p95_ms"], ["p99 ms", (x) => num(x.p99_ms), "p99_ms"]], v.rows || [])];
  },

  async burn(q) {
    const r = rangeOf(q);
    const v = await api("/v1/kpi/errorbudget", { from: r.from, to: r.to, step: r.step });
    const windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
    return [rangePicker("burn", r.name),
      lineChart({ title: "error budget burn rate per SLO", unit: "× budget", ...r.axis, lines: [{ v: 1, label: "burn 1×" }],
        series: (v.series || []).map((s) => ({ name: s.group, points: points(s.points, (p) => p.burn_rate) })) }),
      table("slos", [["SLO group", (x) => x.group, "group"], ["target", (x) => pct(x.target), "target"],
        ...windows.map((w) => [`burn ${w}`, (x) => num((x.burn_rates || {})[w], 2), "burn_" + w]),
        ["firing", (x) => (x.firing || []).join(", ") || "none", "firing"],
        ["budget left (month)", (x) => pct(x.budget_left), "budget_left"],
        ["budget left (28 d)", (x) => pct(x.budget_left_28d), "budget_left_28d"]], v.slos || [])];
  },

  async cost() {
    // Cost is against a monthly cap: the chart is this month's running
    // total, a point per day, with the cap as a line.
    const now = new Date();
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const v = await api("/v1/kpi/cost", { from: monthStart.toISOString(), to: now.toISOString(), step: "1d" });
    let run = 0;
    const cum = (v.series || []).map((p) => ({ t: new Date(p.start), v: (run += p.amount) }));
    const lines = v.monthly_cap ? [{ v: v.monthly_cap, label: "cap" }] : [];
    return [
      h("dl", { class: "figures" },
        h("dt", {}, "spent this month"), h("dd", { "data-figure": "total" }, `${num(v.total, 2)} ${v.currency || ""}`),
        h("dt", {}, "monthly cap"), h("dd", { "data-figure": "cap" }, v.monthly_cap ? `${num(v.monthly_cap, 2)} ${v.currency}` : "none set"),
        h("dt", {}, "projected month end"), h("dd", { "data-figure": "projected", class: v.projected_over_cap ? "bad" : undefined },
          `${num(v.projected_month_end, 2)} ${v.currency || ""}${v.projected_over_cap ? " — over the cap" : ""}`),
        h("dt", {}, "calls without a currency"), h("dd", { "data-figure": "without_currency" }, String((v.without_currency || {}).calls || 0))),
      lineChart({ title: "spend this month against the cap", unit: v.currency, from: monthStart,
        to: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)), series: [{ name: "spend", points: cum }], lines }),
      h("h2", {}, "Anomalies"),
      table("anomalies", [["tool", (x) => (x.server ? x.server + "/" : "") + x.tool, "tool"], ["why", (x) => x.reason, "reason"], ["recent spend", (x) => num(x.recent_spend, 2), "recent_spend"],
        ["per call", (x) => num(x.recent_cost_per_call, 4), "per_call"], ["baseline per call", (x) => num(x.baseline_cost_per_call, 4), "baseline"]], v.anomalies || []),
      h("h2", {}, "Workflows"),
      table("workflows", [["workflow", (x) => x.workflow, "workflow"], ["cost", (x) => num(x.cost, 2), "cost"], ["calls", (x) => x.calls, "calls"]], v.workflows || []),
    ];
  },

  async plans(q) {
    const r = rangeOf(q.get("range") ? q : new URLSearchParams("range=28d"));
    const v = await api("/v1/kpi/plans", { from: r.from, to: r.to, step: "1d" });
    return [rangePicker("plans", r.name),
      lineChart({ title: "failed plans per day, policy and system", unit: "plans", ...r.axis, series: [
        { name: "policy blocked", points: points(v.series, (p) => p.policy_blocked) },
        { name: "system errors", points: points(v.series, (p) => p.system_errors) }] }),
      table("weeks", [["week", (x) => String(x.week).slice(0, 10), "week"], ["plans", (x) => x.plans, "plans"],
        ["policy blocked", (x) => x.policy_blocked, "policy_blocked"], ["system errors", (x) => x.system_errors, "system_errors"],
        ["failed", (x) => pct(x.failed_rate), "failed_rate"],
        ["MTTD ms", (x) => num(x.mean_time_to_detect_ms, 0), "mttd"], ["MTTR ms", (x) => num(x.mean_time_to_recover_ms, 0), "mttr"]], v.weeks || []),
      h("h2", {}, "Top causes this month"),
      table("causes", [["status", (x) => x.status, "status"], ["error code", (x) => x.error_code, "error_code"], ["calls", (x) => x.calls, "calls"]], v.top_causes_this_month || [])];
  },

  async onboarding() {
    const v = await api("/v1/kpi/onboarding");
    return [table("onboarding", [["server", (x) => x.server, "server"], ["tool", (x) => x.tool, "tool"],
      ["registered", (x) => x.registered, "registered"], ["first call", (x) => x.first_seen, "first_seen"],
      ["first success", (x) => x.first_success, "first_success"], ["lead time h", (x) => num(x.lead_time_hours, 2), "lead_time_hours"],
      ["calls", (x) => x.calls, "calls"]], v.tools || [])];
  },

  async records(q) {
    const params = { limit: "50" };
    for (const k of ["tool", "server", "status", "limit"]) if (q.get(k)) params[k] = q.get(k);
    if (q.get("next")) params.cursor = q.get("next");
    const v = await api("/v1/spans", params);
    const more = new URLSearchParams(q);
    more.set("next", v.next || "");
    return [table("records", [
      ["record", (x) => h("a", { href: "#/record/" + encodeURIComponent(x.record_id) }, x.record_id), "record_id"],
      ["start", (x) => x.ts_start, "ts_start"], ["tool", (x) => (x.tool_server ? x.tool_server + "/" : "") + x.tool, "tool"],
      ["status", (x) => x.status, "status"], ["latency ms", (x) => num(x.latency_ms, 1), "latency_ms"], ["leaf", (x) => x.leaf_index, "leaf"]], v.spans || []),
    v.next ? h("p", {}, h("a", { href: "#/records?" + more.toString(), class: "older" }, "older →")) : null];
  },

  async record(q, id) {
    const [bundle, key] = await Promise.all([api("/v1/proof/" + encodeURIComponent(id)), fetch("/v1/log/key").then((r) => r.text())]);
    const pinned = localStorage.getItem(PINNED);
    const vkey = (pinned || key).trim();
    const res = await verifyBundle(bundle, vkey);
    const verdict = res.ok
      ? h("p", { class: "verdict ok", "data-verdict": "ok" }, `✓ record ${id} is leaf ${res.leafIndex} of the log ${res.origin} (tree size ${res.treeSize})`)
      : h("p", { class: "verdict bad", "data-verdict": "failed" }, `✗ not proven: ${res.steps.find((s) => !s.ok).name} failed`);
    const keyForm = h("form", { class: "pin", onsubmit: (e) => {
      e.preventDefault();
      const v = e.target.elements.vkey.value.trim();
      if (v) localStorage.setItem(PINNED, v); else localStorage.removeItem(PINNED);
      route();
    } }, h("label", {}, "Verifier key to trust (pinned in this browser; empty uses the server's): ",
      h("input", { name: "vkey", size: 90, value: pinned || "" })), h("button", {}, "Pin"));
    return [verdict,
      h("p", { class: pinned ? undefined : "warn" }, pinned
        ? "Checked against the key you pinned."
        : "Checked against the key this server publishes; pin the log's key from a source you trust, or a lying server could send both."),
      h("ol", { class: "steps" }, res.steps.map((s) => h("li", { class: s.ok ? "ok" : "bad", "data-step": s.name },
        (s.ok ? "✓ " : "✗ ") + s.name + ": ", h("code", {}, s.detail)))),
      keyForm,
      h("h2", {}, "Record"), h("pre", { "data-record": id }, JSON.stringify(bundle.record, null, 2))];
  },
};

function signIn(message) {
  const form = h("form", { id: "signin", onsubmit: (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, e.target.elements.token.value.trim());
    route();
  } }, h("h1", {}, "proofline"),
  message ? h("p", { class: "bad", role: "alert" }, message) : null,
  h("label", {}, "Query token: ", h("input", { name: "token", type: "password", size: 60, autocomplete: "off" })),
  h("button", {}, "Sign in"),
  h("p", {}, "The token stays in this tab (session storage) and is sent only to this server."));
  document.getElementById("main").replaceChildren(form);
  document.getElementById("nav").replaceChildren();
}

async function route() {
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  const hash = location.hash.replace(/^#\/?/, "") || "latency";
  const [path, qs] = hash.split("?");
  const [page, ...rest] = path.split("/");
  const id = decodeURIComponent(rest.join("/"));
  const main = document.getElementById("main");
  document.getElementById("nav").replaceChildren(...PAGES.map(([p, label]) =>
    h("a", { href: "#/" + p, class: p === page ? "on" : undefined }, label)),
  h("a", { href: "#/", onclick: () => sessionStorage.removeItem(TOKEN) }, "Sign out"));
  const fn = pages[page];
  if (!fn) { main.replaceChildren(h("p", { class: "bad" }, "no page " + page)); return; }
  main.setAttribute("aria-busy", "true");
  try {
    const title = (PAGES.find(([p]) => p === page) || [page, "Record " + id])[1];
    const content = await fn(new URLSearchParams(qs || ""), id);
    main.replaceChildren(h("h1", {}, title), ...content.filter(Boolean));
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return signIn("The server refused the token: " + e.message);
    main.replaceChildren(h("p", { class: "bad", role: "alert" }, `Could not load ${page}: ${e.message}`));
  } finally {
    main.setAttribute("aria-busy", "false");
    main.dataset.page = page;
  }
}

window.addEventListener("hashchange", route);
route();
