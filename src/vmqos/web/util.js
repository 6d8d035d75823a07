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
// click on a column's header and filtered by a text: 1,000 ports redraw in a few milliseconds.
export class LiveTable {
  constructor(columns, { key, filterOf, sortKey, sortDesc = true, rowAttrs }) {
    this.columns = columns; this.key = key; this.filterOf = filterOf; this.rowAttrs = rowAttrs;
    this.sortKey = sortKey; this.sortDesc = sortDesc; this.filter = ""; this.rows = new Map(); this.data = [];
    this.tbody = h("tbody");
    this.heads = columns.map((c) => h("th", { class: `${c.num ? "num" : ""} sortable`, dataset: { key: c.key },
                                             onclick: () => this.sortBy(c.key) }, c.label));
    this.table = h("table", { class: "live" }, h("thead", {}, h("tr", {}, this.heads)), this.tbody);
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
    shown.sort((a, b) => {
      const x = value(a) ?? -Infinity, y = value(b) ?? -Infinity;
      const order = x < y ? -1 : x > y ? 1 : this.key(a) < this.key(b) ? -1 : 1;
      return this.sortDesc ? -order : order;
    });
    const seen = new Set();
    let next = this.tbody.firstChild;
    for (const r of shown) {
      const k = this.key(r);
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        const cells = this.columns.map((c) => h("td", { class: c.num ? "num" : "" }));
        row = { tr: h("tr", { dataset: { key: k } }, cells), cells, last: [] };
        this.rows.set(k, row);
      }
      this.columns.forEach((c, i) => {
        const shownValue = c.cell(r);
        const isNode = shownValue instanceof Node;
        const text = isNode ? `${shownValue.textContent}\u0000${shownValue.getAttribute?.("href") || ""}` : String(shownValue);
        if (row.last[i] !== text) {
          row.last[i] = text;
          row.cells[i].replaceChildren(isNode ? shownValue : document.createTextNode(text));
        }
      });
      if (this.rowAttrs) this.rowAttrs(row.tr, r);
      if (row.tr === next) next = next.nextSibling;
      else this.tbody.insertBefore(row.tr, next);
    }
    const present = new Set(data.map((r) => this.key(r)));
    for (const [k, row] of this.rows) {
      if (seen.has(k)) continue;
      row.tr.remove();
      if (!present.has(k)) this.rows.delete(k);
    }
  }
}
