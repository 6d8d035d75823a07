// Small helpers shared by the views: the API client (cookie session + CSRF header), formatting, DOM.

export function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("vmqos_csrf="));
  return found ? decodeURIComponent(found.slice("vmqos_csrf=".length)) : "";
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The server's own error message: Neutron's {"NeutronError": {"message"}}, Keystone's {"error": {"message"}}.
function messageOf(body, status) {
  if (body && body.NeutronError) return body.NeutronError.message;
  if (body && body.error) return body.error.message;
  if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  return `HTTP ${status}`;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                       credentials: "same-origin" });
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
  if (!response.ok) throw new ApiError(response.status, messageOf(parsed, response.status));
  return parsed;
}

export function rate(bps) {
  if (bps === null || bps === undefined) return "—";
  const units = [["Gbit/s", 1e9], ["Mbit/s", 1e6], ["kbit/s", 1e3]];
  for (const [unit, size] of units) if (bps >= size) return `${(bps / size).toFixed(bps >= 10 * size ? 1 : 2)} ${unit}`;
  return `${bps} bit/s`;
}

export function pps(value) {
  if (value === null || value === undefined) return "—";
  return value >= 1000 ? `${(value / 1000).toFixed(1)} kpps` : `${value} pps`;
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(0)} %`;
}

export function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : new Date(iso).toLocaleString();
}

// h("td", {class: "num"}, "text", child...) — never innerHTML with server data.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function badge(status) {
  return h("span", { class: `badge ${status || "unknown"}` }, status || "—");
}

export function link(href, text) { return h("a", { href }, text); }

export function hostHref(host) { return `#/host/${encodeURIComponent(host)}`; }
export function portHref(host, device) { return `#/port/${encodeURIComponent(host)}/${encodeURIComponent(device)}`; }

// A table whose rows are kept by key and updated in place (only changed cells are touched), sortable by a
// click on a column's header and filtered by a text. With `virtual`, only the rows in view (and a margin)
// are in the DOM, between two spacer rows: a host of 1,000 ports (2,000 rows) costs the browser the layout
// of a few dozen rows per pushed frame, not of two thousand.
const MARGIN_ROWS = 15;

export class LiveTable {
  constructor(columns, { key, filterOf, sortKey, sortDesc = true, rowAttrs, virtual = false }) {
    this.columns = columns; this.key = key; this.filterOf = filterOf; this.rowAttrs = rowAttrs;
    this.sortKey = sortKey; this.sortDesc = sortDesc; this.filter = ""; this.rows = new Map(); this.data = [];
    this.shown = []; this.virtual = virtual; this.rowHeight = 25;
    this.tbody = h("tbody");
    this.heads = columns.map((c) => h("th", { class: `${c.num ? "num" : ""} sortable`, dataset: { key: c.key },
                                             onclick: () => this.sortBy(c.key) }, c.label));
    this.table = h("table", { class: "live" }, h("thead", {}, h("tr", {}, this.heads)), this.tbody);
    this.topPad = h("tr", { class: "pad" }, h("td", { colspan: columns.length }));
    this.bottomPad = h("tr", { class: "pad" }, h("td", { colspan: columns.length }));
    this.element = this.table;
    if (virtual) {
      this.element = h("div", { class: "scroller" }, this.table);
      let pending = false;
      this.element.addEventListener("scroll", () => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; this.paint(); });
      });
    }
    this.markSorted();
  }
  markSorted() {
    for (const th of this.heads) {
      th.classList.toggle("sorted", th.dataset.key === this.sortKey);
      th.classList.toggle("asc", th.dataset.key === this.sortKey && !this.sortDesc);
    }
  }
  sortBy(key) {
    if (this.sortKey === key) this.sortDesc = !this.sortDesc; else { this.sortKey = key; this.sortDesc = true; }
    this.markSorted(); this.render(this.data);
  }
  setFilter(text) { this.filter = text.toLowerCase(); this.render(this.data); }
  render(data) {
    this.data = data;
    const col = this.columns.find((c) => c.key === this.sortKey);
    const value = col && col.sort ? col.sort : (r) => r[this.sortKey];
    const shown = data.filter((r) => !this.filter || this.filterOf(r).toLowerCase().includes(this.filter));
    const keyed = shown.map((r) => ({ r, v: value(r) ?? -Infinity, k: this.key(r) }));
    keyed.sort((a, b) => {
      const order = a.v < b.v ? -1 : a.v > b.v ? 1 : a.k < b.k ? -1 : 1;
      return this.sortDesc ? -order : order;
    });
    this.shown = keyed;
    this.paint();
  }
  // The rows of `this.shown` in view (all of them unless virtual) into the DOM, in order.
  paint() {
    let first = 0, last = this.shown.length;
    if (this.virtual) {
      const view = this.element.clientHeight || 600;
      first = Math.max(0, Math.floor(this.element.scrollTop / this.rowHeight) - MARGIN_ROWS);
      last = Math.min(this.shown.length, first + Math.ceil(view / this.rowHeight) + 2 * MARGIN_ROWS);
    }
    const seen = new Set();
    let next = this.tbody.firstChild;
    if (this.virtual) {
      this.topPad.firstChild.style.height = `${first * this.rowHeight}px`;
      if (next === this.topPad) next = next.nextSibling; else this.tbody.insertBefore(this.topPad, next);
    }
    for (let i = first; i < last; i++) {
      const { r, k } = this.shown[i];
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        const cells = this.columns.map((c) => h("td", { class: c.num ? "num" : "" }));
        row = { tr: h("tr", { dataset: { key: k } }, cells), cells, last: [] };
        this.rows.set(k, row);
      }
      this.columns.forEach((c, j) => {
        const shownValue = c.cell(r);
        const isNode = shownValue instanceof Node;
        const text = isNode ? `${shownValue.textContent}\u0000${shownValue.getAttribute?.("href") || ""}` : String(shownValue);
        if (row.last[j] !== text) {
          row.last[j] = text;
          row.cells[j].replaceChildren(isNode ? shownValue : document.createTextNode(text));
        }
      });
      if (this.rowAttrs) this.rowAttrs(row.tr, r);
      if (row.tr === next) next = next.nextSibling;
      else this.tbody.insertBefore(row.tr, next);
    }
    if (this.virtual) {
      this.bottomPad.firstChild.style.height = `${(this.shown.length - last) * this.rowHeight}px`;
      if (next === this.bottomPad) next = next.nextSibling; else this.tbody.insertBefore(this.bottomPad, next);
    }
    for (const [k, row] of this.rows) {
      if (!seen.has(k)) { row.tr.remove(); this.rows.delete(k); }
    }
    if (this.virtual && first < last) {
      const height = this.rows.get(this.shown[first].k).tr.getBoundingClientRect().height;
      if (height > 0 && Math.abs(height - this.rowHeight) > 0.5) { this.rowHeight = height; }
    }
  }
}
