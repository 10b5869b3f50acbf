// Every data call of the page: the API key (if any) from this tab's sessionStorage, sent in a
// header; never in the address (logged by proxies) nor a cookie (sent to every route).

const KEY = "chorus.apiKey";

export class ApiError extends Error {
  /** `body`: the whole error answer (a refused sample's `checks`, a 429's `limit`, ...). */
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

/** fetch with the key; a 401 is announced (the page asks for a key) before it is thrown. */
export async function call(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const stored = key.get();
  if (stored) headers.set("x-api-key", stored);
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  const body = await response.json().catch(() => ({}));
  const detail = typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
  if (response.status === 401) document.dispatchEvent(new CustomEvent("chorus:need-key", { detail }));
  throw new ApiError(response.status, detail, body);
}

export async function json(path, options) {
  return (await call(path, options)).json();
}

/** The answer of `path`, asked once per page and key; a failure is not kept (asked again next time). */
const once = new Map();
export function cached(path) {
  const slot = `${key.get() ?? ""} ${path}`;
  if (!once.has(slot)) once.set(slot, json(path).catch((err) => { once.delete(slot); throw err; }));
  return once.get(slot);
}

/** What the key may do (GET /v1/keys/me): its name, scopes and their meaning. */
export const me = () => cached("/v1/keys/me");

/** Where the page links to (GET /v1/dashboard/links): the Ray dashboard, a trace viewer. */
export const links = () => cached("/v1/dashboard/links");
