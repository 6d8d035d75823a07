// The fleet: every host with its agent's status, and the fleet's top talkers right now.
import { h, rate, pps, pct, ago, badge, link, hostHref, portHref, LiveTable } from "./util.js";
import { eventTable } from "./events.js";

export function mount(main, ctx) {
  const hosts = new LiveTable([
    { key: "name", label: "host", cell: (r) => link(hostHref(r.name), r.name) },
    { key: "status", label: "agent", cell: (r) => (r.status === null ? "—" : badge(r.status)) },
    { key: "last_seen", label: "last seen", cell: (r) => (r.status === null ? "—" : ago(r.last_seen)) },
    { key: "ports", label: "ports", num: true, cell: (r) => r.ports },
    { key: "offered_bps", label: "offered", num: true, cell: (r) => rate(r.offered_bps) },
    { key: "delivered_bps", label: "delivered", num: true, cell: (r) => rate(r.delivered_bps) },
    { key: "dropped_bps", label: "dropped", num: true, cell: (r) => rate(r.dropped_bps) },
    { key: "quarantines", label: "quarantined", num: true, cell: (r) => r.quarantines },
  ], { key: (r) => r.name, filterOf: (r) => r.name, sortKey: "name", sortDesc: false });
  hosts.table.id = "hosts";
  const top = new LiveTable([
    { key: "device", label: "port", cell: (r) => link(portHref(r.host, r.device), r.device) },
    { key: "host", label: "host", cell: (r) => r.host },
    { key: "direction", label: "dir", cell: (r) => r.direction },
    { key: "limit_bps", label: "limit", num: true, cell: (r) => rate(r.limit_bps) },
    { key: "offered_bps", label: "offered", num: true, cell: (r) => rate(r.offered_bps) },
    { key: "delivered_bps", label: "delivered", num: true, cell: (r) => rate(r.delivered_bps) },
    { key: "pps", label: "pps", num: true, cell: (r) => pps(r.pps) },
    { key: "utilisation", label: "util", num: true, cell: (r) => pct(r.utilisation) },
  ], { key: (r) => `${r.host}/${r.device}/${r.direction}`, filterOf: (r) => r.device, sortKey: "offered_bps" });
  top.table.id = "top";
  const recent = h("div");
  const note = h("p", { class: "muted" });
  main.replaceChildren(h("h1", {}, "Fleet"), note, h("h2", {}, "Hosts"), hosts.table,
                       h("h2", {}, "Top talkers now"), top.table, h("h2", {}, "Recent events"), recent);
  return {
    update(frame) {
      note.textContent = frame.who.admin ? "" :
        "You see your project's ports; the hosts' agents are the operator's (their status is shown to admins).";
      hosts.render(frame.hosts);
      top.render(frame.top);
      recent.replaceChildren(eventTable(frame.events));
    },
  };
}
