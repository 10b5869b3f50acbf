// Building the page from API data. Everything a server or a user wrote goes in as text
// (textContent / attributes), never as markup: a name like "<script>" stays a name.

/** An element with attributes (`on*` keys become listeners) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

/** A number for people: "—" when nothing was measured. */
export function fmt(value, digits = 0) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

export function percent(part, whole) {
  return whole ? `${((100 * part) / whole).toFixed(1)} %` : "—";
}

/** "piper 3, google_tts 1" from {piper: 3, google_tts: 1}. */
export function counts(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "—";
}

/** Shows or hides a view's problem line (e.g. the key lacks a scope). */
export function problem(view, text) {
  const line = view.querySelector("[data-problem]");
  line.textContent = text || "";
  line.hidden = !text;
}
