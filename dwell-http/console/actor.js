// One actor: its page (state, timers, mailbox, outbound calls, dead letters with a
// Retry button), its turn history as a timeline, and one turn (the state as of that
// turn, the state before it, and the diff between them).

import { api, ApiError, describe, enc } from "./api.js";
import { badge, brief, bytes, duration, fields, h, json, notice, table, time } from "./dom.js";
import { unavailable } from "./pages.js";

const base = (module, key) => `/v1/actors/${enc(module)}/${enc(key)}`;
const home = (module, key) => `/ui/actors/${enc(module)}/${enc(key)}`;

function crumbs(module, key, ...rest) {
  return h("p", { class: "crumbs" },
    h("a", { href: "/ui/actors" }, "Actors"), " / ",
    h("a", { href: `/ui/actors?module=${enc(module)}` }, module), " / ",
    rest.length ? h("a", { href: home(module, key) }, key) : key,
    rest.map((r) => [" / ", r]));
}

function tabs(module, key, current) {
  const tab = (name, href) => h("a", { href, class: name === current ? "current" : undefined }, name);
  return h("nav", { class: "tabs" },
    tab("Overview", home(module, key)),
    tab("History", `${home(module, key)}/history`),
    tab("Process map", `/ui/modules/${enc(module)}/map`));
}

export async function actorPage(frame, ctx, module, key) {
  frame.append(crumbs(module, key), h("h1", {}, `${module}/${key}`), tabs(module, key, "Overview"));
  const body = h("div", { id: "actor" });
  const message = h("div", { class: "message", id: "actor-message" });
  frame.append(message, body);
  await show();

  async function show() {
    let a;
    try {
      a = await api("GET", base(module, key));
    } catch (e) {
      body.replaceChildren(notice("error", e instanceof ApiError && e.status === 404
        ? `There is no actor ${module}/${key}.` : describe(e)));
      return;
    }
    body.replaceChildren(
      fields([
        ["Status", badge(a.status)],
        ["Step", a.step ?? "—"],
        ["Version", `${a.version} (${a.digest.slice(0, 19)}…)`],
        ["Turns", String(a.turns)],
        ["Mailbox depth", String(a.mailbox_depth)],
        ["Created", time(a.created_ms)],
        ["Updated", time(a.updated_ms)],
      ], { id: "summary" }),
      h("button", { type: "button", class: "secondary", on: { click: show } }, "Refresh"),
      h("h2", {}, "State"), json(a.state, { id: "state" }),
      h("h2", {}, "Timers"),
      table([
        ["Name", (t) => t.name],
        ["Due", (t) => `${time(t.due_ms)} (${relative(t.due_ms)})`],
      ], a.timers, { id: "timers", empty: "No timers set." }),
      h("h2", {}, "Outbound calls"),
      table([
        ["Call", (c) => c.call_id],
        ["Request", (c) => `${c.method} ${c.url}`],
        ["Attempts", (c) => String(c.attempts)],
        ["Next attempt", (c) => time(c.next_attempt_ms)],
        ["Last error", (c) => c.last_error ?? "—"],
      ], a.outbound_calls, { id: "calls", empty: "No outbound calls pending." }),
      h("h2", {}, `Dead letters (${a.dead_letters.length} here, ${a.dead_letter_count} ever)`),
      table([
        ["Seq", (d) => String(d.seq)],
        ["At", (d) => time(d.at_ms)],
        ["Attempts", (d) => String(d.attempts)],
        ["Error", (d) => h("span", { class: "error-text" }, d.error)],
        ["Message", (d) => h("code", {}, brief(d.body))],
        ["", (d) => h("button", {
          type: "button", class: "retry", "data-seq": d.seq,
          on: { click: (e) => retry(e.currentTarget, d.seq) },
        }, "Retry")],
      ], a.dead_letters, { id: "dead-letters", empty: "No dead letters." }),
    );
  }

  async function retry(button, seq) {
    button.disabled = true;
    message.replaceChildren();
    try {
      const r = await api("POST", `${base(module, key)}/dead-letters/${seq}/retry`);
      message.append(notice("ok", `Dead letter ${seq} is back in the mailbox`,
        r?.request_id ? ` as request ${r.request_id}.` : "."));
    } catch (e) {
      message.append(notice("error", `Dead letter ${seq} was not retried: ${describe(e)}`));
    }
    await show();
  }
}

/** "in 3.0 s" or "2.0 min ago". */
function relative(ms) {
  const d = ms - Date.now();
  return d >= 0 ? `in ${duration(d)}` : `${duration(-d)} ago`;
}

/** One effect on a line: its kind and what it carried. */
function effect(e) {
  const { kind, ...rest } = e;
  const detail = Object.keys(rest).length ? brief(rest, 90) : "";
  return h("li", { class: `effect ${kind}` }, h("span", { class: "kind" }, kind), " ", h("code", {}, detail));
}

function outcome(o) {
  return [badge(o.status), o.reason ? h("span", { class: "reason" }, ` ${o.reason}`) : null];
}

export async function historyPage(frame, ctx, module, key) {
  frame.append(crumbs(module, key, "History"), h("h1", {}, `${module}/${key}: history`), tabs(module, key, "History"));
  const list = h("ol", { id: "timeline", class: "timeline" });
  const more = h("button", { type: "button", id: "older", class: "secondary", hidden: true, on: { click: load } }, "Older turns");
  const holder = h("div", {}, list, more);
  frame.append(holder);
  let cursor = null;
  await load();

  async function load() {
    more.disabled = true;
    let page;
    try {
      page = await api("GET", `${base(module, key)}/history`, { query: { limit: 50, cursor } });
    } catch (e) {
      holder.replaceChildren(e instanceof ApiError && e.status === 404 && !e.missing
        ? notice("error", e.message) : unavailable(e, "Turn history"));
      return;
    }
    if (page.items.length === 0 && cursor === null) {
      holder.replaceChildren(notice("info", "No turns recorded."));
      return;
    }
    for (const t of page.items) {
      list.append(h("li", { class: `turn ${t.outcome.status}`, "data-seq": t.seq },
        h("div", { class: "when" },
          h("a", { href: `${home(module, key)}/history/${t.seq}` }, `#${t.seq}`),
          " ", time(t.at_ms), " · ", duration(t.duration_us / 1000)),
        h("div", { class: "what" },
          h("strong", {}, t.message.label || t.message.kind),
          t.message.label ? [" ", h("span", { class: "muted" }, t.message.kind)] : null,
          t.message.body === null || t.message.body === undefined
            ? null : [" ", h("code", {}, brief(t.message.body, 80))],
          t.step ? [" → ", h("span", { class: "step" }, t.step)] : null),
        h("div", { class: "outcome" }, outcome(t.outcome), " · ",
          t.state_changed === false ? "state unchanged" : `state ${bytes(t.state_bytes)}`),
        t.effects.length ? h("ul", { class: "effects" }, t.effects.map(effect)) : null));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    more.disabled = false;
  }
}

export async function turnPage(frame, ctx, module, key, seq) {
  const n = Number(seq);
  frame.append(crumbs(module, key, h("a", { href: `${home(module, key)}/history` }, "History"), `#${seq}`),
    h("h1", {}, `${module}/${key}: turn ${seq}`), tabs(module, key, "History"));
  frame.append(h("nav", { class: "pager" },
    n > 1 ? h("a", { href: `${home(module, key)}/history/${n - 1}` }, "« Previous turn") : null,
    h("a", { href: `${home(module, key)}/history/${n + 1}` }, "Next turn »")));
  let t;
  try {
    t = await api("GET", `${base(module, key)}/history/${n}`);
  } catch (e) {
    frame.append(e instanceof ApiError && e.status === 404 && !e.missing
      ? notice("error", `No turn ${seq} is kept for ${module}/${key}.`)
      : unavailable(e, "Turn history"));
    return;
  }
  frame.append(h("div", { class: "turn-detail" },
    fields([
      ["At", time(t.at_ms)],
      ["Took", duration(t.duration_us / 1000)],
      ["Message", `${t.message.label || "—"} (${t.message.kind})`],
      ["Step", t.step ?? "—"],
      ["Outcome", outcome(t.outcome)],
      ["State size", bytes(t.state_bytes)],
    ], { id: "turn" }),
    h("h2", {}, "Message"),
    t.message.body_truncated ? notice("info", "The body was cut to the server's size limit.") : null,
    json(t.message.body, { id: "message-body" }),
    h("h2", {}, "Effects"),
    t.effects.length ? h("ul", { class: "effects" }, t.effects.map(effect)) : h("p", { class: "empty" }, "None."),
    h("h2", {}, "Changes to the state"),
    diff(t.diff),
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, "State as of this turn"),
        known(t.state_known, t.state)
          ? json(t.state, { id: "state-after" })
          : notice("info", "Not kept: the history keeps the state of the most recent turns only.")),
      h("section", {}, h("h2", {}, "State before"),
        known(t.previous_known, t.previous_state)
          ? json(t.previous_state, { id: "state-before" })
          : notice("info", "Not kept (or this is the first turn).")))));
}

/** Was a state kept? The server says so; `null` alone may also be a state. */
function known(flag, state) {
  return flag ?? (state !== null && state !== undefined);
}

function diff(ops) {
  if (!ops) return notice("info", "Not known: the states were not kept.");
  const value = (v) => (v === undefined ? "" : h("code", {}, brief(v, 200)));
  return table([
    ["", (d) => h("span", { class: `op ${d.op}` }, { add: "+", remove: "−", replace: "~" }[d.op] ?? d.op)],
    ["Path", (d) => h("code", {}, d.path || "/")],
    ["Before", (d) => value(d.old)],
    ["After", (d) => value(d.value)],
  ], ops, { id: "diff", class: "diff", empty: "The state did not change." });
}
