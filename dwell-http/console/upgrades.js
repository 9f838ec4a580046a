// Live upgrades in the console: a module's upgrade runs (on its page) and one run with
// its report — what the dry run found per actor, what was moved, the canary's verdict —
// with a Roll back button.

import { api, describe, enc } from "./api.js";
import { badge, fields, h, notice, table, time } from "./dom.js";

const runs = (module) => `/v1/modules/${enc(module)}/upgrades`;
const runHome = (module, id) => `/ui/modules/${enc(module)}/upgrades/${enc(id)}`;

/** The module's runs, newest first, as a section of its page. */
export async function runsSection(module) {
  const list = await api("GET", runs(module));
  return [
    h("h2", {}, "Upgrade runs"),
    table([
      ["Run", (r) => h("a", { href: runHome(module, r.id) }, r.id)],
      ["Status", (r) => badge(r.status)],
      ["Versions", (r) => `${r.plan.from} → ${r.plan.to}`],
      ["Mode", (r) => r.plan.mode],
      ["Selected", (r) => String(r.report.selected)],
      ["Moved", (r) => String(r.report.moved)],
      ["Problems", (r) => String(r.report.problems)],
      ["Started", (r) => time(r.created_ms)],
    ], list.items, { id: "upgrades", empty: "No upgrade runs. Start one with dwell upgrade plan." }),
  ];
}

export async function runPage(frame, ctx, module, id) {
  frame.append(h("p", { class: "crumbs" },
    h("a", { href: "/ui/modules" }, "Modules"), " / ",
    h("a", { href: `/ui/modules/${enc(module)}` }, module), " / upgrade ", id));
  frame.append(h("h1", {}, `Upgrade ${id}`));
  const message = h("div", { class: "message", id: "run-message" });
  const body = h("div", { id: "run" });
  frame.append(message, body);
  await show();
  // An active run changes: follow it while the page is on screen.
  const timer = setInterval(() => {
    if (ctx.live && ["planning", "applying", "watching", "rolling_back"].includes(body.dataset.status)) show();
  }, 1000);
  ctx.onLeave(() => clearInterval(timer));

  async function show() {
    let r;
    try {
      r = await api("GET", `${runs(module)}/${enc(id)}`);
    } catch (e) {
      body.replaceChildren(notice("error", describe(e)));
      return;
    }
    body.dataset.status = r.status;
    const rep = r.report;
    const canary = rep.canary;
    body.replaceChildren(
      fields([
        ["Status", badge(r.status)],
        ["Versions", `${r.plan.from} → ${r.plan.to}`],
        ["Mode", r.plan.mode + (r.plan.force ? " (forced)" : "")],
        ["Reason", r.reason ?? "—"],
        ["Selected", String(rep.selected)],
        ["Replayed turns", `${rep.replayed_turns} (${rep.not_replayed_turns} not replayable)`],
        ["Problems", `${rep.problems}: migrate failed ${rep.migrate_failed}, would trap ${rep.would_trap}, would refuse ${rep.would_refuse}`],
        ["Differs from the old version", `state ${rep.state_differs}, effects ${rep.effects_differ}`],
        ["Moved", `${rep.moved} (skipped ${rep.skipped}, rolled back ${rep.rolled_back}, kept ${rep.kept})`],
        ["Canary", canary
          ? `${canary.moved} moved, ${canary.failed_turns} of ${canary.watched_turns} watched turns failed; ${canary.verdict || "watching"}`
          : "—"],
        ["Started", time(r.created_ms)],
        ["Updated", time(r.updated_ms)],
      ], { id: "run-summary" }),
      h("p", {}, rep.moved > rep.rolled_back + rep.kept && r.status !== "rolled_back"
        ? h("button", { type: "button", id: "rollback", class: "danger", on: { click: rollback } }, "Roll back")
        : null),
      h("h2", {}, "Actors"),
      table([
        ["Actor", (a) => h("a", { href: `/ui/actors/${enc(module)}/${enc(a.key)}` }, a.key)],
        ["Migrate", (a) => a.migrate],
        ["Problem", (a) => a.problem ? h("span", { class: "error-text" }, a.problem) : "—"],
        ["Replayed turns", (a) => h("ul", { class: "turns" }, a.turns.map(turn))],
      ], rep.actors, { id: "run-actors", empty: "No actor was selected." }),
    );
  }

  async function rollback(event) {
    event.currentTarget.disabled = true;
    message.replaceChildren();
    try {
      const r = await api("POST", `${runs(module)}/${enc(id)}/rollback`);
      message.append(notice("ok", `Rolled back ${r.report.rolled_back} actor(s)`,
        r.report.kept ? `; ${r.report.kept} kept on the new version (their state changed since).` : "."));
    } catch (e) {
      message.append(notice("error", `Not rolled back: ${describe(e)}`));
    }
    await show();
  }
}

/** One replayed turn: what it was, what the new version does, how it differs. */
function turn(t) {
  const same = (v, what) => (v === false ? ` · ${what} differs` : "");
  return h("li", { class: t.now.startsWith("ok") ? "ok" : "problem" },
    h("code", {}, `${t.seq} ${t.message}`), `: was ${t.was}, now ${t.now}`,
    same(t.state_same, "state"), same(t.effects_same, "effects"));
}
