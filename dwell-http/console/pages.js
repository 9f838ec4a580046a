// The list pages: modules and their versions, actors (filters, pages, open by key),
// requests, and for the admin key the tenants. actor.js has an actor's own pages,
// map.js the process map, upgrades.js the upgrade runs.

import { api, ApiError, describe, enc } from "./api.js";
import { runsSection } from "./upgrades.js";
import { badge, bytes, fields, h, json, notice, table, time } from "./dom.js";

const PAGE = 50;

/** The notice for an endpoint this server does not have yet; other errors go on up. */
export function unavailable(e, what) {
  if (e instanceof ApiError && e.missing) {
    return notice("info unavailable", `${what} is not available on this server yet `,
      `(${e.path} answered 404).`);
  }
  throw e;
}

/** Links to the first and the next page of a list, from the current query. */
export function pager(ctx, next) {
  const path = location.pathname;
  const here = new URLSearchParams(ctx.query);
  const first = new URLSearchParams(here);
  first.delete("cursor");
  const links = [];
  if (here.has("cursor")) links.push(h("a", { class: "first", href: `${path}?${first}` }, "« First page"));
  if (next) {
    const more = new URLSearchParams(here);
    more.set("cursor", next);
    links.push(h("a", { class: "next", href: `${path}?${more}` }, "Next page »"));
  }
  return h("nav", { class: "pager" }, links);
}

const actorLink = (module, key) =>
  h("a", { class: "actor-link", href: `/ui/actors/${enc(module)}/${enc(key)}` }, `${module}/${key}`);

export async function modules(frame) {
  frame.append(h("h1", {}, "Modules"));
  const { modules } = await api("GET", "/v1/modules");
  frame.append(table([
    ["Module", (m) => h("a", { href: `/ui/modules/${enc(m.name)}` }, m.name)],
    ["Latest version", (m) => String(m.version)],
    ["Versions", (m) => String(m.versions)],
    ["Size", (m) => bytes(m.size)],
    ["Deployed", (m) => time(m.created_ms)],
    ["", (m) => [
      h("a", { href: `/ui/actors?module=${enc(m.name)}` }, "Actors"), " · ",
      h("a", { href: `/ui/modules/${enc(m.name)}/map` }, "Process map"),
    ]],
  ], modules, { id: "modules", empty: "No modules yet: deploy one with `dwell deploy`." }));
}

export async function module(frame, ctx, name) {
  frame.append(h("p", { class: "crumbs" }, h("a", { href: "/ui/modules" }, "Modules"), " / ", name));
  frame.append(h("h1", {}, name));
  frame.append(h("p", {},
    h("a", { href: `/ui/actors?module=${enc(name)}` }, "Its actors"), " · ",
    h("a", { href: `/ui/modules/${enc(name)}/map` }, "Process map")));
  const m = await api("GET", `/v1/modules/${enc(name)}`);
  frame.append(h("h2", {}, "Versions"), table([
    ["Version", (v) => String(v.version)],
    ["Digest", (v) => h("code", { title: v.digest }, v.digest.slice(0, 19) + "…")],
    ["Size", (v) => bytes(v.size)],
    ["Deployed", (v) => time(v.created_ms)],
  ], [...m.versions].reverse(), { id: "versions" }));
  frame.append(...await runsSection(name));
}

export async function actors(frame, ctx) {
  const q = ctx.query;
  frame.append(h("h1", {}, "Actors"));

  // Open one actor by module and key: works on every server.
  const openModule = h("input", { id: "open-module", name: "module", placeholder: "module", value: q.get("module") ?? "", required: true });
  const openKey = h("input", { id: "open-key", name: "key", placeholder: "key", required: true });
  const openMessage = h("div", { class: "message" });
  frame.append(h("form", { id: "open-actor", class: "inline card", on: { submit: open } },
    h("strong", {}, "Open an actor"), openModule, h("span", {}, "/"), openKey,
    h("button", { type: "submit" }, "Open"), openMessage));

  async function open(event) {
    event.preventDefault();
    const module = openModule.value.trim();
    const key = openKey.value.trim();
    openMessage.replaceChildren();
    try {
      await api("GET", `/v1/actors/${enc(module)}/${enc(key)}`);
      ctx.go(`/ui/actors/${enc(module)}/${enc(key)}`);
    } catch (e) {
      openMessage.append(notice("error", e instanceof ApiError && e.status === 404
        ? `There is no actor ${module}/${key}.` : describe(e)));
    }
  }

  // The list, filtered on the server; the filters are in the address.
  const modules = (await api("GET", "/v1/modules")).modules.map((m) => m.name);
  const select = (name, options) => h("select", { name, id: `filter-${name}` },
    options.map(([value, label]) => h("option", { value, selected: q.get(name) === value }, label)));
  const after = q.get("updated_after");
  const filters = h("form", { id: "filters", class: "inline", on: { submit: filter } },
    h("label", {}, "Module ", select("module", [["", "any"], ...modules.map((m) => [m, m])])),
    h("label", {}, "Status ", select("status", [["", "any"], ["active", "active"], ["completed", "completed"]])),
    h("label", {}, "Version ", h("input", { name: "version", id: "filter-version", type: "number", min: 1, value: q.get("version") ?? "" })),
    h("label", {}, "Step ", h("input", { name: "step", id: "filter-step", value: q.get("step") ?? "" })),
    h("label", {}, "Updated after ", h("input", {
      name: "updated_after", id: "filter-updated-after", type: "datetime-local",
      value: after ? localInput(Number(after)) : "",
    })),
    h("button", { type: "submit" }, "Filter"));
  frame.append(filters);

  function filter(event) {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(filters)) {
      if (!value) continue;
      next.set(name, name === "updated_after" ? String(new Date(value).getTime()) : value);
    }
    ctx.go(`/ui/actors?${next}`);
  }

  const list = h("div", { id: "actor-list" });
  frame.append(list);
  let page;
  try {
    page = await api("GET", "/v1/actors", {
      query: {
        module: q.get("module"), status: q.get("status"), version: q.get("version"),
        step: q.get("step"), updated_after: q.get("updated_after"),
        limit: PAGE, cursor: q.get("cursor"),
      },
    });
  } catch (e) {
    list.append(unavailable(e, "Listing actors"),
      h("p", {}, "Open an actor by its module and key above."));
    return;
  }
  // Narrow the page on screen by key, as you type.
  const search = h("input", { id: "key-search", type: "search", placeholder: "Filter this page by key", on: { input: narrow } });
  const rows = table([
    ["Actor", (a) => actorLink(a.module, a.key)],
    ["Status", (a) => badge(a.status)],
    ["Version", (a) => String(a.version)],
    ["Step", (a) => a.step ?? "—"],
    ["Turns", (a) => String(a.turns)],
    ["Updated", (a) => time(a.updated_ms)],
  ], page.items, { id: "actors", empty: "No actors match." });
  list.append(search, rows, pager(ctx, page.next_cursor));

  function narrow() {
    const needle = search.value.trim().toLowerCase();
    for (const tr of list.querySelectorAll("tbody tr")) {
      tr.hidden = needle !== "" && !tr.querySelector(".actor-link").textContent.toLowerCase().includes(needle);
    }
  }
}

/** A Unix time as the value of a datetime-local input. */
function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export async function requests(frame, ctx) {
  const q = ctx.query;
  frame.append(h("h1", {}, "Requests"));
  const status = h("select", { name: "status", id: "filter-status", on: { change: () => {
    const next = new URLSearchParams();
    if (status.value) next.set("status", status.value);
    ctx.go(`/ui/requests?${next}`);
  } } }, ["", "pending", "completed", "failed"].map((s) =>
    h("option", { value: s, selected: (q.get("status") ?? "") === s }, s || "any")));
  frame.append(h("form", { class: "inline", on: { submit: (e) => e.preventDefault() } },
    h("label", {}, "Status ", status)));
  let page;
  try {
    page = await api("GET", "/v1/requests", {
      query: { status: q.get("status"), limit: PAGE, cursor: q.get("cursor") },
    });
  } catch (e) {
    frame.append(unavailable(e, "Listing requests"));
    return;
  }
  // Each item is the request as `GET /v1/requests/{id}` shows it (`request_id`, `actor`);
  // `id`, `module` and `key` at the top are read too.
  const id = (r) => r.request_id ?? r.id;
  frame.append(table([
    ["Request", (r) => h("a", { href: `/ui/requests/${enc(id(r))}` }, h("code", {}, id(r)))],
    ["Actor", (r) => (r.actor ?? r.module) ? actorLink(r.actor?.module ?? r.module, r.actor?.key ?? r.key) : "—"],
    ["Status", (r) => badge(r.status)],
    ["Created", (r) => time(r.created_ms)],
    ["Settled", (r) => time(r.settled_ms)],
  ], page.items, { id: "requests", empty: "No requests match." }), pager(ctx, page.next_cursor));
}

export async function request(frame, ctx, id) {
  frame.append(h("p", { class: "crumbs" }, h("a", { href: "/ui/requests" }, "Requests"), " / ", id));
  frame.append(h("h1", {}, "Request"));
  const r = await api("GET", `/v1/requests/${enc(id)}`);
  frame.append(fields([
    ["Id", h("code", {}, r.request_id)],
    ["Actor", r.actor ? actorLink(r.actor.module, r.actor.key) : "—"],
    ["Status", badge(r.status)],
    ["Created", time(r.created_ms)],
    ["Settled", time(r.settled_ms)],
    ...(r.error ? [["Error", r.error]] : []),
    ...(r.refusal ? [["Refusal", r.refusal]] : []),
    ...(r.callback ? [["Callback", `${r.callback.url} (${r.callback.status})`]] : []),
  ], { id: "request" }));
  if ("reply" in r) frame.append(h("h2", {}, "Reply"), json(r.reply));
}

export async function tenants(frame) {
  frame.append(h("h1", {}, "Tenants"));
  frame.append(notice("info", "The admin key manages tenants. Sign in with a tenant's key to ",
    "see its modules, actors and requests."));
  const { tenants } = await api("GET", "/v1/tenants");
  frame.append(table([
    ["Tenant", (t) => t.name],
    ["Actors", (t) => String(t.actors)],
    ["Keys", (t) => String(t.keys.length)],
    ["HTTP allowed to", (t) => (t.allow_http ?? []).join(", ") || "—"],
    ["Created", (t) => time(t.created_ms)],
  ], tenants, { id: "tenants" }));
}
