// The zoolens page: plain JavaScript over the JSON API (no framework, no CDN).
"use strict";

const $ = (sel) => document.querySelector(sel);
const SHOWN = ["task", "family", "arch", "accuracy", "r2", "parent"]; // the rest on hover

function colour(i) { // distinct hues for any number of groups (golden-angle steps)
  return "hsl(" + Math.round((i * 137.508) % 360) + ", 65%, 48%)";
}
const state = { map: null, page: 0, pageSize: 50 };
window.zoolens = state; // read by the browser tests

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function modelLink(id) {
  return el("a", id, { href: "#/models/" + encodeURIComponent(id), class: "model-link" });
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.detail) || response.status + " " + response.statusText);
  }
  return body;
}

function whereParams(text) {
  const params = new URLSearchParams();
  for (const part of (text || "").split(/\s+/)) if (part) params.append("where", part);
  return params;
}

function format(value) {
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  }
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function metaCell(metadata) {
  const m = metadata || {};
  const text = SHOWN.filter((k) => m[k] !== undefined && m[k] !== null && m[k] !== "")
    .map((k) => k + "=" + format(m[k])).join("  ");
  return el("td", text, { class: "meta", title: JSON.stringify(m, null, 1) });
}

// -- neighbours tables ---------------------------------------------------------------
function fillHits(table, hits) {
  const heads = [...new Set(hits.flatMap((h) => Object.keys(h.predictions || {})))];
  const head = table.querySelector("thead");
  const body = table.querySelector("tbody");
  head.replaceChildren();
  body.replaceChildren();
  const tr = el("tr");
  for (const name of ["#", "id", "score", ...heads.map((h) => "predicted " + h), "metadata"]) {
    tr.appendChild(el("th", name));
  }
  head.appendChild(tr);
  hits.forEach((hit, i) => {
    const row = el("tr", null, { class: "hit" });
    row.appendChild(el("td", i + 1, { class: "num" }));
    const idCell = el("td");
    idCell.appendChild(modelLink(hit.id));
    const badge = lineageBadge(hit.lineage);
    if (badge) idCell.appendChild(badge);
    row.appendChild(idCell);
    row.appendChild(el("td", hit.score.toFixed(4), { class: "num" }));
    for (const name of heads) row.appendChild(el("td", format((hit.predictions || {})[name]), { class: "num" }));
    row.appendChild(metaCell(hit.metadata));
    body.appendChild(row);
  });
  table.hidden = false;
}

async function searchFile(file) {
  showError("");
  $("#query").textContent = "Embedding " + file.name + " …";
  const params = whereParams($("#where").value);
  params.set("k", $("#k").value || "10");
  if ($("#same-interface").checked) params.set("same_interface", "true");
  const form = new FormData();
  form.append("file", file);
  try {
    const answer = await api("/api/search?" + params, { method: "POST", body: form });
    const q = answer.query;
    const predicted = Object.entries(q.predictions || {})
      .map(([k, v]) => "predicted " + k + " " + format(v)).join(", ");
    $("#query").textContent = q.file + " (" + q.kind +
      (q.input_shape ? ", input " + JSON.stringify(q.input_shape) : "") +
      (q.n_outputs ? ", " + q.n_outputs + " outputs" : "") + ")" +
      (predicted ? "; " + predicted : "") + ": " + answer.results.length + " neighbours";
    fillHits($("#results"), answer.results);
  } catch (e) {
    $("#query").textContent = "";
    showError(e.message);
  }
}

function setUpDrop() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (e) => { if (e.target.files[0]) searchFile(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) searchFile(e.dataTransfer.files[0]);
  });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
}

// -- the zoo map ---------------------------------------------------------------------
const PAD = 20;

function drawMap() {
  const canvas = $("#map");
  const ctx = canvas.getContext("2d");
  const key = $("#colour-by").value;
  const colours = new Map();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const p of state.map.points) {
    const value = format((p.metadata || {})[key]) || "(none)";
    if (!colours.has(value)) colours.set(value, colour(colours.size));
    p.px = PAD + p.x * (canvas.width - 2 * PAD);
    p.py = PAD + (1 - p.y) * (canvas.height - 2 * PAD);
    ctx.beginPath();
    ctx.arc(p.px, p.py, 5, 0, 2 * Math.PI);
    ctx.fillStyle = colours.get(value);
    ctx.fill();
  }
  const legend = $("#legend");
  legend.replaceChildren();
  for (const [value, colour] of colours) {
    const item = el("li", value);
    const swatch = el("span", null, { style: "background:" + colour });
    item.prepend(swatch);
    legend.appendChild(item);
  }
}

function pointAt(event) {
  const canvas = $("#map");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width);
  const y = (event.clientY - rect.top) * (canvas.height / rect.height);
  let best = null;
  let bestD = 64; // within 8 px
  for (const p of (state.map ? state.map.points : [])) {
    const d = (p.px - x) ** 2 + (p.py - y) ** 2;
    if (d < bestD) { best = p; bestD = d; }
  }
  return best;
}

function setUpMap() {
  const canvas = $("#map");
  const tip = $("#tooltip");
  canvas.addEventListener("mousemove", (e) => {
    const p = pointAt(e);
    tip.hidden = !p;
    if (!p) return;
    const m = p.metadata || {};
    tip.textContent = p.id + ["task", "family", "accuracy"]
      .filter((k) => m[k] !== undefined).map((k) => "\n" + k + ": " + format(m[k])).join("");
    tip.style.left = (p.px + 10) + "px";
    tip.style.top = (p.py + 10) + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (e) => {
    const p = pointAt(e);
    if (p) location.hash = "#/models/" + encodeURIComponent(p.id);
  });
  $("#colour-by").addEventListener("change", drawMap);
}

async function showMap() {
  try {
    const answer = await api("/api/map");
    if (answer.status === "computing") { // a slow layout is being made: ask again soon
      $("#map-info").textContent = answer.detail;
      $("#map").dataset.ready = "false";
      setTimeout(() => { if (location.hash === "#/map") showMap(); },
        1000 * (answer.retry_after || 5));
      return;
    }
    state.map = answer;
    $("#map-info").textContent = state.map.count + " models, " + state.map.method;
    drawMap();
    $("#map").dataset.ready = "true";
  } catch (e) { showError(e.message); }
}

// -- models list and model page ----------------------------------------------------------
async function showModels() {
  const params = whereParams($("#models-where").value);
  params.set("limit", state.pageSize);
  params.set("offset", state.page * state.pageSize);
  try {
    const answer = await api("/api/models?" + params);
    const body = $("#models tbody");
    body.replaceChildren();
    for (const m of answer.models) {
      const row = el("tr");
      const idCell = el("td");
      idCell.appendChild(modelLink(m.id));
      row.append(idCell, metaCell(m.metadata));
      body.appendChild(row);
    }
    const first = answer.total ? answer.offset + 1 : 0;
    $("#models-range").textContent = first + "–" + (answer.offset + answer.models.length) +
      " of " + answer.total;
  } catch (e) { showError(e.message); }
}

function setUpModels() {
  $("#models-prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); showModels(); });
  $("#models-next").addEventListener("click", () => { state.page += 1; showModels(); });
  $("#models-where").addEventListener("change", () => { state.page = 0; showModels(); });
}

function linkList(line, items, empty) { // items: [{id, how?, distance?}] or ids
  if (!items.length) line.appendChild(el("span", empty));
  items.forEach((item, i) => {
    if (i) line.appendChild(document.createTextNode(", "));
    line.appendChild(modelLink(item.id || item));
    if (item.how) {
      const d = item.distance === null ? "" : " " + item.distance.toFixed(3);
      line.appendChild(el("span", " (" + item.how + d + ")", { class: "how" }));
    }
  });
  return line;
}

function inferredLineage(inferred) { // lineage recovered from the weights (or null)
  if (!inferred) return [el("p", "from weights: not computed for an index this large")];
  return [
    linkList(el("p", "from weights, parent: "), inferred.parent ? [inferred.parent] : [], "none found"),
    linkList(el("p", "from weights, children: "), inferred.children, "none found"),
    linkList(el("p", "near-duplicates: "), inferred.near_duplicates, "none"),
  ];
}

function lineageBadge(lineage) { // a search hit's parent and near-duplicates, in short
  if (!lineage) return null;
  const parts = [];
  if (lineage.parent) parts.push("fine-tune of " + lineage.parent + " (" + lineage.how + ")");
  if (lineage.near_duplicates.length) parts.push("near-duplicate of " + lineage.near_duplicates.join(", "));
  return parts.length ? el("div", parts.join("; "), { class: "lineage" }) : null;
}

async function showModel(id) {
  $("#model-title").textContent = id;
  try {
    const m = await api("/api/models/" + encodeURIComponent(id));
    const meta = $("#model-meta tbody");
    meta.replaceChildren();
    for (const [k, v] of Object.entries(m.metadata)) {
      const row = el("tr");
      row.append(el("th", k), el("td", format(v)));
      meta.appendChild(row);
    }
    const lineage = $("#model-lineage");
    lineage.replaceChildren();
    const parent = el("p", "parent: ");
    parent.appendChild(m.lineage.parent ? modelLink(m.lineage.parent) : el("span", "none recorded"));
    const children = el("p", "children: ");
    if (!m.lineage.children.length) children.appendChild(el("span", "none recorded"));
    m.lineage.children.forEach((c, i) => {
      if (i) children.appendChild(document.createTextNode(", "));
      children.appendChild(modelLink(c));
    });
    lineage.append(parent, children, ...inferredLineage(m.lineage.inferred));
    const predicted = Object.entries(m.predictions);
    $("#model-predictions").textContent = predicted.length
      ? predicted.map(([k, v]) => k + ": " + format(v)).join(", ")
      : "no head in this index (zoolens fit-head, saved under INDEX/heads/)";
    fillHits($("#model-nearest"), m.nearest);
  } catch (e) { showError(e.message); }
}

// -- routing -----------------------------------------------------------------------------
function route() {
  showError("");
  const hash = location.hash || "#/";
  const views = { search: "#view-search", map: "#view-map", models: "#view-models", model: "#view-model" };
  let view = "search";
  const model = hash.match(/^#\/models\/(.+)$/);
  if (model) view = "model";
  else if (hash === "#/map") view = "map";
  else if (hash === "#/models") view = "models";
  for (const [name, sel] of Object.entries(views)) $(sel).hidden = name !== view;
  if (view === "map") showMap();
  if (view === "models") showModels();
  if (view === "model") showModel(decodeURIComponent(model[1]));
}

async function showStatus() {
  try {
    const h = await api("/api/health");
    $("#status").textContent = h.count + " models · " + h.encoder + (h.read_only ? " · read-only" : "");
  } catch (e) { $("#status").textContent = "server unreachable"; }
}

setUpDrop();
setUpMap();
setUpModels();
window.addEventListener("hashchange", route);
route();
showStatus();
