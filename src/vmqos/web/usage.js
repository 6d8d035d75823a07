// The port page's per-IP usage: one row per (instance address, remote address) with what passed the port's
// limits this hour and today, each direction (the instance's point of view), as its agent last reported it.
import { h, ago } from "./util.js";

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];
  for (const [unit, size] of units) if (n >= size) return `${(n / size).toFixed(n >= 10 * size ? 1 : 2)} ${unit}`;
  return `${n} B`;
}

const COLUMNS = [["hour", "ingress"], ["hour", "egress"], ["day", "ingress"], ["day", "egress"]];

export function usageTable(usage, note) {
  if (!usage || !usage.lines.length) return h("p", { class: "muted", id: "usage-note" }, note);
  const pairs = new Map();
  for (const l of usage.lines) {
    const key = `${l.local_ip} ${l.remote_ip}`;
    if (!pairs.has(key)) pairs.set(key, { local: l.local_ip, remote: l.remote_ip, cells: {} });
    pairs.get(key).cells[`${l.granularity} ${l.direction}`] = l;
  }
  const total = (p) => COLUMNS.reduce((sum, [g, d]) => sum + (g === "day" ? (p.cells[`${g} ${d}`]?.bytes ?? 0) : 0), 0);
  const rows = [...pairs.values()].sort((a, b) => total(b) - total(a) || a.remote.localeCompare(b.remote));
  const cell = (l) => h("td", { class: "num", title: l ? `${l.bytes} bytes, ${l.packets} packets` : "" },
                        l ? bytes(l.bytes) : "—");
  return h("div", {},
    h("p", { class: "muted hint", id: "usage-note" }, `${note} Read by the agent ${ago(usage.at)}.`),
    h("table", { id: "usage-table" },
      h("thead", {}, h("tr", {}, ["instance address", "remote address", "hour: to it", "hour: from it",
                                   "today: to it", "today: from it"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((p) => h("tr", { dataset: { local: p.local, remote: p.remote } },
        h("td", {}, p.local), h("td", {}, p.remote), ...COLUMNS.map(([g, d]) => cell(p.cells[`${g} ${d}`])))))));
}
