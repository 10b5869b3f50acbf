// Engines: GET /v1/providers (health with its reason, capabilities, circuit).
import { json } from "./api.js";
import { el, problem } from "./dom.js";

const list = (items) => (items.length ? items.join(", ") : "—");

function row(p) {
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
    el("td", { "data-col": "circuit" }, p.circuit.state, p.circuit.failures ? ` (${p.circuit.failures} failures)` : ""),
    el("td", { "data-col": "timeout" }, p.timeout_s ?? "—"));
}

export async function refresh(view) {
  const { providers } = await json("/v1/providers");
  problem(view, null);
  view.querySelector("tbody").replaceChildren(...providers.map(row));
}
