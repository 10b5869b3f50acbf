// Cloud quotas: GET /v1/quotas, a <meter> per engine and voice class (the browser colours it
// as it nears the allowance: low / high / optimum).
import { json } from "./api.js";
import { el, problem } from "./dom.js";

function bar(q) {
  const id = `quota-${q.engine}-${q.voiceClass}`;
  const resets = new Date(q.resetsAt).toLocaleDateString();
  return el("li", { "data-key": `${q.engine}/${q.voiceClass}` },
    el("label", { for: id }, `${q.engine} · ${q.voiceClass}`),
    el("meter", { id, min: 0, max: q.allowed, value: q.used, low: 0.75 * q.allowed, high: 0.9 * q.allowed, optimum: 0 }),
    el("span", { class: "figures" },
      `${q.used.toLocaleString()} / ${q.allowed.toLocaleString()} characters, resets ${resets} (${q.policy})`,
      q.exhausted ? " — used up" : ""));
}

export async function refresh(view) {
  const { quotas } = await json("/v1/quotas");
  problem(view, null);
  const items = quotas.map(bar);
  view.querySelector("#quota-list").replaceChildren(
    ...(items.length ? items : [el("li", {}, "No cloud engine has a monthly allowance.")]));
}
