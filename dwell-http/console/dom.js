// DOM helpers: every element is built from data with text nodes, never from HTML
// strings, so nothing an actor stores can become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === "value" || name === "checked") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: `h("a", {href: "/ui/x"}, "text", otherNode)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, as `h` does for HTML. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A local date and time for a Unix time in milliseconds. */
export function time(ms) {
  if (ms === undefined || ms === null) return "—";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in milliseconds, in the unit that reads best. */
export function duration(ms) {
  if (ms === undefined || ms === null) return "—";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** A byte count. */
export function bytes(n) {
  if (n === undefined || n === null) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** JSON, indented, in a <pre>. */
export function json(value, attrs = {}) {
  const text = value === undefined ? "—" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json", ...attrs }, text);
}

/** JSON on one line, cut at `max` characters. */
export function brief(value, max = 120) {
  const text = JSON.stringify(value) ?? "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * A table: `columns` is a list of [title, row => cell]; a cell is text or a node.
 * With no rows, `empty` is shown instead (under the table's id).
 */
export function table(columns, rows, { empty = "None.", ...attrs } = {}) {
  if (rows.length === 0) return h("p", { id: attrs.id, class: "empty" }, empty);
  return h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((row) =>
      h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

/** Label/value pairs as a <dl>. */
export function fields(pairs, attrs = {}) {
  return h("dl", { class: "fields", ...attrs },
    pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

/** A message box: kind is "info", "error" or "ok". */
export function notice(kind, ...text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...text);
}

/** A status word in a coloured pill. */
export function badge(word) {
  return h("span", { class: `badge ${String(word).replace(/[^a-z_]/gi, "")}` }, word);
}
