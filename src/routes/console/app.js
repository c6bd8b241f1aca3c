// The operator console: a small script over the gateway's own API. No framework, no build
// step; every value from the API is put on the page as text (never as HTML).
"use strict";

const KEY = "ugw-console-token";
let timer = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const token = () => sessionStorage.getItem(KEY);
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const state = (s) => el("span", { class: `state ${s || ""}` }, s || "–");
const json = (v) => el("pre", {}, v === undefined || v === null ? "–" : JSON.stringify(v, null, 2));

class Refused extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch { value = text; }
  if (!res.ok) {
    if (res.status === 401 && path !== "/jobs?limit=1") signOut("Your key was refused; sign in again.");
    throw new Refused(res.status, value);
  }
  return { status: res.status, value, headers: res.headers };
}

function view(title, ...content) {
  const v = document.getElementById("view");
  v.replaceChildren(el("h2", { tabindex: "-1" }, title), ...content);
  return v;
}

function problem(e) {
  const p = e.problem || {};
  const fields = (p.errors || []).map((f) => el("li", {}, `${f.field}: ${f.problem}`));
  return el("div", { class: "error", role: "alert" },
    el("p", {}, e.status === 403 ? `Not allowed with this key: ${e.message}` : e.message,
      p.code ? el("span", { class: "muted" }, ` (${p.code})`) : null),
    fields.length ? el("ul", {}, fields) : null);
}

function repeat(fn, ms) {
  clearInterval(timer);
  timer = setInterval(() => { if (!document.hidden) fn().catch(() => {}); }, ms);
}

// ---------------------------------------------------------------- sign in

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  document.getElementById("nav").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
  document.getElementById("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(KEY, input.value.trim());
  // A key or token that opens neither the ledger nor the admin API is refused here.
  const tries = await Promise.allSettled([api("GET", "/jobs?limit=1"), api("GET", "/connections")]);
  if (tries.every((t) => t.status === "rejected")) {
    sessionStorage.removeItem(KEY);
    document.getElementById("sign-in-error").textContent =
      "That key or token was refused: check it, and its scopes.";
    return;
  }
  input.value = "";
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/jobs";
  else route();
}

// ---------------------------------------------------------------- views

async function ledger(kind) {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const path = kind === "queue_item" ? "/queue-items" : "/jobs";
  const form = el("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      const p = new URLSearchParams();
      for (const [k, v] of f) if (v) p.set(k, v);
      location.hash = `#/${kind === "queue_item" ? "queue-items" : "jobs"}?${p}`;
    } },
    el("div", {}, el("label", { for: "f-process" }, kind === "queue_item" ? "Queue" : "Process"),
      el("input", { id: "f-process", name: "process", value: q.get("process") || "" })),
    el("div", {}, el("label", { for: "f-state" }, "State"),
      el("select", { id: "f-state", name: "state" },
        ["", "queued", "unknown", "pending", "running", "successful", "faulted", "stopped", "rejected", "dead"]
          .map((s) => el("option", { value: s, selected: q.get("state") === s }, s || "any")))),
    el("div", {}, el("label", { for: "f-source" }, "Source"),
      el("select", { id: "f-source", name: "source" },
        ["", "api", "hook", "replay"].map((s) => el("option", { value: s, selected: q.get("source") === s }, s || "any")))),
    el("button", { type: "submit" }, "Filter"));
  const body = el("tbody");
  const table = el("table", { "aria-label": kind === "queue_item" ? "Queue items" : "Jobs" },
    el("thead", {}, el("tr", {}, ["State", kind === "queue_item" ? "Queue" : "Process", "Source", "Created", "Finished", "Id"].map((h) => el("th", { scope: "col" }, h)))),
    body);
  const note = el("p", { class: "muted" }, "Updated live.");
  view(kind === "queue_item" ? "Queue items" : "Jobs", form, table, note);
  const load = async () => {
    const filters = new URLSearchParams();
    for (const k of ["process", "state", "source"]) if (q.get(k)) filters.set(k, q.get(k));
    filters.set("limit", "50");
    const { value } = await api("GET", `${path}?${filters}`);
    body.replaceChildren(...value.items.map((j) =>
      el("tr", {},
        el("td", {}, state(j.state)),
        el("td", {}, j.process),
        el("td", {}, j.source),
        el("td", {}, when(j.created_at)),
        el("td", {}, when(j.finished_at)),
        el("td", {}, el("a", { href: `#/jobs/${j.id}` }, el("code", {}, j.id.slice(0, 8)))))));
    if (!value.items.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "Nothing yet.")));
  };
  try { await load(); repeat(load, 2000); } catch (e) { document.getElementById("view").append(problem(e)); }
}

async function job(id) {
  const facts = el("dl", { class: "facts" });
  const timeline = el("tbody");
  const io = el("div", { class: "grid" });
  const callbacks = el("div");
  const message = el("div", { role: "status" });
  const replay = el("button", { type: "button", onclick: async () => {
      try {
        const { value } = await api("POST", `/jobs/${id}/replay`);
        location.hash = `#/jobs/${value.id}`;
      } catch (e) { message.replaceChildren(problem(e)); }
    } }, "Replay");
  const stop = el("button", { type: "button", class: "secondary", onclick: async () => {
      try { await api("POST", `/jobs/${id}/stop`, { strategy: "SoftStop" }); await load(); }
      catch (e) { message.replaceChildren(problem(e)); }
    } }, "Stop");
  view("Job", el("div", { class: "actions" }, replay, stop), message, facts,
    el("h3", {}, "Timeline"),
    el("table", { "aria-label": "Timeline" }, el("thead", {}, el("tr", {}, ["When", "State", "Source", "Detail"].map((h) => el("th", { scope: "col" }, h)))), timeline),
    io, el("h3", {}, "Callbacks"), callbacks);
  const load = async () => {
    const { value: j } = await api("GET", `/jobs/${id}`);
    document.querySelector("#view h2").textContent = j.kind === "queue_item" ? `Queue item ${j.id}` : `Job ${j.id}`;
    const row = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
    facts.replaceChildren(
      ...row("State", state(j.state)),
      ...row(j.kind === "queue_item" ? "Queue" : "Process", j.process),
      ...row("Source", j.source),
      ...row("Reference", el("code", {}, j.reference)),
      ...row("Orchestrator id", j.orchestrator_job_id ?? "–"),
      ...row("Attempts", j.attempts),
      ...row("Created", when(j.created_at)),
      ...row("Finished", when(j.finished_at)),
      ...(j.replay_of ? row("Replay of", el("a", { href: `#/jobs/${j.replay_of}` }, el("code", {}, j.replay_of))) : []),
      ...(j.last_error ? row("Last error", j.last_error) : []));
    timeline.replaceChildren(...(j.timeline || []).map((e) =>
      el("tr", {}, el("td", {}, when(e.at)), el("td", {}, state(e.state)), el("td", {}, e.source),
        el("td", {}, e.detail ? el("code", {}, JSON.stringify(e.detail)) : ""))));
    io.replaceChildren(
      el("div", {}, el("h3", {}, "Input"), json(j.input)),
      el("div", {}, el("h3", {}, "Output"), json(j.output)),
      el("div", {}, el("h3", {}, "Error"), json(j.error)));
    callbacks.replaceChildren(...((j.callbacks || []).length ? j.callbacks.map((c) =>
      el("p", {}, state(c.state), ` ${c.url} — ${c.attempts} attempt(s)`, c.last_error ? ` — ${c.last_error}` : "")) :
      [el("p", { class: "muted" }, "None.")]));
    const ended = ["successful", "faulted", "stopped", "rejected", "dead"].includes(j.state);
    stop.disabled = ended;
    if (ended) clearInterval(timer);
  };
  try { await load(); repeat(load, 1000); } catch (e) { document.getElementById("view").append(problem(e)); }
}

async function start() {
  const doc = await (await fetch("/openapi.json")).json();
  const names = (path, param) =>
    (doc.paths[path]?.post?.parameters || []).find((p) => p.name === param)?.schema?.enum || [];
  const targets = [
    ...names("/run/{process}", "process").map((n) => ({ label: `process ${n}`, path: `/run/${n}` })),
    ...names("/queues/{queue}", "queue").map((n) => ({ label: `queue ${n}`, path: `/queues/${n}` })),
  ];
  const example = (path) => doc.paths[path]?.post?.requestBody?.content?.["application/json"]?.example ?? {};
  const pick = el("select", { id: "s-target", name: "target", onchange: () => {
      body.value = JSON.stringify(example(pick.value), null, 2);
    } }, targets.map((t) => el("option", { value: t.path }, t.label)));
  const body = el("textarea", { id: "s-body", name: "body", spellcheck: "false" });
  const message = el("div", { role: "status" });
  const form = el("form", { onsubmit: async (e) => {
      e.preventDefault();
      let input;
      try { input = JSON.parse(body.value || "{}"); }
      catch (err) { message.replaceChildren(el("p", { class: "error" }, `The body is not JSON: ${err.message}`)); return; }
      try {
        const { value } = await api("POST", pick.value, input);
        location.hash = `#/jobs/${value.id}`;
      } catch (err) { message.replaceChildren(problem(err)); }
    } },
    el("div", {}, el("label", { for: "s-target" }, "Process or queue"), pick),
    el("div", {}, el("label", { for: "s-body" }, "Input arguments (or the item's content), as JSON"), body),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Start")));
  view("Start a job or add a queue item", form, message);
  if (targets.length) body.value = JSON.stringify(example(targets[0].path), null, 2);
  else message.replaceChildren(el("p", { class: "muted" }, "No process or queue mapping is configured."));
}

async function deadLetters() {
  const out = view("Dead letters");
  try {
    const { value } = await api("GET", "/dead-letters");
    const redrive = (path) => async (e) => {
      e.target.disabled = true;
      try { await api("POST", path); await deadLetters(); } catch (err) { out.append(problem(err)); }
    };
    out.append(
      el("h3", {}, "Jobs out of start attempts"),
      el("table", { "aria-label": "Dead jobs" },
        el("thead", {}, el("tr", {}, ["Process", "Last error", "Id", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, (value.jobs || []).map((j) => el("tr", {},
          el("td", {}, j.process), el("td", {}, j.last_error || "–"),
          el("td", {}, el("a", { href: `#/jobs/${j.id}` }, el("code", {}, j.id.slice(0, 8)))),
          el("td", {}, el("button", { type: "button", onclick: redrive(`/jobs/${j.id}/redrive`) }, "Redrive")))))),
      el("h3", {}, "Callbacks out of retries"),
      el("table", { "aria-label": "Dead callbacks" },
        el("thead", {}, el("tr", {}, ["URL", "Last error", "Job", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, (value.callbacks || []).map((c) => el("tr", {},
          el("td", {}, c.url), el("td", {}, c.last_error || "–"),
          el("td", {}, el("a", { href: `#/jobs/${c.job_id}` }, el("code", {}, c.job_id.slice(0, 8)))),
          el("td", {}, el("button", { type: "button", onclick: redrive(`/callbacks/${c.id}/redrive`) }, "Redrive")))))));
  } catch (e) { out.append(problem(e)); }
}

// The traffic governor's gauges, per tenant, from /metrics.
async function governor() {
  const text = await (await fetch("/metrics")).text();
  const tenants = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^ugw_traffic_(\w+)\{([^}]*)\} (\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const t = (tenants[labels.tenant] ||= { paused: [] });
    if (m[1] === "paused_seconds" && Number(m[3]) > 0) t.paused.push(`${labels.class} ${Math.ceil(Number(m[3]))} s`);
    else if (m[1] === "backlog") t[`backlog_${labels.state}`] = m[3];
    else t[m[1]] = m[3];
  }
  return tenants;
}

async function connections() {
  const out = view("Connections");
  try {
    const { value } = await api("GET", "/connections");
    const soon = (t) => t && new Date(t) - Date.now() < 7 * 24 * 3600 * 1000;
    out.append(el("table", { "aria-label": "Connections" },
      el("thead", {}, el("tr", {}, ["Name", "Kind", "Health", "Token expires", "Warnings"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, value.items.map((c) => el("tr", {},
        el("td", {}, c.name), el("td", {}, `${c.kind} (${c.flavour})`),
        el("td", {}, state(c.health), c.health_reason ? el("div", { class: "muted" }, c.health_reason) : null),
        el("td", {}, when(c.token_expires_at)),
        el("td", {}, c.kind === "pat" && soon(c.expires_at) ? state("warning") : "",
          c.kind === "pat" && soon(c.expires_at) ? ` the PAT expires ${when(c.expires_at)}` : ""))))));
    const tenants = await governor();
    out.append(el("h3", {}, "Traffic governor, per tenant"),
      el("table", { "aria-label": "Traffic governor" },
        el("thead", {}, el("tr", {}, ["Tenant", "Circuit", "Paused", "List budget", "Start window", "Queued", "Unknown"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, Object.entries(tenants).map(([name, t]) => el("tr", {},
          el("td", {}, el("code", {}, name)),
          el("td", {}, t.circuit_open === "1" ? state("failed") : state("ok")),
          el("td", {}, t.paused.join(", ") || "–"),
          el("td", {}, t.list_budget ?? "–"), el("td", {}, t.start_window ?? "–"),
          el("td", {}, t.backlog_queued ?? "0"), el("td", {}, t.backlog_unknown ?? "0"))))));
  } catch (e) { out.append(problem(e)); }
}

async function webhooks() {
  const out = view("Webhooks");
  try {
    const { value } = await api("GET", "/webhooks");
    for (const h of value.items) {
      const { value: d } = await api("GET", `/webhooks/${encodeURIComponent(h.slug)}/deliveries?limit=10`);
      out.append(el("h3", {}, `${h.slug} → ${h.process} `, el("span", { class: "muted" }, `(${h.scheme}, ${h.path})`)),
        el("table", { "aria-label": `Deliveries of ${h.slug}` },
          el("thead", {}, el("tr", {}, ["Received", "Verification", "Outcome", "Job", "Error"].map((x) => el("th", { scope: "col" }, x)))),
          el("tbody", {}, (d.items || []).length ? d.items.map((r) => el("tr", {},
            el("td", {}, when(r.received_at)), el("td", {}, state(r.verification)), el("td", {}, state(r.outcome)),
            el("td", {}, r.job_id ? el("a", { href: `#/jobs/${r.job_id}` }, el("code", {}, r.job_id.slice(0, 8))) : "–"),
            el("td", {}, r.error || ""))) : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No deliveries yet.")))));
    }
    if (!value.items.length) out.append(el("p", { class: "muted" }, "No webhooks."));
  } catch (e) { out.append(problem(e)); }
}

// ---------------------------------------------------------------- routing

function route() {
  clearInterval(timer);
  if (!token()) return signOut();
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/jobs";
  for (const a of document.querySelectorAll("nav a"))
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#${path}`) && a.setAttribute("aria-current", "page");
  const m = path.match(/^\/jobs\/([0-9a-f-]{36})$/);
  const done = m ? job(m[1])
    : path === "/queue-items" ? ledger("queue_item")
    : path === "/start" ? start()
    : path === "/dead-letters" ? deadLetters()
    : path === "/connections" ? connections()
    : path === "/webhooks" ? webhooks()
    : ledger("job");
  Promise.resolve(done).then(() => document.querySelector("#view h2")?.focus());
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);
  if (token()) {
    document.getElementById("sign-in").hidden = true;
    document.getElementById("nav").hidden = false;
    route();
  } else signOut();
});
