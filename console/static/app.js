// kvd console. Plain JavaScript, no dependencies: every view reads the
// console's JSON API under /ui/api/, which calls the member's gRPC API with
// the logged-in user's token.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  session: null,
  tab: "cluster",
  prefix: "",        // the key tree's prefix (text)
  next: "",          // base64 start of the tree's next page
  selected: null,    // the shown key: {k, kv}
  editing: null,     // {k, expect} while the editor is open
  watch: null,       // EventSource of the watched prefix
  activity: null,    // EventSource of the activity charts
  clusterTimer: null,
  historyBefore: 0,
};

// ---- bytes and text

function b64(text) {                       // text -> base64 of its UTF-8
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin);
}
function bytesOf(b64s) {
  const bin = atob(b64s || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function textOf(bytes) { return new TextDecoder("utf-8", { fatal: false }).decode(bytes); }
function isText(bytes) {
  try { new TextDecoder("utf-8", { fatal: true }).decode(bytes); return true; } catch (e) { return false; }
}
function hexdump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = Array.from(bytes.slice(i, i + 16));
    const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const asc = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(i.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + asc);
  }
  return lines.join("\n");
}
function size(n) {
  if (n == null) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "data") Object.entries(v).forEach(([dk, dv]) => { e.dataset[dk] = dv; });
    else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid == null ? "" : kid);
  return e;
}
function show(id, on) { $(id).hidden = !on; }

// ---- the API

class APIError extends Error {
  constructor(status, body) {
    super(body.error || ("HTTP " + status));
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-KVD-Console"] = "1";   // CSRF guard
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = {};
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401 && state.session && state.session.auth_enabled) askLogin();
    else if (resp.status === 401) { await loadSession(); }
    throw new APIError(resp.status, data);
  }
  return data;
}

function q(params) {
  return Object.entries(params).map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&");
}

function showError(id, err) {
  const e = $(id);
  if (!err) { e.hidden = true; e.textContent = ""; return; }
  e.textContent = err.message || String(err);
  e.hidden = false;
}

// ---- session and login

async function loadSession() {
  const s = await api("GET", "/ui/api/session");
  state.session = s;
  $("member-name").textContent = "member " + s.member;
  $("login-member").textContent = s.member;
  show("read-only", s.read_only);
  document.body.classList.toggle("read-only", s.read_only);
  $("user").textContent = s.user ? "user " + s.user : (s.auth_enabled ? "" : "auth disabled");
  show("logout-btn", !!s.user);
  if (s.auth_enabled && !s.user) { askLogin(); return false; }
  show("login", false);
  return true;
}

function askLogin() {
  stopStreams();
  show("login", true);
  $("login-user").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("login-error", null);
  try {
    await api("POST", "/ui/api/login", { user: $("login-user").value, password: $("login-pass").value });
    $("login-pass").value = "";
    await loadSession();
    switchTab(state.tab);
  } catch (err) { showError("login-error", err); }
});

$("logout-btn").addEventListener("click", async () => {
  await api("POST", "/ui/api/logout", {});
  location.reload();
});

// ---- tabs

function switchTab(tab) {
  state.tab = tab;
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  for (const t of ["cluster", "activity", "keys", "leases"]) show("tab-" + t, t === tab);
  // Live views run only while shown: a console nobody looks at costs
  // the member nothing.
  if (tab === "activity") startActivity(); else stopActivity();
  if (tab === "keys") loadKeys(state.prefix, false);
  if (tab === "leases") { loadLeases(); loadLocks(); }
}
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));

function stopStreams() { stopActivity(); stopWatch(); }

// ---- cluster

async function refreshCluster() {
  try {
    const c = await api("GET", "/ui/api/cluster");
    showError("error", null);
    renderCluster(c);
  } catch (err) {
    if (err.status !== 401) showError("error", new Error("cluster: " + err.message));
  }
}

function renderCluster(c) {
  const nl = $("no-leader");
  if (!c.has_leader) {
    nl.textContent = "Member " + c.member + " has lost its leader: writes and linearizable reads wait until one is elected.";
    nl.hidden = false;
  } else nl.hidden = true;
  const tb = $("members").tBodies[0];
  tb.replaceChildren();
  for (const m of c.members) {
    const s = m.status;
    let role = m.learner ? "learner" : "voter";
    if (s) role = s.raft_state.toLowerCase() + (m.learner ? " (learner)" : "");
    const health = s ? (m.healthy || m.leader ? el("span", { class: "ok" }, "healthy") : el("span", { class: "bad" }, "not heard from"))
      : el("span", { class: "bad", title: m.error || "" }, "unreachable");
    const name = [m.leader ? "★ " : "", m.name, m.name === c.member ? " (this page)" : ""].join("");
    const tr = el("tr", { class: (m.leader ? "leader" : "") + (s ? "" : " down"), data: { name: m.name } },
      el("td", { class: "name" }, name),
      el("td", { class: "role" }, role),
      el("td", {}, s ? s.term : ""),
      el("td", {}, s ? s.commit_index : ""),
      el("td", {}, s ? s.applied_index : ""),
      el("td", { class: "lag" }, m.lag != null ? m.lag : ""),
      el("td", {}, s ? size(s.db_size) : ""),
      el("td", {}, s ? size(s.db_size_in_use) : ""),
      el("td", {}, s ? s.revision : ""),
      el("td", {}, s ? s.version : ""),
      el("td", { class: "health" }, health));
    tb.append(tr);
  }
  const a = $("alarms");
  if (c.alarms.length) { a.textContent = "Alarms: " + c.alarms.join(", "); a.className = "bad"; }
  else if (c.alarms_error) { a.textContent = "Alarms: unknown (" + c.alarms_error + ")"; a.className = "muted small"; }
  else { a.textContent = "No alarms."; a.className = "muted"; }
}

function pollCluster() {
  clearTimeout(state.clusterTimer);
  const tick = async () => {
    if (!document.hidden && $("login").hidden) await refreshCluster();
    state.clusterTimer = setTimeout(tick, 1000);
  };
  tick();
}

// ---- activity charts

const charts = [
  { id: "writes", get: (p) => p.writes, fmt: (v) => v.toFixed(0) },
  { id: "reads", get: (p) => p.reads, fmt: (v) => v.toFixed(0) },
  { id: "p99", get: (p) => p.p99_ms, fmt: (v) => v.toFixed(2) },
  { id: "proposals", get: (p) => p.proposals, fmt: (v) => v.toFixed(0) },
  { id: "lag", get: (p) => p.apply_lag, fmt: (v) => v.toFixed(0) },
];
let samples = [];
let keepSamples = 300;

function startActivity() {
  if (state.activity) return;
  samples = [];
  const es = new EventSource("/ui/api/activity");
  state.activity = es;
  es.addEventListener("history", (ev) => {
    const h = JSON.parse(ev.data);
    samples = h.samples || [];
    if (h.keep) keepSamples = h.keep;
    drawCharts();
  });
  es.addEventListener("sample", (ev) => {
    samples.push(JSON.parse(ev.data));
    if (samples.length > keepSamples) samples.shift();
    drawCharts();
  });
  es.onerror = () => { if (es.readyState === EventSource.CLOSED) stopActivity(); };
}

function stopActivity() {
  if (state.activity) { state.activity.close(); state.activity = null; }
}

function drawCharts() {
  for (const c of charts) {
    const canvas = $("c-" + c.id);
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 4;
    ctx.clearRect(0, 0, w, h);
    const vals = samples.map(c.get);
    const known = vals.filter((v) => v != null);
    const last = vals.length ? vals[vals.length - 1] : null;
    $("v-" + c.id).textContent = last == null ? "–" : c.fmt(last);
    const top = Math.max(1, ...known) * 1.1;
    ctx.strokeStyle = "#d8dde3";
    ctx.beginPath(); ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
    ctx.fillStyle = "#667"; ctx.font = "10px sans-serif";
    ctx.fillText(c.fmt(top), 2, 10);
    ctx.strokeStyle = "#2b6cb0"; ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false;
    vals.forEach((v, i) => {
      // At least a minute wide, then as wide as the history kept.
      const span = Math.min(keepSamples, Math.max(60, vals.length));
      const x = w - (vals.length - 1 - i) * (w / (span - 1));
      if (v == null) { pen = false; return; }
      const y = h - pad - (v / top) * (h - 2 * pad);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
}

// ---- keys

function crumbs(prefix) {
  const c = $("crumbs");
  c.replaceChildren(el("a", { onclick: () => loadKeys("", false) }, "(all keys)"));
  let acc = "";
  for (const part of prefix.split("/")) {
    if (part === "" && acc !== "") continue;
    acc += part + "/";
    if (!prefix.startsWith(acc)) break;
    const target = acc;
    c.append(" ", el("a", { onclick: () => loadKeys(target, false) }, part === "" ? "/" : part + "/"));
  }
}

async function loadKeys(prefix, more) {
  state.prefix = prefix;
  $("prefix").value = prefix;
  crumbs(prefix);
  showError("keys-error", null);
  const list = $("key-list");
  if (!more) { list.replaceChildren(); state.next = ""; }
  try {
    const params = { prefix: b64(prefix) };
    if (more && state.next) params.next = state.next;
    const l = await api("GET", "/ui/api/keys?" + q(params));
    for (const e of l.entries) {
      if (e.dir) {
        const p = textOf(bytesOf(e.p));
        list.append(el("li", { class: "dir", data: { p }, onclick: () => loadKeys(p, false) }, e.name));
      } else {
        const li = el("li", { class: "key", data: { key: e.kv.key }, onclick: () => selectKey(e.kv.k) },
          el("span", {}, e.name === "" ? "(this key)" : e.name), el("span", { class: "rev" }, "rev " + e.kv.mod_revision));
        list.append(li);
      }
    }
    if (!list.children.length) list.append(el("li", { class: "empty" }, "no keys under this prefix"));
    state.next = l.next || "";
    show("more-btn", !!l.next);
    if (state.watch && state.watchPrefix !== prefix) stopWatch();
  } catch (err) { showError("keys-error", err); show("more-btn", false); }
}

$("prefix-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadKeys($("prefix").value, false); });
$("more-btn").addEventListener("click", () => loadKeys(state.prefix, true));

async function selectKey(k) {
  showError("key-error", null);
  show("conflict", false);
  show("editor", false);
  try {
    const r = await api("GET", "/ui/api/key?" + q({ k }));
    state.selected = { k, kv: r.kv, lease_ttl: r.lease_ttl, lease_granted_ttl: r.lease_granted_ttl };
    renderKey();
    document.querySelectorAll("#key-list li").forEach((li) => li.classList.toggle("selected", li.dataset.key === r.kv.key));
  } catch (err) {
    state.selected = null;
    show("key-detail", false);
    show("key-empty", true);
    showError("key-error", err);
  }
}

function renderKey() {
  const s = state.selected;
  show("key-empty", !s);
  show("key-detail", !!s);
  show("history", false);
  if (!s) return;
  const kv = s.kv;
  $("key-name").textContent = kv.key;
  const meta = $("key-meta");
  meta.replaceChildren();
  const row = (k, v) => meta.append(el("dt", {}, k), el("dd", {}, v));
  row("Size", size(kv.value_size));
  row("Created at revision", String(kv.create_revision));
  row("Modified at revision", String(kv.mod_revision));
  row("Version", String(kv.version));
  if (kv.lease) {
    const ttl = s.lease_ttl == null ? "" : (s.lease_ttl < 0 ? " (expired)" : ", " + s.lease_ttl + " s left of " + s.lease_granted_ttl + " s");
    row("Lease", kv.lease + ttl);
  } else row("Lease", "none");
  renderValue();
}

function renderValue() {
  const bytes = bytesOf(state.selected.kv.value);
  const mode = $("view-mode").value;
  let out = "", note = "";
  if (mode === "hex") out = hexdump(bytes);
  else if (mode === "json") {
    try { out = JSON.stringify(JSON.parse(textOf(bytes)), null, 2); } catch (e) { out = textOf(bytes); note = "not valid JSON: shown as text"; }
  } else {
    out = textOf(bytes);
    if (!isText(bytes)) note = "not UTF-8: try hex";
  }
  $("key-value").textContent = out;
  $("view-note").textContent = note;
}
$("view-mode").addEventListener("change", () => { if (state.selected) renderValue(); });

function openEditor(create) {
  show("conflict", false);
  showError("key-error", null);
  const s = state.selected;
  state.editing = create ? { k: null, expect: 0 } : { k: s.k, expect: s.kv.mod_revision };
  $("editor-title").textContent = create ? "New key" : "Edit " + s.kv.key;
  show("new-key-label", create);
  $("edit-key").value = create ? state.prefix : "";
  $("edit-value").value = create ? "" : textOf(bytesOf(s.kv.value));
  $("edit-lease").value = create ? "" : (s.kv.lease || "");
  $("editor-note").textContent = create ? "Created only if the key does not exist yet."
    : "Saved only if the key is still at mod revision " + s.kv.mod_revision + ": a change made meanwhile is reported, never overwritten.";
  show("key-detail", false);
  show("key-empty", false);
  show("editor", true);
  (create ? $("edit-key") : $("edit-value")).focus();
}
$("new-key-btn").addEventListener("click", () => openEditor(true));
$("edit-btn").addEventListener("click", () => openEditor(false));
$("cancel-btn").addEventListener("click", () => { show("editor", false); renderKey(); });

$("editor").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const ed = state.editing;
  const k = ed.k || b64($("edit-key").value);
  const body = { k, value: $("edit-value").value, expect: ed.expect };
  const lease = $("edit-lease").value.trim();
  if (lease && (!state.selected || ed.k == null || lease !== (state.selected.kv.lease || ""))) body.lease = lease;
  try {
    await api("POST", "/ui/api/key", body);
    show("editor", false);
    await selectKey(k);
    loadKeys(state.prefix, false);
  } catch (err) {
    if (err.status === 409) showConflict(err.body, k);
    else showError("key-error", err);
  }
});

function showConflict(body, k) {
  $("conflict-msg").textContent = body.error;
  $("conflict-current").textContent = body.current ? "Now: " + textOf(bytesOf(body.current.value)) + "  (mod revision " + body.current.mod_revision + ")" : "The key does not exist now.";
  $("conflict").dataset.k = k;
  show("conflict", true);
}
$("conflict-reload").addEventListener("click", () => { show("conflict", false); show("editor", false); selectKey($("conflict").dataset.k); });

$("delete-btn").addEventListener("click", async () => {
  const s = state.selected;
  if (!s || !confirm("Delete " + s.kv.key + "?")) return;
  try {
    await api("DELETE", "/ui/api/key?" + q({ k: s.k, expect: s.kv.mod_revision }));
    state.selected = null;
    renderKey();
    loadKeys(state.prefix, false);
  } catch (err) {
    if (err.status === 409) showConflict(err.body, s.k);
    else showError("key-error", err);
  }
});

async function loadHistory(more) {
  const s = state.selected;
  const tb = $("history-table").tBodies[0];
  if (!more) { tb.replaceChildren(); state.historyBefore = 0; }
  show("history", true);
  try {
    const params = { k: s.k };
    if (more) params.before = state.historyBefore;
    const h = await api("GET", "/ui/api/history?" + q(params));
    for (const v of h.versions) {
      const text = textOf(bytesOf(v.value));
      tb.append(el("tr", {}, el("td", {}, String(v.mod_revision)), el("td", {}, String(v.version)),
        el("td", {}, text.length > 120 ? text.slice(0, 120) + "…" : text)));
    }
    state.historyBefore = h.before || 0;
    show("history-more", !!h.before);
    $("history-end").textContent = { created: "First version: the key was created here.", compacted: h.message, absent: "The key did not exist before." }[h.end] || "";
  } catch (err) { $("history-end").textContent = err.message; }
}
$("history-btn").addEventListener("click", () => loadHistory(false));
$("history-more").addEventListener("click", () => loadHistory(true));

// ---- watch

const maxWatchLog = 200;

function startWatch() {
  stopWatch();
  const prefix = state.prefix;
  const url = "/ui/api/watch?" + q({ prefix: b64(prefix) });
  const es = new EventSource(url);
  state.watch = es;
  state.watchPrefix = prefix;
  $("watch-prefix").textContent = prefix === "" ? "(all keys)" : prefix;
  $("watch-log").replaceChildren();
  show("watch-panel", true);
  $("watch-btn").textContent = "Stop watching";
  es.addEventListener("created", (ev) => {
    const r = JSON.parse(ev.data);
    $("watch-log").prepend(el("li", { class: "muted" }, "watching from revision " + (r.revision + 1)));
  });
  es.addEventListener("event", (ev) => {
    const e = JSON.parse(ev.data);
    const val = e.type === "PUT" ? " = " + textOf(bytesOf(e.kv.value)).slice(0, 80) : "";
    const log = $("watch-log");
    log.prepend(el("li", { class: e.type }, e.type + " " + e.kv.key + val + "  (rev " + e.revision + ")"));
    while (log.children.length > maxWatchLog) log.lastChild.remove();   // a busy prefix must not grow the page without end
  });
  es.addEventListener("end", (ev) => {
    $("watch-log").prepend(el("li", { class: "bad" }, "watch ended: " + JSON.parse(ev.data).error));
    stopWatch(true);
  });
  es.onerror = async () => {
    if (es.readyState !== EventSource.CLOSED) return;   // reconnecting
    stopWatch(true);
    // EventSource does not show why it was refused: ask again to read it.
    let why = "the member refused or ended the watch";
    const ctl = new AbortController();
    try {
      const resp = await fetch(url, { signal: ctl.signal });
      if (!resp.ok) why = (await resp.json()).error || why;
    } catch (e) { /* unreachable member: keep the generic reason */ }
    ctl.abort();
    $("watch-log").prepend(el("li", { class: "bad" }, "watch refused: " + why));
  };
}
function stopWatch(keepPanel) {
  if (state.watch) { state.watch.close(); state.watch = null; }
  $("watch-btn").textContent = "Watch this prefix";
  if (!keepPanel) show("watch-panel", false);
}
$("watch-btn").addEventListener("click", () => { if (state.watch) stopWatch(); else startWatch(); });

// ---- leases and locks

async function loadLeases() {
  const tb = $("leases").tBodies[0];
  try {
    const r = await api("GET", "/ui/api/leases");
    tb.replaceChildren();
    for (const l of r.leases) {
      tb.append(el("tr", { data: { id: l.id } }, el("td", {}, l.id), el("td", {}, l.error ? l.error : (l.ttl < 0 ? "expired" : l.ttl + " s")),
        el("td", {}, l.granted_ttl + " s"), el("td", {}, l.keys.join(", "))));
    }
    $("leases-note").textContent = r.total > r.leases.length ? "Showing " + r.leases.length + " of " + r.total + " leases." : r.total + " leases.";
  } catch (err) { $("leases-note").textContent = err.message; }
}

async function loadLocks() {
  const tb = $("locks").tBodies[0];
  tb.replaceChildren();
  const prefix = $("locks-prefix").value;
  try {
    const r = await api("GET", "/ui/api/locks?" + q({ prefix: b64(prefix) }));
    for (const lk of r.queues) {
      const h = lk.holder;
      tb.append(el("tr", { data: { name: lk.name } }, el("td", {}, lk.name), el("td", { class: "holder" }, h.key), el("td", {}, h.lease),
        el("td", {}, String(h.create_revision)), el("td", {}, textOf(bytesOf(h.value))), el("td", {}, String(lk.waiters))));
    }
    $("locks-note").textContent = r.queues.length ? (r.more ? "More names under this prefix than one page: narrow it." : "")
      : "No lock or election under this prefix (their keys are name/<lease id in hex>).";
  } catch (err) { $("locks-note").textContent = err.message; }
}
$("locks-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadLocks(); });

// ---- start

(async () => {
  try {
    await loadSession();
  } catch (err) { showError("error", err); }
  pollCluster();
  const tab = location.hash.replace("#", "");
  switchTab(["cluster", "activity", "keys", "leases"].includes(tab) ? tab : "cluster");
})();
