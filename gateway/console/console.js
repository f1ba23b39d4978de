// The admin console: every action is a call to the gateway's admin API (the same one the CLI
// and scripts use), with the token from sign-in in an Authorization header. No cookies, no
// inline script (the page's Content-Security-Policy forbids it), no build step.
"use strict";

const TOKEN_KEY = "iiif-admin-token";
const $ = (id) => document.getElementById(id);

// === the API ===

class ApiError extends Error {}

/** Calls the admin API; returns {status, body} for 2xx, throws an ApiError in words otherwise. */
async function api(method, path, body, contentType) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (e) {
    throw new ApiError("The gateway's admin listener cannot be reached (" + e.message + ").");
  }
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = null; }
  if (response.ok) return { status: response.status, body: parsed };
  throw new ApiError(explain(response.status, parsed, text));
}

/** An API error in words: what the gateway said, and what the status means. */
function explain(status, body, text) {
  const said = body && body.error ? body.error : (text || "").trim();
  const meaning = {
    400: "The request was refused",
    401: "The token is wrong",
    403: "The admin API is disabled on this gateway",
    404: "Not found",
    409: "Someone else is changing the archive",
    413: "The file is too large for the console (use the CLI)",
    503: "The ID archive (Redis) cannot be reached",
  }[status] || "The gateway answered " + status;
  let words = said ? meaning + ": " + said : meaning + ".";
  if (body && Array.isArray(body.problems)) {
    words += " " + body.problems.map((p) => "Row " + p.item + ": " + p.error + ".").join(" ");
  }
  return words;
}

const enc = encodeURIComponent; // a "/" in an identifier is %2F, as the API expects

function say(id, text, kind) {
  const element = $(id);
  element.textContent = text;
  element.className = "message" + (kind ? " " + kind : "");
}

/** Runs an action, showing its error in words in the message element `id`. */
async function attempt(id, action) {
  say(id, "…");
  try {
    await action();
  } catch (e) {
    say(id, e instanceof ApiError ? e.message : "Unexpected problem: " + e, "error");
  }
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fillTable(id, rows, columns) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of rows) {
    const row = body.insertRow();
    for (const column of columns) cell(row, column(item));
  }
  return body;
}

function fillList(id, pairs) {
  const list = $(id);
  list.replaceChildren();
  for (const [name, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined ? "—" : String(value);
    list.append(dt, dd);
  }
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

// === sign in ===

let status = null;

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    status = (await api("GET", "/admin/status")).body;
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    say("sign-in-message", e.message, "error");
    return;
  }
  $("sign-in-view").hidden = true;
  $("app").hidden = false;
  $("signed-in").hidden = false;
  const pub = status.public;
  $("viewer-base").value = pub.public_base_url ||
    location.protocol + "//" + location.hostname + ":" + pub.public_port;
  showStatus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// === tabs ===

function showTab(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== "tab-" + name;
  if (name === "status") attempt("status-ready", refreshStatus);
}

// === redirects ===

async function search() {
  const prefix = $("search-prefix").value;
  const { body } = await api("GET", "/admin/redirects?limit=200&prefix=" + enc(prefix));
  const rows = body.redirects;
  say("search-message", rows.length ? rows.length + " retired identifier(s)" + (rows.length === 200 ? " (the first 200)" : "") : "No retired identifier starts with that.", "ok");
  const table = $("search-results");
  table.hidden = rows.length === 0;
  const tbody = fillTable("search-results", rows, [(r) => r.id, (r) => r.kind, (r) => r.target, (r) => r.changed_at, (r) => r.changed_by, (r) => r.reason]);
  [...tbody.rows].forEach((row, i) => {
    row.cells[0].className = "clickable";
    row.cells[0].addEventListener("click", () => attempt("edit-message", async () => {
      await view(rows[i].id);
      say("edit-message", "Showing " + rows[i].id + ": edit it below.", "ok");
    }));
  });
}

async function view(id) {
  const { body } = await api("GET", "/admin/redirects/" + enc(id));
  $("edit-id").value = body.id;
  $("edit-kind").value = body.kind;
  $("edit-target").value = body.target || "";
  $("edit-reason").value = body.reason || "";
  $("record").hidden = false;
  $("record-id").textContent = body.id;
  fillList("record-fields", [["kind", body.kind], ["target", body.target], ["changed", body.changed_at], ["by", body.changed_by], ["reason", body.reason]]);
  fillTable("record-history", body.history || [], [
    (h) => h.at, (h) => h.by, (h) => h.action, (h) => h.kind, (h) => h.target, (h) => h.reason]);
}

async function save() {
  const id = $("edit-id").value.trim();
  const kind = $("edit-kind").value;
  const target = $("edit-target").value.trim();
  const record = { kind, reason: $("edit-reason").value, by: "admin console" };
  if (kind !== "gone") record.target = target;
  const { body } = await api("PUT", "/admin/redirects/" + enc(id), JSON.stringify(record));
  const what = kind === "gone" ? id + " is withdrawn (410)" : id + " now redirects to " + body.target + " (" + kind + ")";
  await view(id);
  say("edit-message", body.unchanged ? "Nothing changed: " + what + " already." : "Saved: " + what + ". Every gateway answers it within a second.", "ok");
}

async function remove() {
  const id = $("edit-id").value.trim();
  if (!id || !confirm("Delete the redirect of " + id + "? The identifier will be looked up as an image again.")) return;
  await api("DELETE", "/admin/redirects/" + enc(id) + "?by=" + enc("admin console"));
  $("record").hidden = true;
  say("edit-message", "Deleted: " + id + " is no longer retired.", "ok");
}

// === import ===

let previewed = null; // {text, format} of the file whose dry run succeeded

function importFormat(file) {
  const chosen = $("import-format").value;
  if (chosen) return chosen;
  if (/\.ya?ml$/i.test(file.name)) return "yaml";
  if (/\.json$/i.test(file.name)) return "json";
  return "csv";
}

async function runImport(dryRun) {
  const file = $("import-file").files[0];
  if (!file) throw new ApiError("Choose a file first.");
  const text = dryRun ? await file.text() : previewed.text;
  const format = dryRun ? importFormat(file) : previewed.format;
  const type = { csv: "text/csv", yaml: "application/yaml", json: "application/json" }[format];
  $("import-apply").disabled = true;
  let body;
  try {
    ({ body } = await api("POST", "/admin/redirects/import?format=" + format + (dryRun ? "&dry_run=1" : "") + "&by=" + enc("admin console"), text, type));
  } catch (e) {
    $("import-report").hidden = true;
    previewed = null;
    throw e;
  }
  const counts = body.rows + " rows: " + body.added + " new, " + body.changed + " changed, " + body.unchanged + " unchanged, " + body.collapsed + " chains collapsed, " + body.n_changes + " records change in all";
  $("import-summary").textContent = (dryRun ? "Dry run, nothing written. " : "Applied. ") + counts + ".";
  $("import-report").hidden = false;
  fillTable("import-changes", body.preview || [], [
    (c) => c.id, (c) => c.before ? c.before.kind + (c.before.target ? " → " + c.before.target : "") : "(new)",
    (c) => c.removed ? "(removed)" : c.kind + (c.target ? " → " + c.target : ""), (c) => c.cause]);
  if (dryRun) {
    previewed = { text, format };
    $("import-apply").disabled = false;
    say("import-message", "Preview ready: check the changes below, then Apply.", "ok");
  } else {
    previewed = null;
    say("import-message", "Imported: " + body.n_changes + " records changed.", "ok");
  }
}

// === purge ===

async function purge() {
  const id = $("purge-id").value.trim();
  let body;
  try {
    ({ body } = await api("DELETE", "/admin/images/" + enc(id)));
  } catch (e) {
    if (e.message.startsWith("Not found")) throw new ApiError("Nothing was cached about " + id + " on this node (other nodes were not asked).");
    throw e;
  }
  const parts = ["derivatives: " + body.derivatives.files + " files, " + bytes(body.derivatives.bytes)];
  if (body.master) parts.push("master copy: " + body.master.files + " files, " + bytes(body.master.bytes));
  parts.push("facts: " + body.facts);
  const told = body.announced === true ? "the other nodes were told" : body.announced === false ? "the other nodes could NOT be told (Redis unreachable)" : "no other nodes to tell";
  say("purge-message", "Purged " + id + ". Removed " + parts.join("; ") + "; " + told + ".", "ok");
}

// === status ===

async function refreshStatus() {
  status = (await api("GET", "/admin/status")).body;
  showStatus();
}

function showStatus() {
  say("status-ready", status.not_ready ? "Not ready: " + status.not_ready : "Ready (gateway " + status.version + ")", status.not_ready ? "error" : "ok");
  fillTable("status-backends", status.backends, [(b) => b.address, (b) => b.healthy ? "yes" : "NO", (b) => b.in_flight, (b) => b.served, (b) => b.failures]);
  fillTable("status-lanes", status.lanes, [(l) => l.lane, (l) => l.queued, (l) => l.in_service, (l) => l.admitted, (l) => l.rejected, (l) => l.service_time_ms === null ? "—" : l.service_time_ms.toFixed(1) + " ms"]);
  const cache = status.cache;
  fillList("status-cache", cache ? [
    ["cache mount", cache.root], ["estimated size", bytes(cache.estimated_bytes)],
    ["high watermark", bytes(cache.high_watermark_bytes)], ["hard limit", bytes(cache.hard_limit_bytes)],
    ["memory tier", bytes(cache.memory_tier_bytes)], ["masters from S3", cache.masters_from_s3 ? "yes" : "no"],
    ["ID archive", status.redirects ? (status.redirects.circuit_open ? "Redis unreachable (breaker open)" : "ok") : "not configured"],
  ] : [["cache", "no cache mount configured"]]);
}

// === viewer ===

let viewer = null;

function openViewer() {
  const base = $("viewer-base").value.replace(/\/+$/, "");
  const info = base + status.public.prefix + "/" + $("viewer-version").value + "/" + enc($("viewer-id").value.trim()) + "/info.json";
  $("viewer-info").href = info;
  $("viewer-info").textContent = info;
  if (viewer) viewer.destroy();
  viewer = OpenSeadragon({
    element: $("viewer"), tileSources: info, crossOriginPolicy: "Anonymous",
    showNavigationControl: false, preserveViewport: true,
  });
  viewer.addHandler("open", () => say("viewer-message", "Opened.", "ok"));
  viewer.addHandler("open-failed", (e) => say("viewer-message", "The image did not open: " + (e.message || "info.json could not be read") + ".", "error"));
  viewer.addHandler("tile-load-failed", (e) => say("viewer-message", "A tile failed to load: " + (e.message || e.tile.getUrl()), "error"));
}

// === wiring ===

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value.trim()); });
  $("sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); attempt("search-message", search); });
  $("edit-form").addEventListener("submit", (e) => { e.preventDefault(); attempt("edit-message", save); });
  $("edit-delete").addEventListener("click", () => attempt("edit-message", remove));
  $("import-form").addEventListener("submit", (e) => { e.preventDefault(); attempt("import-message", () => runImport(true)); });
  $("import-file").addEventListener("change", () => { $("import-apply").disabled = true; previewed = null; });
  $("import-apply").addEventListener("click", () => attempt("import-message", () => runImport(false)));
  $("purge-form").addEventListener("submit", (e) => { e.preventDefault(); attempt("purge-message", purge); });
  $("status-refresh").addEventListener("click", () => attempt("status-ready", refreshStatus));
  $("viewer-form").addEventListener("submit", (e) => { e.preventDefault(); openViewer(); });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
});
