// The personality editor (admin keys): active engine, fallback chain (drag and drop, or the
// Up / Down buttons from the keyboard), engines on or off, each engine's settings from its
// JSON schema, languages, aliases (OpenAI voice names) and the pronunciation lexicon. PUT saves it;
// a 422's problems are shown on the fields they name.
// A read-only store (the cluster: 405) gets the VoicePersonality YAML to kubectl apply instead.
import { ApiError, call, json } from "./api.js";
import { el, fmt, problem } from "./dom.js";
import { settingsFields, settingsSchema, settingsValues } from "./schema_form.js";
import { toYaml } from "./yaml.js";

const API_VERSION = "voice.chorus.dev/v1alpha1";
const state = { schemas: null, engines: {}, rtf: {}, loaded: null };

function candidateLabel(engine) {
  const p = state.engines[engine];
  if (!p) return `${engine} (not deployed)`;
  const caps = p.capabilities;
  return `${engine} — ${caps.languages.join(", ") || "no languages"}; ${caps.cloning ? "clones" : "no cloning"}; RTF ${fmt(state.rtf[engine], 3)}`;
}

function errorSlot(path) {
  return el("span", { class: "field-error", "data-error-for": path, id: `error-${path.replaceAll(".", "-")}` });
}

function chainItem(engine) {
  const item = el("li", { draggable: "true", "data-engine": engine },
    el("span", { class: "grip", "aria-hidden": "true" }, "⠿"), el("span", {}, engine),
    el("button", { type: "button", "aria-label": `Move ${engine} up`, "data-move": "-1" }, "↑"),
    el("button", { type: "button", "aria-label": `Move ${engine} down`, "data-move": "1" }, "↓"),
    el("button", { type: "button", "aria-label": `Remove ${engine} from the chain`, "data-remove": "" }, "✕"));
  item.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", engine); item.classList.add("dragging"); });
  item.addEventListener("dragend", () => item.classList.remove("dragging"));
  item.addEventListener("dragover", (e) => e.preventDefault());
  item.addEventListener("drop", (e) => {
    e.preventDefault();
    const moved = item.parentElement.querySelector(`li[data-engine="${CSS.escape(e.dataTransfer.getData("text/plain"))}"]`);
    if (!moved || moved === item) return;
    // Dropped on the upper half: before this item; on the lower half: after it.
    const box = item.getBoundingClientRect();
    item.parentElement.insertBefore(moved, e.clientY < box.top + box.height / 2 ? item : item.nextSibling);
    announce(`${moved.dataset.engine} moved to position ${[...item.parentElement.children].indexOf(moved) + 1}`);
  });
  return item;
}

function announce(text) {
  document.getElementById("editor-status").textContent = text;
}

function onChainClick(event) {
  const button = event.target.closest("button");
  if (!button) return;
  const item = button.closest("li");
  const list = item.parentElement;
  if (button.hasAttribute("data-remove")) {
    item.remove();
    announce(`${item.dataset.engine} removed from the chain`);
    return;
  }
  const sibling = button.dataset.move === "-1" ? item.previousElementSibling : item.nextElementSibling;
  if (!sibling) return;
  list.insertBefore(item, button.dataset.move === "-1" ? sibling : sibling.nextSibling);
  button.focus(); // keep the keyboard where it was, so the item can move again
  announce(`${item.dataset.engine} moved to position ${[...list.children].indexOf(item) + 1}`);
}

function engineFieldset(engine, config) {
  const schema = settingsSchema(state.schemas, engine);
  const enabledId = `field-providers-${engine}-enabled`;
  return el("fieldset", { "data-engine": engine },
    el("legend", {}, engine),
    el("div", { class: "field inline" },
      el("input", { id: enabledId, type: "checkbox", checked: config.enabled !== false, "data-enabled": "" }),
      el("label", { for: enabledId }, "Enabled"), errorSlot(`providers.${engine}.enabled`)),
    settingsFields(state.schemas, schema, config.settings, `providers.${engine}.settings`));
}

function render(view, personality) {
  const spec = personality.spec;
  const form = view.querySelector("#editor-form");
  const engines = Object.keys(spec.providers);
  form.replaceChildren(
    el("div", { class: "field" },
      el("label", { for: "editor-active" }, "Active engine"),
      el("select", { id: "editor-active" }, engines.map((e) => el("option", { value: e, selected: e === spec.activeProvider }, candidateLabel(e)))),
      errorSlot("activeProvider")),
    el("fieldset", {},
      el("legend", {}, "Fallback chain (drag, or use the arrow buttons)"),
      el("ol", { id: "editor-chain", onclick: onChainClick }, (spec.fallbackChain || []).map(chainItem)),
      el("div", { class: "controls" },
        el("label", { for: "editor-add" }, "Add"),
        el("select", { id: "editor-add" }, engines.map((e) => el("option", { value: e }, e))),
        el("button", { type: "button", id: "editor-add-button", onclick: () => addToChain(view) }, "Add to chain")),
      errorSlot("fallbackChain")),
    el("fieldset", {},
      el("legend", {}, "Languages"),
      el("div", { class: "field" }, el("label", { for: "editor-primary" }, "Primary"),
        el("input", { id: "editor-primary", value: spec.languages?.primary ?? "en" }), errorSlot("languages.primary")),
      el("div", { class: "field" }, el("label", { for: "editor-supported" }, "Also supported (comma-separated)"),
        el("input", { id: "editor-supported", value: (spec.languages?.supported ?? []).join(", ") }),
        errorSlot("languages.supported"))),
    el("div", { class: "field" }, el("label", { for: "editor-aliases" }, "Aliases: other voice names (comma-separated)"),
      el("input", { id: "editor-aliases", value: (spec.aliases ?? []).join(", ") }), errorSlot("aliases")),
    lexiconFieldset(spec.lexicon ?? []),
    ...engines.map((e) => engineFieldset(e, spec.providers[e])),
    el("button", { type: "submit", id: "editor-save" }, "Save"));
  view.querySelector("#editor-yaml").hidden = true;
}

function lexiconRow(entry) {
  const row = el("tr", { "data-lexicon": "" },
    ...["text", "ipa", "alias"].map((key) => el("td", {},
      el("input", { "data-key": key, value: entry[key] ?? "", "aria-label": `Pronunciation ${key}` }))),
    el("td", {}, el("button", { type: "button", "aria-label": "Remove this pronunciation" }, "✕")));
  row.querySelector("button").addEventListener("click", () => row.remove());
  return row;
}

/** The lexicon: a row per phrase, said by its IPA (phonemes) and/or its alias (a respelling). */
function lexiconFieldset(lexicon) {
  const body = el("tbody", { id: "editor-lexicon" }, lexicon.map(lexiconRow));
  return el("fieldset", {},
    el("legend", {}, "Pronunciations (IPA, or an alias every engine can read)"),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Text", "IPA", "Alias", ""].map((h) => el("th", {}, h)))), body),
    el("button", { type: "button", id: "editor-lexicon-add", onclick: () => body.append(lexiconRow({})) },
      "Add pronunciation"),
    errorSlot("lexicon"));
}

function addToChain(view) {
  const engine = view.querySelector("#editor-add").value;
  const chain = view.querySelector("#editor-chain");
  if (chain.querySelector(`li[data-engine="${CSS.escape(engine)}"]`)) return announce(`${engine} is in the chain already`);
  chain.append(chainItem(engine));
  announce(`${engine} added to the chain`);
}

function edited(view) {
  const spec = structuredClone(state.loaded.spec);
  spec.activeProvider = view.querySelector("#editor-active").value;
  spec.fallbackChain = [...view.querySelectorAll("#editor-chain li")].map((li) => li.dataset.engine);
  spec.languages = {
    primary: view.querySelector("#editor-primary").value.trim(),
    supported: view.querySelector("#editor-supported").value.split(",").map((s) => s.trim()).filter(Boolean),
  };
  spec.aliases = view.querySelector("#editor-aliases").value.split(",").map((s) => s.trim()).filter(Boolean);
  spec.lexicon = [...view.querySelectorAll("#editor-lexicon tr")].map((row) => Object.fromEntries(
    [...row.querySelectorAll("input")].map((i) => [i.dataset.key, i.value.trim()]).filter(([, v]) => v)))
    .filter((entry) => Object.keys(entry).length);
  for (const fieldset of view.querySelectorAll("fieldset[data-engine]")) {
    const engine = fieldset.dataset.engine;
    spec.providers[engine] = { ...spec.providers[engine], enabled: fieldset.querySelector("[data-enabled]").checked,
      settings: settingsValues(fieldset) };
  }
  return spec;
}

/** "a.b: msg; c: msg" (the API's 422) on the fields it names; what names no field stays in the problem line. */
function showErrors(view, detail) {
  const unplaced = [];
  for (const part of detail.split("; ")) {
    const [path, ...rest] = part.split(": ");
    const field = path.replace(/\[\d+\]$/, "");
    const slot = rest.length ? view.querySelector(`[data-error-for="${CSS.escape(field)}"]`) : null;
    if (slot) slot.textContent = rest.join(": ");
    else unplaced.push(part);
  }
  problem(view, unplaced.length ? unplaced.join("; ") : "Not saved: see the fields marked.");
}

function showYaml(view, name, spec, reason) {
  const box = view.querySelector("#editor-yaml");
  box.querySelector("p").textContent = `${reason} Apply this instead:`;
  box.querySelector("pre").textContent = toYaml({ apiVersion: API_VERSION, kind: "VoicePersonality", metadata: { name }, spec });
  box.hidden = false;
  view.querySelector("#editor-save").remove();
}

async function save(view) {
  const name = state.loaded.metadata.name;
  const spec = edited(view);
  for (const slot of view.querySelectorAll("[data-error-for]")) slot.textContent = "";
  problem(view, null);
  try {
    const response = await call(`/v1/personalities/${encodeURIComponent(name)}`, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(spec),
    });
    state.loaded = await response.json();
    announce(`Saved ${name}.`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 422) showErrors(view, err.message);
    else if (err.status === 405) showYaml(view, name, spec, err.message);
    else problem(view, err.message);
  }
}

async function open(view, name) {
  state.loaded = await json(`/v1/personalities/${encodeURIComponent(name)}`);
  render(view, state.loaded);
}

export async function refresh(view) {
  // The schema (openapi.json) and statistics need admin, as saving does: a key without it
  // is told so and sees no form.
  const [openapi, { items }, { providers }, stats] = await Promise.all([
    json("/openapi.json"), json("/v1/personalities"), json("/v1/providers"), json("/v1/stats?window=1h"),
  ]);
  state.schemas = openapi.components.schemas;
  state.engines = Object.fromEntries(providers.map((p) => [p.engine, p]));
  state.rtf = Object.fromEntries(Object.entries(stats.engines).map(([e, f]) => [e, f.rtf]));
  problem(view, null);
  const select = view.querySelector("#editor-personality");
  const chosen = select.value || items[0]?.metadata.name;
  select.replaceChildren(...items.map((p) => el("option", { value: p.metadata.name, selected: p.metadata.name === chosen }, p.metadata.name)));
  if (chosen) await open(view, chosen);
}

export function setUp(view) {
  view.querySelector("#editor-personality").addEventListener("change", (e) => open(view, e.target.value).catch((err) => problem(view, err.message)));
  view.querySelector("#editor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save(view).catch((err) => problem(view, String(err)));
  });
  view.querySelector("#editor-copy").addEventListener("click", async () => {
    await navigator.clipboard.writeText(view.querySelector("#editor-yaml pre").textContent);
    announce("YAML copied.");
  });
}
