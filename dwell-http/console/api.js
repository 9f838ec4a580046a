// The JSON API, with the key the user signed in with. The key lives in sessionStorage:
// it is gone when the tab closes, and it is only ever sent as `Authorization: Bearer`.

const KEY = "dwell.key";
const ROLE = "dwell.role";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  /** "tenant" or "admin": which API the key opens. */
  get role() { return sessionStorage.getItem(ROLE); },
  start(key, role) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ROLE, role);
  },
  end() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
  },
};

/** An answer other than 2xx, with its problem document (RFC 9457) when it had one. */
export class ApiError extends Error {
  constructor(status, problem, path) {
    super(problem?.detail ?? `HTTP ${status} from ${path}`);
    this.status = status;
    this.problem = problem;
    this.path = path;
  }

  /** The server has no such endpoint (an older server than this console). */
  get missing() {
    return this.status === 404 && String(this.problem?.detail ?? "").startsWith("no such endpoint");
  }
}

/** `encodeURIComponent`, for names in paths. */
export const enc = encodeURIComponent;

/**
 * Call the API: `api("GET", "/v1/actors", {query: {module: "counter"}})`. Empty query
 * values are left out. Answers the parsed JSON (or null for an empty body); throws
 * ApiError otherwise. `key` overrides the session's (for signing in).
 */
export async function api(method, path, { query, body, key } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const bearer = key ?? session.key;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && key === undefined) {
      // The key was revoked (or the server's data was reset): back to the sign-in page.
      window.dispatchEvent(new CustomEvent("dwell:unauthorized"));
    }
    throw new ApiError(res.status, data, url.pathname);
  }
  return data;
}

/** What went wrong, for a person. */
export function describe(e) {
  if (!(e instanceof ApiError)) return `Something went wrong: ${e.message}`;
  if (e.missing) return `This server does not offer ${e.path} (it answered 404).`;
  if (e.status === 403) return `This key may not do that: ${e.message}`;
  if (e.status === 429) return `Too many requests; try again shortly. (${e.message})`;
  return `${e.status}: ${e.message}`;
}
