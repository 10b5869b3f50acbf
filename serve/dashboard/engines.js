// Engines: GET /v1/providers (health with its reason, capabilities, replicas, circuit), with links to
// each engine's replicas in the Ray dashboard and its traces, where those are configured
// (GET /v1/dashboard/links).
import { json, links } from "./api.js";
import { el, problem } from "./dom.js";

// The Serve application both profiles and the chart deploy (chorus.deploy.APP_NAME); each
// engine's deployment is named after the engine.
const APP = "chorus";
const list = (items) => (items.length ? items.join(", ") : "—");
const out = (href, text, label) => el("a", { href, target: "_blank", rel: "noopener noreferrer", "aria-label": label }, text);

function rayPage(to, path) {
  return `${to.rayDashboard.replace(/\/+$/, "")}/#/serve${path}`;
}

function linkCell(p, to) {
  const found = [
    to.rayDashboard ? out(rayPage(to, `/applications/${APP}/${encodeURIComponent(p.engine)}`), "Replicas",
      `${p.engine} replicas in the Ray dashboard`) : null,
    to.engineTraces ? out(to.engineTraces.replaceAll("{engine}", encodeURIComponent(p.engine)), "Traces",
      `${p.engine} traces`) : null,
  ].filter(Boolean);
  return el("td", { "data-col": "links" }, found.length ? found.flatMap((a, i) => (i ? [" · ", a] : [a])) : "—");
}

/** "2 running, 1 starting" from Serve's counts; "—" outside Ray Serve. */
function replicas(count) {
  if (!count) return "—";
  const more = [["starting", count.starting], ["stopping", count.stopping]].filter(([, n]) => n).map(([state, n]) => `, ${n} ${state}`);
  return `${count.running} running${more.join("")}`;
}

function row(p, to) {
  const caps = p.capabilities;
  const health = p.health.healthy ? "healthy" : "unhealthy";
  return el("tr", { "data-key": p.engine },
    el("th", { scope: "row" }, p.engine),
    el("td", { "data-col": "health" }, el("span", { class: `badge ${health}` }, health),
      p.health.reason ? el("span", { class: "reason" }, ` ${p.health.reason}`) : null,
      p.quota_exhausted.length ? el("span", { class: "reason" }, ` quota used up: ${p.quota_exhausted.join(", ")}`) : null),
    el("td", { "data-col": "languages" }, list(caps.languages)),
    el("td", { "data-col": "voices" }, list(caps.voices.map((v) => v.id))),
    el("td", { "data-col": "variants" }, list(caps.variants)),
    el("td", { "data-col": "cloning" }, caps.cloning ? "yes" : "no"),
    el("td", { "data-col": "streaming" }, caps.streaming ? "yes" : "no"),
    el("td", { "data-col": "replicas" }, replicas(p.replicas)),
    el("td", { "data-col": "circuit" }, p.circuit.state, p.circuit.failures ? ` (${p.circuit.failures} failures)` : ""),
    el("td", { "data-col": "timeout" }, p.timeout_s ?? "—"),
    linkCell(p, to));
}

export async function refresh(view) {
  // The links are an admin's to see (they name internal hosts): others get none.
  const [{ providers }, to] = await Promise.all([json("/v1/providers"), links().catch(() => ({}))]);
  problem(view, null);
  view.querySelector("#engine-links").replaceChildren(...(to.rayDashboard
    ? [out(rayPage(to, ""), "Serve in the Ray dashboard", null), " (replicas, queues, logs, autoscaling)"]
    : ["No Ray dashboard link is configured (links.rayDashboard; `chorus serve --dashboard` sets it)."]));
  view.querySelector("tbody").replaceChildren(...providers.map((p) => row(p, to)));
}
