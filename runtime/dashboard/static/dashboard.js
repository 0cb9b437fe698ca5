// lineside dashboard: live mode follows /api/events (server-sent events), review mode queries /api/decisions.
// Plain DOM and canvas, no build step. The page is read-only: it never sends anything to the line.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (value, digits = 3) => (value === null || value === undefined ? "-" : Number(value).toFixed(digits));
let lastUpdate = 0, updates = 0;

function setCounters(s) {
  $("c-parts").textContent = s.parts;
  $("c-rejects").textContent = s.verdicts.REJECT;
  $("c-errors").textContent = s.verdicts.ERROR;
  $("c-fps").textContent = fmt(s.fps, 1);
  $("c-p50").textContent = fmt(s.p50_ms, 1);
  $("c-p99").textContent = fmt(s.p99_ms, 1);
  lastUpdate = Date.now();
  document.body.dataset.updates = ++updates;
}

function setState(text, kind) {
  const badge = $("state");
  badge.textContent = text;
  badge.className = "badge " + kind;
}

function caption(d) {
  const span = document.createElement("span");
  span.className = d.verdict;
  span.textContent = d.verdict;
  const text = ` part ${d.part_id} | score ${fmt(d.score, 4)} | threshold ${fmt(d.threshold, 4)}` +
    (d.reason ? ` | ${d.reason}` : "");
  $("verdict").replaceChildren(span, document.createTextNode(text));
}

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
}

function drawChart(series) {
  const canvas = $("chart"), ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 36;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#999";
  if (!series.length) { ctx.fillText("no inspected parts yet", pad, h / 2); return; }
  const values = series.map((p) => p.total_ms);
  const top = Math.max(...values) * 1.1 || 1;
  const x = (i) => pad + (i / Math.max(1, series.length - 1)) * (w - pad - 8);
  const y = (v) => h - pad + 8 - (v / top) * (h - pad);
  ctx.strokeStyle = "#444";
  ctx.beginPath(); ctx.moveTo(pad, 8); ctx.lineTo(pad, h - pad + 8); ctx.lineTo(w - 8, h - pad + 8); ctx.stroke();
  ctx.fillText(top.toFixed(0), 2, 16);
  ctx.fillText("0", 2, h - pad + 8);
  ctx.strokeStyle = "#8ab4f8";
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
  series.forEach((p, i) => {
    if (p.verdict === "PASS") return;
    ctx.fillStyle = p.verdict === "REJECT" ? "#ff6b6b" : "#ffb74d";
    ctx.fillRect(x(i) - 2, y(p.total_ms) - 2, 4, 4);
  });
  ctx.setLineDash([4, 4]);
  for (const [q, colour] of [[50, "#66bb6a"], [99, "#ffb74d"]]) {
    const v = percentile(values, q);
    ctx.strokeStyle = colour;
    ctx.beginPath(); ctx.moveTo(pad, y(v)); ctx.lineTo(w - 8, y(v)); ctx.stroke();
    ctx.fillStyle = colour;
    ctx.fillText(`p${q} ${v.toFixed(1)}`, w - 80, y(v) - 3);
  }
  ctx.setLineDash([]);
}

function image(src, className, alt) {
  const img = document.createElement("img");
  img.className = className;
  img.alt = alt;
  img.src = src;
  return img;
}

function rejectCard(d, imageSrc, heatmapSrc) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.part = d.part_id;
  const pair = document.createElement("div");
  pair.className = "pair";
  if (imageSrc) pair.append(image(imageSrc, "image", `part ${d.part_id}`));
  if (heatmapSrc) pair.append(image(heatmapSrc, "heatmap", `part ${d.part_id} heatmap`));
  const verdict = document.createElement("span");
  verdict.className = d.verdict;
  verdict.textContent = d.verdict;
  const label = document.createElement("div");
  label.append(`part ${d.part_id} `, verdict, ` score ${fmt(d.score, 4)}`);
  card.append(pair, label);
  return card;
}

// ---- live ------------------------------------------------------------------------------------------------
let shownRejects = new Map();  // seq -> card: a card is built (and its images fetched) once

function showRejects(rejects) {
  if (rejects.map((r) => r.seq).join(",") === [...shownRejects.keys()].join(",")) return;
  shownRejects = new Map(rejects.map((r) => [r.seq, shownRejects.get(r.seq) || rejectCard(
    r, r.image && `/live/reject/${r.seq}/image.jpg`, r.heatmap && `/live/reject/${r.seq}/heatmap.jpg`)]));
  $("rejects").replaceChildren(...shownRejects.values());
}

function live(info) {
  $("mode").textContent = "live";
  $("title").textContent = `${info.bundle} (${info.model}, ${info.backend}) | source ${info.source}` +
    ` | threshold ${fmt(info.threshold, 4)}` + (info["class"] ? ` | class ${info["class"]}` : "");
  let shownSeq = 0, stopped = false;
  const events = new EventSource("/api/events");  // reconnects by itself: a restarted line reloads the page
  events.onmessage = (message) => {
    const s = JSON.parse(message.data);
    if (stopped && s.running) { location.reload(); return; }
    stopped = !s.running;
    setCounters(s);
    $("details").textContent = `errors: dropped ${s.dropped}, timeouts ${s.timeouts}, missed ${s.missed}` +
      ` | source outages ${s.outages}` + (s.eject ? ` | eject failed ${s.eject.eject_failed}` : "") +
      (s.outputs || []).filter((o) => !o.ok).map((o) => ` | output ${o.url} FAILED: ${o.last_error}`).join("");
    if (!s.running) setState("line stopped", "stopped");
    else if (!s.source_up) setState(`source down (outages ${s.outages}, missed ${s.missed})`, "down");
    else if (!s.healthy) setState(`unhealthy: ${Object.keys(s.faults || {}).join(", ")}`, "down");
    else setState("running", "ok");
    if (s.latest && s.latest.seq !== shownSeq) {
      shownSeq = s.latest.seq;
      caption(s.latest);
      if (s.latest.image) $("frame").src = `/live/frame.jpg?seq=${s.latest.seq}`;
    }
    showRejects(s.rejects);
    $("strip-title").textContent = s.rejects_not_shown
      ? `last rejected parts (${s.rejects_not_shown} more too close together to show; all are counted)`
      : "last rejected parts";
    drawChart(s.series);
  };
  events.onerror = () => setState(stopped ? "line stopped, waiting for a restart" : "connection lost, retrying", "lost");
}

// ---- review ----------------------------------------------------------------------------------------------
function select(item, row) {
  document.querySelectorAll("#decisions tr.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  caption(item);
  const frame = $("frame"), heat = $("frame-heatmap");
  frame.hidden = !item.image;
  heat.hidden = !item.heatmap;
  if (item.image) frame.src = `/review/${item.index}/image.jpg`;
  if (item.heatmap) heat.src = `/review/${item.index}/heatmap.jpg`;
  if (!item.image) $("verdict").append(document.createTextNode(" | no saved image"));
}

async function query() {
  const params = new URLSearchParams(new FormData($("filters")));
  const response = await fetch("/api/decisions?" + params.toString());
  const result = await response.json();
  if (!response.ok) {  // 400: a filter the server cannot use
    $("matches").textContent = result.error;
    return;
  }
  setCounters(result);
  $("matches").textContent = `${result.total} decisions` + (result.items.length < result.total ? `, newest ${result.items.length} listed` : "");
  drawChart(result.series);
  const rows = result.items.map((item) => {
    const row = document.createElement("tr");
    const cells = [item.run, item.part_id, item["class"] || "", item.verdict, fmt(item.score, 4), fmt(item.threshold, 4),
      item.time ? new Date(item.time * 1000).toLocaleString() : "", item.reason || ""];
    row.replaceChildren(...cells.map((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 3) td.className = item.verdict;
      return td;
    }));
    row.dataset.index = item.index;
    row.onclick = () => select(item, row);
    return row;
  });
  $("decisions").tBodies[0].replaceChildren(...rows);
  const rejects = result.items.filter((item) => item.verdict !== "PASS" && item.image).slice(0, 12);
  $("rejects").replaceChildren(...rejects.map((item) => {
    const card = rejectCard(item, `/review/${item.index}/image.jpg`, item.heatmap && `/review/${item.index}/heatmap.jpg`);
    card.onclick = () => select(item, $("decisions").querySelector(`tr[data-index="${item.index}"]`));
    return card;
  }));
  const first = Math.max(0, result.items.findIndex((item) => item.image));
  if (rows.length) select(result.items[first], rows[first]);
  setState("log loaded", "ok");
}

function review(info) {
  $("mode").textContent = "review";
  $("title").textContent = info.log;
  $("strip-title").textContent = "rejected parts with saved images (newest first, as filtered)";
  $("filters").hidden = false;
  $("decisions").hidden = false;
  const classes = $("filters").elements["class"];
  for (const name of info.classes) classes.append(new Option(name, name));
  $("filters").addEventListener("change", query);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); query(); });
  query();
}

setInterval(() => {
  if (lastUpdate) $("updated").textContent = `updated ${((Date.now() - lastUpdate) / 1000).toFixed(0)} s ago`;
}, 1000);

fetch("/api/info").then((r) => r.json()).then((info) => (info.mode === "live" ? live(info) : review(info)));
