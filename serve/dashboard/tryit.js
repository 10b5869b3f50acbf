// Try it: POST /v1/personalities/{name}/speech, the answer played in the page, with what the
// response headers say about it (who spoke, who was tried first, how long it took, whether
// the audio came from the cache), and its trace in the trace viewer when one is configured.
// Its choices come from the API's listings: the voices (GET /v1/audio/voices) and the engines
// a request may try first (the engine ids of GET /v1/models).
import { ApiError, call, json, links } from "./api.js";
import { el, problem } from "./dom.js";

const SHOWN = [
  ["X-Chorus-Provider", "Engine"],
  ["X-Chorus-Variant", "Variant"],
  ["X-Chorus-Fallback", "Fallback attempts"],
  ["X-Chorus-Latency-Ms", "Latency (ms)"],
  ["X-Chorus-Cache", "Cache"],
  ["X-Request-Id", "Request id"],
];
let audioUrl = null;

const OPENAI_MODELS = new Set(["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]);
let engines = {}; // voice id -> its chain

export async function refresh(view) {
  const [{ voices }, models] = await Promise.all([json("/v1/audio/voices"), json("/v1/models")]);
  problem(view, null);
  engines = Object.fromEntries(voices.map((v) => [v.id, v.engines]));
  const select = view.querySelector("#try-personality");
  const chosen = select.value;
  select.replaceChildren(...voices.map((v) => {
    const shown = v.name !== v.id ? `${v.id} — ${v.name}` : v.id;
    return el("option", { value: v.id, selected: v.id === chosen }, shown);
  }));
  const known = models.data.map((m) => m.id).filter((id) => !OPENAI_MODELS.has(id));
  showEngines(view, known);
  select.onchange = () => showEngines(view, known);
}

/** The engines the chosen voice's chain has, in the models' order; "" is its own order. */
function showEngines(view, known) {
  const select = view.querySelector("#try-model");
  const chosen = select.value;
  const chain = engines[view.querySelector("#try-personality").value] ?? [];
  select.replaceChildren(el("option", { value: "" }, "its chain"),
    ...known.filter((id) => chain.includes(id)).map((id) =>
      el("option", { value: id, selected: id === chosen }, `${id} first`)));
}

async function speak(view, form) {
  const name = form.querySelector("#try-personality").value;
  const body = {
    text: form.querySelector("#try-text").value,
    format: form.querySelector("#try-format").value,
    stream: form.querySelector("#try-stream").checked,
  };
  const provider = form.querySelector("#try-model").value;
  if (provider) body.provider = provider;
  const result = view.querySelector("#try-result");
  result.replaceChildren();
  const response = await call(`/v1/personalities/${encodeURIComponent(name)}/speech`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const audio = view.querySelector("#try-audio");
  if (audioUrl) URL.revokeObjectURL(audioUrl);
  audioUrl = URL.createObjectURL(await response.blob());
  audio.src = audioUrl;
  result.replaceChildren(...SHOWN.flatMap(([header, label]) => [
    el("dt", {}, label), el("dd", { "data-header": header.toLowerCase() }, response.headers.get(header) ?? "—"),
  ]), ...traceLink(response.headers.get("traceresponse"), await links().catch(() => ({}))));
  problem(view, null);
  await audio.play().catch(() => {}); // autoplay may be refused; the controls are there
}

/** "Trace" with a link to it, from `traceresponse` (version-traceid-spanid-flags), when a
 * trace viewer is configured and the trace was sampled (else no viewer has it). */
function traceLink(traceresponse, to) {
  const [, traceId, , flags] = (traceresponse ?? "").split("-");
  if (!to.trace || !traceId || !(parseInt(flags, 16) & 1)) return [];
  const href = to.trace.replaceAll("{trace_id}", traceId);
  return [el("dt", {}, "Trace"), el("dd", { "data-header": "traceresponse" },
    el("a", { href, target: "_blank", rel: "noopener noreferrer" }, traceId))];
}

export function setUp(view) {
  const form = view.querySelector("#try-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    speak(view, form).catch((err) => problem(view, err instanceof ApiError ? err.message : String(err)));
  });
}
