// Performance: GET /v1/stats (per engine and per personality) and GET /v1/stats/series
// (the charts) over the chosen window.
import { json } from "./api.js";
import { lineChart } from "./chart.js";
import { counts, el, fmt, percent, problem } from "./dom.js";

// The series' step per window: enough points to draw, few enough to poll cheaply.
const STEPS = { "5m": "1m", "1h": "1m", "24h": "1h", "30d": "1d" };

function cell(col, text) {
  return el("td", { "data-col": col }, text);
}

function engineRow(name, f) {
  return el("tr", { "data-key": name },
    el("th", { scope: "row" }, name),
    cell("requests", f.requests),
    cell("success", f.successRate === null ? "—" : `${(100 * f.successRate).toFixed(1)} %`),
    cell("avg", fmt(f.latencyMs.avg)),
    cell("ema", fmt(f.latencyMs.ema)),
    cell("p95", fmt(f.latencyMs.p95)),
    cell("ttfa", fmt(f.timeToFirstAudioMs.p95)),
    cell("rtf", fmt(f.rtf, 3)),
    cell("cache", `${f.cacheHits} (${percent(f.cacheHits, f.successes)})`),
    cell("skipped", f.skipped),
    cell("fallbacks", counts(f.fallbacksTo)));
}

function personalityRow(name, f) {
  return el("tr", { "data-key": name },
    el("th", { scope: "row" }, name),
    cell("requests", f.requests),
    cell("success", f.successRate === null ? "—" : `${(100 * f.successRate).toFixed(1)} %`),
    cell("avg", fmt(f.latencyMs.avg)),
    cell("p95", fmt(f.latencyMs.p95)),
    cell("characters", f.characters),
    cell("fallbacks", counts(f.fallbacksTo)));
}

function fill(table, rows, empty) {
  const body = table.querySelector("tbody");
  const cols = table.querySelectorAll("thead th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols }, empty))]));
}

function charts(series) {
  const engines = [...new Set(series.points.flatMap((p) => Object.keys(p.engines)))].sort();
  const labels = series.points.map((p) => new Date(p.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  // A step without requests counts 0 requests but has no latency: a gap, not a zero.
  const line = (pick, none) => Object.fromEntries(engines.map((e) => [e, series.points.map((p) => (p.engines[e] ? pick(p.engines[e]) : none))]));
  document.getElementById("chart-requests").replaceChildren(
    lineChart("Requests per step, per engine", line((e) => e.requests, 0), labels));
  document.getElementById("chart-latency").replaceChildren(
    lineChart("p95 latency in milliseconds, per engine", line((e) => e.p95, null), labels));
}

export async function refresh(view) {
  const span = document.getElementById("window").value;
  const [stats, series] = await Promise.all([
    json(`/v1/stats?window=${span}`),
    json(`/v1/stats/series?window=${span}&step=${STEPS[span]}`),
  ]);
  problem(view, null);
  const sorted = (map) => Object.entries(map).sort(([a], [b]) => a.localeCompare(b));
  fill(document.getElementById("engine-stats"), sorted(stats.engines).map(([n, f]) => engineRow(n, f)),
    "No engine was asked in this window.");
  fill(document.getElementById("personality-stats"), sorted(stats.personalities).map(([n, f]) => personalityRow(n, f)),
    "No personality spoke in this window.");
  charts(series);
  document.getElementById("performance-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}
