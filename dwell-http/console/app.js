// The console's entry point: sign-in and sign-out, the router (paths under /ui, kept in
// the address bar so every page can be bookmarked), and the frame around each page.

import { api, ApiError, describe, session } from "./api.js";
import { h, notice } from "./dom.js";
import * as pages from "./pages.js";
import * as actor from "./actor.js";
import { mapPage } from "./map.js";
import { runPage } from "./upgrades.js";

/** [pattern, page, the nav section it belongs to]; captures are the page's arguments. */
const ROUTES = [
  [/^\/ui\/modules$/, pages.modules, "modules"],
  [/^\/ui\/modules\/([^/]+)$/, pages.module, "modules"],
  [/^\/ui\/modules\/([^/]+)\/map$/, mapPage, "modules"],
  [/^\/ui\/modules\/([^/]+)\/upgrades\/([^/]+)$/, runPage, "modules"],
  [/^\/ui\/actors$/, pages.actors, "actors"],
  [/^\/ui\/actors\/([^/]+)\/([^/]+)$/, actor.actorPage, "actors"],
  [/^\/ui\/actors\/([^/]+)\/([^/]+)\/history$/, actor.historyPage, "actors"],
  [/^\/ui\/actors\/([^/]+)\/([^/]+)\/history\/(\d+)$/, actor.turnPage, "actors"],
  [/^\/ui\/requests$/, pages.requests, "requests"],
  [/^\/ui\/requests\/([^/]+)$/, pages.request, "requests"],
  [/^\/ui\/tenants$/, pages.tenants, "tenants"],
];

const HOME = { tenant: "/ui/modules", admin: "/ui/tenants" };

const main = document.getElementById("main");
/** Cleanups of the page on screen (e.g. its refresh timer), run when it is left. */
let leaving = [];

/** Show another page (pushing it onto the history unless `replace`). */
export function go(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

async function render() {
  for (const fn of leaving) fn();
  leaving = [];
  const frame = h("div", { class: "page" });
  main.replaceChildren(frame);
  frameHeader();
  if (!session.key) return signIn(frame);
  const path = location.pathname.replace(/\/+$/, "") || "/ui";
  if (path === "/ui") return go(HOME[session.role] ?? HOME.tenant, { replace: true });
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) {
    frame.append(h("h1", {}, "Not found"), notice("error", `The console has no page at ${path}.`));
    return;
  }
  const [pattern, page, section] = route;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.dataset.section === section);
  }
  const args = pattern.exec(path).slice(1).map(decodeURIComponent);
  const ctx = {
    query: new URLSearchParams(location.search),
    go,
    onLeave: (fn) => leaving.push(fn),
    /** Is this page still the one on screen? */
    get live() { return frame.isConnected; },
  };
  try {
    await page(frame, ctx, ...args);
  } catch (e) {
    frame.append(notice("error", describe(e)));
  }
}

function frameHeader() {
  const signedIn = Boolean(session.key);
  const nav = document.getElementById("nav");
  nav.hidden = !signedIn;
  for (const a of nav.querySelectorAll("a")) {
    const adminOnly = a.dataset.section === "tenants";
    a.hidden = adminOnly !== (session.role === "admin");
  }
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn
    ? (session.role === "admin" ? "admin key" : "tenant key")
    : "";
}

function signIn(frame) {
  const input = h("input", {
    id: "key", type: "password", name: "key", required: true,
    autocomplete: "off", spellcheck: "false", placeholder: "dwk_…",
  });
  const message = h("div", { class: "message" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { id: "sign-in", class: "card narrow", on: { submit } },
    h("h1", {}, "Sign in"),
    h("p", {}, "With a tenant's API key to see its modules, actors and requests, or with the ",
      "admin key to see the tenants. The key stays in this tab only."),
    h("label", { for: "key" }, "API key"), input, button, message);
  frame.append(form);
  input.focus();

  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    message.replaceChildren();
    try {
      const role = await roleOf(key);
      session.start(key, role);
      const wanted = location.pathname.replace(/\/+$/, "");
      go(wanted && wanted !== "/ui" ? location.pathname + location.search : HOME[role], { replace: true });
    } catch (e) {
      message.append(notice("error", e instanceof ApiError && e.status === 401
        ? "That key is not valid." : describe(e)));
      button.disabled = false;
    }
  }
}

/** Which API a key opens: a tenant's (modules answer) or the admin's (tenants answer). */
async function roleOf(key) {
  try {
    await api("GET", "/v1/modules", { key });
    return "tenant";
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) throw e;
  }
  await api("GET", "/v1/tenants", { key });
  return "admin";
}

function signOut() {
  session.end();
  go("/ui/", { replace: true });
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("dwell:unauthorized", signOut);
window.addEventListener("popstate", render);
// Links inside the app change the page without reloading it.
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[href]");
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target) return;
  const url = new URL(a.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  event.preventDefault();
  go(url.pathname + url.search);
});

render();
