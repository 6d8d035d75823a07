// A port: live charts (uPlot) of offered / delivered / dropped and packet rates for the last minutes with the
// limit drawn in, the effective limits with the source of each, the kernel's status, quarantine, events.
import { h, rate, pps, ago, badge, link, hostHref } from "./util.js";
import { eventTable, quarantineTable } from "./events.js";
import { usageTable } from "./usage.js";
import { verifySection } from "./verify.js";

const WINDOW_S = 300;
const LIMIT_FIELDS = { rate_bps: rate, peak_bps: rate, burst_bytes: (v) => `${v} bytes`, pps: pps,
                       min_bps: rate, dscp: (v) => String(v) };

function chart(title, series, width, fmt) {
  const target = h("div", { class: "card chart" });
  if (!window.uPlot) {
    target.append(h("p", { class: "error" }, "No chart: uPlot is not installed on the server (`make web`)."));
    return { target, plot: { setData() {}, data: [] } };
  }
  const opts = {
    title, width, height: 240, scales: { x: { time: true } },
    series: [{}, ...series.map(([label, stroke, dash]) => ({ label, stroke, width: 2, dash,
                                                             value: (u, v) => (v === null ? "—" : fmt(v)) }))],
    axes: [{}, { values: (u, ticks) => ticks.map(fmt), size: 80 }],
  };
  const plot = new uPlot(opts, [[], ...series.map(() => [])], target);
  return { target, plot };
}

export function mount(main, ctx) {
  const { host, device } = ctx.params;
  let direction = "egress";
  // the page's series: one array per line, appended as frames arrive (the limit as it was at each point)
  const series = { egress: empty(), ingress: empty() };
  window.vmqos.series = series;
  const width = Math.max(420, Math.min(760, (main.clientWidth || 900) / 2 - 30));
  const rates = chart("rate (bits/s)", [["offered", "#7a8699"], ["delivered", "#1f77b4"], ["dropped", "#d62728"],
                                        ["limit", "#2ca02c", [6, 4]]], width, rate);
  const packets = chart("packets/s", [["offered pps", "#7a8699"], ["dropped pps", "#d62728"], ["pps limit", "#2ca02c", [6, 4]]],
                        width, pps);
  window.vmqos.charts = { rates: rates.plot, packets: packets.plot }; // what uPlot draws, for the tests
  const toggle = h("span", {}, ["egress", "ingress"].map((d) => h("button", {
    class: `dir ${d}`, dataset: { direction: d }, onclick: () => { direction = d; draw(); } }, d)));
  const head = h("p", { id: "port-head" }), limits = h("div", { id: "limits" }), kernel = h("div", { id: "kernel" });
  const held = h("div", { id: "port-quarantine" }), evts = h("div");
  const usage = h("div", { id: "port-usage" }), verify = verifySection(host, device);
  const historyNote = h("p", { class: "muted hint", id: "history-note" });
  main.replaceChildren(h("h1", {}, `Port ${device} `, h("span", { class: "muted" }, "on "), link(hostHref(host), host)),
    head, h("p", {}, "direction (the instance's point of view): ", toggle), historyNote,
    h("div", { class: "charts" }, rates.target, packets.target),
    h("h2", {}, "Effective limits"), limits, h("h2", {}, "Kernel"), kernel, h("h2", {}, "Quarantine"), held,
    h("h2", {}, "Events"), evts, h("h2", {}, "Per-IP usage"), usage, h("h2", {}, "Verify runs"), verify.root);
  let lastLimits = "", lastHeld = "", lastUsage = "";

  function draw() {
    const s = series[direction];
    rates.plot.setData([s.at, s.offered, s.delivered, s.dropped, s.limit]);
    packets.plot.setData([s.at, s.pps, s.dropped_pps, s.pps_limit]);
    for (const b of toggle.children) b.disabled = b.dataset.direction === direction;
  }

  return {
    stop() { window.vmqos.charts = null; window.vmqos.series = null; },
    update(frame) {
      const limit = { egress: {}, ingress: {} };
      for (const l of frame.limits) limit[l.direction][l.field] = l.value;
      for (const p of frame.history) {
        for (const d of ["egress", "ingress"]) {
          const s = series[d];
          if (s.at.length && p.at <= s.at[s.at.length - 1]) continue;
          s.at.push(p.at); s.offered.push(p[`${d}_offered_bps`]); s.delivered.push(p[`${d}_delivered_bps`]);
          s.dropped.push(p[`${d}_dropped_bps`]); s.pps.push(p[`${d}_pps`]); s.dropped_pps.push(p[`${d}_dropped_pps`]);
          s.limit.push(limit[d].rate_bps ?? null); s.pps_limit.push(limit[d].pps ?? null);
          const cut = s.at.findIndex((t) => t >= p.at - WINDOW_S);
          if (cut > 0) for (const k of Object.keys(s)) s[k].splice(0, cut);
        }
      }
      draw();
      historyNote.textContent = `${series.egress.at.length} samples held by the server for this port (it keeps the ` +
        `last ${WINDOW_S / 60} minutes it received since it started at ${new Date(frame.history_since).toLocaleTimeString()})`;
      head.replaceChildren(badge(frame.quarantine ? "quarantined" : frame.status), " ",
        `policy ${frame.policy_name || "—"} (${frame.source || "no desired state"})` +
        (frame.port_id ? ` · Neutron port ${frame.port_id}` : "") + ` · reported ${ago(frame.reported_at)}`);
      const limitsKey = JSON.stringify(frame.limits);
      if (limitsKey !== lastLimits) {
        lastLimits = limitsKey;
        limits.replaceChildren(frame.limits.length ? h("table", { id: "limits-table" },
          h("thead", {}, h("tr", {}, ["direction", "limit", "value", "source"].map((c) => h("th", {}, c)))),
          h("tbody", {}, frame.limits.map((l) => h("tr", { dataset: { direction: l.direction, field: l.field } },
            h("td", {}, l.direction), h("td", {}, l.field), h("td", { class: "num" }, (LIMIT_FIELDS[l.field] || String)(l.value)),
            h("td", {}, l.source))))) : h("p", { class: "muted" }, "No limit in force."));
      }
      kernel.replaceChildren(h("p", {}, badge(frame.status), ` desired revision ${frame.desired_revision ?? "—"}, ` +
        `applied ${frame.applied_revision ?? "—"}${frame.message ? ` · ${frame.message}` : ""}`));
      const heldKey = JSON.stringify(frame.quarantine);
      if (heldKey !== lastHeld) {
        lastHeld = heldKey;
        held.replaceChildren(quarantineTable(frame.quarantine ? [frame.quarantine] : [], frame.who));
      }
      evts.replaceChildren(eventTable(frame.events));
      const usageKey = JSON.stringify(frame.usage);
      if (usageKey !== lastUsage) {  // once a minute at most: the table keeps its selection in between
        lastUsage = usageKey;
        usage.replaceChildren(usageTable(frame.usage, frame.usage_note));
      }
      verify.update(frame.verify_runs, frame.verify);
    },
  };
}

function empty() {
  return { at: [], offered: [], delivered: [], dropped: [], limit: [], pps: [], dropped_pps: [], pps_limit: [] };
}
