// The dashboard: one view at a time (the address's #fragment), each refreshed when shown and,
// for Performance, polled while "Live" is on. With keys on nothing loads until a key is given;
// then the key's scopes (GET /v1/keys/me) say which views it may open, before any is asked.
import { ApiError, key, me } from "./api.js";
import { el, problem } from "./dom.js";
import * as editor from "./editor.js";
import * as engines from "./engines.js";
import * as performance from "./performance.js";
import * as quotas from "./quotas.js";
import * as samples from "./samples.js";
import * as tryit from "./tryit.js";

const VIEWS = { performance, engines, quotas, try: tryit, editor, samples };
const POLL_MS = 5000;
let needKey = false;
let timer = null;

function current() {
  const name = location.hash.slice(1);
  return name in VIEWS ? name : "performance";
}

/** The scope a view's data needs (its `data-needs`) when the key lacks it, else null. */
function lacking(view, mine) {
  const needed = view.dataset.needs;
  const scopes = mine.scopes.map((s) => s.scope);
  return scopes.includes("admin") || scopes.includes(needed) ? null : needed;
}

async function load() {
  const name = current();
  const view = document.getElementById(name);
  if (needKey) return;
  try {
    const mine = await me();
    showKey(mine);
    const needed = lacking(view, mine);
    if (needed) {
      problem(view, `the key '${mine.name}' lacks the '${needed}' scope this view needs`);
      return;
    }
    await VIEWS[name].refresh(view);
  } catch (err) {
    // 401 asked for a key already (chorus:need-key); 403 names the scope the key lacks.
    if (!(err instanceof ApiError && err.status === 401)) problem(view, err.message);
  }
}

function show() {
  const name = current();
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== name;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  load();
}

function poll() {
  clearInterval(timer);
  timer = document.getElementById("live").checked
    ? setInterval(() => { if (current() === "performance") load(); }, POLL_MS)
    : null;
}

/** The key's name and what its scopes allow; views it cannot open are marked in the menu. */
function showKey(mine) {
  const said = document.getElementById("key-said");
  document.getElementById("key-state").hidden = false;
  document.getElementById("key-forget").hidden = !mine.auth;
  const { rateLimit, charactersPerDay, charactersPerMonth } = mine.limits;
  const limits = [rateLimit && `${rateLimit} requests`, charactersPerDay && `${charactersPerDay.toLocaleString()} characters a day`,
    charactersPerMonth && `${charactersPerMonth.toLocaleString()} characters a month`].filter(Boolean);
  said.replaceChildren(...(mine.auth
    ? [`Key ${mine.name} may:`, el("ul", { id: "key-scopes" }, mine.scopes.map((s) => el("li", { "data-scope": s.scope }, el("strong", {}, s.scope), ` — ${s.allows}`))),
      el("p", { id: "key-limits" }, limits.length ? `Limits: ${limits.join(", ")}.` : "No rate limit or character budget.")]
    : ["This server runs without API keys: every route is open."]));
  for (const link of document.querySelectorAll("nav a")) {
    const needed = lacking(document.getElementById(link.hash.slice(1)), mine);
    link.classList.toggle("locked", Boolean(needed));
    if (needed) link.title = `needs the ${needed} scope`;
    else link.removeAttribute("title");
  }
}

function keyState() {
  const form = document.getElementById("key-form");
  const state = document.getElementById("key-state");
  form.hidden = !needKey;
  if (needKey) state.hidden = true;
  for (const view of document.querySelectorAll(".view tbody, #quota-list, #editor-form, #sample-result")) if (needKey) view.replaceChildren();
}

document.addEventListener("chorus:need-key", (event) => {
  needKey = true;
  keyState();
  const form = document.getElementById("key-form");
  // Said when a key was given and refused; a first visit only asks.
  if (key.get()) form.querySelector("p").textContent = event.detail;
  key.forget();
  document.getElementById("key-input").focus();
});

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key-input");
  key.set(input.value.trim());
  input.value = "";
  needKey = false;
  keyState();
  load();
});

document.getElementById("key-forget").addEventListener("click", () => {
  key.forget();
  location.reload();
});

document.getElementById("window").addEventListener("change", load);
document.getElementById("live").addEventListener("change", poll);
window.addEventListener("hashchange", show);
tryit.setUp(document.getElementById("try"));
editor.setUp(document.getElementById("editor"));
samples.setUp(document.getElementById("samples"));
keyState();
show();
poll();
