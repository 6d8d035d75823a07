// A host: every port as rows like `vmqos top` (one per direction), updated by each pushed frame,
// sortable (click a column) and filterable (port, instance's policy, status).
import { h, rate, pps, pct, ago, badge, link, portHref, LiveTable } from "./util.js";

export function mount(main, ctx) {
  const table = new LiveTable([
    { key: "device", label: "port", cell: (r) => link(portHref(r.host, r.device), r.device) },
    { key: "direction", label: "dir", cell: (r) => r.direction },
    { key: "policy_name", label: "policy", cell: (r) => r.policy_name || "—" },
    { key: "limit_bps", label: "limit", num: true, cell: (r) => rate(r.limit_bps) },
    { key: "offered_bps", label: "offered", num: true, cell: (r) => rate(r.offered_bps) },
    { key: "delivered_bps", label: "delivered", num: true, cell: (r) => rate(r.delivered_bps) },
    { key: "dropped_bps", label: "dropped", num: true, cell: (r) => rate(r.dropped_bps) },
    { key: "pps", label: "pps", num: true, cell: (r) => pps(r.pps) },
    { key: "utilisation", label: "util", num: true, cell: (r) => pct(r.utilisation) },
    { key: "status", label: "status", cell: (r) => (r.quarantined ? "quarantined" : r.status) },
  ], { key: (r) => `${r.device}/${r.direction}`, filterOf: (r) => `${r.device} ${r.policy_name || ""} ${r.status}`,
       sortKey: "offered_bps", virtual: true });
  table.table.id = "ports";
  const filter = h("input", { id: "filter", placeholder: "filter: port, policy, status", class: "wide",
                              oninput: (e) => table.setFilter(e.target.value) });
  const title = h("h1", {}, `Host ${ctx.params.host}`);
  const summary = h("p", { id: "host-summary" });
  main.replaceChildren(title, summary, h("p", {}, filter, h("span", { class: "muted hint" },
    " click a column to sort; updated each second by the server")), table.element);
  return {
    update(frame) {
      const line = frame.host;
      summary.replaceChildren(
        line.status === null ? "" : badge(line.status), " ",
        `${line.ports} ports · offered ${rate(line.offered_bps)} · delivered ${rate(line.delivered_bps)} · ` +
        `dropped ${rate(line.dropped_bps)} · ${line.quarantines} quarantined` +
        (line.status === null ? "" : ` · agent ${line.agent_version || "?"}, last seen ${ago(line.last_seen)}`));
      table.render(frame.rows);
      window.vmqos.renderedRows = table.shown.length; // rows of the host's data shown (in view or not)
    },
  };
}
