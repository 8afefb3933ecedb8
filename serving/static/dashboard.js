// The dashboard: small SVG charts drawn from what the API already serves (/metrics,
// /v1/runs, /v1/experiments/<name>). No library and no network beyond this API.
"use strict";

const COLORS = ["#3366cc", "#dc7633", "#2e9e5b", "#9b59b6", "#c0392b", "#7f8c8d", "#16a085"];
const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
const LOOKUP_ENDPOINTS = ["/v1/recommendations/<any_text:user_id>", "/v1/popular", "/v1/similar/<any_text:item_id>"];
const ITEM_SOURCES = ["personalized", "popular", "fallback", "new", "als", "content"];

// What the page drew, for people and for the browser test: points per chart, and problems.
window.dashboard = { rendered: {}, problems: [] };

function node(tag, attrs, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function frame(container, width, height) {
  container.replaceChildren();
  const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  container.appendChild(svg);
  return svg;
}

function showEmpty(id, message) {
  const container = document.getElementById(id);
  container.replaceChildren();
  const paragraph = document.createElement("p");
  paragraph.className = "empty";
  paragraph.textContent = message;
  container.appendChild(paragraph);
  container.dataset.points = "0";
  window.dashboard.rendered[id] = 0;
}

function rendered(id, points) {
  document.getElementById(id).dataset.points = String(points);
  window.dashboard.rendered[id] = points;
}

// Bars with optional [low, high] whiskers: bars = [{label, value, low, high, color}].
function barChart(id, bars, options) {
  const width = 520, height = 220, left = 48, bottom = 40, top = 16;
  const svg = frame(document.getElementById(id), width, height);
  const peak = Math.max(...bars.map((bar) => Math.max(bar.value, bar.high || 0)), 1e-9);
  const slot = (width - left - 8) / bars.length;
  const scale = (value) => height - bottom - (value / peak) * (height - bottom - top);
  svg.appendChild(node("line", { x1: left, y1: height - bottom, x2: width - 4, y2: height - bottom, stroke: "#999" }));
  svg.appendChild(node("text", { x: 4, y: top + 4, class: "axis" }, options.format(peak)));
  bars.forEach((bar, index) => {
    const x = left + index * slot + slot * 0.15, barWidth = slot * 0.7;
    svg.appendChild(node("rect", { x, y: scale(bar.value), width: barWidth, height: height - bottom - scale(bar.value),
      fill: bar.color || COLORS[0] }));
    if (bar.low !== undefined && bar.low !== null) {
      const middle = x + barWidth / 2;
      svg.appendChild(node("line", { x1: middle, x2: middle, y1: scale(bar.low), y2: scale(bar.high), stroke: "#111" }));
      for (const value of [bar.low, bar.high]) {
        svg.appendChild(node("line", { x1: middle - 5, x2: middle + 5, y1: scale(value), y2: scale(value), stroke: "#111" }));
      }
    }
    const labelX = x + barWidth / 2, labelY = height - bottom + 12;
    svg.appendChild(node("text", { x: labelX, y: labelY, "text-anchor": options.slanted ? "end" : "middle", class: "axis",
      transform: options.slanted ? `rotate(-35 ${labelX} ${labelY})` : "" }, bar.label));
  });
  rendered(id, bars.length);
}

// Lines over a shared x axis: series = [{name, values: [number|null]}], labels = x labels.
function lineChart(id, labels, series, options) {
  const width = 520, height = 200, left = 48, bottom = 36, top = 20;
  const svg = frame(document.getElementById(id), width, height);
  const values = series.flatMap((line) => line.values.filter((value) => value !== null));
  const peak = Math.max(...values, 1e-9);
  const step = labels.length > 1 ? (width - left - 48) / (labels.length - 1) : 0;
  const x = (index) => left + (labels.length > 1 ? index * step : (width - left) / 2);
  const y = (value) => height - bottom - (value / peak) * (height - bottom - top);
  svg.appendChild(node("line", { x1: left, y1: height - bottom, x2: width - 4, y2: height - bottom, stroke: "#999" }));
  svg.appendChild(node("text", { x: 4, y: top, class: "axis" }, options.format(peak)));
  labels.forEach((label, index) => {
    svg.appendChild(node("text", { x: x(index), y: height - bottom + 14, "text-anchor": "middle", class: "axis" }, label));
  });
  let points = 0;
  series.forEach((line, number) => {
    const color = COLORS[number % COLORS.length];
    const drawn = line.values.map((value, index) => [value, index]).filter(([value]) => value !== null);
    if (drawn.length > 1) {
      const path = drawn.map(([value, index]) => `${x(index)},${y(value)}`).join(" ");
      svg.appendChild(node("polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2 }));
    }
    for (const [value, index] of drawn) {
      svg.appendChild(node("circle", { cx: x(index), cy: y(value), r: 3.5, fill: color }));
      points += 1;
    }
    svg.appendChild(node("text", { x: left + 8 + number * 150, y: 12, class: "legend", fill: color }, line.name));
  });
  rendered(id, points);
}

// Stacked bars: columns = [{label, parts: {name: value}}], each stack normalized to 1 if asked.
function stackedBars(id, columns, names, options) {
  const width = 520, height = 220, left = 48, bottom = 40, top = 24;
  const svg = frame(document.getElementById(id), width, height);
  const totals = columns.map((column) => names.reduce((sum, name) => sum + (column.parts[name] || 0), 0));
  const peak = options.share ? 1 : Math.max(...totals, 1e-9);
  const slot = (width - left - 8) / Math.max(columns.length, 1);
  let points = 0;
  columns.forEach((column, index) => {
    let base = height - bottom;
    const total = totals[index] || 1;
    names.forEach((name, number) => {
      const value = (column.parts[name] || 0) / (options.share ? total : 1);
      const size = (value / peak) * (height - bottom - top);
      if (size > 0) {
        svg.appendChild(node("rect", { x: left + index * slot + slot * 0.15, y: base - size, width: slot * 0.7, height: size,
          fill: COLORS[number % COLORS.length] }));
        points += 1;
      }
      base -= size;
    });
    svg.appendChild(node("text", { x: left + index * slot + slot / 2, y: height - bottom + 14, "text-anchor": "middle",
      class: "axis" }, column.label));
  });
  names.forEach((name, number) => {
    svg.appendChild(node("text", { x: left + number * 90, y: 12, class: "legend", fill: COLORS[number % COLORS.length] },
      name));
  });
  svg.appendChild(node("text", { x: 4, y: top + 4, class: "axis" }, options.share ? "100%" : options.format(peak)));
  rendered(id, points);
}

// Prometheus text format: [{name, labels: {...}, value}].
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

function latencyBars(samples) {
  const cumulative = new Map();
  for (const sample of samples) {
    if (sample.name !== "recs_request_seconds_bucket" || !LOOKUP_ENDPOINTS.includes(sample.labels.endpoint)) continue;
    const bound = sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le);
    cumulative.set(bound, (cumulative.get(bound) || 0) + sample.value);
  }
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  let previous = 0;
  return bounds.map((bound) => {
    const count = cumulative.get(bound) - previous;
    previous = cumulative.get(bound);
    const label = bound === Infinity ? ">" + formatSeconds(bounds[bounds.length - 2]) : "≤" + formatSeconds(bound);
    return { label, value: count };
  });
}

function formatSeconds(seconds) {
  return seconds < 1 ? `${+(seconds * 1000).toFixed(1)}ms` : `${seconds}s`;
}

function itemTotals(samples) {
  const totals = {};
  for (const sample of samples) {
    if (sample.name === "recs_items_served_total") totals[sample.labels.source] = sample.value;
  }
  return totals;
}

const sourceHistory = [];

async function refreshMetrics() {
  const response = await fetch("/metrics");
  const samples = parseMetrics(await response.text());
  const latency = latencyBars(samples);
  if (latency.some((bar) => bar.value > 0)) {
    barChart("latency", latency, { format: (value) => `${Math.round(value)}`, slanted: true });
  } else {
    showEmpty("latency", "No lookups yet.");
  }
  const totals = itemTotals(samples);
  const previous = sourceHistory.length ? sourceHistory[sourceHistory.length - 1].totals : null;
  const parts = {};
  for (const source of ITEM_SOURCES) {
    const now = totals[source] || 0;
    const before = previous ? previous[source] || 0 : 0;
    // A counter that went down was reset (the server restarted, or another instance answered):
    // what it counts now all came after the reset.
    parts[source] = now >= before ? now - before : now;
  }
  const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  sourceHistory.push({ totals, label: previous ? time : "since start", parts });
  while (sourceHistory.length > 12) sourceHistory.splice(1, 1);
  const columns = sourceHistory.filter((entry) => Object.values(entry.parts).some((value) => value > 0));
  if (columns.length) {
    stackedBars("sources", columns.map((entry) => ({ label: entry.label, parts: entry.parts })),
      ITEM_SOURCES.filter((source) => columns.some((entry) => entry.parts[source] > 0)), { share: true });
  } else {
    showEmpty("sources", "No items served yet.");
  }
}

async function refreshRuns() {
  const response = await fetch("/v1/runs");
  if (!response.ok) {
    document.getElementById("summary").textContent = `The store answers ${response.status}: no run history.`;
    for (const id of ["runs-quality", "runs-coverage", "runs-users", "runs-stages"]) showEmpty(id, "No runs.");
    return null;
  }
  const body = await response.json();
  const runs = body.runs.filter((run) => run.status === "complete").reverse();
  const current = body.runs.find((run) => run.current);
  document.getElementById("summary").textContent = current
    ? `Serving run ${current.run_id}, published ${current.published_at}; ${body.runs.length} runs retained.`
    : "Nothing published yet.";
  if (!runs.length) {
    for (const id of ["runs-quality", "runs-coverage", "runs-users", "runs-stages"]) showEmpty(id, "No complete runs.");
    return current;
  }
  const labels = runs.map((run) => run.run_date);
  const metric = (run, model, name) => (run.metrics[model] ? run.metrics[model][name] : null);
  lineChart("runs-quality", labels, [
    { name: "NDCG@k ALS", values: runs.map((run) => metric(run, "als", "ndcg_at_k")) },
    { name: "NDCG@k popularity", values: runs.map((run) => metric(run, "popularity", "ndcg_at_k")) },
  ], { format: (value) => value.toFixed(3) });
  lineChart("runs-coverage", labels, [{ name: "coverage ALS", values: runs.map((run) => metric(run, "als", "coverage")) }],
    { format: (value) => `${(value * 100).toFixed(1)}%` });
  barChart("runs-users", runs.map((run) => ({ label: run.run_date, value: run.counts.users || 0 })),
    { format: (value) => `${Math.round(value)}` });
  const order = ["export_events", "prepare", "train", "evaluate", "recommend", "similar"];
  const stages = [...new Set(runs.flatMap((run) => Object.keys(run.timings_seconds)))].sort(
    (a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  stackedBars("runs-stages", runs.map((run) => ({ label: run.run_date, parts: run.timings_seconds })), stages,
    { share: false, format: (value) => `${value.toFixed(0)} s` });
  return current;
}

async function refreshExperiment(current) {
  const name = current && current.experiment;
  if (!name) {
    document.getElementById("experiment-note").textContent = "No experiment in the current run.";
    showEmpty("experiment", "No experiment running.");
    return;
  }
  const response = await fetch(`/v1/experiments/${encodeURIComponent(name)}`);
  if (!response.ok) {
    showEmpty("experiment", `No results for ${name} (${response.status}).`);
    return;
  }
  const report = await response.json();
  document.getElementById("experiment-note").textContent =
    `${name}: click-through and conversion per impression, 95% Wilson intervals; control ${report.control}.`;
  const bars = [];
  report.variants.forEach((row, number) => {
    for (const [rate, label] of [["ctr", "CTR"], ["conversion_rate", "CVR"]]) {
      if (row[rate].rate === null) continue;
      bars.push({ label: `${row.variant} ${label}`, value: row[rate].rate, low: row[rate].ci_low, high: row[rate].ci_high,
        color: COLORS[number % COLORS.length] });
    }
  });
  if (bars.length) {
    barChart("experiment", bars, { format: (value) => `${(value * 100).toFixed(1)}%` });
  } else {
    showEmpty("experiment", `No impressions for ${name} yet.`);
  }
}

async function refresh() {
  try {
    await refreshMetrics();
    await refreshExperiment(await refreshRuns());
  } catch (error) {
    window.dashboard.problems.push(String(error));
    document.getElementById("summary").textContent = `Could not reach the API: ${error}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
