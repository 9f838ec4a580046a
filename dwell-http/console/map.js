// The process map of a module: the directly-follows graph of its steps, mined by the
// server from the history of all its actors, drawn as SVG. The layout is computed here:
// layers left to right by longest path (after turning back the edges that close a
// cycle), the nodes of each layer ordered to cross fewer edges. Counts refresh every
// few seconds while the page is open.

import { api, ApiError, describe, enc } from "./api.js";
import { duration, h, notice, s, time } from "./dom.js";
import { unavailable } from "./pages.js";

const NODE_W = 200;
const NODE_H = 72;
const GAP_X = 130;
const GAP_Y = 36;
const PAD = 24;
const REFRESH_MS = 5000;

/**
 * Where each node goes. Pure: nodes [{id}], edges [{from, to}] → {pos: Map id → {x, y,
 * layer}, back: Set of "from→to" drawn as loops back, width, height}.
 */
export function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const known = new Set(ids);
  const out = new Map(ids.map((id) => [id, []]));
  const incoming = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    if (!known.has(e.from) || !known.has(e.to)) continue;
    out.get(e.from).push(e.to);
    incoming.set(e.to, incoming.get(e.to) + 1);
  }
  // Depth-first from the sources (then from whatever is left): an edge to a node still
  // on the stack closes a cycle and is drawn backwards.
  const back = new Set();
  const state = new Map(); // id → "open" | "done"
  const visit = (id) => {
    state.set(id, "open");
    for (const to of out.get(id)) {
      if (state.get(to) === "open") back.add(`${id}→${to}`);
      else if (!state.has(to)) visit(to);
    }
    state.set(id, "done");
  };
  for (const id of ids.filter((id) => incoming.get(id) === 0)) if (!state.has(id)) visit(id);
  for (const id of ids) if (!state.has(id)) visit(id);

  // Longest path over the forward edges, in topological order.
  const forward = new Map(ids.map((id) => [id, out.get(id).filter((to) => !back.has(`${id}→${to}`))]));
  const preds = new Map(ids.map((id) => [id, []]));
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const [from, tos] of forward) {
    for (const to of tos) {
      preds.get(to).push(from);
      indegree.set(to, indegree.get(to) + 1);
    }
  }
  const layer = new Map(ids.map((id) => [id, 0]));
  const queue = ids.filter((id) => indegree.get(id) === 0);
  while (queue.length) {
    const id = queue.shift();
    for (const to of forward.get(id)) {
      layer.set(to, Math.max(layer.get(to), layer.get(id) + 1));
      indegree.set(to, indegree.get(to) - 1);
      if (indegree.get(to) === 0) queue.push(to);
    }
  }
  const layers = [];
  for (const id of ids) (layers[layer.get(id)] ??= []).push(id);

  // Order within layers by the mean position of neighbours, sweeping both ways.
  const index = new Map();
  const reindex = () => layers.forEach((l) => l.forEach((id, i) => index.set(id, i)));
  reindex();
  const succ = forward;
  const mean = (list, fallback) =>
    list.length ? list.reduce((sum, id) => sum + index.get(id), 0) / list.length : fallback;
  for (let sweep = 0; sweep < 4; sweep++) {
    const leftToRight = sweep % 2 === 0;
    const order = leftToRight ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const l of order) {
      const keyOf = new Map(l.map((id) => [id, mean(leftToRight ? preds.get(id) : succ.get(id), index.get(id))]));
      l.sort((a, b) => keyOf.get(a) - keyOf.get(b));
      reindex();
    }
  }

  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const pos = new Map();
  layers.forEach((l, li) => {
    const top = PAD + ((tallest - l.length) * (NODE_H + GAP_Y)) / 2;
    l.forEach((id, i) => pos.set(id, { x: PAD + li * (NODE_W + GAP_X), y: top + i * (NODE_H + GAP_Y), layer: li }));
  });
  const width = PAD * 2 + Math.max(1, layers.length) * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  // Loops back run under the nodes: leave room for them.
  return { pos, back, width, height: height + (back.size ? 40 + back.size * 14 : 0), baseline: height };
}

/** A label in at most two lines of at most `max` characters, cut at words. */
function lines(text, max) {
  const out = [""];
  for (const word of text.split(/\s+/)) {
    const last = out.length - 1;
    const joined = out[last] ? `${out[last]} ${word}` : word;
    if (joined.length <= max || !out[last]) out[last] = joined;
    else out.push(word);
  }
  if (out.length > 2) out.splice(1, out.length - 1, out.slice(1).join(" "));
  return out.map((l) => (l.length > max ? `${l.slice(0, max - 1)}…` : l));
}

/** The map as an SVG element. */
export function draw(map) {
  const { pos, back, width, height, baseline } = layout(map.nodes, map.edges);
  const svg = s("svg", {
    id: "process-map", class: "map", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": "Process map",
  });
  svg.append(s("defs", {}, s("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));

  let loop = 0;
  for (const e of map.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    let d;
    let lx;
    let ly;
    const isBack = back.has(`${e.from}→${e.to}`);
    if (isBack) {
      // Out of the source's right side, down the gap beside it to below every node,
      // back left along the bottom, up the gap before the target and into its left
      // side: through the gaps between layers, so it crosses no box.
      const depth = baseline + 12 + loop * 14;
      const g = 12 + (loop % 4) * 5;
      loop++;
      const y1 = a.y + NODE_H * 0.75;
      const y2 = b.y + NODE_H * 0.75;
      d = `M${a.x + NODE_W},${y1} H${a.x + NODE_W + g} V${depth} H${b.x - g} V${y2} H${b.x}`;
      lx = (a.x + NODE_W + b.x) / 2;
      ly = depth - 4;
    } else {
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const bend = Math.max(40, (x2 - x1) / 2);
      d = `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2 - 6;
    }
    const label = `${e.count}× · p50 ${duration(e.p50_ms)}`;
    svg.append(s("g", { class: isBack ? "edge back" : "edge", "data-from": e.from, "data-to": e.to },
      s("title", {}, `${e.from} → ${e.to}: ${e.count} times; p50 ${duration(e.p50_ms)}, p95 ${duration(e.p95_ms)}`),
      s("path", { d, "marker-end": "url(#arrow)" }),
      s("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, label)));
  }

  for (const n of map.nodes) {
    const p = pos.get(n.id);
    const waiting = n.waiting > 0;
    svg.append(s("g", { class: waiting ? "node waiting" : "node", "data-id": n.id, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${n.label}: ${n.count} turns reached it; ${n.waiting} actors wait here now`),
      s("rect", { width: NODE_W, height: NODE_H, rx: 8 }),
      lines(n.label, 24).map((line, i) => s("text", { x: 12, y: 22 + i * 17, class: "label" }, line)),
      s("text", { x: 12, y: 60, class: "count" }, `${n.count} seen`),
      s("text", { x: NODE_W - 12, y: 60, "text-anchor": "end", class: "waiting-count" }, `${n.waiting} waiting`)));
  }
  return svg;
}

export async function mapPage(frame, ctx, module) {
  frame.append(
    h("p", { class: "crumbs" }, h("a", { href: "/ui/modules" }, "Modules"), " / ",
      h("a", { href: `/ui/modules/${enc(module)}` }, module), " / Process map"),
    h("h1", {}, `${module}: process map`),
    h("p", { class: "muted" }, "Steps the module's actors went through, how often one followed another and ",
      "how long it took (p50), and how many actors wait at each step now."));
  const status = h("p", { class: "muted", id: "map-updated" });
  const holder = h("div", { class: "map-holder" });
  frame.append(status, holder);

  const refresh = async () => {
    let map;
    try {
      map = await api("GET", `/v1/modules/${enc(module)}/map`);
    } catch (e) {
      clearInterval(timer);
      holder.replaceChildren(e instanceof ApiError && e.missing
        ? unavailable(e, "The process map")
        : notice("error", describe(e)));
      return;
    }
    if (!ctx.live) return;
    holder.replaceChildren(map.nodes.length
      ? draw(map)
      : notice("info", "No steps recorded yet: the map fills in as actors take turns."));
    const mined = map.actors === undefined ? ""
      : ` Mined from ${map.actors} actors' history${map.truncated ? " (more exist; not all were read)" : ""}.`;
    status.textContent = `Live: refreshed every ${REFRESH_MS / 1000} s; last at ${time(Date.now())}.${mined}`;
  };
  const timer = setInterval(refresh, REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
  await refresh();
}
