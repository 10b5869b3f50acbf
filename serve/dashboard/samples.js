// Voice samples of one personality: the stored ones with their quality figures (play,
// delete), and uploads: a file picked or dropped is checked first (POST .../samples/check
// stores nothing) and its check table shown; only then may it be stored.
import { ApiError, call, json } from "./api.js";
import { el, fmt, problem } from "./dom.js";

let audioUrl = null;

function figure(check) {
  return `${check.passed ? "✓" : "✗"} ${check.name} ${check.value === null ? "" : `${fmt(check.value, 1)}${check.unit ? ` ${check.unit}` : ""}`}`.trim();
}

function sampleRow(view, name, s) {
  return el("tr", { "data-key": s.id },
    el("th", { scope: "row" }, s.id),
    el("td", { "data-col": "duration" }, fmt(s.duration, 1)),
    el("td", { "data-col": "score" }, fmt(s.quality_score, 2)),
    el("td", { "data-col": "checks" }, el("ul", { class: "checks" }, s.checks.map((c) => el("li", { class: c.passed ? "" : "failed" }, figure(c))))),
    el("td", { "data-col": "notes" }, s.notes ?? ""),
    el("td", {},
      el("button", { type: "button", "aria-label": `Play ${s.id}`, onclick: () => play(view, name, s.id) }, "Play"),
      " ",
      el("button", { type: "button", class: "danger", "aria-label": `Delete ${s.id}`, onclick: () => remove(view, name, s.id) }, "Delete")));
}

/** The check table of one upload: every check with its figure, threshold and message. */
function report(title, checks) {
  return [
    el("h3", {}, title),
    el("div", { class: "scroll" }, el("table", { id: "sample-report" },
      el("thead", {}, el("tr", {}, ["Check", "Verdict", "Value", "Threshold", "Message"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, checks.map((c) => el("tr", { "data-key": c.name },
        el("th", { scope: "row" }, c.name),
        el("td", { "data-col": "verdict" }, c.passed ? "passed" : `failed (${c.severity})`),
        el("td", { "data-col": "value" }, c.value === null ? "—" : `${fmt(c.value, 2)} ${c.unit}`.trim()),
        el("td", { "data-col": "threshold" }, c.threshold === null ? "—" : [c.threshold].flat().join(" – ")),
        el("td", { "data-col": "message" }, c.message)))))),
  ];
}

async function list(view, name) {
  const samples = await json(samplesPath(name));
  const rows = samples.map((s) => sampleRow(view, name, s));
  view.querySelector("#sample-list tbody").replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6 }, "No stored samples."))]));
}

async function play(view, name, id) {
  try {
    const response = await call(samplesPath(name, `/${encodeURIComponent(id)}/audio`));
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = URL.createObjectURL(await response.blob());
    const audio = view.querySelector("#sample-audio");
    audio.src = audioUrl;
    await audio.play().catch(() => {});
  } catch (err) {
    problem(view, err.message);
  }
}

async function remove(view, name, id) {
  try {
    await call(samplesPath(name, `/${encodeURIComponent(id)}`), { method: "DELETE" });
    view.querySelector("#sample-status").textContent = `Deleted ${id}.`;
    await list(view, name);
  } catch (err) {
    problem(view, err.message);
  }
}

function samplesPath(name, rest = "") {
  return `/v1/personalities/${encodeURIComponent(name)}/samples${rest}`;
}

/** Checks `file` without storing it, shows the table, and offers to store it if it passed. */
async function check(view, file) {
  const name = view.querySelector("#sample-personality").value;
  const form = new FormData();
  form.append("file", file);
  const result = view.querySelector("#sample-result");
  result.replaceChildren(el("p", { role: "status" }, `Checking ${file.name}…`));
  problem(view, null);
  try {
    const checked = await json(samplesPath(name, "/check"), { method: "POST", body: form });
    const verdict = checked.accepted
      ? `${file.name}: passed its checks (quality ${fmt(checked.report.quality_score, 2)}), not stored yet`
      : `${file.name}: would be refused — ${checked.problems.join("; ")}`;
    const store = el("button", { type: "button", id: "sample-store", disabled: !checked.accepted,
      onclick: () => upload(view, name, file).catch((err) => problem(view, err.message)) }, `Store ${file.name}`);
    const discard = el("button", { type: "button", id: "sample-discard", class: "secondary",
      onclick: () => result.replaceChildren(el("p", { role: "status" }, `Discarded ${file.name}.`)) }, "Discard");
    result.replaceChildren(...report(verdict, checked.report.checks), el("p", { class: "actions" }, store, " ", discard));
    if (checked.accepted) store.focus();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    result.replaceChildren();
    problem(view, err.message); // not a recording at all: there is no table to show
  }
}

async function upload(view, name, file) {
  const form = new FormData();
  form.append("file", file);
  const notes = view.querySelector("#sample-notes").value.trim();
  if (notes) form.append("notes", notes);
  const result = view.querySelector("#sample-result");
  result.replaceChildren(el("p", { role: "status" }, `Storing ${file.name}…`));
  try {
    const { sample, report: checked } = await json(samplesPath(name), { method: "POST", body: form });
    result.replaceChildren(...report(`${file.name}: stored as ${sample.id} (quality ${fmt(checked.quality_score, 2)})`, checked.checks));
    await list(view, name);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    // Something changed since the check (another upload, the limit): the API says what.
    const checks = err.body?.checks ?? [];
    result.replaceChildren(...(checks.length ? report(`${file.name}: refused — ${err.message}`, checks) : []));
    if (!checks.length) problem(view, err.message);
  }
}

export async function refresh(view) {
  const { items } = await json("/v1/personalities");
  problem(view, null);
  const select = view.querySelector("#sample-personality");
  const chosen = select.value || items[0]?.metadata.name;
  select.replaceChildren(...items.map((p) => el("option", { value: p.metadata.name, selected: p.metadata.name === chosen }, p.metadata.name)));
  if (chosen) await list(view, chosen);
}

export function setUp(view) {
  const fail = (err) => problem(view, err.message);
  view.querySelector("#sample-personality").addEventListener("change", (e) => list(view, e.target.value).catch(fail));
  const input = view.querySelector("#sample-file");
  input.addEventListener("change", () => { if (input.files[0]) check(view, input.files[0]).catch(fail); input.value = ""; });
  const zone = view.querySelector("#sample-drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) check(view, file).catch(fail);
  });
}
